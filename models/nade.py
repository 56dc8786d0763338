"""NADE (Larochelle & Murray 2011): one hidden layer whose weights are shared across the conditionals."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.base import AutoregressiveModel, Reference, draw_or_keep, require_positive


class NADE(AutoregressiveModel):
    """h_i = sigmoid(c + sum_{j<i} x_j W_j),  logit p(x_i = 1 | x_<i) = b_i + V_i . h_i  (raster order).

    W and V are (D, H): row j holds pixel j's input and output weights."""

    reference = Reference(88.86, "Larochelle & Murray 2011 (NADE)")

    def __init__(self, image_shape=(1, 28, 28), hidden: int = 500):
        super().__init__(image_shape)
        require_positive(hidden=hidden)
        d = self.num_pixels
        self.W = nn.Parameter(torch.randn(d, hidden) * 0.01)
        self.c = nn.Parameter(torch.zeros(hidden))
        self.V = nn.Parameter(torch.randn(d, hidden) * 0.01)
        self.b = nn.Parameter(torch.zeros(d))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        contrib = x.flatten(1).unsqueeze(2) * self.W             # (B, D, H): x_j W_j
        before = F.pad(contrib.cumsum(1)[:, :-1], (0, 0, 1, 0))  # exclusive sum over j < i
        h = torch.sigmoid(self.c + before)                       # (B, D, H); H last is ~1.7x faster on CPU
        return (self.b + (h * self.V).sum(2)).view_as(x)

    def fill(self, x: torch.Tensor, observed: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """O(D * H) per image: the hidden pre-activation grows by one row of W per pixel."""
        x = x.clone()
        flat_x, flat_obs, flat_noise = x.view(len(x), -1), observed.view(len(x), -1), noise.view(len(x), -1)
        a = self.c.expand(len(x), -1).clone()
        for i in range(self.num_pixels):
            p = torch.sigmoid(self.b[i] + torch.sigmoid(a) @ self.V[i])
            flat_x[:, i] = draw_or_keep(flat_obs[:, i], flat_x[:, i], p, flat_noise[:, i])
            a += flat_x[:, i:i + 1] * self.W[i]
        return x
