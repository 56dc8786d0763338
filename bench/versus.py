"""Training speed of our models against pytorch-generative's (EugenHotaj) on this CPU, at the sizes
its reproduce() scripts train: one step (forward, loss, backward, Adam step; ours through the
training loop's own `train_step`) on random binary images, the two models timed alternately in one
process; images per second, higher is better. Ours runs as the training loop runs it: with bf16
autocast on a CPU with AMX tiles (`TrainConfig.autocast_bf16`); there it is also timed in fp32, for a like-for-like
figure.

    python -m bench.versus --reference DIR [--models nade,made] [--rounds N]

DIR holds a checkout of pytorch-generative (its `pytorch_generative` package); nothing of it is
installed or copied. Only its model modules are imported (its package __init__ would pull in
datasets and the trainer).
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.common import IMAGE_SHAPE, random_images, timed
from models import build_model
from pipeline.optimizer import make_optimizer
from pipeline.train_config import TrainConfig
from pipeline.training_loop import compiled, train_step


@dataclass(frozen=True)
class Case:
    size: str
    batch: int
    ours: tuple[str, dict]
    reference: tuple[str, str, dict]


# our kwargs mirror the reference's: its PixelCNN has 2 * residual_channels channels between the
# blocks, and its Gated PixelCNN has an input layer before its n_gated layers
CASES = {
    "fvsbn": Case("784 pixels", 512, ("fvsbn", {}),
                  ("fvbn", "FullyVisibleBeliefNetwork", {"n_dims": 784})),
    "nade": Case("500 hidden", 512, ("nade", {"hidden": 500}),
                 ("nade", "NADE", {"input_dim": 784, "hidden_dim": 500})),
    "made": Case("1 x 8000 hidden, 1 mask", 64, ("made", {"hidden_sizes": [8000], "num_masks": 1}),
                 ("made", "MADE", {"input_dim": 784, "hidden_dims": [8000], "n_masks": 1})),
    "pixelcnn": Case("15 blocks x 16 ch, head 32", 256,
                     ("pixelcnn", {"channels": 32, "residual_blocks": 15, "head_channels": 32}),
                     ("pixel_cnn", "PixelCNN", {"n_residual": 15, "residual_channels": 16, "head_channels": 32})),
    "gated_pixelcnn": Case("10 layers x 128 ch, head 32", 128,
                           ("gated_pixelcnn", {"channels": 128, "layers": 11, "head_channels": 32}),
                           ("gated_pixel_cnn", "GatedPixelCNN", {"n_gated": 10, "gated_channels": 128,
                                                                 "head_channels": 32})),
    "transformer": Case("8 blocks x 64 dim, 2 heads", 64,
                        ("transformer", {"dim": 64, "layers": 8, "heads": 2}),
                        ("image_gpt", "ImageGPT", {"n_transformer_blocks": 8, "n_attention_heads": 2,
                                                   "n_embedding_channels": 64})),
}


def our_side(case: Case, compile: bool, bf16: bool):
    """(step, model, optimizer) for our model as our training loop makes them, its loss compiled as
    `train.compile: true` would run it."""
    model = build_model(case.ours[0], IMAGE_SHAPE, **case.ours[1]).train()
    loss = compiled(model.loss, TrainConfig(compile=compile), torch.device("cpu"))
    step = lambda model, optimizer, batch: train_step(model, loss, optimizer, batch, bf16)
    return step, model, make_optimizer(model, TrainConfig())


def reference_step(model, optimizer, batch: torch.Tensor) -> torch.Tensor:
    logits = model(batch)
    loss = F.binary_cross_entropy_with_logits(logits, batch, reduction="none").flatten(1).sum(1).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def import_reference(root: Path) -> None:
    """Registers `pytorch_generative` and its `models` subpackage as bare packages, so that their
    submodules import without running the package __init__ files."""
    package = root / "pytorch_generative"
    if not (package / "models" / "autoregressive").is_dir():
        raise SystemExit(f"error: no pytorch-generative package at {package} (pass --reference DIR "
                         f"where DIR/pytorch_generative/models/autoregressive exists)")
    for name, path in (("pytorch_generative", package), ("pytorch_generative.models", package / "models")):
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        sys.modules[name] = module


def reference_model(case: Case):
    module, cls, kwargs = case.reference
    return getattr(importlib.import_module(f"pytorch_generative.models.autoregressive.{module}"), cls)(**kwargs)


def steps_per_second(step, model, optimizer, batch, steps: int) -> float:
    return steps / timed(lambda: [step(model, optimizer, batch) for _ in range(steps)], batch.device)


def compare(name: str, rounds: int, compile: bool = False, min_seconds: float = 1.0) -> tuple:
    """(model, size, reference img/s, ours img/s, median over rounds of ours / reference), then, where
    our training runs in bf16, ours in fp32: img/s and ratio."""
    case = CASES[name]
    torch.manual_seed(0)
    batch = random_images(case.batch, "cpu", torch.Generator().manual_seed(0))
    theirs = reference_model(case).train()
    sides = [(reference_step, theirs, torch.optim.Adam(theirs.parameters()))]  # as its trainer makes it
    as_trained = TrainConfig().autocast_bf16(batch.device)
    sides.append(our_side(case, compile, as_trained))
    if as_trained:  # and in fp32, like for like
        sides.append(our_side(case, compile, False))
    steps = []
    for side in sides:
        for _ in range(2 if compile else 1):  # torch.compile traces the first call (and recompiles once)
            side[0](*side[1:], batch)
        steps.append(max(1, round(min_seconds * steps_per_second(*side, batch, 1))))
    rates = [[] for _ in sides]
    for r in range(rounds):
        for i in (range(len(sides)) if r % 2 == 0 else reversed(range(len(sides)))):
            rates[i].append(steps_per_second(*sides[i], batch, steps[i]) * case.batch)
    row = [name, case.size, statistics.median(rates[0])]
    for ours_rates in rates[1:]:
        row += [statistics.median(ours_rates), statistics.median(o / t for t, o in zip(rates[0], ours_rates))]
    return tuple(row)


def rate(images_per_second: float) -> str:
    return f"{images_per_second:,.0f}" if images_per_second >= 100 else f"{images_per_second:.3g}"


def table(rows) -> str:
    header = ["model", "size", "batch", "reference img/s", "ours img/s", "ours / reference"]
    if len(rows[0]) > 5:
        header += ["ours fp32 img/s", "fp32 / reference"]
    body = [[m, s, str(CASES[m].batch), rate(t), *(rate(v) if i % 2 == 0 else f"{v:.2f}x" for i, v in enumerate(rest))]
            for m, s, t, *rest in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in [header, *body])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True,
                        help="directory containing pytorch-generative's pytorch_generative package")
    parser.add_argument("--models", default=",".join(CASES), help=f"comma-separated, from: {', '.join(CASES)}")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds per model")
    parser.add_argument("--compile", action="store_true", help="our loss through torch.compile (train.compile: true)")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    unknown = [n for n in names if n not in CASES]
    if unknown or args.rounds < 1:
        parser.error(f"unknown model(s) {', '.join(unknown)}" if unknown else "--rounds must be >= 1")
    import_reference(args.reference)
    precision = "bf16 autocast (AMX)" if TrainConfig().autocast_bf16(torch.device("cpu")) else "fp32"
    print(f"torch {torch.__version__}, cpu, {torch.get_num_threads()} threads, {args.rounds} rounds; "
          f"ours trains in {precision}{', compiled' if args.compile else ''}", flush=True)
    rows = []
    for name in names:
        rows.append(compare(name, args.rounds, args.compile))
        print(f"  {name}: done", file=sys.stderr, flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
