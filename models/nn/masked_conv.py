"""The masked convolution of PixelCNN (van den Oord et al. 2016)."""
from __future__ import annotations

import torch
from torch import nn


class MaskedConv2d(nn.Conv2d):
    """A convolution that sees only pixels above, and to the left on the same row (raster order).

    Mask 'A' also hides the centre pixel (first layer: the output at i must not see x_i);
    mask 'B' lets it through (later layers: the feature at i already depends only on x_<i).
    """

    def __init__(self, mask_type: str, in_channels: int, out_channels: int, kernel_size: int, **kwargs):
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, **kwargs)
        mask = torch.ones_like(self.weight)
        centre = kernel_size // 2
        mask[:, :, centre, centre + (mask_type == "B"):] = 0
        mask[:, :, centre + 1:] = 0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)
