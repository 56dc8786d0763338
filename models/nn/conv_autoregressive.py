"""The base class of the convolutional autoregressive families (PixelCNN, Gated PixelCNN): a
masked-convolution trunk and the PixelCNN head."""
from __future__ import annotations

import torch
from torch import nn

from models.base import AutoregressiveModel
from models.nn.conv_steps import pointwise


class ConvolutionalAutoregressive(AutoregressiveModel):
    """What PixelCNN and Gated PixelCNN share: a masked-convolution `trunk`, then a head of ReLU,
    1x1 conv (head_channels), ReLU, 1x1 conv to the conditional's `params_per_pixel` parameters at
    every pixel (one Bernoulli logit for binary pixels)."""

    def build_head(self, channels: int, head_channels: int) -> None:
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, head_channels, 1),
                                  nn.ReLU(), nn.Conv2d(head_channels, self.params_per_pixel, 1))

    def trunk(self, x: torch.Tensor, record: list | None = None) -> torch.Tensor:
        """Features before the head; `record` collects what the family's `fill` needs to resume from."""
        raise NotImplementedError

    def pixel_params(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x)).unsqueeze(2)  # (B, P, 1, H, W)

    def head_at(self, h: torch.Tensor) -> torch.Tensor:
        """The head at one position: (B, channels) features -> (B, P) parameters."""
        for layer in self.head:
            h = pointwise(layer, h) if isinstance(layer, nn.Conv2d) else layer(h)
        return h
