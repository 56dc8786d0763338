"""The interface every model family implements (docs/architecture.md, 'The model interface').

Every model is a `GenerativeModel`: `nll`, `loss` and `sample`, and the name of its `estimator`.
What only some families can do is declared here as capabilities (runtime-checkable Protocols);
the stages ask `isinstance(model, CanComplete)` and never which family they hold.
"""
from __future__ import annotations

import math
from typing import Literal, Protocol, get_args, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from models.progress import pixels

# What a model's `nll` computes: the exact NLL, an importance-sampled estimate (an upper bound in
# expectation), or a bound on the discrete NLL from a density over dequantized pixels.
Estimator = Literal["exact", "importance_sampled", "dequantized"]
ESTIMATORS: tuple[str, ...] = get_args(Estimator)


def require_positive(**values: int | None) -> None:
    """The one check for settings that must be whole numbers >= 1 (None means 'not set')."""
    for name, value in values.items():
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def require_sizes(**lists: list[int]) -> None:
    """Layer sizes: a non-empty list of whole numbers >= 1."""
    for name, sizes in lists.items():
        if not sizes or min(sizes) < 1:
            raise ValueError(f"{name} must be a non-empty list of positive sizes, got {list(sizes)}")


class GenerativeModel(nn.Module):
    """A density model over binary images of shape `image_shape` = (C, H, W).

    `nll(x)` returns the per-image negative log-likelihood in nats, or the tightest upper bound the
    family has; the class attribute `estimator` names which (one of ESTIMATORS).
    """

    estimator: Estimator = "exact"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.estimator not in ESTIMATORS:
            raise TypeError(f"{cls.__name__}.estimator must be one of {', '.join(ESTIMATORS)}, got {cls.estimator!r}")

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


# --- optional capabilities -------------------------------------------------------------------------

@runtime_checkable
class CanComplete(Protocol):
    """Inpainting: sample the pixels where `observed` is False given the others."""

    def complete(self, x: torch.Tensor, observed: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor: ...


@runtime_checkable
class HasSampleMeans(Protocol):
    """The Bernoulli means behind `sample`'s images, given an identically seeded generator."""

    def sample_means(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...


@runtime_checkable
class HasLatentCode(Protocol):
    """An encoder and a decoder: reconstructions, interpolations, a scatter of the codes."""

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class HasValidationNLL(Protocol):
    """A cheaper estimate than `nll` for model selection (e.g. fewer importance samples)."""

    def validation_nll(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class HasNegativeELBO(Protocol):
    """The negative ELBO per image: a looser bound reported beside the NLL estimate."""

    def negative_elbo(self, x: torch.Tensor) -> torch.Tensor: ...


# --- sampling helpers ------------------------------------------------------------------------------

def uniform_noise(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Uniform [0, 1) numbers drawn from `generator` (or the global RNG) on `device`."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def draw_or_keep(observed: torch.Tensor, value: torch.Tensor, probability: torch.Tensor,
                 noise: torch.Tensor) -> torch.Tensor:
    """The pixel `value` where it is observed, else a draw from Bernoulli(probability): 1 where
    the uniform `noise` falls below it. Every sampler's per-pixel step ends with this."""
    return torch.where(observed, value, (noise < probability).to(value.dtype))


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
    def complete(self, x: torch.Tensor, observed: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample the pixels where `observed` is False given the others (exact when the observed
        pixels come first in the model's ordering, as the top half does in raster order)."""
        noise = uniform_noise(x.shape, generator, x.device)
        return self.fill(x * observed, observed.bool(), noise)

    def fill(self, x: torch.Tensor, observed: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Pixel i becomes 1 where noise_i < p(x_i = 1 | x_<i); one full forward pass per pixel."""
        x = x.clone()
        flat_x, flat_obs, flat_noise = x.view(len(x), -1), observed.view(len(x), -1), noise.view(len(x), -1)
        for i in pixels(self.ordering().tolist()):
            if flat_obs[:, i].all():
                continue
            p = torch.sigmoid(self.logits(x).view(len(x), -1)[:, i])
            flat_x[:, i] = draw_or_keep(flat_obs[:, i], flat_x[:, i], p, flat_noise[:, i])
        return x
