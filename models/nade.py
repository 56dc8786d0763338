"""NADE (Larochelle & Murray 2011): one hidden layer whose weights are shared across the conditionals."""
from __future__ import annotations

import torch
from torch import nn

from models.base import AutoregressiveModel, flat_views, fp32, require_positive
from models.fast import FastPaths
from models.fast.nade_blockwise import nade_logits
from models.nn.pixel_distributions import Bernoulli


class NADE(FastPaths, AutoregressiveModel):
    """h_i = sigmoid(c + sum_{j<i} x_j W_j),  logit p(x_i = 1 | x_<i) = b_i + V_i . h_i  (raster order).

    W and V are (D, H): row j holds pixel j's input and output weights. Binary pixels only: NADE is
    defined for them (its real-valued relative, RNADE, is another model).

    fast (params.yaml's train.fast_paths): the logits block by block with their own backward pass
    (models/fast/nade_blockwise.py), so that the (batch, pixels, hidden) pre-activations never exist at
    once; fast=False: `plain_logits`, the definition pixel by pixel through autograd."""

    def __init__(self, image_shape=(1, 28, 28), hidden: int = 500, fast: bool = True):
        super().__init__(image_shape, Bernoulli())
        require_positive(hidden=hidden)
        self.fast = fast
        d = self.num_pixels
        self.W = nn.Parameter(torch.randn(d, hidden) * 0.01)
        self.c = nn.Parameter(torch.zeros(hidden))
        self.V = nn.Parameter(torch.randn(d, hidden) * 0.01)
        self.b = nn.Parameter(torch.zeros(d))

    @property
    def fast_paths(self) -> list[str]:
        return ["blockwise logits"] if self.fast else []

    def pixel_params(self, x: torch.Tensor) -> torch.Tensor:
        # fp32 even under autocast: each pre-activation is a sum over up to 784 pixels.
        with fp32(x.device.type):
            flat = x.flatten(1).to(self.W.dtype)
            logits = nade_logits(flat, self.W, self.c, self.V, self.b) if self.fast else self.plain_logits(flat)
        return logits.view(x.shape).unsqueeze(1)

    def plain_logits(self, flat_x: torch.Tensor) -> torch.Tensor:
        """The definition, one pixel at a time: (B, D) pixels -> (B, D) logits; the hidden
        pre-activation a = c + sum_{j<i} x_j W_j grows by one row of W per pixel."""
        a = self.c.expand(len(flat_x), -1)
        logits = []
        for i in range(self.num_pixels):
            logits.append(self.b[i] + torch.sigmoid(a) @ self.V[i])
            a = a + flat_x[:, i:i + 1] * self.W[i]
        return torch.stack(logits, 1)

    def training_flops_per_image(self) -> int:
        """The products of the plain recurrence, fast path or not (the counter cannot see inside the
        blockwise autograd function): per pixel the output V_i . h_i (2H forward; 4H backward, for h
        and V) and, for all but the last pixel, the update a += x_i W_i (2H forward; 2H backward, for W)."""
        d, h = self.W.shape
        return 6 * h * d + 4 * h * (d - 1)

    def fill(self, x: torch.Tensor, observed: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """O(D * H) per image: the hidden pre-activation grows by one row of W per pixel."""
        x = x.clone()
        flat_x, flat_obs, flat_noise = flat_views(x, observed, noise)
        a = self.c.expand(len(x), -1).clone()
        for i in self.progress(range(self.num_pixels)):
            logit = self.b[i] + torch.sigmoid(a) @ self.V[i]
            flat_x[:, i] = self.draw(logit[:, None], flat_obs[:, i], flat_x[:, i], flat_noise[:, i])
            a += flat_x[:, i:i + 1] * self.W[i]
        return x
