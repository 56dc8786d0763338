"""Image grids written atomically as PNG.

The grid is tiled here with numpy and written by PIL rather than with torchvision's `save_image`:
importing torchvision costs each evaluate stage about 2 s of its start-up (it loads its model zoo)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.io import atomic_path

PADDING = 2
PAD_VALUE = 0.5


def grid(images: torch.Tensor, nrow: int) -> np.ndarray:
    """(N, C, H, W) brightness in [0, 1] -> one (rows, cols) or (rows, cols, C) uint8 array, `nrow`
    images per row, separated and framed by PADDING pixels of grey (a single image unframed, as
    torchvision draws it)."""
    n, channels, height, width = images.shape
    if n == 1:
        return grid_pixels(images[0].clamp(0, 1).numpy())
    rows = math.ceil(n / nrow)
    canvas = np.full((channels, rows * (height + PADDING) + PADDING, nrow * (width + PADDING) + PADDING), PAD_VALUE,
                     dtype=np.float32)
    for k, image in enumerate(images.clamp(0, 1).numpy()):
        top, left = PADDING + (k // nrow) * (height + PADDING), PADDING + (k % nrow) * (width + PADDING)
        canvas[:, top:top + height, left:left + width] = image
    return grid_pixels(canvas)


def grid_pixels(canvas: np.ndarray) -> np.ndarray:
    """(C, H, W) brightness in [0, 1] -> uint8 pixels as PIL takes them: (H, W) grey or (H, W, C)."""
    pixels = (canvas * 255 + 0.5).astype(np.uint8)
    return pixels[0] if len(pixels) == 1 else pixels.transpose(1, 2, 0)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int, levels: int = 2) -> None:
    """Images of pixel levels 0 .. levels - 1 (or, with levels = 2, any values in [0, 1] such as
    Bernoulli means), shape (N, C, H, W), as one PNG grid with `nrow` images per row."""
    brightness = images.detach().float().cpu() / (levels - 1)
    with atomic_path(path) as tmp:
        Image.fromarray(grid(brightness, min(nrow, len(brightness)))).save(tmp, format="png")


def top_half_mask(images: torch.Tensor) -> torch.Tensor:
    """True on the rows of the upper half: the pixels a completion is given."""
    observed = torch.zeros_like(images, dtype=torch.bool)
    observed[..., : images.shape[-2] // 2, :] = True
    return observed
