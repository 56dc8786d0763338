"""The shared training loop on a toy problem: it learns, is reproducible, stops early and guards NaNs."""
import math

import pytest
import torch

from models.bernoulli import IndependentBernoulli
from models.made import MADE
from pipeline.flops import training_flops_per_image
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
    grey_levels = torch.full((100, *SHAPE), 128, dtype=torch.uint8)
    data = TrainingData(torch.zeros(100, *SHAPE), grey_levels, "cpu", dynamic=True)
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


# --- a training-compute budget ------------------------------------------------------------------------

def test_training_stops_at_the_budget_and_validates_at_its_log_spaced_fractions():
    _, history = train_made(config(lr=0.01, epochs=100, budget_flops=3e7, budget_points=4))
    per_image = training_flops_per_image(MADE(SHAPE, hidden_sizes=[32], num_masks=2, order_agnostic=True))
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["images"] == 3e7 // per_image and history[-1]["flops"] <= 3e7
    for record, fraction in zip(history, (1 / 8, 1 / 4, 1 / 2, 1)):
        assert record["flops"] == record["images"] * per_image
        assert abs(record["flops"] - fraction * 3e7) < per_image  # on the point, to one image


def test_models_of_different_cost_validate_at_the_same_flops():
    train, _ = toy_data(1000, seed=0)
    cfg = config(lr=0.01, epochs=1000, budget_flops=2e7, budget_points=5)
    points = {}
    for name, model in {"bernoulli": IndependentBernoulli(SHAPE), "made": MADE(SHAPE, hidden_sizes=[64])}.items():
        result = fit(model, TrainingData(train, None, "cpu", False), train[:100], cfg, quiet=True)
        points[name] = [r["flops"] for r in result.history]
    per_image = {name: training_flops_per_image(m) for name, m in
                 {"bernoulli": IndependentBernoulli(SHAPE), "made": MADE(SHAPE, hidden_sizes=[64])}.items()}
    assert per_image["made"] > 100 * per_image["bernoulli"]
    for cheap, costly in zip(points["bernoulli"], points["made"]):
        assert abs(cheap - costly) < per_image["made"]
    assert len(points["made"]) == len(points["bernoulli"]) == 5


def test_epochs_cap_a_budget_that_would_need_more_passes():
    _, history = train_made(config(lr=0.01, epochs=2, budget_flops=1e12))
    assert history[-1]["images"] == 2 * 1000 and history[-1]["flops"] < 1e12


def test_a_run_resumed_between_budget_points_stops_at_the_same_step_with_the_same_weights(tmp_path):
    cfg = config(lr=0.01, epochs=100, batch_size=64, budget_flops=3e7, budget_points=4)  # points fall mid-epoch
    model_a, uninterrupted = train_made(cfg)
    state = tmp_path / "state.pt"
    with pytest.raises(Interrupted):
        train_made(cfg, state_path=state, on_epoch=interrupt_after(3))
    model_b, resumed = train_made(cfg, state_path=state)
    assert uninterrupted[2]["images"] % 1000 != 0
    assert [(r["images"], r["train_loss"], r["val_nll"]) for r in resumed] == \
           [(r["images"], r["train_loss"], r["val_nll"]) for r in uninterrupted]
    for a, b in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(a, b)


def test_a_budget_must_be_positive():
    with pytest.raises(ValueError, match="budget_flops"):
        config(budget_flops=0)


def test_a_model_that_fits_whole_epochs_fits_as_many_as_the_budget_buys_and_no_more():
    from models.mixture import BernoulliMixture
    train, _ = toy_data(1000, seed=0)
    model = BernoulliMixture(SHAPE, components=3)
    per_image = training_flops_per_image(model)
    result = fit(model, TrainingData(train, None, "cpu", False), train[:100],
                 config(epochs=20, budget_flops=12.5 * 1000 * per_image, budget_points=3), quiet=True)
    assert [r["images"] for r in result.history] == [3000, 6000, 12000]  # 12.5 epochs / 4, / 2, / 1, rounded down
    assert result.history[-1]["flops"] <= 12.5 * 1000 * per_image
