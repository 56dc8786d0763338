"""When training validates and stops: after every epoch, or at fixed fractions of a compute budget.

With `train.budget_flops`, a model trains on as many images as the budget buys at its own cost per
image (pipeline/flops.py), and validates after log-spaced fractions of them (1/64, 1/32, ..., 1 of
the budget with seven points), so every model's curve has its points at the same FLOPs. `epochs`
still caps the passes over the data (a closed-form fit needs one). Everything here is plain
arithmetic on image counts, so a resumed run walks exactly the same batches.
"""
from __future__ import annotations

import math


def validation_ends(total: int, points: int) -> list[int]:
    """Image counts after which to validate: `total` / 2^k for k = points - 1, ..., 1, 0 (rounded
    up, so every point costs at most the budget's fraction plus one image)."""
    return sorted({max(1, math.ceil(total / 2 ** k)) for k in range(points)})


def round_ends(epoch_images: int, epochs: int, budget: int | None = None, points: int = 7,
               whole_epochs: bool = False) -> list[int]:
    """The image counts after which the loop validates: every epoch without a budget; with one, its
    log-spaced points up to `epochs` passes over the data. A model that fits an epoch at once stops at
    the last whole epoch within each point (at least one epoch), so it never spends more than the budget."""
    cap = epochs * epoch_images
    if budget is None:
        return [epoch_images * e for e in range(1, epochs + 1)]
    ends = [end for end in validation_ends(budget, points) if end < cap] + ([cap] if budget >= cap else [])
    if whole_epochs:
        ends = sorted({min(cap, max(1, end // epoch_images) * epoch_images) for end in ends})
    return ends


def batch_sizes(start: int, end: int, epoch_images: int, batch_size: int) -> list[int]:
    """The batches that take the loop from `start` to `end` training images: `batch_size` at most,
    never across the end of an epoch (each epoch has its own order) nor past `end`."""
    sizes = []
    while start < end:
        size = min(batch_size, end - start, epoch_images - start % epoch_images)
        sizes.append(size)
        start += size
    return sizes


def steps_to(ends: list[int], epoch_images: int, batch_size: int, start: int = 0) -> int:
    """How many batches take the loop from `start` images through the validations at `ends`."""
    bounds = [start, *(end for end in ends if end > start)]
    return sum(len(batch_sizes(a, b, epoch_images, batch_size)) for a, b in zip(bounds[:-1], bounds[1:]))
