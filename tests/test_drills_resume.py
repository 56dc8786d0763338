"""Failure drills for the training loop: killed and resumed at every epoch, torn or damaged resume
states, a resume after early stopping, and non-finite losses. Every toy family in tests/toys.py
is drilled, so a family that keeps state outside its state_dict (a mask counter, an RNG of its
own) fails here instead of resuming into different numbers."""
from __future__ import annotations

import math

import pytest
import torch

import models
from pipeline import train as train_stage
from pipeline import training_loop
from pipeline.resume import resume_point
from pipeline.train_config import TrainConfig
from pipeline.training_loop import TrainingData, TrainingDiverged, fit
from tests import toys
from tests.drills import faults
from tests.drills.workspace import call_stage, code_digests, synthetic_data, write_params

SHAPE = (1, 4, 4)
CFG = TrainConfig(epochs=3, batch_size=16, lr=3e-3, patience=None, seed=0, device="cpu", eval_batch_size=64)


def toy_families() -> dict:
    """Every constructor in tests/toys.py's dictionaries (EXACT, AUTOREGRESSIVE, and any added)."""
    found = {}
    for value in vars(toys).values():
        if isinstance(value, dict) and value and all(callable(v) for v in value.values()):
            found.update(value)
    return found


class Killed(Exception):
    """Stands for SIGKILL right after an epoch's resume state was written."""


def toy_data():
    gen = torch.Generator().manual_seed(1)
    images = (torch.rand(64, *SHAPE, generator=gen) < 0.4).float()
    return TrainingData(images[:48], None, "cpu", False), images[48:]


def run_fit(make_model, state_path, kill_after: int | None = None, cfg: TrainConfig = CFG):
    """One training process: seed, build, fit (killed after epoch `kill_after` if given)."""
    torch.manual_seed(cfg.seed)
    model = make_model(SHAPE)
    train, val = toy_data()

    def on_epoch(record, improved):
        if record["epoch"] == kill_after:
            raise Killed

    result = fit(model, train, val, cfg, state_path=state_path, on_epoch=on_epoch, quiet=True)
    return result.history, model


def without_time(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        if torch.is_tensor(x):
            assert torch.equal(x, y), f"{name} differs after the resume"


@pytest.mark.parametrize("family", sorted(toy_families()))
def test_killed_at_any_epoch_and_resumed_gives_the_same_numbers(family, tmp_path):
    make = toy_families()[family]
    reference, reference_model = run_fit(make, tmp_path / "reference.pt")
    for kill_after in range(1, CFG.epochs):
        state = tmp_path / f"killed-{kill_after}.pt"
        with pytest.raises(Killed):
            run_fit(make, state, kill_after)
        assert resume_point(state) == kill_after
        history, model = run_fit(make, state)
        assert without_time(history) == without_time(reference), f"killed after epoch {kill_after}"
        assert_same_weights(model, reference_model)


def test_a_save_torn_by_the_kill_leaves_the_previous_epoch(tmp_path):
    make = toy_families()["made_mask_ensemble"]
    reference, _ = run_fit(make, tmp_path / "reference.pt")
    state = tmp_path / "state.pt"
    with pytest.raises(Killed):
        run_fit(make, state, kill_after=1)
    state.with_name(state.name + ".tmp").write_bytes(b"half of epoch 2's state")
    history, _ = run_fit(make, state)
    assert without_time(history) == without_time(reference)


def test_a_damaged_resume_state_is_reported_and_training_starts_over(tmp_path):
    make = toy_families()["nade"]
    reference, _ = run_fit(make, tmp_path / "reference.pt")
    state = tmp_path / "state.pt"
    state.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="cannot read the resume state"):
        history, _ = run_fit(make, state)
    assert without_time(history) == without_time(reference)


def test_a_run_that_stopped_early_does_not_train_on_when_resumed(tmp_path, monkeypatch):
    worse_each_epoch = iter(range(100, 200))
    monkeypatch.setattr(training_loop, "mean_nll", lambda *args: float(next(worse_each_epoch)))
    cfg = TrainConfig(**{**vars(CFG), "epochs": 10, "patience": 2})
    state = tmp_path / "state.pt"
    history, _ = run_fit(toy_families()["bernoulli"], state, cfg=cfg)
    assert [r["epoch"] for r in history] == [1, 2, 3]  # epoch 1 best, 2 and 3 worse: patience spent

    again, _ = run_fit(toy_families()["bernoulli"], state, cfg=cfg)  # the stage was killed after fit
    assert without_time(again) == without_time(history)


def test_resumed_run_counts_the_time_already_spent_once(tmp_path):
    state = tmp_path / "state.pt"
    with pytest.raises(Killed):
        run_fit(toy_families()["fvsbn"], state, kill_after=2)
    saved = torch.load(state, weights_only=True)
    saved["history"][0]["seconds"], saved["history"][1]["seconds"] = 1000.0, 1001.0  # a long first run
    torch.save(saved, state)
    history, _ = run_fit(toy_families()["fvsbn"], state)
    assert 1001.0 < history[2]["seconds"] < 1500.0  # cumulative: 1001 s so far plus the last epoch


def test_nan_loss_names_epoch_and_step_and_keeps_the_last_good_state(tmp_path):
    model = faults.NaNAt(SHAPE, nan_epoch=2, nan_step=3, steps_per_epoch=3)
    train, val = toy_data()
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 3") as diverged:
        fit(model, train, val, CFG, state_path=tmp_path / "state.pt", quiet=True)
    assert diverged.value.best_epoch == 1
    assert resume_point(tmp_path / "state.pt") == 1


def test_non_finite_validation_nll_stops_training(tmp_path, monkeypatch):
    values = iter([5.0, math.inf])
    monkeypatch.setattr(training_loop, "mean_nll", lambda *args: next(values))
    with pytest.raises(TrainingDiverged, match=r"validation NLL became inf after epoch 2"):
        run_fit(toy_families()["bernoulli"], tmp_path / "state.pt")


def test_train_stage_divergence_is_one_line_and_keeps_model_pt_and_resume_state(tmp_path, monkeypatch):
    """The stage, in-process on synthetic data: NaN at epoch 2, step 3 of 4 (100-image batches)."""
    monkeypatch.setitem(models.FAMILIES, "nan_at", "tests.drills.faults:NaNAt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    synthetic_data(tmp_path)
    code_digests(tmp_path)  # with the family registered above
    write_params(tmp_path, {"bad": {"family": "nan_at", "nan_epoch": 2, "nan_step": 3, "steps_per_epoch": 4}},
                 train={"epochs": 3, "batch_size": 100, "max_train": 400})
    error = call_stage(train_stage, "bad", "--quiet")
    assert error is not None and "\n" not in error
    assert error.startswith("error: models.bad: training loss became nan at epoch 2, step 3")
    assert "results/bad/model.pt holds the best epoch so far (1)" in error
    out = tmp_path / "results" / "bad"
    assert torch.load(out / "model.pt", weights_only=True)["meta"]["epoch"] == 1
    assert not (out / "train.json").exists()
    states = list(out.glob(".resume-*.pt"))
    assert len(states) == 1 and resume_point(states[0]) == 1


def test_the_resume_state_is_keyed_by_the_code_digests_and_their_absence_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    synthetic_data(tmp_path)
    write_params(tmp_path, {"made": {"family": "made", "hidden_sizes": [8]}})
    error = call_stage(train_stage, "made", "--quiet")
    assert error.startswith("error: digests/stage-train.sha256 and digests/family-made.sha256 missing: "
                            "`python -m pipeline.digest` writes") and "\n" not in error
    code_digests(tmp_path)
    key = train_stage.code_digest("made")
    assert train_stage.code_digest("nade") != key
    family = tmp_path / "digests" / "family-made.sha256"
    family.write_text(family.read_text() + "# an edit\n")
    assert train_stage.code_digest("made") != key


def test_deterministic_kernels_change_nothing_on_cpu(tmp_path, monkeypatch):
    """train.deterministic only constrains CUDA kernels: on CPU the numbers stay the same."""
    results = {}
    try:
        for deterministic in (False, True):
            root = tmp_path / str(deterministic)
            root.mkdir()
            monkeypatch.chdir(root)
            synthetic_data(root)
            code_digests(root)
            write_params(root, {"made": {"family": "made", "hidden_sizes": [8], "num_masks": 2}},
                         train={"epochs": 2, "deterministic": deterministic})
            assert call_stage(train_stage, "made", "--quiet") is None
            curves = (root / "results" / "made" / "curves.csv").read_text().splitlines()
            results[deterministic] = [line.rsplit(",", 1)[0] for line in curves]
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    assert results[True] == results[False]
