"""evaluate: test-set NLL (nats per image, with its standard error) and bits per dimension for one
trained model, the estimator that produced them, and pictures: samples, and completions of test
images from their top half for models that can complete."""
from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path

import torch

from models import load_checkpoint
from pipeline import params as P, stage
from pipeline.data import load_split, results_dir
from pipeline.figures import save_grid, top_half_mask
from pipeline.io import PipelineError, read_json, write_json
from pipeline.training import resolve_device

COMPLETIONS_PER_IMAGE = 5


@torch.no_grad()
def per_image_nll(model, data: torch.Tensor, batch_size: int) -> torch.Tensor:
    device = model.device
    return torch.cat([model.nll(data[i:i + batch_size].to(device)).double().cpu()
                      for i in range(0, len(data), batch_size)])


def nll_metrics(model, nll: torch.Tensor) -> dict:
    mean = float(nll.mean())
    stderr = float(nll.std() / math.sqrt(len(nll))) if len(nll) > 1 else 0.0
    return {"test_nll": mean, "test_nll_stderr": stderr,
            "test_bpd": mean / (model.num_pixels * math.log(2)),
            "estimator": model.estimator, "test_images": len(nll)}


def render_figures(model, test: torch.Tensor, cfg: P.EvaluateConfig, out_dir: Path) -> list[Path]:
    """Samples for every model; completions where the model can complete. Returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator(model.device).manual_seed(cfg.seed)
    written = [out_dir / "samples.png"]
    save_grid(model.sample(cfg.samples, generator), written[0], nrow=int(math.isqrt(cfg.samples)))
    if callable(getattr(model, "complete", None)):
        originals = test[:cfg.completions].to(model.device)
        observed = top_half_mask(originals)
        shown = torch.where(observed, originals, torch.full_like(originals, 0.5))
        repeats = originals.repeat_interleave(COMPLETIONS_PER_IMAGE, 0)
        completed = model.complete(repeats, observed.repeat_interleave(COMPLETIONS_PER_IMAGE, 0), generator)
        rows = torch.cat([originals[:, None], shown[:, None],
                          completed.view(len(originals), COMPLETIONS_PER_IMAGE, *originals.shape[1:])], 1)
        written.append(out_dir / "completions.png")
        save_grid(rows.flatten(0, 1), written[-1], nrow=COMPLETIONS_PER_IMAGE + 2)
    return written


def log_to_mlflow(run_id: str | None, metrics: dict, figures: list[Path]) -> None:
    if run_id is None or importlib.util.find_spec("mlflow") is None:
        return
    from pipeline.tracking import Run
    run = Run.open(run_id)
    if run is None:
        print(f"warning: MLflow run {run_id} is not in this tracking store; test metrics not logged there")
        return
    run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    run.set_tags({"estimator": metrics["estimator"]})
    for path in figures:
        run.log_artifact(path, "figures")


def evaluate(name: str, cfg: P.EvaluateConfig, device_setting: str = "auto") -> dict:
    out = results_dir(name)
    if not (out / "model.pt").exists():
        raise PipelineError(f"{out / 'model.pt'} is missing: run `dvc repro train@{name}` first")
    model, checkpoint = load_checkpoint(out / "model.pt", resolve_device(device_setting))
    test = load_split("test", cfg.max_test)
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    metrics = nll_metrics(model, per_image_nll(model, test, cfg.batch_size))
    metrics["eval_seconds"] = round(time.perf_counter() - started, 2)
    if model.reference is not None:
        metrics.update(reference_nll=model.reference.nll, reference_source=model.reference.source)
    figures = render_figures(model, test, cfg, out / "figures")
    write_json(out / "metrics.json", metrics)
    log_to_mlflow(read_json(out / "train.json").get("mlflow_run_id"), metrics, figures)
    return metrics


def main(argv=None) -> None:
    args = stage.parse_args(__doc__.splitlines()[0], argv, with_model=True)
    params = P.load()
    spec = P.model_spec(params, args.model)
    metrics = evaluate(spec.name, P.evaluate_config(params), spec.train.device)
    print(f"evaluate@{spec.name}: test NLL {metrics['test_nll']:.2f} ± {metrics['test_nll_stderr']:.2f} nats "
          f"({metrics['estimator']}), {metrics['test_bpd']:.4f} bits/dim on {metrics['test_images']} images")


if __name__ == "__main__":
    stage.run(main)
