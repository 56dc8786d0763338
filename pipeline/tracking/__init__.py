"""MLflow mirrors what the stages produce: one run per trained model, one for the report, logged
by the last stage, `track` (pipeline/track.py), from the DVC outputs, which stay the source of truth.

- store.py: where the runs are kept (a SQLite file in the main repository unless
  MLFLOW_TRACKING_URI says otherwise) and the lock that serialises concurrent writers;
- failure.py: the failure policy (tracking never hangs a stage and never loses a result; an error,
  or with MLFLOW_OPTIONAL=1 a warning) and `connect`, which opens the store under it;
- run.py: `Run`, a guarded MLflow run, and which run of each model is current;
- ui.py and __main__.py: the comparison table in the MLflow UI (`python -m pipeline.tracking --ui-url`).
"""
from pipeline.tracking.failure import OPTIONAL_ENV, TrackingError, connect, optional
from pipeline.tracking.run import Run, current_runs
from pipeline.tracking.store import main_repo_root, tracking_uri
from pipeline.tracking.ui import comparison_url

__all__ = ["OPTIONAL_ENV", "Run", "TrackingError", "comparison_url", "connect", "current_runs", "main_repo_root", "optional",
           "tracking_uri"]
