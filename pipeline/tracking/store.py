"""Where the runs are kept, and how several writers take turns.

The store defaults to a SQLite file in the main repository (so `mlflow ui` needs no server);
MLFLOW_TRACKING_URI overrides it. Queued DVC experiments (each in a temporary copy of the
repository, several at once) all write to the main repository's store, and a lock file serialises
creating the database, the experiment and the model's current run.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no lock; concurrent first runs there are not supported
    fcntl = None

EXPERIMENT = "binarized-mnist"
SQLITE_BUSY_TIMEOUT_S = 60
LOCK_TIMEOUT_S = 120


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
