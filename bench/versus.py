"""Training speed of our models against pytorch-generative's (EugenHotaj) on this CPU, like for like:
each of ours at the size of its reproduce() model (free parameters within 5%), one training step
(forward, loss, backward, optimizer step) on the same random binary images, the sides timed
alternately in one process; images per second, higher is better.

Two columns for ours:
- eager fp32: our model, no autocast, no compilation, and the reference's optimizer
  (torch.optim.Adam's defaults): the like-for-like ratio;
- as trained: as the full profile trains it on this machine (`train:` of params.yaml's full profile:
  its optimizer, bf16 autocast where it is native, torch.compile where it compiles, gradient clipping).

    python -m bench.versus --reference DIR [--models nade,made] [--rounds N] [--baseline DIR2]

DIR holds a checkout of pytorch-generative (its `pytorch_generative` package); nothing of it is
installed or copied, and only its model modules are imported (its package __init__ would pull in
datasets and the trainer). DIR2, a checkout of this repository at another commit (`git worktree add
DIR2 COMMIT`), adds its models as two more sides of the same rounds (eager fp32 and as trained, with
this checkout's training step): before and after a change, in one sitting.

Parameters are counted as the entries a mask does not zero (`free_parameters`): the reference stores
FVSBN's triangle where we store a masked square, for the same model. A row whose two counts differ by
more than 5% is marked not comparable instead of giving a ratio.

Each eager side also prints GFLOP/s: torch's FlopCounterMode's count of one step (matrix products,
convolutions, attention; not elementwise work or the optimizer) times its steps per second, beside
this machine's fp32 rate for a 4096 x 4096 product. A side near that rate is compute-bound: at the
same count of FLOPs, no fp32 implementation can beat it by more than the ratio of the two rates.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.common import IMAGE_SHAPE, random_images, seconds_per_step
from models import build_model
from pipeline import params as P
from pipeline.model_params import model_spec
from pipeline.optimizer import make_optimizer
from pipeline.training_loop import compiled, train_step

COMPARABLE = 0.05  # the most the free parameter counts may differ, relative to the reference's


@dataclass(frozen=True)
class Case:
    size: str                          # the reference's reproduce() size
    batch: int                         # its batch size, for both sides
    ours: tuple[str, dict]             # our family and kwargs, at the reference's parameter count
    reference: tuple[str, str, dict]   # its module, class and kwargs


# Ours at the reference's size. Its PixelCNN has 2 * residual_channels channels between the blocks
# (our `channels`), its Gated PixelCNN an input layer before its n_gated layers (our `layers` counts
# both). Where our layers are wider than its, ours keeps the depth and narrows: the Gated PixelCNN's
# unfactorized 2 x 3 vertical conv gives 21C^2 free parameters a layer against its 19C^2 (124 channels
# against 128), the transformer's learned position embedding adds 784 x dim (dim 60 against 64).
CASES = {
    "fvsbn": Case("784 pixels", 512, ("fvsbn", {}),
                  ("fvbn", "FullyVisibleBeliefNetwork", {"n_dims": 784})),
    "nade": Case("500 hidden", 512, ("nade", {"hidden": 500}),
                 ("nade", "NADE", {"input_dim": 784, "hidden_dim": 500})),
    "made": Case("1 x 8000 hidden, 1 mask", 64, ("made", {"hidden_sizes": [8000], "num_masks": 1}),
                 ("made", "MADE", {"input_dim": 784, "hidden_dims": [8000], "n_masks": 1})),
    "pixelcnn": Case("15 blocks x 16 ch (32 between blocks), head 32", 256,
                     ("pixelcnn", {"channels": 32, "residual_blocks": 15, "head_channels": 32}),
                     ("pixel_cnn", "PixelCNN", {"n_residual": 15, "residual_channels": 16, "head_channels": 32})),
    "gated_pixelcnn": Case("1 + 10 layers x 128 ch, head 32", 128,
                           ("gated_pixelcnn", {"channels": 124, "layers": 11, "head_channels": 32}),
                           ("gated_pixel_cnn", "GatedPixelCNN", {"n_gated": 10, "gated_channels": 128,
                                                                 "head_channels": 32})),
    "transformer": Case("8 blocks x 64 dim, 2 heads", 64,
                        ("transformer", {"dim": 60, "layers": 8, "heads": 2}),
                        ("image_gpt", "ImageGPT", {"n_transformer_blocks": 8, "n_attention_heads": 2,
                                                   "n_embedding_channels": 64})),
}


def free_parameters(model: torch.nn.Module) -> int:
    """Parameter entries that a mask does not zero. A buffer `mask` masks its module's `weight`, and a
    buffer `<name>_mask` its module's parameter `<name>` or its child `<name>`'s weight (our masked
    layers, Glow's triangle; the reference's masked layers, whose MADE masks are set by its first
    forward pass). A module with a `mask()` method and
    `weight_blocks` (BlockedMaskedLinear, which stores its blocks and masks their diagonal parts)
    counts the entries of its dense mask."""
    masked = {}
    for module in model.modules():
        blocks = getattr(module, "weight_blocks", None)
        if isinstance(blocks, torch.nn.Parameter) and callable(getattr(module, "mask", None)):
            masked[id(blocks)] = int(module.mask().sum())
        for name, buffer in module.named_buffers(recurse=False):
            if name == "mask":
                target = getattr(module, "weight", None)
            elif name.endswith("_mask"):
                stem = name[:-len("_mask")]
                target = getattr(module, stem, None)
                target = getattr(target, "weight", None) if isinstance(target, torch.nn.Module) else target
            else:
                continue
            if isinstance(target, torch.nn.Parameter):
                with contextlib.suppress(RuntimeError):  # a mask that does not broadcast to it masks nothing
                    masked[id(target)] = int((buffer != 0).expand_as(target).sum())
    return sum(masked.get(id(p), p.numel()) for p in model.parameters())


def as_trained(name: str):
    """The full profile's training settings for our model `name` (params.yaml's train: sections)."""
    params = P.load()
    params["profile"] = "full"
    return model_spec(params, name).train


@dataclass
class Side:
    label: str
    model: torch.nn.Module
    step: object           # step() runs one training step on the batch
    warm_up: int = 1       # calls before timing: torch.compile traces the first (and may recompile once)

    @property
    def eager(self) -> bool:
        return self.warm_up == 1


def step_flops(step) -> int:
    """The FLOPs of one call of `step` as torch's FlopCounterMode counts them: 2 per multiply-add of
    the matrix products, convolutions and attention it runs, forward and backward (attention in full,
    causal or not); elementwise work and the optimizer are not counted."""
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def matmul_peak(n: int = 4096, repeats: int = 3) -> float:
    """This machine's fp32 matrix-product rate in FLOP/s (the best of `repeats` n x n products): what
    a step made only of large products could reach."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n**3 / min(seconds_per_step(lambda: a @ b, 1, a.device) for _ in range(repeats))


def ours(build, case: Case, batch: torch.Tensor, name: str, label: str, trained: bool) -> Side:
    """Our model (from `build`, this checkout's build_model or another's) stepped by our training
    loop's `train_step`: eager fp32 with torch.optim.Adam's defaults, or as the full profile trains."""
    model = build(case.ours[0], IMAGE_SHAPE, **case.ours[1]).train()
    if not trained:
        optimizer = torch.optim.Adam(model.parameters())
        return Side(label, model, lambda: train_step(model, model.loss, optimizer, batch))
    cfg, device = as_trained(name), batch.device
    loss, optimizer = compiled(model.loss, cfg, device), make_optimizer(model, cfg)
    bf16 = cfg.autocast_bf16(device)
    return Side(label, model, lambda: train_step(model, loss, optimizer, batch, bf16, cfg.grad_clip),
                warm_up=2 if cfg.compiles(device) else 1)


def how_trained(name: str, device: torch.device) -> str:
    cfg = as_trained(name)
    parts = ["bf16" if cfg.autocast_bf16(device) else "fp32", "compiled" if cfg.compiles(device) else "eager",
             cfg.optimizer + ("" if cfg.grad_clip is None else f", clip {cfg.grad_clip:g}")]
    return ", ".join(parts)


def reference_side(case: Case, batch: torch.Tensor) -> Side:
    module, cls, kwargs = case.reference
    model = getattr(importlib.import_module(f"pytorch_generative.models.autoregressive.{module}"), cls)(**kwargs)
    model.train()
    optimizer = torch.optim.Adam(model.parameters())  # as its trainer makes it

    def step():
        logits = model(batch)
        loss = F.binary_cross_entropy_with_logits(logits, batch, reduction="none").flatten(1).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()
    return Side("reference", model, step)


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


OUR_PACKAGES = ("models", "pipeline")


def _ours(name: str) -> bool:
    return name.split(".")[0] in OUR_PACKAGES


@contextlib.contextmanager
def checkout(root: Path):
    """Inside, `models` and `pipeline` are another checkout's (at `root`); this checkout's come back
    on leaving. What was built inside keeps running the other checkout's code."""
    if not (root / "models" / "__init__.py").is_file():
        raise SystemExit(f"error: no genbench checkout at {root} (its models/__init__.py is missing)")
    saved = {name: module for name, module in sys.modules.items() if _ours(name)}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if _ours(name)]:
            del sys.modules[name]
        sys.modules.update(saved)


def baseline_build(root: Path):
    def build(family, image_shape, **kwargs):
        with checkout(root):
            return importlib.import_module("models").build_model(family, image_shape, **kwargs)
    return build


def compare(name: str, rounds: int, baseline: Path | None = None, min_seconds: float = 1.0) -> dict:
    """One row: every side's free parameters and median images/s over `rounds` alternating rounds, and
    each of ours' median ratio to the reference (per round)."""
    case = CASES[name]
    torch.manual_seed(0)
    batch = random_images(case.batch, "cpu", torch.Generator().manual_seed(0))
    sides = [reference_side(case, batch), ours(build_model, case, batch, name, "eager", False),
             ours(build_model, case, batch, name, "as trained", True)]
    if baseline is not None:
        build = baseline_build(baseline)
        sides += [ours(build, case, batch, name, "baseline eager", False),
                  ours(build, case, batch, name, "baseline as trained", True)]
    steps, flops = [], []
    for side in sides:
        for _ in range(side.warm_up):
            side.step()
        flops.append(step_flops(side.step) if side.eager else None)  # a compiled step is not traced again
        steps.append(max(1, round(min_seconds / seconds_per_step(side.step, 1, batch.device))))
    rates = [[] for _ in sides]
    for r in range(rounds):
        for i in (range(len(sides)) if r % 2 == 0 else reversed(range(len(sides)))):
            rates[i].append(case.batch / seconds_per_step(sides[i].step, steps[i], batch.device))
    reference_params = free_parameters(sides[0].model)
    row = {"model": name, "batch": case.batch, "reference params": reference_params}
    for side, side_rates, side_flops in zip(sides, rates, flops):
        row[f"{side.label} img/s"] = statistics.median(side_rates)
        if side_flops is not None:
            row[f"{side.label} GFLOP/s"] = side_flops / case.batch * row[f"{side.label} img/s"] / 1e9
        if side.label != "reference":
            params = free_parameters(side.model)
            row[f"{side.label} params"] = params
            comparable = abs(params / reference_params - 1) <= COMPARABLE
            row[f"{side.label} / reference"] = (statistics.median(o / t for t, o in zip(rates[0], side_rates))
                                                if comparable else None)
    return row


def rate(images_per_second: float) -> str:
    return f"{images_per_second:,.0f}" if images_per_second >= 100 else f"{images_per_second:.3g}"


def table(rows: list[dict]) -> str:
    keys = {key for row in rows for key in row}  # a compiled side has no GFLOP/s, so rows may differ
    labels = [key[:-len(" img/s")] for key in rows[0] if key.endswith(" img/s") and key != "reference img/s"]
    header = ["model", "batch", "reference params", "reference img/s", "reference GFLOP/s"]
    for label in labels:
        header += [f"{label} params", f"{label} img/s"]
        header += [f"{label} GFLOP/s"] if f"{label} GFLOP/s" in keys else []
        header += [f"{label} / reference"]
    cell = lambda key, value: ("not comparable" if value is None else f"{value:.2f}x") if key.endswith(
        "/ reference") else f"{value:,}" if key.endswith("params") else rate(value) if key.endswith(
        ("img/s", "GFLOP/s")) else str(value)
    body = [[cell(key, row[key]) if key in row else "-" for key in header] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in [header, *body])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True,
                        help="directory containing pytorch-generative's pytorch_generative package")
    parser.add_argument("--models", default=",".join(CASES), help=f"comma-separated, from: {', '.join(CASES)}")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds per model")
    parser.add_argument("--baseline", type=Path, help="another checkout of this repository, timed beside ours")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="the least time a side runs per round")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    unknown = [n for n in names if n not in CASES]
    if unknown or args.rounds < 1:
        parser.error(f"unknown model(s) {', '.join(unknown)}" if unknown else "--rounds must be >= 1")
    import_reference(args.reference)
    device = torch.device("cpu")
    print(f"torch {torch.__version__}, cpu, {torch.get_num_threads()} threads, {args.rounds} rounds"
          + (f"; baseline: {args.baseline}" if args.baseline else ""), flush=True)
    print(f"  fp32 matrix products on this machine: {matmul_peak() / 1e9:.0f} GFLOP/s (4096 x 4096); "
          "GFLOP/s columns: FlopCounterMode's count of a step (products, convolutions, attention) "
          "per second", flush=True)
    for name in names:
        case = CASES[name]
        print(f"  {name}: reference {case.size}; ours {case.ours[1] or 'default'}; as trained: "
              f"{how_trained(name, device)}", flush=True)
    rows = []
    for name in names:
        rows.append(compare(name, args.rounds, args.baseline, args.min_seconds))
        print(f"  {name}: done", file=sys.stderr, flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
