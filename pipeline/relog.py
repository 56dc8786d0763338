"""relog: rebuild MLflow runs from the DVC outputs, after stages ran untracked (MLFLOW_OPTIONAL=1
while the server was down) or against another store.

    python -m pipeline.relog              # every model of params.yaml whose run is missing, and the report
    python -m pipeline.relog made nade    # just these models
    python -m pipeline.relog --force      # re-log even models whose run looks complete

Each model's run is rebuilt from results/<model>/train.json (params, tags, summary), curves.csv
(one step per epoch), metrics.json and figures/, following the usual rule: it becomes the model's
one current run, and an earlier run with the same params is replaced. It is tagged
`relogged_from=<the id in train.json>`, so a later `evaluate` still finds it.
"""
from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import pandas as pd

from models import load_checkpoint
from pipeline import params as P
from pipeline import stage
from pipeline.data import DATASETS
from pipeline.evaluate import log_evaluation
from pipeline.io import PipelineError
from pipeline.report import REPORT_DIR, REPORT_FILES, read_ceiling
from pipeline.report import log_to_mlflow as log_report
from pipeline.results import ModelResults, TrainSummary
from pipeline.tracking import OPTIONAL_ENV, Run, connect, tracking_uri
from pipeline.train import log_training


def read_curves(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def is_logged(train: TrainSummary, has_metrics: bool) -> bool:
    run = Run.open(train.mlflow_run_id, train.model, quiet=True)
    return run is not None and run.is_complete(needs_test_metrics=has_metrics)


def relog_model(name: str, force: bool = False) -> str | None:
    """Rebuild `name`'s run; returns its id, or None when the existing run is complete (and not `force`)."""
    files = ModelResults(name)
    train = files.read_train_summary()
    metrics = files.read_metrics() if files.metrics.exists() else None
    if not force and is_logged(train, metrics is not None):
        return None
    tags = {"model": name, "family": train.family, "profile": train.profile, "device": train.device,
            "data": train.data, "data_sha256": train.data_sha256, "estimator": train.estimator,
            "binarization": train.binarization,
            "relogged_from": train.mlflow_run_id or "none"}
    run = Run.start(name, train.params, tags)
    if run is None:
        raise PipelineError("MLflow is not available: nothing was re-logged")
    log_training(run, read_curves(files.curves), train)
    run.log_model(load_checkpoint(files.checkpoint)[0])
    folder = DATASETS[train.data].folder
    run.log_splits({"train": "training", "val": "validation"}, folder)
    if metrics is not None:
        timing = files.read_timing() if files.timing.exists() else None
        log_evaluation(run, metrics, timing, sorted(files.figures.glob("*.png")), folder)
    run.finish()
    return run.id


def relog_report() -> bool:
    files = [REPORT_DIR / name for name in REPORT_FILES]
    if not files[1].exists():
        return False
    table = pd.read_csv(files[1])
    log_report(table, str(table.profile.iloc[0]), [f for f in files if f.exists()], read_ceiling())
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model names (default: every model in params.yaml, and the report)")
    parser.add_argument("--force", action="store_true", help="re-log runs that look complete too")
    args = parser.parse_args(argv)
    os.environ.pop(OPTIONAL_ENV, None)  # re-logging is the point here: a failure must say so
    params = P.load()
    names = args.models or P.model_names(params)
    for name in names:
        P.model_spec(params, name)  # unknown names fail before anything is logged
    if connect() is None:
        raise PipelineError("MLflow is not available: nothing was re-logged")
    for name in names:
        if not args.models and not ModelResults(name).train_summary.exists():
            print(f"relog@{name}: not trained yet, skipped")
            continue
        run_id = relog_model(name, args.force)
        print(f"relog@{name}: " + (f"run {run_id}" if run_id else "already complete in MLflow (--force re-logs)"))
    if not args.models and relog_report():
        print("relog@report: done")
    print(f"relog: tracking store {tracking_uri()}")


if __name__ == "__main__":
    stage.run(main)
