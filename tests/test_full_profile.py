"""A dry run of the full profile on the CPU: every model is built with its full settings, takes one
training step and scores one evaluation batch, so a setting that crashes or does not fit is found
here and not after hours on a GPU."""
from pathlib import Path

import pytest
import torch

from models import build_model
from models.base import ClassConditional
from pipeline import params as P
from pipeline.layout import IMAGE_SHAPE
from pipeline.model_params import model_spec
from pipeline.optimizer import make_optimizer
from pipeline.training_loop import train_step

PARAMS = P.load(Path(__file__).resolve().parents[1] / "params.yaml")
FULL = {**PARAMS, "profile": "full"}


@pytest.mark.parametrize("name", P.model_names(PARAMS))
def test_full_profile_model_takes_a_step_and_scores_a_batch(name):
    spec = model_spec(FULL, name)
    torch.manual_seed(0)
    model = build_model(spec.family, IMAGE_SHAPE, **spec.kwargs)
    batch = (torch.rand(2, *IMAGE_SHAPE) < 0.13).float()
    labels = torch.tensor([3, 7]) if isinstance(model, ClassConditional) else None  # as the train stage feeds them
    loss = train_step(model, model.loss, make_optimizer(model, spec.train), batch, grad_clip=spec.train.grad_clip,
                      labels=labels)
    assert torch.isfinite(loss), f"{name}: training loss {loss}"
    with torch.no_grad():
        nll = model.eval().nll(batch)
    assert nll.shape == (2,) and torch.isfinite(nll).all() and (nll > 0).all(), f"{name}: test NLL {nll}"
