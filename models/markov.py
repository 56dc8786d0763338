"""A first-order Markov chain over the raster-scanned pixels: the simplest autoregressive model.

p(x) = p(x_1) prod_{i>1} p(x_i | x_{i-1}), with its own pair of Bernoulli parameters at every
position: 1 + 2 (D - 1) = 2D - 1 parameters. Maximum likelihood has a closed form (transition
frequencies), so by default it is fitted from counts in one pass; `fit: gradient` trains it with
the shared training loop instead, as a check on both.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from models.base import AutoregressiveModel, flat_views, mean_nll_over_batches
from models.nn.pixel_distributions import Bernoulli


def smoothed_logit(ones: torch.Tensor, total: torch.Tensor, smoothing: float) -> torch.Tensor:
    """logit of (ones + a) / (total + 2a): the frequency of ones with `smoothing` a added to each outcome."""
    return torch.log(ones + smoothing) - torch.log(total - ones + smoothing)


class MarkovChain(AutoregressiveModel):
    """logit p(x_1 = 1) = first;  logit p(x_i = 1 | x_{i-1}) = after_0[i] + x_{i-1} (after_1[i] - after_0[i]).

    fit: `counts` sets the parameters to the smoothed transition frequencies of the training
    images (additive smoothing `smoothing` per outcome, which keeps transitions never seen in
    training, such as a pixel after an always-black corner pixel, at a finite cost); `gradient`
    leaves them to the training loop. Binary pixels only: the counts are of the four transitions
    between two values.
    """

    def __init__(self, image_shape=(1, 28, 28), fit: Literal["counts", "gradient"] = "counts",
                 smoothing: float = 1.0):
        super().__init__(image_shape, Bernoulli())
        if fit not in ("counts", "gradient"):
            raise ValueError(f"fit must be 'counts' or 'gradient', got {fit!r}")
        if not smoothing > 0:
            raise ValueError(f"smoothing must be > 0, got {smoothing}")
        self.fit, self.smoothing = fit, smoothing
        d = self.num_pixels
        self.first = nn.Parameter(torch.zeros(1))
        self.after_0 = nn.Parameter(torch.zeros(d - 1))
        self.after_1 = nn.Parameter(torch.zeros(d - 1))

    @property
    def fits_without_gradients(self) -> bool:
        return self.fit == "counts"

    def pixel_params(self, x: torch.Tensor) -> torch.Tensor:
        previous = x.flatten(1)[:, :-1]
        rest = self.after_0 + previous * (self.after_1 - self.after_0)
        return torch.cat([self.first.expand(len(x), 1), rest], 1).view_as(x).unsqueeze(1)

    def training_flops_per_image(self) -> int:
        """Elementwise work only (a gradient step, or counting transitions), which the FLOP counter
        does not see: one multiply-add per pixel forward and two backward, as for independent pixels."""
        return 6 * self.num_pixels

    @torch.no_grad()
    def fit_epoch(self, images: torch.Tensor) -> float:
        """Maximum likelihood (smoothed) from the transition counts of `images`; returns their mean NLL."""
        flat = images.flatten(1).double()
        previous, current = flat[:, :-1], flat[:, 1:]
        ones_after_1 = (previous * current).sum(0)
        ones_after_0 = ((1 - previous) * current).sum(0)
        after_1_total = previous.sum(0)
        self.first.copy_(smoothed_logit(flat[:, 0].sum(), torch.tensor(len(flat), dtype=flat.dtype),
                                        self.smoothing).view(1))
        self.after_1.copy_(smoothed_logit(ones_after_1, after_1_total, self.smoothing))
        self.after_0.copy_(smoothed_logit(ones_after_0, len(flat) - after_1_total, self.smoothing))
        return mean_nll_over_batches(self.nll, images, 10_000, float64=True)

    def fill(self, x: torch.Tensor, observed: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Each pixel needs only the one before it: O(1) per pixel instead of a full pass."""
        x = x.clone()
        flat_x, flat_obs, flat_noise = flat_views(x, observed, noise)
        for i in range(self.num_pixels):
            if i == 0:
                logit = self.first.expand(len(x))
            else:
                logit = self.after_0[i - 1] + flat_x[:, i - 1] * (self.after_1[i - 1] - self.after_0[i - 1])
            flat_x[:, i] = self.draw(logit[:, None], flat_obs[:, i], flat_x[:, i], flat_noise[:, i])
        return x
