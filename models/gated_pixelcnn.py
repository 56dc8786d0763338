"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders").

Two stacks replace the masked convolutions: a vertical stack that sees every pixel in the rows
above (within its growing window, so there is no blind spot) and a horizontal stack that sees the
pixels to the left on the current row. The vertical stack's output at row r also covers row r
itself, so it reaches the horizontal stack shifted down by one row: row r gets vertical row r-1.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.base import require_positive
from models.fast import FastPaths
from models.fast.batch_chunks import in_chunks
from models.fast.cpu_gate import fast_gate
from models.fast.onednn_layout import gated_pre_activations
from models.nn.conv_autoregressive import ConvolutionalAutoregressive
from models.nn.conv_steps import conv_at, pointwise, write
from models.nn.pixel_distributions import pixel_distribution_for
from models.nn.sampling import first_position_to_fill, one_thread_on_cpu


def gate(pre: torch.Tensor) -> torch.Tensor:
    """The gated activation tanh(a) * sigmoid(b) of the two halves a, b of `pre` along its channels."""
    a, b = pre.chunk(2, 1)
    return torch.tanh(a) * torch.sigmoid(b)


def shift_down(t: torch.Tensor) -> torch.Tensor:
    """Row r of the result is row r-1 of t (zeros on row 0)."""
    return F.pad(t, (0, 0, 1, 0))[..., :-1, :]


class GatedLayer(nn.Module):
    """One layer of both stacks (the paper's Figure 2), with kernel k and p = k // 2:

        v_pre = W_v * v                                  W_v: (p+1) x k over rows r-p..r, columns c-p..c+p
        h_pre = W_h * h + W_link * shift_down(v_pre)     W_h: 1 x (p+1) over columns c-p..c of row r (in the
                                                         first layer, which sees the image: 1 x p over
                                                         c-p..c-1, mask A); W_link: 1x1
        v_out = tanh(v_pre_f) * sigmoid(v_pre_g)
        h_out = h + W_out * (tanh(h_pre_f) * sigmoid(h_pre_g))     (no residual in the first layer)

    where _f and _g are the two halves of the channels, and `dropout` acts before W_out. fast: the
    pre-activations as oneDNN computes them fastest (models/fast/onednn_layout.py) and, on a CPU, the
    gate through sigmoids (models/fast/cpu_gate.py)."""

    def __init__(self, in_channels: int, channels: int, kernel: int, first: bool, dropout: float, fast: bool):
        super().__init__()
        self.pad, self.first, self.fast = kernel // 2, first, fast
        self.vertical = nn.Conv2d(in_channels, 2 * channels, (self.pad + 1, kernel))
        self.horizontal = nn.Conv2d(in_channels, 2 * channels, (1, self.pad + (not first)))
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, v: torch.Tensor, h: torch.Tensor, record: list | None = None):
        if self.fast:
            v_pre, h_pre = gated_pre_activations(self, v, h)
        else:
            v_pre, h_pre = self.plain_pre_activations(v, h)
        if record is not None:
            record.append((v, h, v_pre))
        return self.gate(v_pre), self.horizontal_output(h, h_pre)

    def plain_pre_activations(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """v_pre and h_pre of the equations above, for v, h (B, C, H, W): each conv reads its input
        padded on the sides it must not see past (above; left), so that its output at (r, c) covers
        the window the equations give."""
        p, width = self.pad, h.shape[-1]
        v_pre = self.vertical(F.pad(v, (p, p, p, 0)))
        h_pre = self.horizontal(F.pad(h, (p, 0)))[..., :width]  # the first layer's narrower kernel gives one more column
        return v_pre, h_pre + self.link(shift_down(v_pre))

    def gate(self, pre: torch.Tensor) -> torch.Tensor:
        return fast_gate(pre) if self.fast else gate(pre)

    def horizontal_output(self, h: torch.Tensor, h_pre: torch.Tensor) -> torch.Tensor:
        """h_out of the equations, at every position or at one ((B, C) features)."""
        out = self.dropout(self.gate(h_pre))
        out = pointwise(self.out, out) if out.dim() == 2 else self.out(out)
        return out if self.first else h + out

    def vertical_row(self, v_buffer: torch.Tensor, r: int) -> torch.Tensor:
        """The vertical pre-activation of row r, (B, 2C, 1, W), from a buffer whose rows <= r are set."""
        return F.conv2d(v_buffer[:, :, r:r + self.pad + 1], self.vertical.weight, self.vertical.bias)

    def horizontal_kernel(self) -> torch.Tensor:
        """The horizontal conv over columns c-p..c as an (out, in * (p+1)) matrix (zeros at column c in
        the first layer)."""
        return F.pad(self.horizontal.weight, (0, int(self.first))).flatten(1)

    def horizontal_step(self, h_buffer: torch.Tensor, kernel: torch.Tensor, link_row: torch.Tensor,
                        r: int, c: int) -> torch.Tensor:
        """The horizontal output at (r, c), (B, C), from a buffer whose pixels before (r, c) (and
        (r, c) itself after the first layer) are set; `link_row` is link(vertical row r - 1)."""
        p = self.pad
        h_pre = conv_at(h_buffer, kernel, self.horizontal.bias, r + p, c, 1, p + 1) + link_row[:, :, 0, c]
        h_in = None if self.first else h_buffer[:, :, r + p, c + p]
        return self.horizontal_output(h_in, h_pre)


class GatedPixelCNN(FastPaths, ConvolutionalAutoregressive):
    """`layers` gated layers (the first with first_kernel, the others with kernel), then ReLU, 1x1
    conv (head_channels), ReLU, 1x1 conv to each pixel's conditional: one Bernoulli logit for binary
    pixels; for pixel_levels (256 with `data: grey`), the parameters of `output` (see
    models/pixelcnn.py), the stacks then reading the levels scaled to [-1, 1].

    fast (params.yaml's train.fast_paths): the layers' fast paths (`GatedLayer`), and on a CPU a large
    batch in pieces (models/fast/batch_chunks.py); fast=False: the equations as they stand."""

    def __init__(self, image_shape=(1, 28, 28), channels: int = 128, layers: int = 15, first_kernel: int = 7,
                 kernel: int = 3, head_channels: int = 256, dropout: float = 0.0, pixel_levels: int = 2,
                 output: Literal["logistic_mixture", "softmax"] = "logistic_mixture", components: int = 10,
                 fast: bool = True):
        super().__init__(image_shape, pixel_distribution_for(pixel_levels, output, components))
        self.fast = fast
        if self.image_shape[0] != 1:
            raise ValueError("gated_pixelcnn models single-channel images (image_shape[0] must be 1)")
        for name, value in (("first_kernel", first_kernel), ("kernel", kernel)):
            if value < 3 or value % 2 == 0:
                raise ValueError(f"{name} must be an odd number >= 3, got {value}")
        require_positive(channels=channels, layers=layers, head_channels=head_channels)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.layers = nn.ModuleList(
            GatedLayer(1 if i == 0 else channels, channels, first_kernel if i == 0 else kernel, i == 0, dropout, fast)
            for i in range(layers))
        self.build_head(channels, head_channels)

    @property
    def fast_paths(self) -> list[str]:
        return ["oneDNN layout", "gate through sigmoids on a CPU", "batch in pieces on a CPU"] if self.fast else []

    def pixel_params(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fast:
            return super().pixel_params(x)
        # on a CPU, in pieces of the batch whose largest activation, the vertical pre-activation
        # (2C x (H + p) x W), stays under the allocator's mmap threshold, whose page faults would
        # cost a large share of a step (models/fast/batch_chunks.py)
        height, width = x.shape[-2:]
        largest = 2 * self.layers[0].out.out_channels * (height + self.layers[0].pad) * width * 4
        return in_chunks(super().pixel_params, x, largest)

    def trunk(self, x: torch.Tensor, record: list | None = None) -> torch.Tensor:
        v = h = self.network_input(x)
        for layer in self.layers:
            v, h = layer(v, h, record)
        return h

    @torch.no_grad()
    @one_thread_on_cpu
    def fill(self, x: torch.Tensor, observed: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Raster-order sampling at the cost of about one forward pass: the horizontal stack is
        computed one position at a time, the vertical stack one row at a time once the row is done
        (its row r is only read by row r + 1). The observed prefix costs one ordinary forward pass."""
        x = x.clone()
        height, width = self.image_shape[1:]
        start = first_position_to_fill(observed)
        if start == self.num_pixels:
            return x
        recorded = []
        self.trunk(x, recorded)
        pads = [layer.pad for layer in self.layers]
        v_buffers = [F.pad(v, (p, p, p, 0)) for (v, _, _), p in zip(recorded, pads)]
        h_buffers = [v_buffers[0]] + [F.pad(h, (p, p, p, 0)) for (_, h, _), p in zip(recorded[1:], pads[1:])]
        start_row = start // width
        kernels = [layer.horizontal_kernel() for layer in self.layers]
        links = [layer.link(shift_down(v_pre)[..., start_row:start_row + 1, :])
                 for layer, (_, _, v_pre) in zip(self.layers, recorded)]
        for r in self.progress(range(start_row, height), unit="row"):  # a bar per pixel costs more than a pixel
            for c in range(start % width if r == start_row else 0, width):
                h = None
                for i, layer in enumerate(self.layers):
                    h = layer.horizontal_step(h_buffers[i], kernels[i], links[i], r, c)
                    if i + 1 < len(self.layers):
                        write(h_buffers[i + 1], pads[i + 1], r, c, h)
                pixel = self.draw(self.head_at(h), observed[:, 0, r, c], x[:, 0, r, c], noise[:, 0, r, c])
                x[:, 0, r, c] = pixel
                write(v_buffers[0], pads[0], r, c, self.network_input(pixel)[:, None])
            self._advance_vertical(v_buffers, pads, links, r)
        return x

    def _advance_vertical(self, v_buffers, pads, links, r: int) -> None:
        """Row r is complete: compute every layer's vertical row r, and the links row r + 1 reads."""
        for i, layer in enumerate(self.layers):
            v_pre = layer.vertical_row(v_buffers[i], r)
            links[i] = layer.link(v_pre)
            if i + 1 < len(self.layers):
                v_buffers[i + 1][:, :, r + pads[i + 1], pads[i + 1]:-pads[i + 1]] = layer.gate(v_pre)[:, :, 0]
