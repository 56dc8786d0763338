"""The convolutional families' convolutions as oneDNN, PyTorch's CPU convolution library, computes them
fastest: in its own memory layout, and a Gated PixelCNN layer's sums arranged for its fast kernels.
`gated_pre_activations` gives what `GatedLayer.plain_pre_activations` (models/gated_pixelcnn.py) gives,
the paper's equations term by term; tests/test_conv_fast_paths.py compares the two through the switch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["channels_last", "gated_pre_activations"]


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """oneDNN's own layout: convolutions and 1x1 links on it avoid a reorder (and PyTorch's slow
    fallback for strided inputs). A 1-channel image cannot carry it, so the first layer's output is
    converted."""
    return t.contiguous(memory_format=torch.channels_last)


def gated_pre_activations(layer: nn.Module, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A `GatedLayer`'s vertical and horizontal pre-activations (v_pre, h_pre) for inputs v, h (B, C, H, W):
    - the vertical conv pads all four sides (oneDNN's fast path) and keeps its first H rows, the causal ones;
    - the link reads the whole, dense vertical output (a strided input sends a 1x1 conv to PyTorch's slow
      fallback), its rows 0 .. H-2 moved down one row, and its bias is added by the horizontal conv
      instead (row 0, which the link does not reach, then gets it too, as the definition says);
    - the first layer's horizontal kernel (one input channel, columns c-p .. c-1) runs as a symmetric
      1 x (2p + 1) kernel with zeros from column c on: oneDNN has a fast path for that, and none for the
      narrow kernel padded by p."""
    p, height = layer.pad, h.shape[-2]
    v_full = channels_last(F.conv2d(v, layer.vertical.weight, layer.vertical.bias, padding=p))
    link = F.pad(F.conv2d(v_full, layer.link.weight)[..., :height - 1, :], (0, 0, 1, 0))
    bias = layer.horizontal.bias + layer.link.bias
    if layer.first:
        symmetric = F.pad(layer.horizontal.weight, (0, p + 1))
        h_pre = F.conv2d(h, symmetric, bias, padding=(0, p))
    else:
        h_pre = F.conv2d(F.pad(h, (p, 0)), layer.horizontal.weight, bias)
    return v_full[..., :height, :], channels_last(h_pre) + link
