"""track: log the DVC outputs to MLflow, one run per model and one for the report.

    python -m pipeline.track              # the stage: every model of params.yaml, then the report
    python -m pipeline.track made nade    # just these models
    python -m pipeline.track --force      # log them again even where their run is up to date

The train, evaluate and report stages never touch MLflow: their outputs are the source of truth,
and this stage, the last of the graph, mirrors them in one process (importing MLflow and opening
its store cost a few seconds, once instead of once per stage). A model's run holds its params and
tags (train.json), one step per epoch (curves.csv), the test metrics (metrics.json), the figures
and the model itself. It is tagged with the checksum of those files, so only the models whose
outputs changed are logged again; the new run becomes the model's one current run (an earlier run
with the same params is deleted, one with other params is tagged current=false).

A store that is down fails the stage with one line, and nothing computed is lost: `dvc repro` runs
the stage again. With MLFLOW_OPTIONAL=1 it warns instead, and `python -m pipeline.track` logs the
runs once the store is back.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
from pathlib import Path

import pandas as pd

from models.checkpoint import load_checkpoint
from pipeline import params as P
from pipeline import stage
from pipeline.io import PipelineError, params_hash
from pipeline.layout import DATASETS
from pipeline.model_params import model_spec
from pipeline.results import (
    CLASSIFIER_METRICS,
    REPORT,
    EvalTiming,
    Metrics,
    ModelResults,
    TrainSummary,
    read_ceiling,
)
from pipeline.tracking import Run, connect, tracking_uri

SUMMARY_METRICS = ("best_val_nll", "best_epoch", "epochs_run", "train_images", "train_seconds", "train_flops",
                   "flops_per_image", "parameters")


def read_curves(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def checksum(paths: list[Path]) -> str:
    """The checksum of the files a run shows: a run tagged with another one is out of date."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()


def model_outputs(files: ModelResults) -> list[Path]:
    return [files.train_summary, files.curves, files.metrics, files.timing, files.checkpoint]


def report_outputs() -> list[Path]:
    return [*REPORT.all(), CLASSIFIER_METRICS]


def run_tags(train: TrainSummary, digest: str) -> dict:
    return {"model": train.model, "family": train.family, "profile": train.profile, "device": train.device,
            "data": train.data, "data_sha256": train.data_sha256, "estimator": train.estimator,
            "binarization": train.binarization, "outputs_sha256": digest}


def log_model_run(name: str, force: bool = False) -> bool:
    """Log `name`'s outputs as its new current run; False where its current run shows them already
    (unless `force`) or tracking is (optionally) down."""
    files = ModelResults(name)
    train = files.read_train_summary()
    run = Run.start(name, train.params, run_tags(train, checksum(model_outputs(files))), force)
    if run is None:
        return False
    folder = DATASETS[train.data].folder
    run.log_history(read_curves(files.curves))
    run.log_metrics({key: getattr(train, key) for key in SUMMARY_METRICS})
    run.log_model(load_checkpoint(files.checkpoint)[0])
    run.log_splits({"train": "training", "val": "validation"}, folder)
    if files.metrics.exists():
        log_evaluation(run, files.read_metrics(), files.read_timing() if files.timing.exists() else None,
                       sorted(files.figures.glob("*.png")), folder)
    run.finish()
    return True


def log_evaluation(run: Run, metrics: Metrics, timing: EvalTiming | None, figures: list[Path],
                   data_folder: Path) -> None:
    values = {**metrics.to_json(), **(timing.to_json() if timing is not None else {})}
    run.log_metrics({k: v for k, v in values.items() if isinstance(v, (int, float))})
    run.set_tags({"estimator": metrics.estimator})
    run.log_splits({"test": "testing"}, data_folder)
    for path in figures:
        run.log_artifact(path, "figures")


def log_report(force: bool = False) -> bool:
    """The report's run; its params name the results it shows, so reports of other results
    (another queued experiment) stay as earlier runs."""
    table = pd.read_csv(REPORT.table)
    profile = str(table.profile.iloc[0])
    logged = {"profile": profile, "models": ",".join(table.model),
              "results_digest": params_hash(dict(zip(table.model, table.test_nll)))}
    run = Run.start("report", logged, {"profile": profile, "outputs_sha256": checksum(report_outputs())}, force)
    if run is None:
        return False
    run.log_metrics({f"test_nll.{m}": v for m, v in zip(table.model, table.test_nll)})
    ceiling = read_ceiling()
    if ceiling is not None:
        run.log_metrics({f"classifier.{k}": v for k, v in ceiling.items()})
    for path in REPORT.all():
        if path.exists():
            run.log_artifact(path)
    run.finish()
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model names (default: every model in params.yaml, and the report)")
    parser.add_argument("--force", action="store_true", help="log runs that are up to date again too")
    args = parser.parse_args(argv)
    params = P.load()
    names = args.models or P.model_names(params)
    for name in names:
        model_spec(params, name)  # unknown names fail before anything is logged
    if connect() is None:
        return
    store = tracking_uri()  # before log_model points MLflow at it, with options
    done = []
    for name in names:
        files = ModelResults(name)
        if not files.train_summary.exists():
            if args.models:
                raise PipelineError(f"{name} is not trained yet: run `dvc repro train@{name}` first")
            continue
        if log_model_run(name, args.force):
            done.append(name)
    if not args.models and REPORT.table.exists() and log_report(args.force):
        done.append("report")
    print(f"track: logged {', '.join(done)} to {store}" if done else f"track: every run in {store} was up to date")


if __name__ == "__main__":
    stage.run(main)
