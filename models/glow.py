"""Glow (Kingma & Dhariwal 2018): steps of actnorm, invertible 1x1 convolution and affine coupling
in a multi-scale architecture, trained on dequantized images, binarized or grey (see models/nn/dequantized.py).
The paper's preprocessing, v / pixel_levels - 0.5 with no logit, is `preprocessing: scale`."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.base import at_least_fp32, fp32, require_positive
from models.nn.dequantized import Dequantization, DequantizedFlow
from models.nn.transforms import (
    ActNorm,
    ChannelCoupling,
    Compose,
    MultiScale,
    Squeeze,
    Transform,
    coupling_net,
)


class InvertibleConv1x1(Transform):
    """A learned channel mixing y = W x at every pixel (Glow), with W = P L (U + diag(sign * exp(log_s)))
    in LU form so that log|det W| = sum(log_s) costs nothing and W stays invertible. W starts as a
    random rotation drawn from torch's global generator, which the training seeds with the run's seed
    before it builds a model (pipeline/fit_model.py)."""

    def __init__(self, channels: int):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels))
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



class Glow(DequantizedFlow):
    """Each of `levels` levels: a squeeze (C, H, W) -> (4C, H/2, W/2), then `steps` flow steps
    [actnorm (data-dependent init), LU-parameterised 1x1 convolution, affine coupling of the second
    half of the channels given the first with scale sigmoid(raw + 2)]; after every level but the
    last, half of the channels leave as latents. Each coupling's network (`coupling_net`, `num_blocks`
    residual blocks of `hidden_channels`) reads the C/2 channels of the first half and gives the shift
    and scale of the second, C channels. The dequantization keywords: see `Dequantization`."""

    def __init__(self, image_shape=(1, 28, 28), *, hidden_channels: int = 128, num_blocks: int = 1,
                 steps: int = 8, levels: int = 2,
                 dequantization: Literal["uniform", "variational"] = "uniform", dequantizer_hidden: int = 32,
                 dequantizer_couplings: int = 2, logit_alpha: float = 1e-3, eval_samples: int = 1,
                 importance_weighted: bool = False, pixel_levels: int = 2,
                 preprocessing: Literal["logit", "scale"] = "logit"):
        super().__init__(image_shape, dequantization=Dequantization(
            dequantization=dequantization, dequantizer_hidden=dequantizer_hidden,
            dequantizer_couplings=dequantizer_couplings, logit_alpha=logit_alpha, eval_samples=eval_samples,
            importance_weighted=importance_weighted, pixel_levels=pixel_levels, preprocessing=preprocessing))
        require_positive(hidden_channels=hidden_channels, steps=steps, levels=levels)
        if num_blocks < 0:
            raise ValueError(f"num_blocks must be >= 0, got {num_blocks}")
        c, h, w = self.image_shape
        if h % 2 ** levels or w % 2 ** levels:
            raise ValueError(f"levels: {levels} squeezes need height and width divisible by {2 ** levels}, "
                             f"got {h}x{w}")

        def flow_step(channels):
            net = coupling_net(channels // 2, hidden_channels, channels, num_blocks)
            return [ActNorm(channels), InvertibleConv1x1(channels),
                    ChannelCoupling(channels, 0, net, scale="sigmoid")]

        stages, shapes = [], []
        shape = self.image_shape
        for level in range(levels):
            c, h, w = shape
            shape = (4 * c, h // 2, w // 2)
            stages.append(Compose(Squeeze(), *[t for _ in range(steps) for t in flow_step(shape[0])]))
            shapes.append(shape)
            if level < levels - 1:
                shape = (shape[0] // 2, *shape[1:])
        self.flow = MultiScale(stages, shapes)
