"""A mixture of K independent-Bernoulli components: a latent-variable model with an exact likelihood.

p(x) = sum_k pi_k prod_i Bernoulli(x_i; mu_ki), computed with log-sum-exp over the components.
Fitted by EM (`fit: em`, one EM iteration per epoch of the training loop) or by gradient steps
(`fit: gradient`).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.base import GenerativeModel, generator_device, require_positive, uniform_noise

EM_CHUNK = 10_000  # images per E-step chunk: bounds memory on the whole training set


class BernoulliMixture(GenerativeModel):
    """Mixing weights softmax(mixing_logits), component means sigmoid(pixel_logits[k]).

    The components start at random means (uniform in [0.25, 0.75], drawn from torch's global
    generator, which the train stage seeds), so that EM can break their symmetry. `smoothing` a
    is the EM M-step's pseudo-count per pixel outcome, mu = (sum_n r_nk x_n + a) / (N_k + 2a):
    it keeps every mean away from 0 and 1, so no test image has zero probability.
    """

    def __init__(self, image_shape=(1, 28, 28), components: int = 10, fit: Literal["em", "gradient"] = "em",
                 smoothing: float = 1.0):
        super().__init__(image_shape)
        require_positive(components=components)
        if fit not in ("em", "gradient"):
            raise ValueError(f"fit must be 'em' or 'gradient', got {fit!r}")
        if not smoothing > 0:
            raise ValueError(f"smoothing must be > 0, got {smoothing}")
        self.fit, self.smoothing = fit, smoothing
        self.mixing_logits = nn.Parameter(torch.zeros(components))
        self.pixel_logits = nn.Parameter(torch.logit(0.25 + 0.5 * torch.rand(components, self.num_pixels)))

    @property
    def fits_without_gradients(self) -> bool:
        return self.fit == "em"

    def component_log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log pi_k + log p(x | k) for every component: shape (batch, K)."""
        flat = x.flatten(1).to(self.pixel_logits.dtype)
        log_likelihood = flat @ F.logsigmoid(self.pixel_logits).T + (1 - flat) @ F.logsigmoid(-self.pixel_logits).T
        return log_likelihood + torch.log_softmax(self.mixing_logits, 0)

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.logsumexp(self.component_log_joint(x), 1)

    @torch.no_grad()
    def fit_epoch(self, images: torch.Tensor) -> float:
        """One EM iteration over `images`; returns their mean NLL under the parameters it started
        from (which EM lowers from one iteration to the next, up to the smoothing's small pull)."""
        weights = torch.zeros_like(self.mixing_logits, dtype=torch.float64)
        weighted_sums = torch.zeros_like(self.pixel_logits, dtype=torch.float64)
        total_nll = 0.0
        for chunk in images.split(EM_CHUNK):
            joint = self.component_log_joint(chunk).double()
            log_evidence = torch.logsumexp(joint, 1, keepdim=True)
            responsibilities = torch.exp(joint - log_evidence)
            total_nll -= float(log_evidence.sum())
            weights += responsibilities.sum(0)
            weighted_sums += responsibilities.T @ chunk.flatten(1).double()
        self.mixing_logits.copy_(weights.clamp_min(1e-300).log())
        ones, zeros = weighted_sums + self.smoothing, weights[:, None] - weighted_sums + self.smoothing
        self.pixel_logits.copy_(ones.log() - zeros.clamp_min(self.smoothing).log())
        return total_nll / len(images)

    @torch.no_grad()
    def component_means(self) -> torch.Tensor:
        """The components' pixel means, most probable component first: (K, C, H, W)."""
        order = torch.argsort(self.mixing_logits, descending=True)
        return torch.sigmoid(self.pixel_logits[order]).view(-1, *self.image_shape)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        weights = torch.softmax(self.mixing_logits, 0).to(generator_device(generator))
        which = torch.multinomial(weights, n, replacement=True, generator=generator).to(self.device)
        means = torch.sigmoid(self.pixel_logits[which]).view(n, *self.image_shape)
        return (uniform_noise(means.shape, generator, self.device) < means).float()
