"""Independent Bernoulli pixels: the baseline every other family must beat."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.base import GenerativeModel, uniform_noise


class IndependentBernoulli(GenerativeModel):
    """p(x) = prod_i Bernoulli(x_i; sigmoid(theta_i)): one free logit per pixel."""

    def __init__(self, image_shape=(1, 28, 28)):
        super().__init__(image_shape)
        self.logits = nn.Parameter(torch.zeros(image_shape))

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits.expand_as(x)
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)

    def training_flops_per_image(self) -> int:
        """Elementwise work only, which the FLOP counter does not see: one multiply-add per pixel
        forward and two backward, so that training is not free under a compute budget."""
        return 6 * self.num_pixels

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = uniform_noise((n, *self.image_shape), generator, self.device)
        return (noise < torch.sigmoid(self.logits)).float()
