"""Flows on discrete images: dequantization and the dequantized-flow model that RealNVP, Glow and MAF extend.

Flows model continuous densities, so `DequantizedFlow` fits them to images whose pixels take the
levels 0 .. L-1 (L = `pixel_levels`: 2 binarized, 256 grey) lifted into [0, L)^D by dequantization
noise (x + u, u in [0, 1)^D: each level owns a unit-wide bin), then preprocessed (into logit space,
or scaled to [-0.5, 0.5)); its `nll` is the bound -log P(x) <= E_q[log q(u|x) - log p(x + u)], in
nats on the discrete levels, so nll / (D ln 2) is bits/dim as papers report it for 8-bit images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.base import (
    GenerativeModel,
    at_least_fp32,
    fp32,
    normal_noise,
    require_pixel_levels,
    require_positive,
    uniform_noise,
)
from models.nn.transforms import (
    CheckerboardCoupling,
    ContextAffine,
    Transform,
    coupling_net,
    per_example,
    standard_normal_log_prob,
)


class LogitTransform(Transform):
    """Dequantized pixels v in [0, num_bins) -> logit space: w = logit(alpha + (1 - 2 alpha) v / num_bins).
    alpha keeps w finite at the edges; the log-det counts both the scaling and the logit.

    The papers' values: RealNVP (Dinh et al. 2017, section 4.1) alpha = 0.05 (the text writes
    alpha + (1 - alpha) x, its released code this symmetric form); MAF (Papamakarios et al. 2017)
    alpha = 1e-6 on MNIST (its released code, datasets/mnist.py)."""

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


class ScaleTransform(Transform):
    """Dequantized pixels v in [0, num_bins) -> [-0.5, 0.5): w = v / num_bins - 0.5, no logit (Glow's
    preprocessing, Kingma & Dhariwal 2018, in its released code). The log-det is the constant
    -D log(num_bins)."""

    def __init__(self, num_bins: int):
        super().__init__()
        self.num_bins = num_bins

    def _log_det(self, v: torch.Tensor) -> torch.Tensor:
        return v.new_full((len(v),), -math.log(self.num_bins) * v[0].numel())

    def forward(self, v):
        v = at_least_fp32(v)
        return v / self.num_bins - 0.5, self._log_det(v)

    def inverse(self, w):
        w = at_least_fp32(w)
        return (w + 0.5) * self.num_bins, -self._log_det(w)


Preprocessing = Literal["logit", "scale"]


def pixel_preprocessing(preprocessing: Preprocessing, pixel_levels: int, logit_alpha: float) -> Transform:
    """The map from dequantized pixels in [0, pixel_levels) to the flow's input ('scale' ignores logit_alpha)."""
    if preprocessing == "logit":
        return LogitTransform(logit_alpha, num_bins=pixel_levels)
    if preprocessing == "scale":
        return ScaleTransform(pixel_levels)
    raise ValueError(f"preprocessing must be 'logit' or 'scale', got {preprocessing!r}")


class UniformDequantizer(nn.Module):
    """v = x + u with u ~ U[0, 1)^D: q(u|x) = 1 on the pixel's unit bin [x, x + 1), so log q = 0."""

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        u = uniform_noise(x.shape, generator, x.device)
        return x + u, torch.zeros(len(x), device=x.device)


class VariationalDequantizer(nn.Module):
    """A learned noise distribution q(u|x) (Flow++): eps ~ N(0, I), then an elementwise affine map and
    `couplings` checkerboard affine couplings, all conditioned on features of x, then u = sigmoid(h),
    so u lies in (0, 1)^D and log q(u|x) = log N(eps) - log|det du/deps|. The features see x scaled to
    [-1, 1] (levels 0 .. pixel_levels - 1)."""

    def __init__(self, image_shape: tuple[int, int, int], hidden_channels: int, couplings: int,
                 pixel_levels: int = 2):
        super().__init__()
        self.pixel_levels = pixel_levels
        c = image_shape[0]
        self.features = nn.Sequential(nn.Conv2d(c, hidden_channels, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1), nn.ReLU())
        elementwise = ContextAffine(coupling_net(hidden_channels, hidden_channels, 2 * c, 0), c)
        checkerboards = [CheckerboardCoupling(image_shape, k % 2, coupling_net(c + hidden_channels, hidden_channels,
                                                                                2 * c, 0)) for k in range(couplings)]
        self.couplings = nn.ModuleList([elementwise, *checkerboards])

    def transform(self, eps: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """eps -> u given x, and log|det du/deps|."""
        context = self.features(x * (2 / (self.pixel_levels - 1)) - 1)
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


@dataclass(frozen=True, kw_only=True)
class Dequantization:
    """How a flow meets discrete images: the settings that RealNVP, Glow and MAF share, under their
    params.yaml names (each flow's constructor takes them as keywords with these defaults).

    dequantization: the noise u, "uniform" (u ~ U[0, 1)^D) or "variational" (`VariationalDequantizer`,
    with `dequantizer_hidden` channels and `dequantizer_couplings` couplings); preprocessing: "logit"
    (with `logit_alpha`) or "scale" (Glow's v / L - 0.5); eval_samples: the draws of u per image at
    evaluation, combined into the importance-weighted bound when `importance_weighted`; pixel_levels:
    L, set by the data."""

    dequantization: Literal["uniform", "variational"] = "uniform"
    dequantizer_hidden: int = 32
    dequantizer_couplings: int = 2
    logit_alpha: float = 1e-3
    eval_samples: int = 1
    importance_weighted: bool = False
    pixel_levels: int = 2
    preprocessing: Preprocessing = "logit"

    def __post_init__(self):
        if self.dequantization not in ("uniform", "variational"):
            raise ValueError(f"dequantization must be 'uniform' or 'variational', got {self.dequantization!r}")
        require_positive(dequantizer_hidden=self.dequantizer_hidden, eval_samples=self.eval_samples)
        require_pixel_levels(self.pixel_levels)
        if self.dequantizer_couplings < 0:
            raise ValueError(f"dequantizer_couplings must be >= 0, got {self.dequantizer_couplings}")

    def dequantizer(self, image_shape: tuple[int, int, int]) -> nn.Module:
        if self.dequantization == "uniform":
            return UniformDequantizer()
        return VariationalDequantizer(image_shape, self.dequantizer_hidden, self.dequantizer_couplings,
                                      self.pixel_levels)


class DequantizedFlow(GenerativeModel):
    """A flow over dequantized images with `pixel_levels` levels L: v = x + u in [0, L)^D -> `preprocess`
    (logit space, or v / L - 0.5 with `preprocessing: scale`) -> `self.flow` -> z, with a standard-normal
    base. `nll(x)` is the dequantization bound in nats, E_q[log q(u|x) - log p(x + u)] >= -log P(x),
    every Jacobian counted (the preprocessing's too, its 1/L included), estimated with `eval_samples`
    draws at evaluation (one draw while training); with `importance_weighted`, the draws are combined
    into the tighter importance-weighted bound -log mean_k p(x + u_k) / q(u_k|x) (Hoogeboom et al. 2020).
    Subclasses build `self.flow`, an image-to-flat-vector Transform.
    """

    estimator = "dequantized"

    def __init__(self, image_shape, *, dequantization: Dequantization):
        super().__init__(image_shape)
        self.pixel_levels = dequantization.pixel_levels
        self.dequantizer = dequantization.dequantizer(self.image_shape)
        self.preprocess = pixel_preprocessing(dequantization.preprocessing, self.pixel_levels,
                                              dequantization.logit_alpha)
        self.eval_samples, self.importance_weighted = dequantization.eval_samples, dequantization.importance_weighted
        self.flow: Transform | None = None

    def log_density(self, v: torch.Tensor) -> torch.Tensor:
        """log p(v) for dequantized images v in [0, pixel_levels)^D (a density with respect to v, in fp32)."""
        w, preprocess_log_det = self.preprocess(v)
        z, flow_log_det = self.flow(w)
        return standard_normal_log_prob(z) + preprocess_log_det + flow_log_det

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
        """Invert the flow and quantize: each pixel is the level whose bin its continuous value falls into."""
        w, _ = self.flow.inverse(z)
        v, _ = self.preprocess.inverse(w)
        return self.quantize(v).float().view(len(z), *self.image_shape)

    def quantize(self, v: torch.Tensor) -> torch.Tensor:
        """The level k whose bin [k, k + 1) holds v; values beyond the edges go to 0 or pixel_levels - 1,
        and NaN (a latent too far out for the inverse flow in floating point) to 0, as `v >= 1` did."""
        return torch.floor(torch.nan_to_num(v, nan=0.0)).clamp(0, self.pixel_levels - 1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        z = normal_noise((n, self.num_pixels), generator, self.device) * temperature
        return self.decode(z)
