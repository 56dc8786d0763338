"""Speed of every model on this machine: training throughput, test-set evaluation time and the time
to sample 100 images, for the models in params.yaml built with a profile's settings (the active one
unless --profile says otherwise). Weights and images are random: only the timings mean anything.

    python -m bench.speed [--models pixelcnn,transformer] [--device auto] [--profile full]
    python -m bench.speed --profile full --set compile=true --set compile_mode=reduce-overhead

Each row also projects the wall time of the model's train stage (every epoch run: a training pass
over the profile's training images and a validation pass, so an upper bound when early stopping
ends it sooner) and of its evaluate stage, on this device.
    python -m bench.speed --versus DIR [--models nade,made]   # against pytorch-generative, see bench/versus.py
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import torch
import yaml

from bench.common import IMAGE_SHAPE, random_images, random_labels, timed, training_step
from models import build_model
from models.base import HasValidationNLL, labels_kwarg
from pipeline import params as P
from pipeline.devices import resolve_device
from pipeline.io import PipelineError
from pipeline.model_params import model_spec, with_train_settings

TEST_IMAGES = 10_000
TRAIN_IMAGES, VAL_IMAGES = 50_000, 10_000


@dataclass
class Timing:
    model: str
    parameters: int
    train_images_per_s: float
    eval_test_set_s: float
    sample_100_s: float
    epoch_s: float        # a training pass and a validation pass
    epochs: int
    step: str             # how a training step ran, e.g. "bf16, compiled reduce-overhead"

    @property
    def train_stage_h(self) -> float:
        return self.epoch_s * self.epochs / 3600

    @property
    def evaluate_stage_min(self) -> float:
        return (self.eval_test_set_s + self.sample_100_s) / 60


def train_throughput(model, cfg, device, steps: int, generator) -> float:
    """Images per second over `steps` training steps (`training_step`), after three warm-up steps:
    torch.compile traces the first call and may recompile once, and CUDA graphs record the next."""
    step = training_step(model, cfg, device, generator)
    for _ in range(3):
        step()
    seconds = timed(lambda: [step() for _ in range(steps)], device)
    return steps * cfg.batch_size / seconds


@torch.no_grad()
def eval_seconds(estimate, images: int, batch_size: int, device, generator) -> float:
    """Seconds for `estimate` (the model's nll, or its validation_nll) over `images` images, in fp32
    and eval mode like the evaluate stage and the validation pass."""
    data = random_images(min(images, batch_size), device, generator)
    estimate(data[:2])  # warm-up
    batches = math.ceil(images / batch_size)
    return timed(lambda: [estimate(data[:min(batch_size, images - i * batch_size)]) for i in range(batches)],
                 device)


def step_settings(cfg, device) -> str:
    precision = "bf16" if cfg.autocast_bf16(device) else "fp32"
    mode = "" if cfg.compile_mode == "default" else f" {cfg.compile_mode}"
    return precision + (f", compiled{mode}" if cfg.compiles(device) else "")


def time_model(params: dict, name: str, device: torch.device, train_steps: int, eval_images: int,
               overrides: dict | None = None) -> Timing:
    spec = model_spec(params, name)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    cfg = with_train_settings(spec.train, overrides or {}, "--set")
    try:
        model = build_model(spec.family, IMAGE_SHAPE, fast=cfg.fast_paths, **spec.kwargs).to(device)
    except (TypeError, ValueError) as e:
        raise PipelineError(f"models.{name}: {e}") from None
    throughput = train_throughput(model, cfg, device, train_steps, generator)
    model.eval()
    per_image = lambda estimate: eval_seconds(
        estimate, eval_images, cfg.eval_batch_size, device, generator) / eval_images
    evaluation = per_image(model.nll) * TEST_IMAGES  # a class-conditional model's marginal, as evaluate reports it
    validate = model.validation_nll if isinstance(model, HasValidationNLL) else model.nll
    labels = random_labels(model, cfg.eval_batch_size, device, generator)
    validation = per_image(lambda x: validate(x, **labels_kwarg(None if labels is None else labels[:len(x)]))
                           ) * min(cfg.max_val or VAL_IMAGES, VAL_IMAGES)
    sampling = timed(lambda: model.sample(100, torch.Generator(device).manual_seed(0)), device)
    epoch = min(cfg.max_train or TRAIN_IMAGES, TRAIN_IMAGES) / throughput + validation
    return Timing(name, sum(p.numel() for p in model.parameters()), throughput, evaluation, sampling, epoch, cfg.epochs,
                  step_settings(cfg, device))


def table(rows: list[Timing], eval_images: int) -> str:
    source = "measured" if eval_images == TEST_IMAGES else f"from {eval_images}, x{TEST_IMAGES / eval_images:g}"
    header = ["model", "parameters", "training step", "train images/s", f"eval 10k test images, s ({source})", "sample 100, s",
              "s/epoch", "epochs", "train stage, h (at most)", "evaluate stage, min"]
    body = [[r.model, f"{r.parameters:,}", r.step, f"{r.train_images_per_s:,.0f}", f"{r.eval_test_set_s:.1f}",
             f"{r.sample_100_s:.2f}", f"{r.epoch_s:.1f}", str(r.epochs), f"{r.train_stage_h:.2f}",
             f"{r.evaluate_stage_min:.1f}"] for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    fmt = lambda line: "  ".join(cell.ljust(w) if i in (0, 2) else cell.rjust(w)
                                 for i, (cell, w) in enumerate(zip(line, widths)))
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated model names (default: all in params.yaml)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--profile", choices=P.PROFILES, help="whose model settings to use (default: params.yaml's)")
    parser.add_argument("--train-steps", type=int, default=10, help="timed optimizer steps per model")
    parser.add_argument("--eval-images", type=int, default=2000,
                        help=f"images actually evaluated; the time is scaled to {TEST_IMAGES} test images")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a train setting for every model, over the profile's (e.g. compile=true, bf16=false)")
    parser.add_argument("--versus", metavar="DIR", help="instead, one training step at pytorch-generative's "
                        "reproduce() sizes against its models, from a checkout in DIR (bench/versus.py)")
    args = parser.parse_args(argv)
    if args.train_steps < 1 or not 1 <= args.eval_images <= TEST_IMAGES:
        parser.error(f"need --train-steps >= 1 and 1 <= --eval-images <= {TEST_IMAGES}")
    if any("=" not in setting for setting in args.set):
        parser.error("--set takes KEY=VALUE, a train setting and its value")
    # each value read as YAML, as params.yaml would be: compile=true -> {'compile': True}
    args.overrides = {key: yaml.safe_load(value) for key, _, value in (s.partition("=") for s in args.set)}
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.versus:
        from bench import versus
        versus.main(["--reference", args.versus, *(["--models", args.models] if args.models else [])])
        return
    params = P.load()
    if args.profile:
        params["profile"] = args.profile
    names = args.models.split(",") if args.models else P.model_names(params)
    device = resolve_device(args.device)
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"profile {params['profile']}, device {label}, torch {torch.__version__}", flush=True)
    rows = []
    for name in names:
        row = time_model(params, name, device, args.train_steps, args.eval_images, args.overrides)
        rows.append(row)
        print(f"  {name} ({row.step}): {row.train_images_per_s:,.0f} train images/s, evaluation "
              f"{row.eval_test_set_s:.1f} s, 100 samples {row.sample_100_s:.2f} s", file=sys.stderr, flush=True)
    print(table(rows, args.eval_images))


if __name__ == "__main__":
    try:
        main()
    except (PipelineError, RuntimeError) as e:
        sys.exit(f"error: {e}")
