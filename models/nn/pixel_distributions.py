"""Distributions over one pixel's grey level, from a network's outputs: what an autoregressive model's
conditional p(x_i | x_<i) or a VAE's decoder p(x_i | z) is when a pixel takes `levels` values.

- `Categorical`: a softmax over the levels (van den Oord et al. 2016, Pixel RNN, Section 5.3).
- `DiscretizedLogisticMixture`: a mixture of K logistics, each level owning the bin of width 2 / (L - 1)
  around its value on [-1, 1], the edge levels the tails (Salimans et al. 2017, PixelCNN++, Section 2.1).
  It is the discrete counterpart of a mixture of K Gaussians, with 3K numbers per pixel instead of L.

Both take `params` of shape (B, P, *pixels) with P = `params_per_pixel` and score levels x of shape
(B, *pixels). `draw` inverts the cumulative distribution with one uniform number per pixel, so a
sampler keeps one noise value per pixel whatever the distribution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from models.base import require_pixel_levels, require_positive

MIN_LOG_SCALE = -7.0  # as PixelCNN++: a logistic narrower than e^-7 puts all its mass on one level anyway


def scale_levels(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Levels 0 .. L-1 -> [-1, 1], the input range the networks see (binary pixels: 2x - 1)."""
    return x * (2 / (levels - 1)) - 1


class PixelDistribution:
    params_per_pixel: int

    def __init__(self, levels: int):
        require_pixel_levels(levels)
        self.levels = levels

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        return scale_levels(x, self.levels)

    def level_log_probs(self, params: torch.Tensor) -> torch.Tensor:
        """log p(level) for every level, (B, L, *pixels)."""
        raise NotImplementedError

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per pixel, (B, *pixels)."""
        raise NotImplementedError

    def draw(self, params: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The level whose cumulative probability first exceeds `noise` (uniform in [0, 1)), as floats."""
        cdf = self.level_log_probs(params).float().exp().cumsum(1)
        return (cdf < noise.unsqueeze(1)).sum(1).clamp(max=self.levels - 1).to(noise.dtype)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x] / (L - 1): the expected level on [0, 1], as the mean image of a Bernoulli pixel is."""
        levels = torch.arange(self.levels, device=params.device, dtype=params.dtype).view(1, -1, *[1] * (params.dim() - 2))
        return (self.level_log_probs(params).exp() * levels).sum(1) / (self.levels - 1)


class Categorical(PixelDistribution):
    """A softmax over the L levels: L numbers per pixel."""

    def __init__(self, levels: int):
        super().__init__(levels)
        self.params_per_pixel = levels

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


def autoregressive_conditional(pixel_levels: int, output: str, components: int) -> PixelDistribution | None:
    """An autoregressive family's conditional for `pixel_levels` levels: None (Bernoulli) for 2, where
    `output` and `components` must keep their defaults, else `pixel_distribution(output, ...)`."""
    require_pixel_levels(pixel_levels)
    if pixel_levels > 2:
        return pixel_distribution(output, pixel_levels, components)
    if (output, components) != ("logistic_mixture", 10):
        raise ValueError("output and components choose the conditional over grey levels (data: grey); "
                         "binary pixels are Bernoulli")
    return None


def pixel_distribution(output: str, levels: int, components: int) -> PixelDistribution:
    """`output`: 'logistic_mixture' (with `components` logistics) or 'softmax'."""
    if output == "softmax":
        return Categorical(levels)
    if output == "logistic_mixture":
        return DiscretizedLogisticMixture(levels, components)
    raise ValueError(f"output must be 'logistic_mixture' or 'softmax', got {output!r}")
