"""Glow (Kingma & Dhariwal 2018): steps of actnorm, invertible 1x1 convolution and affine coupling
in a multi-scale architecture, trained on dequantized binary images (see models/flows.py)."""
from __future__ import annotations

from typing import Literal

import torch

from models.flows import (ActNorm, AffineCoupling, Compose, DequantizedFlow, InvertibleConv1x1, MultiScale,
                          Squeeze, channel_mask, coupling_net, require_positive)


class Glow(DequantizedFlow):
    """Each of `levels` levels: a squeeze (C, H, W) -> (4C, H/2, W/2), then `steps` flow steps
    [actnorm (data-dependent init), LU-parameterised 1x1 convolution, affine coupling of the second
    half of the channels given the first with scale sigmoid(raw + 2)]; after every level but the
    last, half of the channels leave as latents."""

    def __init__(self, image_shape=(1, 28, 28), hidden_channels: int = 128, num_blocks: int = 1,
                 steps: int = 8, levels: int = 2,
                 dequantization: Literal["uniform", "variational"] = "uniform", dequantizer_hidden: int = 32,
                 dequantizer_couplings: int = 2, logit_alpha: float = 1e-3, eval_samples: int = 1,
                 importance_weighted: bool = False):
        super().__init__(image_shape, dequantization, dequantizer_hidden, dequantizer_couplings,
                         logit_alpha, eval_samples, importance_weighted)
        require_positive(hidden_channels=hidden_channels, steps=steps, levels=levels)
        if num_blocks < 0:
            raise ValueError(f"num_blocks must be >= 0, got {num_blocks}")
        c, h, w = self.image_shape
        if h % 2 ** levels or w % 2 ** levels:
            raise ValueError(f"levels: {levels} squeezes need height and width divisible by {2 ** levels}, "
                             f"got {h}x{w}")
        generator = torch.Generator().manual_seed(0)  # the 1x1 convolutions' random rotations

        def flow_step(shape):
            channels = shape[0]
            return [ActNorm(channels), InvertibleConv1x1(channels, generator),
                    AffineCoupling(channel_mask(shape, 0),
                                   coupling_net(2 * channels, hidden_channels, 2 * channels, num_blocks),
                                   scale="sigmoid")]

        stages, shapes = [], []
        shape = self.image_shape
        for level in range(levels):
            c, h, w = shape
            shape = (4 * c, h // 2, w // 2)
            stages.append(Compose(Squeeze(), *[t for _ in range(steps) for t in flow_step(shape)]))
            shapes.append(shape)
            if level < levels - 1:
                shape = (shape[0] // 2, *shape[1:])
        self.flow = MultiScale(stages, shapes)
