"""Distributions over one pixel's level, from a network's outputs: what an autoregressive model's
conditional p(x_i | x_<i) or a VAE's decoder p(x_i | z) is, on binarized and on grey pixels alike.

- `Bernoulli`: binary pixels, one logit per pixel, p(x_i = 1) = sigmoid(logit).
- `Categorical`: a softmax over the levels (van den Oord et al. 2016, Pixel RNN, Section 5.3).
- `DiscretizedLogisticMixture`: a mixture of K logistics, each level owning the bin of width 2 / (L - 1)
  around its value on [-1, 1], the edge levels the tails (Salimans et al. 2017, PixelCNN++, Section 2.1).
  It is the discrete counterpart of a mixture of K Gaussians, with 3K numbers per pixel instead of L.

Both take `params` of shape (B, P, *pixels) with P = `params_per_pixel` and score levels x of shape
(B, *pixels). `draw` inverts the cumulative distribution with one uniform number per pixel, so a
sampler keeps one noise value per pixel whatever the distribution. `pixel_distribution_for` is the
one place that picks the distribution from a model's `pixel_levels`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from models.base import require_pixel_levels, require_positive

MIN_LOG_SCALE = -7.0  # as PixelCNN++: a logistic narrower than e^-7 puts all its mass on one level anyway
# Drawing or averaging goes through every level's probability: (images, levels, components, pixels)
# numbers, 0.8 GB of fp32 per intermediate for 1,000 MNIST images and one logistic. Pieces of the
# batch of 2^26 numbers keep each at 256 MB.
LEVEL_PROBABILITIES_PER_CHUNK = 2 ** 26


def scale_levels(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Levels 0 .. L-1 -> [-1, 1], the input range the networks see (binary pixels: 2x - 1)."""
    return x * (2 / (levels - 1)) - 1


class PixelDistribution:
    """`params_per_pixel` numbers per pixel give a distribution over `levels` levels.
    `level_probabilities_per_pixel`: the numbers one pixel's level probabilities take while drawing
    or averaging, which sets how many images `draw` and `mean` take at once."""

    params_per_pixel: int
    level_probabilities_per_pixel: int

    def __init__(self, levels: int):
        require_pixel_levels(levels)
        self.levels = levels

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """What a network reads of the pixels: the levels scaled to [-1, 1]."""
        return scale_levels(x, self.levels)

    def level_log_probs(self, params: torch.Tensor) -> torch.Tensor:
        """log p(level) for every level, (B, L, *pixels)."""
        raise NotImplementedError

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per pixel, (B, *pixels)."""
        raise NotImplementedError

    def log_likelihood(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x) of whole images, for params (..., batch, P, *pixels) (several per image, e.g. one
        per latent code) and images (batch, *pixels): shape (..., batch)."""
        images = x.expand(*params.shape[:-x.dim() - 1], *x.shape).flatten(0, -x.dim())
        per_pixel = self.log_prob(params.flatten(0, -x.dim() - 1), images)
        return per_pixel.flatten(1).sum(1).view(params.shape[:-x.dim()])

    def draw(self, params: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The level whose cumulative probability first exceeds `noise` (uniform in [0, 1)), as floats."""
        return self._in_pieces(self._draw, params, noise)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x] / (L - 1): the expected level on [0, 1], as the mean image of a Bernoulli pixel is."""
        return self._in_pieces(self._mean, params)

    def _draw(self, params: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        cdf = self.level_log_probs(params).float().exp().cumsum(1)
        return (cdf < noise.unsqueeze(1)).sum(1).clamp(max=self.levels - 1).to(noise.dtype)

    def _mean(self, params: torch.Tensor) -> torch.Tensor:
        levels = torch.arange(self.levels, device=params.device, dtype=params.dtype).view(1, -1, *[1] * (params.dim() - 2))
        return (self.level_log_probs(params).exp() * levels).sum(1) / (self.levels - 1)

    def _in_pieces(self, fn, params: torch.Tensor, *others: torch.Tensor) -> torch.Tensor:
        """fn(params, *others) over pieces of the batch small enough for the level probabilities
        (LEVEL_PROBABILITIES_PER_CHUNK); per-image results do not depend on the piece."""
        per_image = self.level_probabilities_per_pixel * math.prod(params.shape[2:])
        size = max(1, LEVEL_PROBABILITIES_PER_CHUNK // per_image)
        if len(params) <= size:
            return fn(params, *others)
        return torch.cat([fn(*pieces) for pieces in zip(*(t.split(size) for t in (params, *others)))])


class Bernoulli(PixelDistribution):
    """Binary pixels: one logit l per pixel, p(x = 1) = sigmoid(l)."""

    params_per_pixel = 1
    level_probabilities_per_pixel = 2

    def __init__(self):
        super().__init__(2)

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """Binary pixels as they are, {0, 1}: what the binarized track's trained checkpoints saw."""
        return x

    def level_log_probs(self, params: torch.Tensor) -> torch.Tensor:
        logit = params[:, 0]
        return torch.stack([F.logsigmoid(-logit), F.logsigmoid(logit)], 1)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -F.binary_cross_entropy_with_logits(params[:, 0], x, reduction="none")

    def log_likelihood(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """As the base class's; sum_i x_i l_i - softplus(l_i) is the sum of the log_probs in half the
        passes over the (codes x images x pixels) logits (it dominates a VAE's NLL)."""
        logits = params.flatten(-x.dim())  # (..., batch, pixels): P = 1
        return torch.einsum("...bd,bd->...b", logits, x.flatten(1).to(logits.dtype)) - F.softplus(logits).sum(-1)

    def draw(self, params: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """1 where the uniform `noise` falls below p(x = 1)."""
        return (noise < self.mean(params)).to(noise.dtype)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """p(x = 1), which is E[x] / (L - 1) for L = 2."""
        return torch.sigmoid(params[:, 0])


class Categorical(PixelDistribution):
    """A softmax over the L levels: L numbers per pixel."""

    def __init__(self, levels: int):
        super().__init__(levels)
        self.params_per_pixel = self.level_probabilities_per_pixel = levels

    def level_log_probs(self, params: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(params, 1)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -F.cross_entropy(params, x.long(), reduction="none")


class DiscretizedLogisticMixture(PixelDistribution):
    """K logistics on [-1, 1]: per pixel K mixture logits, K means and K log-scales (in that order
    along the parameter axis)."""

    def __init__(self, levels: int, components: int):
        super().__init__(levels)
        require_positive(components=components)
        self.components = components
        self.params_per_pixel = 3 * components
        self.level_probabilities_per_pixel = levels * components

    def split(self, params: torch.Tensor):
        """(mixture log-weights, means, log-scales), each (B, K, *pixels)."""
        logits, means, log_scales = params.chunk(3, 1)
        return F.log_softmax(logits, 1), means, log_scales.clamp(min=MIN_LOG_SCALE)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        log_weights, means, log_scales = self.split(params)
        component = self._bin_log_prob(scale_levels(x, self.levels).unsqueeze(1), x.unsqueeze(1), means, log_scales)
        return torch.logsumexp(log_weights + component, 1)

    def level_log_probs(self, params: torch.Tensor) -> torch.Tensor:
        log_weights, means, log_scales = self.split(params)
        levels = torch.arange(self.levels, device=params.device, dtype=params.dtype)
        shape = (1, -1, 1, *[1] * (params.dim() - 2))  # (1, L, 1, *pixels): every level against every component
        x = levels.view(shape)
        component = self._bin_log_prob(scale_levels(x, self.levels), x, means.unsqueeze(1), log_scales.unsqueeze(1))
        return torch.logsumexp(log_weights.unsqueeze(1) + component, 2)

    def _bin_log_prob(self, centre, x, means, log_scales):
        """log of the logistic's mass on each level's bin [centre - h, centre + h], h = 1 / (L - 1);
        the first and last bins reach to -inf and +inf so that the L masses sum to 1."""
        inverse_scale = torch.exp(-log_scales)
        upper = (centre - means + 1 / (self.levels - 1)) * inverse_scale
        lower = (centre - means - 1 / (self.levels - 1)) * inverse_scale
        # log(sigmoid(a) - sigmoid(b)) = a + log(1 - e^(b - a)) - softplus(a) - softplus(b): exact and
        # stable in both tails, where subtracting two sigmoids would round to 0
        middle = upper + torch.log(-torch.expm1(lower - upper)) - F.softplus(upper) - F.softplus(lower)
        first = -F.softplus(-upper)   # log sigmoid(upper)
        last = -F.softplus(lower)     # log(1 - sigmoid(lower))
        return torch.where(x <= 0, first, torch.where(x >= self.levels - 1, last, middle))


GREY_SETTINGS_ON_BINARY = ("output and components choose the conditional over grey levels (data: grey); "
                           "binary pixels are Bernoulli")


def pixel_distribution_for(pixel_levels: int, output: str = "logistic_mixture", components: int = 10,
                           default_components: int = 10, grey_only: str = GREY_SETTINGS_ON_BINARY) -> PixelDistribution:
    """The distribution of a pixel of `pixel_levels` levels: `Bernoulli` for 2, where `output` and
    `components` must keep their defaults (else the error `grey_only`), or `pixel_distribution(output, ...)`."""
    require_pixel_levels(pixel_levels)
    if pixel_levels != 2:
        return pixel_distribution(output, pixel_levels, components)
    if (output, components) != ("logistic_mixture", default_components):
        raise ValueError(grey_only)
    return Bernoulli()


def pixel_distribution(output: str, levels: int, components: int) -> PixelDistribution:
    """`output`: 'logistic_mixture' (with `components` logistics) or 'softmax'."""
    if output == "softmax":
        return Categorical(levels)
    if output == "logistic_mixture":
        return DiscretizedLogisticMixture(levels, components)
    raise ValueError(f"output must be 'logistic_mixture' or 'softmax', got {output!r}")
