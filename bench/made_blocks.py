"""MADE's masked layers block by block against the dense masked product: the training step of a MADE
layer stack (784 -> hidden -> 784, one mask, raster order, batch 64 by default: pytorch-generative's
1 x 8000 MADE) with `BlockedMaskedMLP` and with `MaskedMLP`, timed alternately in one process, in
fp32 and under bf16 autocast; and the share of the dense product's multiply-adds the blocks skip.

    python -m bench.made_blocks [--hidden 8000] [--batch 64] [--blocks auto|16,...] [--rounds 5] [--optimizer fused|plain]

A step is what the training loop does for MADE: forward, the Bernoulli NLL, backward and an Adam
step (fused, as the loop makes it; `plain`: torch.optim.Adam's defaults, as pytorch-generative
trains). Weights and images are random; only the times mean anything.
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from bench.common import random_images, seconds_per_step, timed
from models.fast.blocked_masked_linear import BlockedMaskedMLP
from models.nn.masked_linear import MaskedMLP, made_degrees, made_masks

PIXELS = 784


def stacks(hidden: list[int], blocks: int | None, seed: int = 0) -> tuple[MaskedMLP, BlockedMaskedMLP]:
    """The dense masked MLP of a one-mask, raster-order MADE and the blocked one with its weights."""
    torch.manual_seed(seed)
    degrees = made_degrees(torch.arange(PIXELS), hidden, torch.Generator().manual_seed(seed))
    dense = MaskedMLP([PIXELS, *hidden, PIXELS])
    dense.set_masks(made_masks(degrees))
    blocked = BlockedMaskedMLP(degrees, blocks=blocks)
    blocked.load_state_dict(dense.state_dict())
    return dense, blocked


def optimizer(mlp, kind: str) -> torch.optim.Optimizer:
    return torch.optim.Adam(mlp.parameters(), fused=True) if kind == "fused" else torch.optim.Adam(mlp.parameters())


def training_step(mlp, opt, batch: torch.Tensor, bf16: bool):
    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = mlp(batch)
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch, reduction="none").sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def compare(hidden: list[int], batch_size: int, blocks: int | None, rounds: int, kind: str, min_seconds: float = 1.0):
    """{precision: (dense s/step, blocked s/step, median of dense / blocked over rounds)}."""
    batch = random_images(batch_size, "cpu", torch.Generator().manual_seed(0)).flatten(1)
    results = {}
    for precision, bf16 in (("fp32", False), ("bf16 autocast", True)):
        sides = []
        for mlp in stacks(hidden, blocks):
            sides.append(training_step(mlp, optimizer(mlp, kind), batch, bf16))
        steps = []
        for step in sides:
            step()  # warm-up
            steps.append(max(2, round(min_seconds / timed(step, batch.device))))
        times = [[], []]
        for r in range(rounds):
            for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                times[i].append(seconds_per_step(sides[i], steps[i], batch.device))
        results[precision] = (statistics.median(times[0]), statistics.median(times[1]),
                              statistics.median(d / b for d, b in zip(*times)))
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", default="8000", help="hidden sizes, comma-separated")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--blocks", default="auto", help="row groups per layer, comma-separated to compare several "
                        "(auto: default_blocks, by each layer's size)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds")
    parser.add_argument("--optimizer", choices=("fused", "plain"), default="fused")
    args = parser.parse_args(argv)
    hidden = [int(h) for h in args.hidden.split(",")]
    print(f"torch {torch.__version__}, cpu, {torch.get_num_threads()} threads; MADE {PIXELS} -> "
          f"{' -> '.join(map(str, hidden))} -> {PIXELS}, one mask, batch {args.batch}, "
          f"{args.optimizer} Adam, {args.rounds} rounds", flush=True)
    print(f"{'blocks':>6}  {'mask zeros':>10}  {'skipped':>7}  {'precision':<13}  {'dense ms':>8}  {'blocked ms':>10}  "
          f"{'dense / blocked':>15}")
    for blocks in (None if b == "auto" else int(b) for b in args.blocks.split(",")):
        _, blocked = stacks(hidden, blocks)
        plans = [layer.plan for layer in blocked.layers]
        zeros = 1 - sum(p.dense_numel * (1 - p.zeros) for p in plans) / sum(p.dense_numel for p in plans)
        for precision, (dense_s, blocked_s, ratio) in compare(hidden, args.batch, blocks, args.rounds,
                                                              args.optimizer).items():
            print(f"{blocks or 'auto':>6}  {zeros:>10.1%}  {blocked.skipped:>7.1%}  {precision:<13}  {dense_s * 1e3:>8.1f}  "
                  f"{blocked_s * 1e3:>10.1f}  {ratio:>14.2f}x", flush=True)


if __name__ == "__main__":
    main()
