"""One-position convolution steps: what lets the convolutional autoregressive families (PixelCNN,
Gated PixelCNN) sample pixel by pixel without a full forward pass per pixel. Their `fill` keeps, per
layer, a feature map padded on top and on both sides (`write` stores one position's features in it)
and computes a convolution's output at the next position alone from the window it sees there
(`conv_at`, with only the kernel rows that window needs: `flat_kernel`); `pointwise` is a 1x1
convolution at one position."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def write(buffer: torch.Tensor, pad: int, r: int, c: int, value: torch.Tensor) -> None:
    """Store (B, C) features of position (r, c) in a feature map padded with `pad` rows on top and
    `pad` columns either side (a convolution that never looks below the current row)."""
    buffer[:, :, r + pad, c + pad] = value


def flat_kernel(conv: nn.Conv2d, rows: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """The top `rows` kernel rows of `conv` (optionally a masked copy `weight`) as an (out, in*rows*k) matrix."""
    weight = conv.weight if weight is None else weight
    return weight[:, :, :rows].flatten(1)


def conv_at(buffer: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None,
            r: int, c: int, rows: int, cols: int) -> torch.Tensor:
    """A convolution's output at one position, (B, out): the `rows` x `cols` window of the padded
    `buffer` whose top-left corner is at buffer position [r, c], times the flattened `kernel`."""
    patch = buffer[:, :, r:r + rows, c:c + cols].flatten(1)
    return F.linear(patch, kernel, bias)


def pointwise(conv: nn.Conv2d, h: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution applied to features at one position, (B, in) -> (B, out)."""
    return F.linear(h, conv.weight.flatten(1), conv.bias)
