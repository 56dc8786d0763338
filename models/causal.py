"""Causal building blocks shared by the autoregressive families (PixelCNN, Gated PixelCNN, RNN,
transformer): a pixel embedding that sees only earlier pixels, and the buffers and one-position
convolution steps that let the convolutional models sample without a full forward pass per pixel.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from models.base import AutoregressiveModel, require_positive


class CausalPixelEmbedding(nn.Module):
    """Embeds position t of a raster-scanned image from the `window` pixels before it, x_{t-window..t-1}.

    Positions before the image starts hold a learned start token (an indicator channel), so with
    window=1 this is the usual "previous pixel, or a start token at t=0" input of an autoregressive
    sequence model; a wider window hands the model the local context (e.g. the row above) directly.
    The embedding is linear in x, so gradients w.r.t. the pixels exist (the dependency tests use them).
    """

    def __init__(self, window: int, dim: int):
        super().__init__()
        require_positive(input_window=window)
        self.window = window
        self.conv = nn.Conv1d(2, dim, window)  # channels: pixel value, "before the image" indicator

    def padded_sequence(self, flat_x: torch.Tensor) -> torch.Tensor:
        """(B, D) pixels -> (B, 2, window + D): `window` start positions, then the image."""
        values = F.pad(flat_x, (self.window, 0))
        before_image = torch.zeros_like(values)
        before_image[:, :self.window] = 1
        return torch.stack([values, before_image], 1)

    def forward(self, flat_x: torch.Tensor) -> torch.Tensor:
        """(B, D) pixels -> (B, D, dim); output t depends only on pixels before t."""
        return self.conv(self.padded_sequence(flat_x)[..., :-1]).transpose(1, 2)

    def step(self, sequence: torch.Tensor, t: int) -> torch.Tensor:
        """The embedding of position t alone, from a `padded_sequence` whose pixels before t are set."""
        window = sequence[..., t:t + self.window].flatten(1)
        return F.linear(window, self.conv.weight.flatten(1), self.conv.bias)


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


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """oneDNN's own layout: the convolutional models' convolutions and 1x1 links on it avoid a reorder
    (and PyTorch's slow fallback for strided inputs). A 1-channel image cannot carry it, so the first
    layer's output is converted."""
    return t.contiguous(memory_format=torch.channels_last)


def first_position_to_fill(observed: torch.Tensor) -> int:
    """Raster index of the first pixel that some image in the batch must sample: everything before
    it is observed in every image, so a single ordinary forward pass covers that prefix."""
    missing = (~observed.flatten(1)).any(0).nonzero()
    return int(missing[0]) if len(missing) else observed[0].numel()


def one_thread_on_cpu(fill):
    """Decorates a sampler `fill(self, x, ...)` to run with one intra-op thread when x is on the CPU.
    Its per-pixel steps are far too small to gain from a second thread, and on a busy machine waiting
    for that thread at every op dominates (measured on a shared 2-core CPU: 100 PixelCNN samples in
    30-90 s with 2 threads, 0.8 s with 1)."""
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


class ConvolutionalAutoregressive(AutoregressiveModel):
    """What PixelCNN and Gated PixelCNN share: a masked-convolution `trunk`, then a head of ReLU,
    1x1 conv (head_channels), ReLU, 1x1 conv to one Bernoulli logit per pixel."""

    def build_head(self, channels: int, head_channels: int) -> None:
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, head_channels, 1),
                                  nn.ReLU(), nn.Conv2d(head_channels, 1, 1))

    def trunk(self, x: torch.Tensor, record: list | None = None) -> torch.Tensor:
        """Features before the head; `record` collects what the family's `fill` needs to resume from."""
        raise NotImplementedError

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))

    def head_at(self, h: torch.Tensor) -> torch.Tensor:
        """The head at one position: (B, channels) features -> (B,) logits."""
        for layer in self.head:
            h = pointwise(layer, h) if isinstance(layer, nn.Conv2d) else layer(h)
        return h[:, 0]
