"""Normalizing-flow building blocks shared by RealNVP, Glow and MAF, and the dequantized model.

Every transform maps data towards noise: `forward(x) -> (y, log_det)` and `inverse(y) -> (x, log_det)`,
where log_det[b] = log|det dy/dx| (forward) or log|det dx/dy| (inverse) for image b, so the two
log-dets of a round trip cancel and a flow's log-density is a sum that tests can check term by term:
log p(x) = log N(f(x); 0, I) + sum_k log_det_k.

Flows model continuous densities, so `DequantizedFlow` fits them to binary images lifted into
[0, 2)^D by dequantization noise (x + u, u in [0, 1)^D: each pixel value owns a unit-wide bin) and
then into logit space; its `nll` is the bound -log P(x) <= E_q[log q(u|x) - log p(x + u)].

Precision: under bf16 autocast only the networks inside the transforms run in bf16; everything
that enters a log-det or a log-density (affine maps, logits, 1x1 convolutions) is computed in fp32.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.base import GenerativeModel, uniform_noise
from models.layers import MaskedLinear
from models.made import made_degrees, made_masks

LOG_2PI = math.log(2 * math.pi)


def fp32(device_type: str):
    """A context in which autocast is off: ops run in the dtype of their (fp32) inputs."""
    return torch.autocast(device_type, enabled=False)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per example, summed over every non-batch dimension."""
    z = at_least_fp32(z).flatten(1)
    return -0.5 * (z.pow(2) + LOG_2PI).sum(1)


def per_example(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(1).sum(1)


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """fp64 stays fp64 (for tight tests); anything else (bf16 under autocast, fp16) becomes fp32."""
    return x if x.dtype == torch.float64 else x.float()


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


class Flatten(Transform):
    """(N, *shape) -> (N, prod(shape)), for flows on vectors such as MAF."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.flatten(1), x.new_zeros(len(x), dtype=torch.float32)

    def inverse(self, y):
        return y.view(len(y), *self.shape), y.new_zeros(len(y), dtype=torch.float32)


class Permute(Transform):
    """Reorders the features of (N, D) vectors; reverse=True is the usual choice between MAF layers."""

    def __init__(self, permutation: torch.Tensor):
        super().__init__()
        self.register_buffer("permutation", permutation.clone())
        self.register_buffer("inverse_permutation", torch.argsort(permutation))

    @classmethod
    def reverse(cls, dim: int) -> Permute:
        return cls(torch.arange(dim - 1, -1, -1))

    def forward(self, x):
        return x[:, self.permutation], x.new_zeros(len(x), dtype=torch.float32)

    def inverse(self, y):
        return y[:, self.inverse_permutation], y.new_zeros(len(y), dtype=torch.float32)


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


class InvertibleConv1x1(Transform):
    """A learned channel mixing y = W x at every pixel (Glow), with W = P L (U + diag(sign * exp(log_s)))
    in LU form so that log|det W| = sum(log_s) costs nothing and W stays invertible."""

    def __init__(self, channels: int, generator: torch.Generator | None = None):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator))
        p, lower, upper = torch.linalg.lu(q)
        diagonal = torch.diagonal(upper)
        self.register_buffer("p", p)
        self.register_buffer("sign_s", torch.sign(diagonal))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(lower * self.lower_mask)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(diagonal.abs()))

    def weight(self) -> torch.Tensor:
        eye = torch.eye(len(self.log_s), device=self.log_s.device, dtype=self.log_s.dtype)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * self.log_s.exp())
        return self.p @ lower @ upper

    def _log_det(self, x: torch.Tensor) -> torch.Tensor:
        return (at_least_fp32(self.log_s).sum() * x[0, 0].numel()).expand(len(x))

    def forward(self, x):
        x = at_least_fp32(x)
        with fp32(x.device.type):
            y = F.conv2d(x, self.weight().to(x.dtype)[:, :, None, None])
        return y, self._log_det(x)

    def inverse(self, y):
        y = at_least_fp32(y)
        with fp32(y.device.type):
            w_inv = torch.linalg.inv(self.weight().double()).to(y.dtype)
            x = F.conv2d(y, w_inv[:, :, None, None])
        return x, -self._log_det(y)


def checkerboard_mask(shape: tuple[int, int, int], parity: int) -> torch.Tensor:
    """1 where (row + column + parity) is even, for every channel of a (C, H, W) image."""
    c, h, w = shape
    rows, cols = torch.arange(h)[:, None], torch.arange(w)[None, :]
    return ((rows + cols + parity) % 2 == 0).float().expand(c, h, w).clone()


def channel_mask(shape: tuple[int, int, int], parity: int) -> torch.Tensor:
    """1 on the first half of the channels (parity 0) or on the second half (parity 1)."""
    c, h, w = shape
    first = torch.arange(c) < c // 2
    keep = first if parity == 0 else ~first
    return keep.float()[:, None, None].expand(c, h, w).clone()


class AffineCoupling(Transform):
    """y = x on the mask (where the mask is 1); elsewhere y = x * exp(log_s) + t, with log_s and t
    computed by `net` from the masked part, so the Jacobian is triangular: log_det = sum(log_s).

    `net` maps (N, C_in, ...) to (N, 2 * C, ...) (t, then the raw scale). For images its input is
    [x * mask, mask] (so it can tell a masked zero from a data zero), plus `context` channels when
    given (a conditional coupling). scale='tanh': log_s = scale * tanh(raw) with a learned per-channel
    bound (RealNVP); scale='sigmoid': exp(log_s) = sigmoid(raw + 2) (Glow): both keep log_s finite.
    """

    def __init__(self, mask: torch.Tensor, net: nn.Module, scale: Literal["tanh", "sigmoid"] = "tanh"):
        super().__init__()
        if scale not in ("tanh", "sigmoid"):
            raise ValueError(f"scale must be 'tanh' or 'sigmoid', got {scale!r}")
        self.register_buffer("mask", mask.clone())
        self.net = net
        self.scale = scale
        self.tanh_bound = nn.Parameter(torch.ones(mask.shape[0])) if scale == "tanh" else None

    def _shift_and_log_scale(self, x: torch.Tensor, context: torch.Tensor | None):
        mask = self.mask.to(x.dtype)
        inputs = [x * mask]
        if x.dim() > 2:
            inputs.append(mask.expand_as(x))
        if context is not None:
            inputs.append(context.to(x.dtype))
        out = self.net(torch.cat(inputs, 1) if len(inputs) > 1 else inputs[0]).to(x.dtype)
        shift, raw = out.chunk(2, dim=1)
        if self.scale == "tanh":
            bound = self.tanh_bound.to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))
            log_s = bound * torch.tanh(raw)
        else:
            log_s = F.logsigmoid(raw + 2.0)
        free = 1 - mask
        return shift * free, log_s * free

    def forward(self, x, context=None):
        x = at_least_fp32(x)
        shift, log_s = self._shift_and_log_scale(x, context)
        return x * log_s.exp() + shift, at_least_fp32(per_example(log_s))

    def inverse(self, y, context=None):
        y = at_least_fp32(y)
        x_fixed = y * self.mask.to(y.dtype)
        shift, log_s = self._shift_and_log_scale(x_fixed, context)
        return (y - shift) * (-log_s).exp(), -at_least_fp32(per_example(log_s))


class MaskedAffineAutoregressive(Transform):
    """One MAF layer on (N, D) vectors: y_i = x_i * exp(log_s_i) + t_i with (t_i, log_s_i) computed
    from x_<i by a MADE (the masks of models/made.py, in the natural order 0..D-1), so the Jacobian is
    triangular. Density evaluation is one pass; inversion (sampling) is D sequential steps.
    log_s = bound * tanh(raw / bound) keeps every scale within exp(+-bound)."""

    def __init__(self, dim: int, hidden_sizes: list[int], generator: torch.Generator | None = None,
                 scale_bound: float = 3.0):
        super().__init__()
        degrees = made_degrees(torch.arange(dim), list(hidden_sizes), generator)
        masks = made_masks(degrees)
        masks[-1] = torch.cat([masks[-1], masks[-1]])  # shift and raw scale share output i's mask
        sizes = [dim, *hidden_sizes, 2 * dim]
        self.layers = nn.ModuleList(MaskedLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for layer, mask in zip(self.layers, masks):
            layer.set_mask(mask)
        nn.init.zeros_(self.layers[-1].weight)  # the identity at initialisation
        nn.init.zeros_(self.layers[-1].bias)
        self.dim, self.scale_bound = dim, scale_bound

    def _bounded(self, raw: torch.Tensor) -> torch.Tensor:
        return self.scale_bound * torch.tanh(raw / self.scale_bound)

    def _shift_and_log_scale(self, x: torch.Tensor):
        h = x
        for layer in self.layers[:-1]:
            h = torch.relu(layer(h))
        shift, raw = self.layers[-1](h).to(x.dtype).chunk(2, dim=1)
        return shift, self._bounded(raw)

    def forward(self, x):
        x = at_least_fp32(x)
        shift, log_s = self._shift_and_log_scale(x)
        return x * log_s.exp() + shift, at_least_fp32(log_s.sum(1))

    def inverse(self, y):
        """Solves for x one feature at a time. The first hidden layer's pre-activations are updated in
        place as each x_i is found (a rank-one update), and the last layer computes only the two
        outputs of feature i, so a one-hidden-layer MADE costs O(hidden) per step, not a full pass."""
        y = at_least_fp32(y)
        weights = [(layer.weight * layer.mask).to(y.dtype) for layer in self.layers]
        biases = [layer.bias.to(y.dtype) for layer in self.layers]
        first_columns = weights[0].T.contiguous()  # row i: how x_i enters the first hidden layer
        last_rows = torch.stack(weights[-1].chunk(2), 1)  # (D, 2, hidden): feature i's shift and raw scale
        last_bias = torch.stack(biases[-1].chunk(2), 1)
        first_pre = biases[0].expand(len(y), -1).clone()  # the first hidden layer's input while x = 0
        x, log_s_all = torch.zeros_like(y), torch.zeros_like(y)
        for i in range(self.dim):
            h = torch.relu(first_pre)
            for w, b in zip(weights[1:-1], biases[1:-1]):
                h = torch.relu(torch.addmm(b, h, w.T))
            shift, raw = torch.addmm(last_bias[i], h, last_rows[i].T).unbind(1)
            log_s = self._bounded(raw)
            x[:, i] = (y[:, i] - shift) * torch.exp(-log_s)
            log_s_all[:, i] = log_s
            first_pre.addcmul_(x[:, i:i + 1], first_columns[i])
        return x, -at_least_fp32(log_s_all.sum(1))


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


class LogitTransform(Transform):
    """Dequantized pixels v in [0, num_bins) -> logit space: w = logit(alpha + (1 - 2 alpha) v / num_bins).
    alpha keeps w finite at the edges; the log-det counts both the scaling and the logit."""

    def __init__(self, alpha: float = 1e-3, num_bins: int = 2):
        super().__init__()
        if not 0 < alpha < 0.5:
            raise ValueError(f"logit_alpha must be in (0, 0.5), got {alpha}")
        self.alpha, self.num_bins = alpha, num_bins

    def forward(self, v):
        with fp32(v.device.type):
            v = at_least_fp32(v)
            s = self.alpha + (1 - 2 * self.alpha) * v / self.num_bins
            w = torch.log(s) - torch.log1p(-s)
            log_det = math.log((1 - 2 * self.alpha) / self.num_bins) - torch.log(s) - torch.log1p(-s)
        return w, at_least_fp32(per_example(log_det))

    def inverse(self, w):
        with fp32(w.device.type):
            w = at_least_fp32(w)
            s = torch.sigmoid(w)
            v = (s - self.alpha) * self.num_bins / (1 - 2 * self.alpha)
            # log|ds/dw| = log s(1 - s) = -softplus(-w) - softplus(w)
            log_det = -F.softplus(-w) - F.softplus(w) - math.log((1 - 2 * self.alpha) / self.num_bins)
        return v, at_least_fp32(per_example(log_det))


class ResidualBlock(nn.Module):
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
                         *[ResidualBlock(hidden_channels) for _ in range(num_blocks)], nn.ReLU(), out)


def normal_noise(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Standard normal numbers drawn from `generator` (or the global RNG) on `device`."""
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


class UniformDequantizer(nn.Module):
    """v = x + u with u ~ U[0, 1)^D: q(u|x) = 1 on the pixel's unit bin, so log q = 0."""

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        u = uniform_noise(x.shape, generator, x.device)
        return x + u, torch.zeros(len(x), device=x.device)


class VariationalDequantizer(nn.Module):
    """A learned noise distribution q(u|x) (Flow++): eps ~ N(0, I), then an elementwise affine map and
    `couplings` checkerboard affine couplings, all conditioned on features of x, then u = sigmoid(h),
    so u lies in (0, 1)^D and log q(u|x) = log N(eps) - log|det du/deps|."""

    def __init__(self, image_shape: tuple[int, int, int], hidden_channels: int, couplings: int):
        super().__init__()
        c = image_shape[0]
        self.features = nn.Sequential(nn.Conv2d(c, hidden_channels, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1), nn.ReLU())
        # an all-zero mask makes a coupling an elementwise affine map whose shift and scale depend on x only
        masks = [torch.zeros(image_shape)] + [checkerboard_mask(image_shape, k % 2) for k in range(couplings)]
        self.couplings = nn.ModuleList(
            AffineCoupling(mask, coupling_net(2 * c + hidden_channels, hidden_channels, 2 * c, 0)) for mask in masks)

    def transform(self, eps: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """eps -> u given x, and log|det du/deps|."""
        context = self.features(2 * x - 1)
        h, total = eps, eps.new_zeros(len(eps))
        for coupling in self.couplings:
            h, log_det = coupling(h, context)
            total = total + log_det
        with fp32(h.device.type):
            u = torch.sigmoid(h)
            total = total + per_example(F.logsigmoid(h) + F.logsigmoid(-h))
        return u, total

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        eps = normal_noise(x.shape, generator, x.device).to(at_least_fp32(x).dtype)
        u, log_det = self.transform(eps, x)
        return x + u, standard_normal_log_prob(eps) - log_det


class DequantizedFlow(GenerativeModel):
    """A flow over dequantized binary images: v = x + u in [0, 2)^D -> logit space -> `self.flow` -> z,
    with a standard-normal base. `nll(x)` is the dequantization bound in nats,
    E_q[log q(u|x) - log p(x + u)] >= -log P(x), estimated with `eval_samples` draws at evaluation
    (one draw while training); with `importance_weighted`, the draws are combined into the tighter
    importance-weighted bound -log mean_k p(x + u_k) / q(u_k|x) (Hoogeboom et al. 2020).
    Subclasses build `self.flow`, an image-to-flat-vector Transform.
    """

    estimator = "dequantized"

    def __init__(self, image_shape, dequantization: str = "uniform", dequantizer_hidden: int = 32,
                 dequantizer_couplings: int = 2, logit_alpha: float = 1e-3, eval_samples: int = 1,
                 importance_weighted: bool = False):
        super().__init__(image_shape)
        if dequantization not in ("uniform", "variational"):
            raise ValueError(f"dequantization must be 'uniform' or 'variational', got {dequantization!r}")
        require_positive(dequantizer_hidden=dequantizer_hidden, eval_samples=eval_samples)
        if dequantizer_couplings < 0:
            raise ValueError(f"dequantizer_couplings must be >= 0, got {dequantizer_couplings}")
        if dequantization == "uniform":
            self.dequantizer = UniformDequantizer()
        else:
            self.dequantizer = VariationalDequantizer(self.image_shape, dequantizer_hidden, dequantizer_couplings)
        self.preprocess = LogitTransform(logit_alpha, num_bins=2)
        self.eval_samples, self.importance_weighted = eval_samples, importance_weighted
        self.flow: Transform | None = None

    def log_density(self, v: torch.Tensor) -> torch.Tensor:
        """log p(v) for dequantized images v in [0, 2)^D (a density with respect to v, in fp32)."""
        w, logit_log_det = self.preprocess(v)
        z, flow_log_det = self.flow(w)
        return standard_normal_log_prob(z) + logit_log_det + flow_log_det

    def dequantization_bound(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One-draw estimate of E_q[log q(u|x) - log p(x + u)] per image."""
        v, log_q = self.dequantizer(x, generator)
        return log_q - self.log_density(v)

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        draws = 1 if self.training else self.eval_samples
        bounds = torch.stack([self.dequantization_bound(x) for _ in range(draws)])
        if self.importance_weighted and draws > 1:
            # -log mean_k p(x + u_k) / q(u_k|x): also >= -log P(x) in expectation, and tighter
            return -(torch.logsumexp(-bounds, 0) - math.log(draws))
        return bounds.mean(0)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent of each image dequantized at its bins' centres (x + 0.5): deterministic."""
        w, _ = self.preprocess(x + 0.5)
        return self.flow(w)[0]

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Invert the flow and quantize: each pixel is the bin its continuous value falls into."""
        w, _ = self.flow.inverse(z)
        v, _ = self.preprocess.inverse(w)
        return (v >= 1).float().view(len(z), *self.image_shape)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        z = normal_noise((n, self.num_pixels), generator, self.device) * temperature
        return self.decode(z)


def require_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
