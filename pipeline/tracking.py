"""MLflow mirrors what the stages produce: one run per trained model, one for the report.

The store defaults to a SQLite file in the repository (so `mlflow ui` needs no server);
MLFLOW_TRACKING_URI overrides it. When a model is retrained, its earlier runs stop looking
current: a run with the same params is deleted, one with other params is tagged current=false.
"""
from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

from pipeline.io import REPO_ROOT, params_hash

EXPERIMENT = "binarized-mnist"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO_ROOT / 'mlflow.db'}"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _client():
    from mlflow.tracking import MlflowClient
    for name in ("mlflow", "alembic"):  # their INFO lines (set up on import) drown the stage's own
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri())


def _experiment_id(client) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    location = None if os.environ.get("MLFLOW_TRACKING_URI") else (REPO_ROOT / "mlruns").as_uri()
    return client.create_experiment(EXPERIMENT, artifact_location=location)


class Run:
    """An MLflow run addressed by id, so train and evaluate (separate processes) share one run."""

    def __init__(self, client, run_id: str):
        self.client, self.id = client, run_id

    @classmethod
    def start(cls, name: str, params: dict, tags: dict) -> "Run":
        client = _client()
        experiment = _experiment_id(client)
        digest = params_hash(params)
        for old in client.search_runs([experiment], f"tags.name = '{name}' and tags.current = 'true'"):
            if old.data.tags.get("params_hash") == digest:
                client.delete_run(old.info.run_id)
            else:
                client.set_tag(old.info.run_id, "current", "false")
        run = client.create_run(experiment, run_name=name, tags={
            **{k: str(v) for k, v in tags.items()}, "name": name, "current": "true",
            "params_hash": digest, "git_commit": git_commit()})
        self = cls(client, run.info.run_id)
        self.log_params(params)
        return self

    @classmethod
    def open(cls, run_id: str) -> "Run | None":
        """The run with this id in the current store, or None if the store does not have it."""
        client = _client()
        try:
            client.get_run(run_id)
        except Exception:  # MlflowException for an unknown id; the store decides the details
            return None
        return cls(client, run_id)

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        self.client.log_batch(self.id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def set_tags(self, tags: dict) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.id, key, str(value))

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.id, str(path), folder)

    def finish(self) -> None:
        self.client.set_terminated(self.id, "FINISHED")
