"""MLflow mirrors what the stages produce: one run per trained model, one for the report.

The store defaults to a SQLite file in the main repository (so `mlflow ui` needs no server);
MLFLOW_TRACKING_URI overrides it. When a model is retrained, its earlier runs stop looking
current: a run with the same params is deleted, one with other params is tagged current=false.

Tracking never hangs a stage and never loses a result:
- an http(s) server is checked with a short request first, and MLflow's own retries are bounded
  (MLFLOW_HTTP_REQUEST_MAX_RETRIES / _TIMEOUT / _BACKOFF_FACTOR, defaults below unless set);
- a store that is down or fails is a one-line error, or with MLFLOW_OPTIONAL=1 a warning after
  which the stage goes on untracked; `python -m pipeline.relog` rebuilds the runs later from the
  DVC outputs, which stay the source of truth;
- queued DVC experiments (each in a temporary copy of the repository, several at once) all write
  to the main repository's store, and a lock file serialises creating the database, the
  experiment and the model's current run.
"""
from __future__ import annotations

import copy
import http.client
import importlib.util
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from pipeline.io import REPO_ROOT, PipelineError, params_hash, read_json

try:
    import fcntl
except ImportError:  # Windows: no lock; concurrent first runs there are not supported
    fcntl = None

EXPERIMENT = "binarized-mnist"
OPTIONAL_ENV = "MLFLOW_OPTIONAL"
# MLflow retries a failing request 7 times with growing waits, 120 s each: minutes per call.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
HEALTH_CHECK_TIMEOUT_S = 5.0
SQLITE_BUSY_TIMEOUT_S = 60
LOCK_TIMEOUT_S = 120
RELOG_HINT = "re-log it later with `python -m pipeline.relog`"
DATASET_DIGEST_CHARS = 16  # of the split's SHA-256: MLflow keeps at most 36 characters


class TrackingError(PipelineError):
    """The tracking store is down, hangs or refuses a write (and MLFLOW_OPTIONAL is not set)."""


def optional() -> bool:
    return os.environ.get(OPTIONAL_ENV, "").strip().lower() in ("1", "true", "yes")


def main_repo_root() -> Path:
    """The repository whose store the runs belong to. DVC sets DVC_ROOT for every stage, and for a
    queued experiment points it at the main repository rather than the temporary copy the
    experiment runs in (.dvc/tmp/exps/...), which is deleted afterwards. Stages run by hand run
    from the repository root, like DVC runs them (data paths are relative to it too)."""
    root = os.environ.get("DVC_ROOT")
    if root:
        return Path(root).resolve()
    cwd = Path.cwd()
    for i in range(len(cwd.parts) - 2):
        if cwd.parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*cwd.parts[:i])
    return cwd


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{main_repo_root() / 'mlflow.db'}"


def _store_uri(uri: str) -> str:
    """The URI MLflow is given: for the default SQLite store, with a busy timeout long enough for
    concurrent experiments to wait for each other's writes instead of failing."""
    if os.environ.get("MLFLOW_TRACKING_URI") or "?" in uri:
        return uri
    return f"{uri}?timeout={SQLITE_BUSY_TIMEOUT_S}"


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


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def failure(action: str, error) -> None:
    """Report that tracking failed while doing `action`: a warning when MLFLOW_OPTIONAL is set,
    else a TrackingError that stops the stage."""
    detail = " ".join(str(error).split())[:400] or type(error).__name__
    message = f"MLflow tracking at {tracking_uri()} failed while {action}: {detail}"
    if optional():
        warn(f"{message}; going on without tracking ({OPTIONAL_ENV} is set): {RELOG_HINT}")
        return
    raise TrackingError(f"{message}. Start or fix the server (or unset MLFLOW_TRACKING_URI to use the local "
                        f"store), or set {OPTIONAL_ENV}=1 to run untracked and {RELOG_HINT}")


def unreachable(uri: str) -> str | None:
    """Why an http(s) tracking server cannot be used (no answer, refused), or None if it answers."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        timeout = min(HEALTH_CHECK_TIMEOUT_S, float(os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"]))
    except ValueError:
        raise TrackingError("MLFLOW_HTTP_REQUEST_TIMEOUT: expected a number of seconds, "
                            f"got {os.environ['MLFLOW_HTTP_REQUEST_TIMEOUT']!r}") from None
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # it answered, even if not with a health page (a proxy, an older server)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        return f"the server did not answer within {timeout:g}s" if "timed out" in str(reason) else str(reason)
    return None


def connect():
    """An MlflowClient for the tracking store, or None (after a warning) where MLflow is not
    installed or, with MLFLOW_OPTIONAL set, the store is unreachable."""
    if importlib.util.find_spec("mlflow") is None:
        warn("mlflow is not installed; this stage is not tracked")
        return None
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    uri = tracking_uri()
    problem = unreachable(uri)
    if problem is not None:
        failure("connecting", problem)
        return None
    from mlflow.tracking import MlflowClient  # importing mlflow sets its loggers' levels: quieten them after
    for name in ("mlflow", "alembic", "sqlalchemy"):  # their INFO lines drown the stage's own
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with store_lock():  # the client opens the store at once, creating its tables if it is new
            return MlflowClient(_store_uri(uri))
    except Exception as e:
        failure("opening the store", e)
        return None


@contextmanager
def store_lock():
    """Serialise writers of the default SQLite store across processes (no-op for other stores)."""
    if fcntl is None or os.environ.get("MLFLOW_TRACKING_URI"):
        yield
        return
    path = main_repo_root() / "mlflow.db.lock"
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    with open(path, "a") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} stayed locked for {LOCK_TIMEOUT_S}s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _experiment_id(client) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    location = None if os.environ.get("MLFLOW_TRACKING_URI") else (main_repo_root() / "mlruns").as_uri()
    try:
        return client.create_experiment(EXPERIMENT, artifact_location=location)
    except Exception:  # created meanwhile by another process on a store the lock does not cover
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            raise
        return experiment.experiment_id


def _is_usable(client, run_id: str) -> bool:
    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except Exception:  # MlflowException for an unknown id; the store decides the details
        return False


def _keep_newest_current(client, experiment: str, name: str) -> None:
    """Two queued experiments that start `name` at once (each in its own folder, so the store lock
    does not order them against a server) may both leave their run current: every start ends by
    keeping only the newest current run, so whichever sweeps last agrees with the other."""
    current = client.search_runs([experiment], f"tags.name = '{name}' and tags.current = 'true'")
    newest = max(current, key=lambda r: (r.info.start_time, r.info.run_id), default=None)
    for old in current:
        if old.info.run_id != newest.info.run_id:
            client.set_tag(old.info.run_id, "current", "false")


class Run:
    """An MLflow run addressed by id, so train and evaluate (separate processes) share one run.

    Every call is guarded: a failing store raises TrackingError, or with MLFLOW_OPTIONAL set
    warns once and turns the run's later calls into no-ops.
    """

    def __init__(self, client, run_id: str):
        self.client, self.id, self.failed = client, run_id, False

    @classmethod
    def start(cls, name: str, params: dict, tags: dict) -> "Run | None":
        """A new current run for `name`, or None where tracking is off or (optionally) down."""
        client = connect()
        if client is None:
            return None
        try:
            with store_lock():
                run_id = cls._create(client, name, params, tags)
        except TrackingError:
            raise
        except Exception as e:
            failure(f"starting the run of {name}", e)
            return None
        self = cls(client, run_id)
        self.log_params(params)
        return self

    @staticmethod
    def _create(client, name: str, params: dict, tags: dict) -> str:
        experiment = _experiment_id(client)
        digest = params_hash(params)
        for old in client.search_runs([experiment], f"tags.name = '{name}' and tags.current = 'true'"):
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

    @classmethod
    def open(cls, run_id: str | None, name: str | None = None, quiet: bool = False) -> "Run | None":
        """The run with this id or, for model `name`, the current run that `pipeline.relog` rebuilt
        in its place (also when the stage ran untracked: run_id None); None if the store has
        neither, or tracking is off or (optionally) down."""
        if run_id is None and name is None:
            return None
        client = connect()
        if client is None:
            return None
        try:
            if run_id is not None and _is_usable(client, run_id):
                return cls(client, run_id)
            experiment = client.get_experiment_by_name(EXPERIMENT)
            relogged = [] if experiment is None or name is None else client.search_runs(
                [experiment.experiment_id], f"tags.name = '{name}' and tags.relogged_from = '{run_id or 'none'}' "
                                            "and tags.current = 'true'")
        except Exception as e:
            failure(f"looking up the run of {name or run_id}", e)
            return None
        if relogged:
            return cls(client, relogged[0].info.run_id)
        if not quiet:
            what = f"its MLflow run {run_id} is not" if run_id else "it was trained untracked, so no run is"
            warn(f"{name or run_id}: {what} in the tracking store {tracking_uri()}; {RELOG_HINT}")
        return None

    @classmethod
    def resume_or_start(cls, run_id: str | None, name: str, params: dict, tags: dict) -> "Run | None":
        """Continue the run a killed stage was logging to, or start a new one."""
        return cls.open(run_id, quiet=True) or cls.start(name, params, tags)

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
        """Log the per-epoch records the run does not have yet (after a resume, or when re-logging)."""
        if self.failed or not history:
            return
        with self._guard("reading the run's history"):
            logged = {m.step for m in self.client.get_metric_history(self.id, "val_nll")}
        for record in history:
            if record["epoch"] not in logged:
                self.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=int(record["epoch"]))

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

    def log_splits(self, contexts: dict[str, str]) -> None:
        """The binarized splits (split -> MLflow context: training, validation, testing) with their
        checksums from the binarize stage's manifest: MLflow's Dataset column."""
        from pipeline.data import BINARIZED_DIR
        manifest = BINARIZED_DIR / "manifest.json"
        if self.failed or not manifest.exists():
            return
        with self._guard("logging the datasets"):
            import json

            import numpy as np
            from mlflow.data import from_numpy
            from mlflow.data.dataset_source_registry import get_dataset_source_from_json
            from mlflow.entities import DatasetInput, InputTag
            checksums = read_json(manifest)["files"]
            inputs = []
            for split, context in contexts.items():
                path = (BINARIZED_DIR / f"{split}.npy").resolve()
                # a source of MLflow's type "local" (a file), built as such: given the file:// URI as a
                # string, MLflow guesses its type and warns that it matches more than one
                source = get_dataset_source_from_json(json.dumps({"uri": path.as_uri()}), source_type="local")
                dataset = from_numpy(np.load(path), source=source, name=f"binarized-mnist-{split}",
                                     digest=checksums[path.name][:DATASET_DIGEST_CHARS])
                inputs.append(DatasetInput(dataset._to_mlflow_entity(), [InputTag("mlflow.data.context", context)]))
            self.client.log_inputs(self.id, inputs)

    def finish(self, status: str = "FINISHED") -> None:
        if self.failed:
            return
        with self._guard("finishing the run"):
            self.client.set_terminated(self.id, status)

    def is_complete(self, needs_test_metrics: bool) -> bool:
        """Finished, and holding the test metrics when the DVC outputs have them."""
        with self._guard("reading the run"):
            run = self.client.get_run(self.id)
            return run.info.status == "FINISHED" and (not needs_test_metrics or "test_nll" in run.data.metrics)
        return False


# --- the comparison table in MLflow's UI -----------------------------------------------------------
# The UI restores a saved view from the experiment tag `mlflow.sharedViewState.<key>` when its URL
# carries `viewStateShareKey=<key>` (read from MLflow 3.17's UI bundle). The view holds the search
# facets (searchFilter, orderByKey, orderByAsc) and the runs table's selectedColumns, whose keys are
# `<group>.`<name>``. Plain URL parameters cannot choose columns, hence the saved view.
VIEW_KEY = "genbench-comparison"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
DEFAULT_UI = "http://127.0.0.1:5000"
COMPARISON_VIEW = {
    "searchFilter": "tags.current = 'true'",
    "orderByKey": "metrics.`test_nll`",
    "orderByAsc": True,
    "selectedColumns": ["attributes.`Source`", "attributes.`Models`", "attributes.`Dataset`",
                        "metrics.`test_nll`", "metrics.`test_bpd`", "tags.`estimator`"],
    "runsHiddenMode": "SHOW_ALL",
}


def comparison_url(ui: str = DEFAULT_UI) -> str:
    """Save the comparison view in the store and return the URL that opens it: current runs only,
    test_nll, test_bpd and the estimator as columns, best test_nll first."""
    import json
    os.environ.pop(OPTIONAL_ENV, None)  # this command is about the store: a failure must say so
    client = connect()
    if client is None:
        raise TrackingError("MLflow is not installed")
    try:
        with store_lock():
            experiment = _experiment_id(client)
            client.set_experiment_tag(experiment, VIEW_TAG_PREFIX + VIEW_KEY, json.dumps(COMPARISON_VIEW))
    except Exception as e:
        failure("saving the comparison view", e)
    # the runs tab of a model-training experiment: without workflowType the UI opens its GenAI overview
    return (f"{ui.rstrip('/')}/#/experiments/{experiment}/runs?workflowType=machine_learning"
            f"&viewStateShareKey={VIEW_KEY}")


def main(argv=None) -> None:
    import argparse
    parser = argparse.ArgumentParser(description="The MLflow store the pipeline logs to.")
    parser.add_argument("--ui-url", nargs="?", const=DEFAULT_UI, metavar="UI",
                        help=f"print the URL of the comparison table in the MLflow UI at UI (default {DEFAULT_UI})")
    args = parser.parse_args(argv)
    if args.ui_url is None:
        print(tracking_uri())
        return
    print(comparison_url(args.ui_url))


if __name__ == "__main__":
    from pipeline import stage
    stage.run(main)
