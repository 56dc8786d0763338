"""The Gated PixelCNN's gate tanh(a) * sigmoid(b) (models/gated_pixelcnn.py's `gate`) in the form a CPU
computes faster: tanh(a) = 2 sigmoid(2a) - 1, because torch's CPU tanh costs several sigmoids per
number (figures: docs/benchmarks.md). A GPU, or torch.compile, fuses either form, so elsewhere it is
the plain product.
"""
from __future__ import annotations

import torch

__all__ = ["fast_gate"]


def fast_gate(pre: torch.Tensor) -> torch.Tensor:
    """tanh(a) * sigmoid(b) for the two halves a, b of `pre` along its channels (dimension 1)."""
    a, b = pre.chunk(2, 1)
    if pre.device.type != "cpu":
        return torch.tanh(a) * torch.sigmoid(b)
    return (2 * torch.sigmoid(2 * a) - 1) * torch.sigmoid(b)
