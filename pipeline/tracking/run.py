"""A model's run, and which run of a model is current.

When a model is logged again, its earlier runs stop looking current: a run with the same params is
deleted, one with other params is tagged current=false. Every call a `Run` makes is guarded by the
failure policy (failure.py).
"""
from __future__ import annotations

import copy
import functools
import logging
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from pipeline.io import REPO_ROOT, params_hash, read_json
from pipeline.tracking.failure import TrackingError, connect, failure
from pipeline.tracking.store import _experiment_id, _store_uri, store_lock, tracking_uri

DATASET_DIGEST_CHARS = 16  # of the split's SHA-256: MLflow keeps at most 36 characters
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch


def git_commit(short: bool = True) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", *(["--short"] if short else []), "HEAD"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def source_name() -> str:
    """The stage's file as MLflow's Source column shows it: pipeline/train.py for `python -m pipeline.train`."""
    script = Path(sys.argv[0]).resolve()
    return str(script.relative_to(REPO_ROOT)) if script.is_relative_to(REPO_ROOT) else script.name


def reserved_tags(name: str) -> dict:
    """MLflow's own tags, which its UI reads for the run name and the Source column."""
    return {"mlflow.runName": name, "mlflow.source.name": source_name(), "mlflow.source.type": "LOCAL",
            "mlflow.source.git.commit": git_commit(short=False)}


def _keep_newest_current(client, experiment: str, name: str) -> None:
    """Two queued experiments that start `name` at once (each in its own folder, so the store lock
    does not order them against a server) may both leave their run current: every start ends by
    keeping only the newest current run, so whichever sweeps last agrees with the other."""
    current = client.search_runs([experiment], f"tags.name = '{name}' and tags.current = 'true'")
    newest = max(current, key=lambda r: (r.info.start_time, r.info.run_id), default=None)
    for old in current:
        if old.info.run_id != newest.info.run_id:
            client.set_tag(old.info.run_id, "current", "false")


@functools.lru_cache(maxsize=8)
def _split_array(path: Path):
    """A split's images, read once per process: `track` logs the same splits for every model."""
    import numpy as np
    return np.load(path)


def current_runs() -> dict:
    """name -> the current run of that model (or of the report); empty where tracking is off or
    (optionally) down."""
    client = connect()
    if client is None:
        return {}
    try:
        with store_lock():
            experiment = _experiment_id(client)
        runs = client.search_runs([experiment], "tags.current = 'true'", max_results=10_000)
    except Exception as e:
        failure("looking up the current runs", e)
        return {}
    return {run.data.tags["name"]: run for run in runs}


class Run:
    """An MLflow run addressed by id.

    Every call is guarded: a failing store raises TrackingError, or with MLFLOW_OPTIONAL set
    warns once and turns the run's later calls into no-ops.
    """

    def __init__(self, client, run_id: str):
        self.client, self.id, self.failed = client, run_id, False

    @classmethod
    def start(cls, name: str, params: dict, tags: dict, force: bool = False) -> Run | None:
        """A new current run for `name`; None where tracking is off or (optionally) down, or
        (unless `force`) where the current run already shows the same outputs
        (`tags["outputs_sha256"]`): two queued experiments with the same outputs log them once."""
        client = connect()
        if client is None:
            return None
        try:
            with store_lock():
                run_id = cls._create(client, name, params, tags, force)
        except TrackingError:
            raise
        except Exception as e:
            failure(f"starting the run of {name}", e)
            return None
        if run_id is None:
            return None
        self = cls(client, run_id)
        self.log_params(params)
        return self

    @staticmethod
    def _create(client, name: str, params: dict, tags: dict, force: bool) -> str | None:
        experiment = _experiment_id(client)
        digest = params_hash(params)
        current = client.search_runs([experiment], f"tags.name = '{name}' and tags.current = 'true'")
        outputs = tags.get("outputs_sha256")
        if not force and outputs and any(old.data.tags.get("outputs_sha256") == outputs for old in current):
            return None
        for old in current:
            if old.data.tags.get("params_hash") == digest:
                client.delete_run(old.info.run_id)
            else:
                client.set_tag(old.info.run_id, "current", "false")
        extra = {"dvc_experiment": os.environ["DVC_EXP_NAME"]} if os.environ.get("DVC_EXP_NAME") else {}
        run = client.create_run(experiment, run_name=name, tags={
            **{k: str(v) for k, v in tags.items()}, **extra, "name": name, "current": "true",
            "params_hash": digest, "git_commit": git_commit(), **reserved_tags(name)})
        _keep_newest_current(client, experiment, name)
        return run.info.run_id

    @contextmanager
    def _guard(self, action: str):
        try:
            yield
        except TrackingError:
            raise
        except Exception as e:
            self.failed = True
            failure(action, e)

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self._log_batch("logging params", params=items[i:i + 100])

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        self._log_batch("logging metrics", metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def _log_batch(self, action: str, **batch) -> None:
        if self.failed:
            return
        with self._guard(action):
            self.client.log_batch(self.id, **batch)

    def log_history(self, history: list[dict]) -> None:
        """One step per epoch: each record's values but its epoch."""
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(record["epoch"])) for record in history
                   for k, v in record.items() if k != "epoch"]
        for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            self._log_batch("logging the curves", metrics=metrics[i:i + MAX_METRICS_PER_BATCH])

    def set_tags(self, tags: dict) -> None:
        for key, value in tags.items():
            if self.failed:
                return
            with self._guard("setting tags"):
                self.client.set_tag(self.id, key, str(value))

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        if self.failed:
            return
        with self._guard(f"uploading {path}"):
            self.client.log_artifact(self.id, str(path), folder)

    def log_model(self, model) -> None:
        """`model` as an MLflow model: the pickled module with the models/ package it needs, so that
        mlflow.pytorch.load_model("runs:/<run id>/model") returns it ready to sample."""
        if self.failed:
            return
        with self._guard("logging the model"):
            import mlflow
            import mlflow.pytorch
            import torch
            mlflow.set_tracking_uri(_store_uri(tracking_uri()))
            # its warning about pickles on every run: the pickle is what keeps sample() (pt2 keeps only forward)
            logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
            with mlflow.start_run(run_id=self.id):
                mlflow.pytorch.log_model(copy.deepcopy(model).cpu().eval(), name="model",
                                         code_paths=[str(REPO_ROOT / "models")],
                                         pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
                                         serialization_format="pickle")

    def log_splits(self, contexts: dict[str, str], folder: Path = Path("data/binarized")) -> None:
        """The splits of the dataset in `folder` (split -> MLflow context: training, validation,
        testing) with their checksums from its manifest: MLflow's Dataset column."""
        manifest = folder / "manifest.json"
        if self.failed or not manifest.exists():
            return
        with self._guard("logging the datasets"):
            import json

            from mlflow.data import from_numpy
            from mlflow.data.dataset_source_registry import get_dataset_source_from_json
            from mlflow.entities import DatasetInput, InputTag
            checksums = read_json(manifest)["files"]
            inputs = []
            for split, context in contexts.items():
                path = (folder / f"{split}.npy").resolve()
                # a source of MLflow's type "local" (a file), built as such: given the file:// URI as a
                # string, MLflow guesses its type and warns that it matches more than one
                source = get_dataset_source_from_json(json.dumps({"uri": path.as_uri()}), source_type="local")
                dataset = from_numpy(_split_array(path), source=source, name=f"{folder.name}-mnist-{split}",
                                     digest=checksums[path.name][:DATASET_DIGEST_CHARS])
                inputs.append(DatasetInput(dataset._to_mlflow_entity(), [InputTag("mlflow.data.context", context)]))
            self.client.log_inputs(self.id, inputs)

    def finish(self, status: str = "FINISHED") -> None:
        if self.failed:
            return
        with self._guard("finishing the run"):
            self.client.set_terminated(self.id, status)
