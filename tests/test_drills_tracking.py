"""Failure drills for MLflow tracking: a server that is down, one that never answers and one that
stalls after the health check must not hang a stage. Without MLFLOW_OPTIONAL the stage fails
fast, before training, with one line that says what to do; with it the stage goes on untracked,
and `python -m pipeline.relog` later rebuilds the runs from the DVC outputs."""
from __future__ import annotations

import csv
import json
import time

import pytest

from pipeline import classifier, evaluate, relog, train
from tests.drills import faults
from tests.drills.workspace import call_stage, metric_steps, mlflow_runs, synthetic_data, write_params

pytest.importorskip("mlflow")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository folder with synthetic data and one tiny model; its default MLflow store is
    repo/mlflow.db (DVC_ROOT points there, as under `dvc repro`)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_OPTIONAL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    synthetic_data(tmp_path)
    write_params(tmp_path, {"bernoulli": {"family": "bernoulli", "train": {"lr": 0.05}}},
                 train={"epochs": 2, "max_train": 400}, evaluate={"samples": 4, "completions": 2})
    assert call_stage(classifier) is None  # evaluate scores samples with it
    return tmp_path


def timed(fn, *args):
    started = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - started


def test_server_down_fails_the_stage_fast_before_training(repo, monkeypatch):
    url = faults.closed_port_url()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    error, seconds = timed(call_stage, train, "bernoulli")
    assert seconds < 10
    assert error.startswith(f"error: MLflow tracking at {url} failed while connecting:") and "\n" not in error
    assert "MLFLOW_OPTIONAL=1" in error and "python -m pipeline.relog" in error
    assert not (repo / "results" / "bernoulli" / "model.pt").exists()


def test_server_that_never_answers_fails_within_the_timeout(repo, monkeypatch):
    with faults.silent_server() as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        error, seconds = timed(call_stage, train, "bernoulli")
    assert seconds < 10
    assert "failed while connecting: the server did not answer within 1s" in error


def test_server_stalling_mid_run_costs_a_bounded_wait_when_optional(repo, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_OPTIONAL", "1")
    with faults.http_server(faults.HealthyThenSilentHandler) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        error, seconds = timed(call_stage, train, "bernoulli")
    assert error is None
    assert seconds < 40  # one stalled request: 3 tries of 1 s and the back-off between them
    assert "going on without tracking (MLFLOW_OPTIONAL is set)" in capsys.readouterr().err
    assert json.loads((repo / "results" / "bernoulli" / "train.json").read_text())["mlflow_run_id"] is None


def test_optional_tracking_then_relog_rebuilds_the_run_from_the_outputs(repo, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_OPTIONAL", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", faults.closed_port_url())
    assert call_stage(train, "bernoulli") is None
    assert call_stage(evaluate, "bernoulli") is None
    assert capsys.readouterr().err.count("going on without tracking") == 2
    out = repo / "results" / "bernoulli"
    assert json.loads((out / "train.json").read_text())["mlflow_run_id"] is None

    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the server is back (here: the default local store)
    assert call_stage(relog) is None
    (run,) = mlflow_runs(repo, "bernoulli")
    assert run.data.tags["current"] == "true" and run.info.status == "FINISHED"
    with open(out / "curves.csv") as f:
        curves = [(int(r["epoch"]), float(r["val_nll"])) for r in csv.DictReader(f)]
    assert metric_steps(repo, run.info.run_id, "val_nll") == curves
    metrics = json.loads((out / "metrics.json").read_text())
    assert run.data.metrics["test_nll"] == metrics["test_nll"]
    assert run.data.params["train.lr"] == "0.05"
    assert (repo / "mlruns").exists() and list((repo / "mlruns").rglob("figures/samples.png"))

    capsys.readouterr()
    assert call_stage(relog) is None  # nothing missing any more: nothing re-logged
    assert "relog@bernoulli: already complete in MLflow" in capsys.readouterr().out
    assert len(mlflow_runs(repo, "bernoulli")) == 1

    assert call_stage(evaluate, "bernoulli") is None  # a later evaluate finds the rebuilt run
    assert "warning" not in capsys.readouterr().err


def test_relog_fails_clearly_when_the_server_is_still_down(repo, monkeypatch):
    monkeypatch.setenv("MLFLOW_OPTIONAL", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", faults.closed_port_url())
    assert call_stage(train, "bernoulli") is None
    error = call_stage(relog)  # MLFLOW_OPTIONAL does not apply to re-logging: that is its whole job
    assert error.startswith("error: MLflow tracking at http://127.0.0.1:") and "failed while connecting" in error


def test_store_of_a_queued_experiment_is_the_main_repositorys(tmp_path, monkeypatch):
    """DVC runs a queued experiment in .dvc/tmp/exps/<tmp>/, deleted afterwards: runs logged to a
    store there would be lost. DVC_ROOT (set by DVC to the main repository) wins; without it the
    temporary copy's location gives the main repository away."""
    from pipeline.tracking import main_repo_root, tracking_uri
    copy = tmp_path / "main" / ".dvc" / "tmp" / "exps" / "tmpab12"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "main"))
    assert tracking_uri() == f"sqlite:///{tmp_path / 'main' / 'mlflow.db'}"
    monkeypatch.delenv("DVC_ROOT")
    assert main_repo_root() == tmp_path / "main"
    monkeypatch.chdir(tmp_path)
    assert main_repo_root() == tmp_path
