"""bench.speed times each model's step as the training loop runs it."""
import torch

from bench.speed import IMAGE_SHAPE, train_throughput
from models import build_model
from pipeline.training_loop import TrainConfig


def test_a_class_conditional_model_is_timed_on_its_training_loss_given_labels():
    model = build_model("made", IMAGE_SHAPE, hidden_sizes=[8], conditional=True)
    seen = []
    loss = model.loss
    model.loss = lambda x, labels=None: seen.append(labels) or loss(x, labels)
    rate = train_throughput(model, TrainConfig(batch_size=4, bf16=False), torch.device("cpu"), 1,
                            torch.Generator().manual_seed(0))
    assert rate > 0 and len(seen) == 4  # three warm-up steps and the timed one
    assert all(labels is not None and labels.shape == (4,) and 0 <= labels.min() <= labels.max() <= 9
               for labels in seen)
