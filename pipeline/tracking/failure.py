"""Tracking never hangs a stage and never loses a result:
- an http(s) server is checked with a short request first, and MLflow's own retries are bounded
  (MLFLOW_HTTP_REQUEST_MAX_RETRIES / _TIMEOUT / _BACKOFF_FACTOR, defaults below unless set);
- a store that is down or fails is a one-line error, or with MLFLOW_OPTIONAL=1 a warning after
  which the stage goes on untracked; `python -m pipeline.track` logs the runs later from the DVC
  outputs, which stay the source of truth.
`connect` opens the store under these rules; `Run` (run.py) guards every later call with `failure`.
"""
from __future__ import annotations

import http.client
import importlib.util
import logging
import os
import sys
import urllib.error
import urllib.request

from pipeline.io import PipelineError
from pipeline.tracking.store import _store_uri, store_lock, tracking_uri

OPTIONAL_ENV = "MLFLOW_OPTIONAL"
# MLflow retries a failing request 7 times with growing waits, 120 s each: minutes per call.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
HEALTH_CHECK_TIMEOUT_S = 5.0
TRACK_LATER_HINT = "log the runs later with `python -m pipeline.track`"


class TrackingError(PipelineError):
    """The tracking store is down, hangs or refuses a write (and MLFLOW_OPTIONAL is not set)."""


def optional() -> bool:
    return os.environ.get(OPTIONAL_ENV, "").strip().lower() in ("1", "true", "yes")


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def failure(action: str, error) -> None:
    """Report that tracking failed while doing `action`: a warning when MLFLOW_OPTIONAL is set,
    else a TrackingError that stops the stage."""
    detail = " ".join(str(error).split())[:400] or type(error).__name__
    message = f"MLflow tracking at {tracking_uri()} failed while {action}: {detail}"
    if optional():
        warn(f"{message}; going on without tracking ({OPTIONAL_ENV} is set): {TRACK_LATER_HINT}")
        return
    raise TrackingError(f"{message}. Start or fix the server (or unset MLFLOW_TRACKING_URI to use the local "
                        f"store), or set {OPTIONAL_ENV}=1 to run untracked and {TRACK_LATER_HINT}")


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
