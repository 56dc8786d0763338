"""The interface every model family implements (see DESIGN.md, 'One interface for every family')."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Reference:
    """A published test NLL (nats) on binarized MNIST, for the report's comparison column."""

    nll: float
    source: str


class GenerativeModel(nn.Module):
    """A density model over binary images of shape `image_shape` = (C, H, W).

    `nll(x)` returns the per-image negative log-likelihood in nats, or the tightest upper bound the
    family has; `estimator` names which one it is: exact, elbo, importance_sampled or dequantized.
    """

    estimator: str = "exact"
    reference: Reference | None = None

    def __init__(self, image_shape: tuple[int, int, int]):
        super().__init__()
        self.image_shape = tuple(image_shape)

    @property
    def num_pixels(self) -> int:
        return math.prod(self.image_shape)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The training objective; exact models minimise the mean NLL."""
        return self.nll(x).mean()

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


def uniform_noise(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Uniform [0, 1) numbers drawn from `generator` (or the global RNG) on `device`."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


class AutoregressiveModel(GenerativeModel):
    """p(x) = prod_i p(x_i | x_<i) with Bernoulli conditionals, in the order `ordering()`.

    Subclasses implement `logits(x)`: the logit of p(x_i = 1 | x_<i) for every pixel, which must
    not depend on x_i or later pixels. Sampling and completion then work pixel by pixel; families
    with a cheaper step (a hidden state, a key/value cache) override `fill`.
    """

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def ordering(self) -> torch.Tensor:
        """Pixel indices (into the flattened image) in the order they are generated."""
        return torch.arange(self.num_pixels)

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits(x)
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        x = torch.zeros((n, *self.image_shape), device=self.device)
        return self.complete(x, torch.zeros_like(x, dtype=torch.bool), generator)

    @torch.no_grad()
    def complete(self, x: torch.Tensor, observed: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample the pixels where `observed` is False given the others (exact when the observed
        pixels come first in the model's ordering, as the top half does in raster order)."""
        noise = uniform_noise(x.shape, generator, x.device)
        return self.fill(x * observed, observed.bool(), noise)

    def fill(self, x: torch.Tensor, observed: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Pixel i becomes 1 where noise_i < p(x_i = 1 | x_<i); one full forward pass per pixel."""
        x = x.clone()
        flat_x, flat_obs, flat_noise = x.view(len(x), -1), observed.view(len(x), -1), noise.view(len(x), -1)
        for i in self.ordering().tolist():
            if flat_obs[:, i].all():
                continue
            p = torch.sigmoid(self.logits(x).view(len(x), -1)[:, i])
            flat_x[:, i] = torch.where(flat_obs[:, i], flat_x[:, i], (flat_noise[:, i] < p).to(x.dtype))
        return x
