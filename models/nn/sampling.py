"""Shortcuts that the autoregressive families' own `fill` (pixel-by-pixel sampling and completion)
share: start at the first pixel some image must draw, and run on one CPU thread."""
from __future__ import annotations

import functools

import torch


def first_position_to_fill(observed: torch.Tensor) -> int:
    """Raster index of the first pixel that some image in the batch must sample: everything before
    it is observed in every image, so a single ordinary forward pass covers that prefix."""
    missing = (~observed.flatten(1)).any(0).nonzero()
    return int(missing[0]) if len(missing) else observed[0].numel()


def one_thread_on_cpu(fill):
    """Decorates a sampler `fill(self, x, ...)` to run with one intra-op thread when x is on the CPU.
    Its per-pixel steps are far too small to gain from a second thread, and on a busy machine waiting
    for that thread at every op dominates (figures: docs/benchmarks.md)."""
    @functools.wraps(fill)
    def wrapper(self, x: torch.Tensor, *args, **kwargs):
        if x.device.type != "cpu":
            return fill(self, x, *args, **kwargs)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fill(self, x, *args, **kwargs)
        finally:
            torch.set_num_threads(threads)
    return wrapper
