"""Image grids written atomically as PNG."""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import save_image

from pipeline.io import atomic_path


def save_grid(images: torch.Tensor, path: str | Path, nrow: int, levels: int = 2) -> None:
    """Images of pixel levels 0 .. levels - 1 (or, with levels = 2, any values in [0, 1] such as
    Bernoulli means), shape (N, C, H, W), as one PNG grid with `nrow` images per row."""
    intensity = images.detach().float().cpu() / (levels - 1)
    with atomic_path(path) as tmp:
        save_image(intensity, tmp, nrow=nrow, padding=2, pad_value=0.5, format="png")


def top_half_mask(images: torch.Tensor) -> torch.Tensor:
    """True on the rows of the upper half: the pixels a completion is given."""
    observed = torch.zeros_like(images, dtype=torch.bool)
    observed[..., : images.shape[-2] // 2, :] = True
    return observed
