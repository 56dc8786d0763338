"""The Gated PixelCNN's gate tanh(a) * sigmoid(b) (models/gated_pixelcnn.py) in the form a CPU
computes faster: tanh(a) = 2 sigmoid(2a) - 1, because torch's CPU tanh costs several sigmoids per
number (figures: docs/benchmarks.md). A GPU, or torch.compile, fuses either form.
"""
from __future__ import annotations

import torch

__all__ = ["cpu_gate"]


def cpu_gate(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (2 * torch.sigmoid(2 * a) - 1) * torch.sigmoid(b)
