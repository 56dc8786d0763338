"""Failure drills through DVC itself, in a temporary git copy of the repository (smoke profile,
two models, real MNIST from the local mirror):

- determinism: `dvc repro --force` of both models' train and evaluate stages gives byte-identical
  metrics.json on CPU;
- SIGKILL: `dvc repro` killed (the whole process group) during training, then re-run: DVC has
  deleted the declared outputs, training resumes from the resume state, and metrics, curves and
  weights equal the uninterrupted run's, and its MLflow run has every epoch;
- concurrent experiments: two `dvc exp run --queue` run by `dvc queue start -j 2` in temporary
  copies land, intact, in the main repository's SQLite store, created from scratch by the two.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import torch

from tests.drills.workspace import (
    GIT,
    edit_params,
    git_repo,
    metric_steps,
    mlflow_runs,
    record_data_stages,
    run,
    smoke_repo,
)

pytestmark = pytest.mark.e2e
pytest.importorskip("mlflow")
pytest.importorskip("dvc")

MODELS = {
    "bernoulli": {"family": "bernoulli", "train": {"lr": 0.05}},
    # a model with state beyond its weights (the mask it cycles through) and epochs long enough
    # to be killed in the middle of training: 200 steps each
    "made": {"family": "made", "hidden_sizes": [16], "num_masks": 2, "order_agnostic": True, "eval_masks": 2,
             "train": {"epochs": 4, "max_train": 10_000}},
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A committed copy after one `dvc repro` (data stages recorded from the session's data)."""
    root, env = smoke_repo(tmp_path_factory.mktemp("dvc-drills") / "repo", MODELS, tmp_path_factory)
    git_repo(root, env)
    record_data_stages(root, env)
    run(["dvc", "repro"], root, env)
    run([*GIT, "add", "dvc.lock"], root, env)
    run([*GIT, "commit", "-qm", "lock"], root, env)
    return root, env


def outputs(root, model) -> dict:
    """What must not change between runs: metrics.json bytes, the curves without their clock column,
    and the weights of model.pt."""
    out = root / "results" / model
    curves = [line.rsplit(",", 1)[0] for line in (out / "curves.csv").read_text().splitlines()]
    assert (out / "curves.csv").read_text().splitlines()[0].endswith(",seconds")
    weights = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    return {"metrics.json": (out / "metrics.json").read_bytes(), "curves": curves,
            "weights": {k: v.tolist() if torch.is_tensor(v) else v for k, v in weights.items()}}


def test_forced_rerun_gives_byte_identical_metrics(repo):
    root, env = repo
    before = {m: outputs(root, m) for m in MODELS}
    targets = [f"{stage}@{m}" for m in MODELS for stage in ("train", "evaluate")]
    log = run(["dvc", "repro", "--force", "--single-item", *targets], root, env).stdout
    assert all(f"Running stage '{t}'" in log for t in targets)
    for model in MODELS:
        assert outputs(root, model) == before[model], f"{model} changed on a forced re-run"


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_sigkill_during_training_then_rerun_resumes_to_the_same_numbers(repo):
    root, env = repo
    out = root / "results" / "made"
    edit_params(root, lambda p: p["models"]["made"]["train"].update(epochs=5))  # a run DVC has no outputs of
    killed = subprocess.Popen(["dvc", "repro"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: list(out.glob(".resume-*.pt")) or killed.poll() is not None, 120, "the first epoch")
    finally:
        os.killpg(killed.pid, signal.SIGKILL)  # dvc, the stage's shell and python: no clean-up of any kind
        killed.wait()
    (state,) = out.glob(".resume-*.pt")
    assert not (out / "train.json").exists(), "training finished before the kill: make the epochs longer"

    log = run(["dvc", "repro"], root, env).stdout  # DVC deletes what the killed run left and re-runs train@made
    assert "train@made: resuming after epoch" in log
    assert not state.exists(), "the resume state outlived a successful run"
    resumed = outputs(root, "made")
    (current,) = [r for r in mlflow_runs(root, "made") if r.data.tags["current"] == "true"]
    assert current.info.status == "FINISHED"
    assert [step for step, _ in metric_steps(root, current.info.run_id, "val_nll")] == [1, 2, 3, 4, 5]

    run(["dvc", "repro", "--force", "--single-item", "train@made", "evaluate@made"], root, env)  # uninterrupted
    assert outputs(root, "made") == resumed

    run(["git", "checkout", "params.yaml"], root, env)  # back to the module's reference state
    run(["dvc", "repro"], root, env)


def test_two_queued_experiments_run_at_once_and_land_in_the_main_store(repo):
    root, env = repo
    for path in (root / "mlflow.db", root / "mlflow.db.lock"):
        path.unlink(missing_ok=True)  # both experiments race to create the store
    learning_rates = {}
    for lr in (0.1, 0.02):
        log = run(["dvc", "exp", "run", "--queue", "-S", f"models.bernoulli.train.lr={lr}"], root, env).stdout
        name = log.split("Queued experiment '")[1].split("'")[0]
        learning_rates[name] = lr
    run(["dvc", "queue", "start", "-j", "2"], root, env)

    def finished():
        status = run(["dvc", "queue", "status"], root, env).stdout
        return not any(word in status for word in ("Queued", "Running"))
    wait_for(finished, 300, "the queued experiments")
    status = run(["dvc", "queue", "status"], root, env).stdout
    assert status.count("Success") == 2, status

    shown = json.loads(run(["dvc", "exp", "show", "--json"], root, env).stdout)
    test_nll = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                metrics = rev["data"]["metrics"]["results/bernoulli/metrics.json"]["data"]
                test_nll[rev["name"]] = metrics["test_nll"]
    runs = {r.data.tags.get("dvc_experiment"): r for r in mlflow_runs(root, "bernoulli")}
    for name, lr in learning_rates.items():
        tracked = runs[name]
        assert tracked.info.status == "FINISHED"
        assert tracked.data.params["train.lr"] == str(lr)
        assert tracked.data.metrics["test_nll"] == test_nll[name]
        assert [s for s, _ in metric_steps(root, tracked.info.run_id, "val_nll")] == [1]
        assert (root / "mlruns" / tracked.info.run_id / "artifacts" / "figures" / "samples.png").exists()
    assert not list((root / ".dvc" / "tmp" / "exps").rglob("mlflow.db")), "a run went to a temporary copy"
