"""train: fit one model from params.yaml's `models` section, keeping the best validation checkpoint."""
from __future__ import annotations

import csv
import importlib.util
import io
import sys
import time

import torch

from models import build_model, save_checkpoint
from pipeline import params as P, stage
from pipeline.data import IMAGE_SHAPE, data_checksum, load_split, load_train_intensity, results_dir
from pipeline.io import PipelineError, params_hash, write_json, write_text
from pipeline.training import TrainingData, TrainingDiverged, fit, resolve_device


def device_name(device: torch.device) -> str:
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"


def start_tracking(spec: P.ModelSpec, profile: str, tags: dict):
    """The model's MLflow run, or None (with a warning) where MLflow is not installed."""
    if importlib.util.find_spec("mlflow") is None:
        print("warning: mlflow is not installed; this run is not tracked", file=sys.stderr)
        return None
    from pipeline.tracking import Run
    logged = {"family": spec.family, "profile": profile,
              **P.flatten(spec.kwargs, "model."), **P.flatten(vars(spec.train), "train.")}
    return Run.start(spec.name, logged, tags)


def curves_csv(history: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()


def train(spec: P.ModelSpec, profile: str, quiet: bool = False) -> dict:
    cfg = spec.train
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    try:
        model = build_model(spec.family, IMAGE_SHAPE, **spec.kwargs).to(device)
    except (TypeError, ValueError) as e:
        raise PipelineError(f"models.{spec.name}: {e}") from None
    train_data = TrainingData(load_split("train", cfg.max_train),
                              load_train_intensity(cfg.max_train) if cfg.dynamic_binarization else None,
                              device, cfg.dynamic_binarization)
    val = load_split("val", cfg.max_val)
    checksum = data_checksum()
    out = results_dir(spec.name)
    out.mkdir(parents=True, exist_ok=True)
    num_params = sum(p.numel() for p in model.parameters())
    run = start_tracking(spec, profile, {"model": spec.name, "family": spec.family, "profile": profile,
                                         "device": device_name(device), "data_sha256": checksum,
                                         "estimator": model.estimator})
    resume_key = P.flatten({"family": spec.family, "kwargs": spec.kwargs, "train": vars(cfg), "data": checksum})
    state_path = out / f".resume-{params_hash(resume_key)}.pt"

    def save_best(m, epoch):
        save_checkpoint(out / "model.pt", m, spec.family, spec.kwargs, epoch=epoch, name=spec.name)

    def log_epoch(record):
        if run is not None:
            run.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])

    started = time.perf_counter()
    try:
        history = fit(model, train_data, val, cfg, best_checkpoint=save_best, state_path=state_path,
                      on_epoch=log_epoch, quiet=quiet)
    except TrainingDiverged as e:
        raise PipelineError(f"models.{spec.name}: {e}") from None
    best = min(history, key=lambda r: r["val_nll"])
    summary = {"model": spec.name, "family": spec.family, "profile": profile, "device": device_name(device),
               "parameters": num_params, "epochs_run": len(history), "best_epoch": best["epoch"],
               "best_val_nll": best["val_nll"], "train_seconds": round(time.perf_counter() - started, 2),
               "train_images": len(train_data), "val_images": len(val), "data_sha256": checksum,
               "mlflow_run_id": run.id if run is not None else None}
    write_text(out / "curves.csv", curves_csv(history))
    write_json(out / "train.json", summary)
    state_path.unlink(missing_ok=True)
    if run is not None:
        run.log_metrics({"best_val_nll": best["val_nll"], "train_seconds": summary["train_seconds"],
                         "parameters": num_params})
        run.finish()
    return summary


def main(argv=None) -> None:
    args = stage.parse_args(__doc__.splitlines()[0], argv, with_model=True)
    params = P.load()
    spec = P.model_spec(params, args.model)
    summary = train(spec, P.profile_of(params), quiet=args.quiet)
    print(f"train@{spec.name}: best val NLL {summary['best_val_nll']:.2f} nats at epoch {summary['best_epoch']}, "
          f"{summary['train_seconds']:.0f}s on {summary['device']}")


if __name__ == "__main__":
    stage.run(main)
