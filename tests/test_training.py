"""The shared training loop on a toy problem: it learns, is reproducible, stops early and guards NaNs."""
import math

import pytest
import torch

from models.bernoulli import IndependentBernoulli
from models.made import MADE
from pipeline.train_config import TrainConfig
from pipeline.training_loop import TrainingData, TrainingDiverged, compiled, fit, mean_nll

SHAPE = (1, 4, 4)


def toy_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with independent pixels of known probabilities, and those probabilities."""
    probs = torch.linspace(0.05, 0.95, 16).view(SHAPE)
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand((n, *SHAPE), generator=gen) < probs).float(), probs


def entropy(probs: torch.Tensor) -> float:
    return float(-(probs * probs.log() + (1 - probs) * (1 - probs).log()).sum())


def config(**overrides) -> TrainConfig:
    values = {"epochs": 8, "batch_size": 50, "lr": 0.1, "patience": None, "device": "cpu", "eval_batch_size": 500}
    return TrainConfig(**{**values, **overrides})


def train_made(cfg: TrainConfig, **kwargs):
    torch.manual_seed(cfg.seed)
    model = MADE(SHAPE, hidden_sizes=[32], num_masks=2, order_agnostic=True, eval_masks=2)
    train, _ = toy_data(1000, seed=0)
    val, _ = toy_data(500, seed=1)
    result = fit(model, TrainingData(train, None, "cpu", False), val, cfg, quiet=True, **kwargs)
    return model, result.history


def test_fit_approaches_the_entropy_of_the_data():
    train, probs = toy_data(2000, seed=0)
    val, _ = toy_data(2000, seed=1)
    model = IndependentBernoulli(SHAPE)
    before = mean_nll(model, val, 500)
    fit(model, TrainingData(train, None, "cpu", False), val, config(), quiet=True)
    assert before == pytest.approx(16 * math.log(2), rel=1e-6)
    assert mean_nll(model, val, 500) == pytest.approx(entropy(probs), abs=0.15)


def test_same_seed_same_history_and_weights():
    (model_a, history_a), (model_b, history_b) = train_made(config(lr=0.01)), train_made(config(lr=0.01))
    for record_a, record_b in zip(history_a, history_b):
        assert (record_a["train_loss"], record_a["val_nll"]) == (record_b["train_loss"], record_b["val_nll"])
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b) if torch.is_tensor(a) else a == b, name


def test_keeps_the_best_epoch_and_stops_early():
    improved = []
    model, history = train_made(config(lr=0.5, epochs=30, patience=2),
                                on_epoch=lambda record, better: better and improved.append(record["epoch"]))
    best = min(history, key=lambda r: r["val_nll"])
    assert len(history) < 30 and history[-1]["epoch"] - best["epoch"] == 2
    assert improved[-1] == best["epoch"]
    val, _ = toy_data(500, seed=1)
    assert mean_nll(model, val, 500) == pytest.approx(best["val_nll"], rel=1e-6)


class Interrupted(Exception):
    pass


def interrupt_after(epoch):
    def on_epoch(record, improved):
        if record["epoch"] == epoch:
            raise Interrupted
    return on_epoch


def test_resuming_from_the_saved_state_gives_the_same_result(tmp_path):
    cfg = config(lr=0.01, epochs=4)
    model_a, uninterrupted = train_made(cfg)
    state = tmp_path / "state.pt"
    with pytest.raises(Interrupted):
        train_made(cfg, state_path=state, on_epoch=interrupt_after(2))
    model_b, resumed = train_made(cfg, state_path=state)
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4]
    assert [(r["train_loss"], r["val_nll"]) for r in resumed] == [(r["train_loss"], r["val_nll"]) for r in uninterrupted]
    for a, b in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(a, b)


def test_nan_loss_stops_with_epoch_and_step():
    class Broken(IndependentBernoulli):
        def loss(self, x):
            return super().loss(x) * float("nan")

    train, _ = toy_data(100, seed=0)
    with pytest.raises(TrainingDiverged, match="epoch 1, step 1"):
        fit(Broken(SHAPE), TrainingData(train, None, "cpu", False), train, config(), quiet=True)


def test_dynamic_binarization_redraws_every_epoch():
    intensity = torch.full((100, *SHAPE), 128, dtype=torch.uint8)
    data = TrainingData(torch.zeros(100, *SHAPE), intensity, "cpu", dynamic=True)
    gen = torch.Generator().manual_seed(0)
    first, second = data.for_epoch(gen).clone(), data.for_epoch(gen).clone()
    assert not torch.equal(first, second)
    assert abs(float(first.mean()) - 128 / 255) < 0.05


def test_compile_cuda_compiles_the_loss_on_a_gpu_only():
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert [config(compile=c).compiles(cpu) for c in (False, True, "cuda")] == [False, True, False]
    assert [config(compile=c).compiles(gpu) for c in (False, True, "cuda")] == [False, True, True]
    loss = IndependentBernoulli(SHAPE).loss
    assert compiled(loss, config(compile="cuda"), cpu) is loss
