"""The transform algebra of the normalizing flows (RealNVP, Glow, MAF and the variational dequantizer).

Every transform maps data towards noise: `forward(x) -> (y, log_det)` and `inverse(y) -> (x, log_det)`,
where log_det[b] = log|det dy/dx| (forward) or log|det dx/dy| (inverse) for image b, so the two
log-dets of a round trip cancel and a flow's log-density is a sum that tests can check term by term:
log p(x) = log N(f(x); 0, I) + sum_k log_det_k. Pieces that only one flow uses live with it
(Glow's invertible 1x1 convolution in models/glow.py, MAF's layers in models/maf.py).

Precision: under bf16 autocast only the networks inside the transforms run in bf16; everything
that enters a log-det or a log-density (affine maps, logits, 1x1 convolutions) is computed in fp32.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.base import at_least_fp32

LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per example, summed over every non-batch dimension."""
    z = at_least_fp32(z).flatten(1)
    return -0.5 * (z.pow(2) + LOG_2PI).sum(1)


def per_example(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(1).sum(1)


class Transform(nn.Module):
    """An invertible map with a cheap log|det J|."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class Compose(Transform):
    """Transforms applied one after another; the log-dets add up."""

    def __init__(self, *transforms: Transform):
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, x):
        total = x.new_zeros(len(x), dtype=torch.float32)
        for transform in self.transforms:
            x, log_det = transform(x)
            total = total + log_det
        return x, total

    def inverse(self, y):
        total = y.new_zeros(len(y), dtype=torch.float32)
        for transform in reversed(self.transforms):
            y, log_det = transform.inverse(y)
            total = total + log_det
        return y, total


class Squeeze(Transform):
    """(C, H, W) -> (4C, H/2, W/2): each 2x2 block of pixels becomes four channels."""

    def forward(self, x):
        n, c, h, w = x.shape
        y = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)
        return y, x.new_zeros(n, dtype=torch.float32)

    def inverse(self, y):
        n, c, h, w = y.shape
        x = y.reshape(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c // 4, 2 * h, 2 * w)
        return x, y.new_zeros(n, dtype=torch.float32)


class ActNorm(Transform):
    """y = (x + bias) * exp(log_scale) per channel (dim 1), initialised from the first training batch
    so that every channel of y has zero mean and unit variance (Glow). Works on (N, C, ...) and (N, D)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))

    def _view(self, p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return p.view(1, -1, *([1] * (x.dim() - 2)))

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        per_channel = x.float().transpose(0, 1).flatten(1)
        self.bias.copy_(-per_channel.mean(1))
        self.log_scale.copy_(-torch.log(per_channel.std(1) + 1e-6))
        self.initialized.fill_(True)

    def _log_det(self, x: torch.Tensor) -> torch.Tensor:
        positions = x[0, 0].numel()  # spatial positions per channel (1 for vectors)
        return (at_least_fp32(self.log_scale).sum() * positions).expand(len(x))

    def forward(self, x):
        if self.training and not self.initialized:
            self._initialize(x)
        x = at_least_fp32(x)
        y = (x + self._view(self.bias, x)) * self._view(self.log_scale, x).exp()
        return y, self._log_det(x)

    def inverse(self, y):
        y = at_least_fp32(y)
        x = y * self._view(-self.log_scale, y).exp() - self._view(self.bias, y)
        return x, -self._log_det(y)


def checkerboard_mask(shape: tuple[int, int, int], parity: int) -> torch.Tensor:
    """1 where (row + column + parity) is even, for every channel of a (C, H, W) image."""
    c, h, w = shape
    rows, cols = torch.arange(h)[:, None], torch.arange(w)[None, :]
    return ((rows + cols + parity) % 2 == 0).float().expand(c, h, w).clone()


class AffineCoupling(Transform):
    """An affine coupling (Dinh et al. 2017; Kingma & Dhariwal 2018, Table 1): x splits into a
    conditioning half x_a, copied, and a transformed half x_b -> x_b * exp(log_s) + t, where
    (t, raw scale) = net(x_a), so the Jacobian is triangular and log_det = sum(log_s). A conditional
    coupling's net also reads `context` channels after x_a. Subclasses say how x splits (`_split`,
    `_join`); `transformed` is the number of channels (dim 1) of the scale and shift the net gives.

    scale='tanh': log_s = bound * tanh(raw) with a learned bound per transformed channel (RealNVP);
    scale='sigmoid': exp(log_s) = sigmoid(raw + 2) (Glow): both keep log_s finite.
    """

    def __init__(self, net: nn.Module, transformed: int, scale: Literal["tanh", "sigmoid"] = "tanh"):
        super().__init__()
        if scale not in ("tanh", "sigmoid"):
            raise ValueError(f"scale must be 'tanh' or 'sigmoid', got {scale!r}")
        self.net = net
        self.scale = scale
        self.tanh_bound = nn.Parameter(torch.ones(transformed)) if scale == "tanh" else None

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(what the net reads of x_a, or None; x_b)."""
        raise NotImplementedError

    def _join(self, x_a: torch.Tensor | None, y_b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _shift_and_log_scale(self, x_a: torch.Tensor | None, context: torch.Tensor | None, like: torch.Tensor):
        inputs = [part.to(like.dtype) for part in (x_a, context) if part is not None]
        out = self.net(torch.cat(inputs, 1) if len(inputs) > 1 else inputs[0]).to(like.dtype)
        shift, raw = out.chunk(2, dim=1)
        if self.scale == "tanh":
            bound = self.tanh_bound.to(like.dtype).view(1, -1, *([1] * (like.dim() - 2)))
            return shift, bound * torch.tanh(raw)
        return shift, F.logsigmoid(raw + 2.0)

    def forward(self, x, context=None):
        x = at_least_fp32(x)
        x_a, x_b = self._split(x)
        shift, log_s = self._shift_and_log_scale(x_a, context, x)
        return self._join(x_a, x_b * log_s.exp() + shift), at_least_fp32(per_example(log_s))

    def inverse(self, y, context=None):
        y = at_least_fp32(y)
        y_a, y_b = self._split(y)  # the conditioning half passed through unchanged
        shift, log_s = self._shift_and_log_scale(y_a, context, y)
        return self._join(y_a, (y_b - shift) * (-log_s).exp()), -at_least_fp32(per_example(log_s))


class ChannelCoupling(AffineCoupling):
    """A coupling that splits the channels (dim 1, features for vectors) in halves: parity 0 transforms
    the second half given the first, parity 1 the first given the second. `net` maps (N, C/2, ...)
    (plus context channels) to (N, C, ...): the shift, then the raw scale, of the transformed half."""

    def __init__(self, channels: int, parity: int, net: nn.Module, scale: Literal["tanh", "sigmoid"] = "tanh"):
        if channels % 2:
            raise ValueError(f"a channel coupling needs an even number of channels, got {channels}")
        super().__init__(net, channels // 2, scale)
        self.parity = parity

    def _split(self, x):
        first, second = x.chunk(2, dim=1)
        return (first, second) if self.parity == 0 else (second, first)

    def _join(self, x_a, y_b):
        return torch.cat([x_a, y_b] if self.parity == 0 else [y_b, x_a], 1)


class CheckerboardCoupling(AffineCoupling):
    """A coupling that splits the pixels of a (C, H, W) image like a checkerboard (`checkerboard_mask`):
    the net reads the image with the transformed pixels zeroed, x * mask, and maps (N, C, H, W) (plus
    context channels) to (N, 2C, H, W), the shift and raw scale of every pixel, of which only the
    transformed ones are used: y = x * mask + (1 - mask) * (x * exp(log_s) + t), RealNVP's masked form."""

    def __init__(self, shape: tuple[int, int, int], parity: int, net: nn.Module,
                 scale: Literal["tanh", "sigmoid"] = "tanh"):
        super().__init__(net, shape[0], scale)
        self.register_buffer("mask", checkerboard_mask(shape, parity))

    def _split(self, x):
        return x * self.mask.to(x.dtype), x

    def _join(self, x_a, y_b):
        return y_b

    def _shift_and_log_scale(self, x_a, context, like):
        shift, log_s = super()._shift_and_log_scale(x_a, context, like)
        transformed = 1 - self.mask.to(like.dtype)
        return shift * transformed, log_s * transformed


class ContextAffine(AffineCoupling):
    """y = x * exp(log_s) + t elementwise, with (t, raw scale) = net(context) alone: a coupling whose
    conditioning half is empty (the first layer of the variational dequantizer)."""

    def _split(self, x):
        return None, x

    def _join(self, x_a, y_b):
        return y_b


class MultiScale(Transform):
    """The multi-scale architecture of RealNVP and Glow: run `levels[0]`, factor out half of its
    output channels as latents, run `levels[1]` on the other half, and so on; the last level keeps
    all of its channels. The output is one flat vector of the same size as the input.

    `level_shapes[k]` is the (C, H, W) output shape of `levels[k]` (needed to invert flat latents).
    """

    def __init__(self, levels: list[Transform], level_shapes: list[tuple[int, int, int]]):
        super().__init__()
        if len(levels) != len(level_shapes):
            raise ValueError("need one output shape per level")
        self.levels = nn.ModuleList(levels)
        self.level_shapes = [tuple(s) for s in level_shapes]

    def forward(self, x):
        latents, total = [], x.new_zeros(len(x), dtype=torch.float32)
        for k, level in enumerate(self.levels):
            x, log_det = level(x)
            total = total + log_det
            if k < len(self.levels) - 1:
                half = x.shape[1] // 2
                latents.append(x[:, :half].flatten(1))
                x = x[:, half:]
        latents.append(x.flatten(1))
        return torch.cat(latents, 1), total

    def inverse(self, y):
        pieces, start = [], 0
        for k, (c, h, w) in enumerate(self.level_shapes):
            channels = c // 2 if k < len(self.levels) - 1 else c
            size = channels * h * w
            pieces.append(y[:, start:start + size].view(len(y), channels, h, w))
            start += size
        total = y.new_zeros(len(y), dtype=torch.float32)
        x = pieces[-1]
        for k in range(len(self.levels) - 1, -1, -1):
            if k < len(self.levels) - 1:
                x = torch.cat([pieces[k], x], 1)
            x, log_det = self.levels[k].inverse(x)
            total = total + log_det
        return x, total


class CouplingResidualBlock(nn.Module):
    """x + 1x1(relu(3x3(relu(x)))): a block of the coupling networks (`coupling_net`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.ReLU(), nn.Conv2d(channels, channels, 1))

    def forward(self, x):
        return x + self.body(x)


def coupling_net(in_channels: int, hidden_channels: int, out_channels: int, num_blocks: int) -> nn.Sequential:
    """3x3 conv in, `num_blocks` residual blocks (3x3 then 1x1), 3x3 conv out. The output layer starts
    at zero, so every coupling starts as the identity and a deep flow starts well conditioned."""
    out = nn.Conv2d(hidden_channels, out_channels, 3, padding=1)
    nn.init.zeros_(out.weight)
    nn.init.zeros_(out.bias)
    return nn.Sequential(nn.Conv2d(in_channels, hidden_channels, 3, padding=1),
                         *[CouplingResidualBlock(hidden_channels) for _ in range(num_blocks)], nn.ReLU(), out)
