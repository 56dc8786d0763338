"""PixelCNN (van den Oord et al. 2016): a stack of masked convolutions in raster order.

The masks make the receptive field of pixel i a "staircase" that misses some pixels above and to
the right (the blind spot that the Gated PixelCNN removes).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.base import DIGIT_CLASSES, LabelConditioning, require_positive
from models.fast import FastPaths
from models.fast.onednn_layout import channels_last
from models.nn.conv_autoregressive import ConvolutionalAutoregressive
from models.nn.conv_steps import conv_at, flat_kernel, pointwise, write
from models.nn.masked_conv import MaskedConv2d
from models.nn.pixel_distributions import pixel_distribution_for
from models.nn.sampling import first_position_to_fill, one_thread_on_cpu


class MaskedResidualBlock(nn.Module):
    """x + 1x1(relu(masked kxk(relu(1x1(relu(x)))))), halving the channels around the masked conv.

    fast: the ReLUs after the convolutions and the residual sum in place, where autograd allows it (a
    convolution's backward needs its input, not its output): each activation is a fresh 13-26 MB block
    at batch 256, which costs its page faults on a CPU."""

    def __init__(self, channels: int, kernel: int, dropout: float, fast: bool):
        super().__init__()
        self.fast = fast
        self.reduce = nn.Conv2d(channels, channels // 2, 1)
        self.conv = MaskedConv2d("B", channels // 2, channels // 2, kernel)
        self.expand = nn.Conv2d(channels // 2, channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, record: list | None = None) -> torch.Tensor:
        relu = torch.relu_ if self.fast else torch.relu
        h = relu(self.reduce(torch.relu(x)))
        if record is not None:
            record.append(h)
        out = self.expand(self.dropout(relu(self.conv(h))))
        # under autocast a bf16 output plus an fp32 stream (a conditional model's) stays fp32
        return out.add_(x) if self.fast and out.dtype == x.dtype else x + out

    def step(self, x: torch.Tensor, buffer: torch.Tensor, kernel: torch.Tensor, r: int, c: int) -> torch.Tensor:
        """The block's output at (r, c) alone, writing its masked conv's input there into `buffer`."""
        pad = self.conv.kernel_size[0] // 2
        write(buffer, pad, r, c, torch.relu(pointwise(self.reduce, torch.relu(x))))
        h = conv_at(buffer, kernel, self.conv.bias, r, c, pad + 1, 2 * pad + 1)
        return x + pointwise(self.expand, torch.relu(h))


class PixelCNN(FastPaths, ConvolutionalAutoregressive, LabelConditioning):
    """A mask-A first_kernel x first_kernel conv, `residual_blocks` blocks with mask-B kernel x kernel
    convs, then ReLU, 1x1 conv (head_channels), ReLU, 1x1 conv to each pixel's conditional: one
    Bernoulli logit for binary pixels.

    pixel_levels (256 with `data: grey`): each pixel's conditional over the levels is `output`, a
    discretized mixture of `components` logistics (Salimans et al. 2017) or a softmax over the levels
    (van den Oord et al. 2016, Pixel RNN, Section 5.3); the network reads the levels scaled to [-1, 1].
    `output` and `components` are for grey levels only.

    conditional: p(x | y) for a digit y, by a per-class bias on every channel of the first
    convolution's output (at every position, so every pixel's logit may depend on the label).

    fast (params.yaml's train.fast_paths): the features in oneDNN's memory layout
    (models/fast/onednn_layout.py) and the residual blocks' activations in place; fast=False: neither."""

    def __init__(self, image_shape=(1, 28, 28), channels: int = 128, residual_blocks: int = 15,
                 first_kernel: int = 7, kernel: int = 3, head_channels: int = 256, dropout: float = 0.0,
                 conditional: bool = False, pixel_levels: int = 2,
                 output: Literal["logistic_mixture", "softmax"] = "logistic_mixture", components: int = 10,
                 fast: bool = True):
        super().__init__(image_shape, pixel_distribution_for(pixel_levels, output, components))
        self.fast = fast
        if self.image_shape[0] != 1:
            raise ValueError("pixelcnn models single-channel images (image_shape[0] must be 1)")
        if channels < 2 or channels % 2:
            raise ValueError(f"channels must be an even number >= 2, got {channels}")
        for name, value in (("first_kernel", first_kernel), ("kernel", kernel)):
            if value < 1 or value % 2 == 0:
                raise ValueError(f"{name} must be an odd number >= 1, got {value}")
        require_positive(head_channels=head_channels)
        if residual_blocks < 0 or not 0 <= dropout < 1:
            raise ValueError("need residual_blocks >= 0 and 0 <= dropout < 1")
        self.input_conv = MaskedConv2d("A", 1, channels, first_kernel)
        self.blocks = nn.ModuleList(MaskedResidualBlock(channels, kernel, dropout, fast) for _ in range(residual_blocks))
        self.build_head(channels, head_channels)
        if conditional:
            self.init_labels(DIGIT_CLASSES)
            self.label_bias = nn.Embedding(self.num_classes, channels)
            nn.init.zeros_(self.label_bias.weight)  # it starts as the unconditional model

    @property
    def fast_paths(self) -> list[str]:
        return ["oneDNN layout", "activations in place"] if self.fast else []

    def pixel_params(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.trunk(x, labels=labels)).unsqueeze(2)  # (B, P, 1, H, W)

    def first_features(self, h: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The first convolution's output (B, channels, ...), plus the label's bias when conditional."""
        self.check_labels(labels)
        if labels is None:
            return h
        bias = self.label_bias(labels)
        return h + bias.view(*bias.shape, *([1] * (h.dim() - 2)))

    def trunk(self, x: torch.Tensor, record: list | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Features before the head; `record` collects the input of every masked conv."""
        x = self.network_input(x)
        if record is not None:
            record.append(x)
        h = self.first_features(self.input_conv(x), labels)
        if self.fast:  # every later conv keeps the layout
            h = channels_last(h)
        for block in self.blocks:
            h = block(h, record)
        return h

    @torch.no_grad()
    @one_thread_on_cpu
    def fill(self, x: torch.Tensor, observed: torch.Tensor, noise: torch.Tensor,
             labels: torch.Tensor | None = None) -> torch.Tensor:
        """Raster-order sampling that computes each layer once per position instead of re-running
        the whole network per pixel: a feature at (r, c) depends only on pixels before (r, c), so
        once computed it stays valid. The observed prefix costs one ordinary forward pass."""
        x = x.clone()
        height, width = self.image_shape[1:]
        convs = [self.input_conv] + [block.conv for block in self.blocks]
        pads = [conv.kernel_size[0] // 2 for conv in convs]
        kernels = [flat_kernel(conv, pad + 1, conv.weight * conv.mask) for conv, pad in zip(convs, pads)]
        start = first_position_to_fill(observed)
        recorded = []
        self.trunk(x, recorded, labels)
        buffers = [F.pad(h, (pad, pad, pad, 0)) for h, pad in zip(recorded, pads)]
        for r, c in self.progress(((i // width, i % width) for i in range(start, height * width)), height * width - start):
            h = self.first_features(conv_at(buffers[0], kernels[0], self.input_conv.bias, r, c, pads[0] + 1,
                                            2 * pads[0] + 1), labels)
            for block, buffer, kernel in zip(self.blocks, buffers[1:], kernels[1:]):
                h = block.step(h, buffer, kernel, r, c)
            pixel = self.draw(self.head_at(h), observed[:, 0, r, c], x[:, 0, r, c], noise[:, 0, r, c])
            x[:, 0, r, c] = pixel
            write(buffers[0], pads[0], r, c, self.network_input(pixel)[:, None])
        return x
