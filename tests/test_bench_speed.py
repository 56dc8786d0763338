"""bench.speed times each model's step as the training loop runs it, with the settings --set gives."""
import pytest
import torch

from bench.common import IMAGE_SHAPE
from bench.speed import parse_args, time_model, train_throughput
from models import build_model
from pipeline import params as P
from pipeline.io import PipelineError
from pipeline.model_params import model_spec, with_train_settings
from pipeline.train_config import TrainConfig


def test_a_class_conditional_model_is_timed_on_its_training_loss_given_labels():
    model = build_model("made", IMAGE_SHAPE, hidden_sizes=[8], conditional=True)
    seen = []
    loss = model.loss
    model.loss = lambda x, labels=None: seen.append(labels) or loss(x, labels)
    rate = train_throughput(model, TrainConfig(batch_size=4, bf16=False), torch.device("cpu"), 1,
                            torch.Generator().manual_seed(0))
    assert rate > 0 and seen
    assert all(labels is not None and labels.shape == (4,) and 0 <= labels.min() <= labels.max() <= 9
               for labels in seen)


def test_set_overrides_a_train_setting_validated_like_params_yaml():
    params = P.load()
    params["profile"] = "smoke"
    args = parse_args(["--set", "bf16=false", "--set", "compile_mode=reduce-overhead"])
    cfg = with_train_settings(model_spec(params, "bernoulli").train, args.overrides, "--set")
    assert (cfg.bf16, cfg.compile_mode, cfg.epochs) == (False, "reduce-overhead", 1)
    row = time_model(params, "bernoulli", torch.device("cpu"), 1, 10, {"bf16": False})
    assert row.step == "fp32"
    with pytest.raises(PipelineError, match="--set: compile: Input should be False, True or 'cuda'"):
        time_model(params, "bernoulli", torch.device("cpu"), 1, 10, {"compile": "gpu"})
