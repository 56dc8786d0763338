"""A large batch on a CPU, run through a network in pieces so that its activations stay small enough
for the memory allocator to reuse.

glibc hands out every block above 32 MB (its largest mmap threshold) as a fresh mapping, and gives it
back to the kernel when freed, so each such tensor costs a page fault per 4 KB page and the kernel's
zeroing of it, at every allocation: a large share of a Gated PixelCNN training step at batch 128
went to the kernel (figures: docs/benchmarks.md). Blocks under the threshold come from the heap and
are reused without faults. Per-image results do not depend on the batch, so the pieces give the same values (up to the
order of floating-point sums); on a GPU the caching allocator has no such cost and the batch runs
whole.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["MMAP_THRESHOLD_BYTES", "images_per_chunk", "in_chunks"]

MMAP_THRESHOLD_BYTES = 32 * 2**20


def images_per_chunk(bytes_per_image: int) -> int:
    """The most images whose largest activation (`bytes_per_image` each) stays under the threshold."""
    return max(1, MMAP_THRESHOLD_BYTES // max(1, bytes_per_image))


def in_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, bytes_per_image: int) -> torch.Tensor:
    """fn(x), computed on a CPU over pieces of the batch when one whole activation would pass the
    threshold; fn maps (B, ...) to (B, ...) image by image."""
    pieces = -(-len(x) // images_per_chunk(bytes_per_image))
    if x.device.type != "cpu" or pieces <= 1:
        return fn(x)
    return torch.cat([fn(piece) for piece in x.tensor_split(pieces)])  # as even as they come
