"""Failure drills for MLflow tracking: only the `track` stage talks to the store, after the stages
that compute. A server that is down, one that never answers and one that stalls after the health
check must not hang it: without MLFLOW_OPTIONAL it fails fast with one line that says what to do,
and every output stays; with it the stage warns and goes on, and `python -m pipeline.track` logs
the runs later. A run mirrors the outputs, and is logged again only when they change."""
from __future__ import annotations

import csv
import json
import time

import pytest

from pipeline import classifier, evaluate, track, train
from tests.drills import faults
from tests.drills.workspace import (
    call_stage,
    code_digests,
    edit_params,
    file_tree,
    metric_steps,
    mlflow_runs,
    synthetic_data,
    write_params,
)

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
    code_digests(tmp_path)
    write_params(tmp_path, {"bernoulli": {"family": "bernoulli", "train": {"lr": 0.05}}},
                 train={"epochs": 2, "max_train": 400}, evaluate={"samples": 4, "completions": 2})
    assert call_stage(classifier) is None  # evaluate scores samples with it
    return tmp_path


def timed(fn, *args):
    started = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - started


@pytest.fixture
def trained(repo, monkeypatch):
    """The repository once bernoulli is trained and evaluated, with the tracking store down: the
    stages that compute never touch it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", faults.closed_port_url())
    assert call_stage(train, "bernoulli") is None
    assert call_stage(evaluate, "bernoulli") is None
    return repo


def test_server_down_fails_the_track_stage_fast_and_keeps_every_output(trained, monkeypatch):
    url = faults.closed_port_url()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    before = file_tree(trained / "results")
    error, seconds = timed(call_stage, track)
    assert seconds < 10
    assert error.startswith(f"error: MLflow tracking at {url} failed while connecting:") and "\n" not in error
    assert "MLFLOW_OPTIONAL=1" in error and "python -m pipeline.track" in error
    assert file_tree(trained / "results") == before


def test_server_that_never_answers_fails_within_the_timeout(trained, monkeypatch):
    with faults.silent_server() as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        error, seconds = timed(call_stage, track)
    assert seconds < 10
    assert "failed while connecting: the server did not answer within 1s" in error


def test_server_stalling_mid_run_costs_a_bounded_wait_when_optional(trained, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_OPTIONAL", "1")
    with faults.http_server(faults.HealthyThenSilentHandler) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        error, seconds = timed(call_stage, track)
    assert error is None
    assert seconds < 40  # one stalled request: 3 tries of 1 s and the back-off between them
    assert "going on without tracking (MLFLOW_OPTIONAL is set)" in capsys.readouterr().err


def test_track_mirrors_the_outputs_once_and_again_when_they_change(trained, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the default local store
    assert call_stage(track) is None
    (run,) = mlflow_runs(trained, "bernoulli")
    assert run.data.tags["current"] == "true" and run.info.status == "FINISHED"
    out = trained / "results" / "bernoulli"
    with open(out / "curves.csv") as f:
        curves = [(int(r["epoch"]), float(r["val_nll"])) for r in csv.DictReader(f)]
    assert metric_steps(trained, run.info.run_id, "val_nll") == curves
    metrics = json.loads((out / "metrics.json").read_text())
    assert run.data.metrics["test_nll"] == metrics["test_nll"]
    assert run.data.params["train.lr"] == "0.05" and run.data.tags["estimator"] == "exact"
    assert list((trained / "mlruns").rglob("figures/samples.png"))

    capsys.readouterr()
    assert call_stage(track) is None  # the same outputs: nothing logged
    assert "was up to date" in capsys.readouterr().out
    assert len(mlflow_runs(trained, "bernoulli")) == 1

    edit_params(trained, lambda p: p["models"]["bernoulli"]["train"].update(lr=0.1))
    assert call_stage(train, "bernoulli") is None
    assert call_stage(track, "bernoulli") is None
    newest, earlier = mlflow_runs(trained, "bernoulli")
    assert earlier.info.run_id == run.info.run_id and earlier.data.tags["current"] == "false"
    assert newest.data.tags["current"] == "true" and newest.data.params["train.lr"] == "0.1"


def test_track_names_a_model_that_is_not_trained(repo):
    assert call_stage(track, "bernoulli") == "error: bernoulli is not trained yet: run `dvc repro train@bernoulli` first"


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
