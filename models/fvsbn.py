"""Fully visible sigmoid belief network: one logistic regression per pixel on the pixels before it."""
from __future__ import annotations

import torch

from models.base import AutoregressiveModel, flat_views
from models.nn.masked_linear import MaskedLinear
from models.nn.pixel_distributions import Bernoulli


class FVSBN(AutoregressiveModel):
    """logit p(x_i = 1 | x_<i) = b_i + sum_{j<i} W_ij x_j, in raster order (binary pixels only: a
    logistic regression per pixel is the model)."""


    def __init__(self, image_shape=(1, 28, 28)):
        super().__init__(image_shape, Bernoulli())
        d = self.num_pixels
        self.linear = MaskedLinear(d, d)
        self.linear.set_mask(torch.tril(torch.ones(d, d), diagonal=-1))
        torch.nn.init.zeros_(self.linear.weight)

    def pixel_params(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)).view_as(x).unsqueeze(1)

    def fill(self, x: torch.Tensor, observed: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One row of W per pixel: O(D) per pixel instead of a full pass."""
        x = x.clone()
        flat_x, flat_obs, flat_noise = flat_views(x, observed, noise)
        weight = self.linear.masked_weight()
        for i in self.progress(range(self.num_pixels)):
            logit = flat_x @ weight[i] + self.linear.bias[i]
            flat_x[:, i] = self.draw(logit[:, None], flat_obs[:, i], flat_x[:, i], flat_noise[:, i])
        return x
