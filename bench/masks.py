"""The share of a MADE training step spent switching masks, at the full profile's sizes (2 x 8000
hidden units, 32 masks, a new mask every step) unless --profile says otherwise. Every mask is built
once first (its first use), as a run does in its first epoch; then `--steps` steps are timed, and
the time inside `use_mask` (synchronized on a GPU) is given as a share of theirs.

    python -m bench.masks [--device auto] [--profile full] [--steps 8]
"""
from __future__ import annotations

import argparse

import torch

from bench.common import IMAGE_SHAPE, timed, training_step
from models import build_model
from pipeline import params as P
from pipeline.devices import resolve_device
from pipeline.model_params import ModelSpec, model_spec


def mask_share(spec: ModelSpec, device: torch.device, steps: int) -> tuple[float, float]:
    """(seconds per training step, the share of it spent in `use_mask`)."""
    model = build_model(spec.family, IMAGE_SHAPE, **spec.kwargs).to(device)
    step = training_step(model, spec.train, device, torch.Generator().manual_seed(0))
    switching, use_mask = 0.0, model.use_mask

    def timed_use_mask(k, *args, **kwargs):
        nonlocal switching
        switching += timed(lambda: use_mask(k, *args, **kwargs), device)

    model.use_mask = timed_use_mask
    for _ in range(model.num_masks + 1):  # every mask's first use builds it
        step()
    switching = 0.0
    seconds = timed(lambda: [step() for _ in range(steps)], device)
    return seconds / steps, switching / seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--profile", choices=P.PROFILES, default="full", help="whose MADE settings to use")
    parser.add_argument("--model", default="made", help="a MADE model of params.yaml")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps")
    args = parser.parse_args(argv)
    params = P.load()
    params["profile"] = args.profile
    spec = model_spec(params, args.model)
    if spec.family != "made" or args.steps < 1:
        parser.error(f"--model must name a MADE model (got family {spec.family}) and --steps be >= 1")
    device = resolve_device(args.device)
    step, share = mask_share(spec, device, args.steps)
    print(f"{args.model} ({args.profile}: {spec.kwargs}), batch {spec.train.batch_size}, {device}: "
          f"{step:.3f} s per training step, {100 * share:.1f}% of it switching masks")


if __name__ == "__main__":
    main()
