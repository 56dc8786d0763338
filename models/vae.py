"""Variational autoencoders (Kingma & Welling 2014) and importance-weighted autoencoders (Burda et al.
2016): one Gaussian latent layer with a standard-normal prior, and a decoder that is Bernoulli for
binarized pixels or a discretized mixture of logistics for grey levels (the discretized logistic of
Kingma et al. 2016, IAF; its mixture in Salimans et al. 2017, PixelCNN++, Section 2.1).

The ELBO is only a bound, so `nll` is the importance-sampled estimate the literature reports,

    -log p(x) ~= -log (1/k) sum_j p(x | z_j) p(z_j) / q(z_j | x),   z_j ~ q(z | x),

which is itself an upper bound in expectation that tightens as k grows; `negative_elbo` gives the
(looser) negative ELBO for comparison.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Independent, Normal, kl_divergence

from models.base import (
    DIGIT_CLASSES,
    GenerativeModel,
    LabelConditioning,
    at_least_fp32,
    marginal_without_labels,
    normal_noise,
    require_positive,
    require_sizes,
    uniform_noise,
)
from models.nn.pixel_distributions import pixel_distribution_for

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}

# (samples x images) rows decoded at once when estimating the NLL, divided by the decoder's outputs
# per pixel: bounds memory for any k.
ROWS_PER_CHUNK = 2 ** 15


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers with `activation` between them (none after the last)."""
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers[:-1])


def mlp_pair(image_shape, hidden_sizes: list[int], latent_dim: int, activation: str, label_inputs: int = 0,
             params_per_pixel: int = 1):
    """Encoder image -> (mean, raw scale) of the code, and decoder code -> `params_per_pixel`
    numbers per pixel, shape (batch, params_per_pixel * C, H, W), the decoder's hidden layers those
    of the encoder in reverse. Each takes `label_inputs` more inputs (a one-hot label) after its own
    when conditional."""
    require_sizes(hidden_sizes=hidden_sizes)
    c, h, w = image_shape
    sizes = [math.prod(image_shape), *hidden_sizes]
    encoder = nn.Sequential(nn.Flatten(), mlp([sizes[0] + label_inputs, *sizes[1:], 2 * latent_dim], activation))
    decoder = nn.Sequential(mlp([latent_dim + label_inputs, *reversed(sizes[1:]), params_per_pixel * sizes[0]], activation),
                            nn.Unflatten(1, (params_per_pixel * c, h, w)))
    return encoder, decoder


def conv_pair(image_shape, channels: int, latent_dim: int, activation: str, params_per_pixel: int = 1):
    """Encoder: two stride-2 convolutions (H, W -> H/4, W/4), then a linear layer to (mean, raw
    scale). Decoder: the mirror image, a linear layer and two stride-2 transposed convolutions to
    `params_per_pixel` numbers per pixel, shape (batch, params_per_pixel * C, H, W)."""
    c, h, w = image_shape
    if h % 4 or w % 4:
        raise ValueError(f"architecture 'conv' needs height and width divisible by 4, got {tuple(image_shape)}")
    act = ACTIVATIONS[activation]
    features = 2 * channels * (h // 4) * (w // 4)
    encoder = nn.Sequential(
        nn.Conv2d(c, channels, 4, stride=2, padding=1), act(),
        nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1), act(),
        nn.Flatten(), nn.Linear(features, 2 * latent_dim))
    decoder = nn.Sequential(
        nn.Linear(latent_dim, features), act(), nn.Unflatten(1, (2 * channels, h // 4, w // 4)),
        nn.ConvTranspose2d(2 * channels, channels, 4, stride=2, padding=1), act(),
        nn.ConvTranspose2d(channels, params_per_pixel * c, 4, stride=2, padding=1))
    return encoder, decoder


def log_mean_exp(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.logsumexp(values, dim) - math.log(values.shape[dim])


class VAE(GenerativeModel, LabelConditioning):
    """q(z|x) = N(mu(x), diag sigma(x)^2),  p(z) = N(0, I),  p(x|z) = prod_i p(x_i | f(z)_i).

    pixel_levels: 2 (binarized images) gives the Bernoulli decoder p(x_i = 1 | z) = sigmoid(f(z)_i).
    More levels (256 for grey MNIST) give a discretized mixture of `decoder_components` logistics per
    pixel, 1 being the discretized logistic of Kingma et al. 2016 (IAF) and Salimans et al. 2017; the
    encoder then sees the levels scaled to [-1, 1]. `decoder_components` applies to grey levels only,
    and anything but 1 with pixel_levels 2 is refused rather than ignored.

    objective: `elbo` trains on the negative ELBO (analytic KL, `train_samples` reparameterized
    samples averaged in the reconstruction term); `iwae` on the negative k-sample importance-weighted
    bound with k = `train_samples`. `eval_samples` samples estimate the test NLL and `val_samples`
    the cheaper validation NLL used for early stopping. Log-probabilities are computed in fp32, so
    training under bf16 autocast is safe.

    conditional (architecture mlp): a conditional VAE, q(z | x, y) and p(x | z, y) with the one-hot
    digit y as extra inputs of the encoder and the decoder, p(z) unchanged. Without labels, `nll`
    is -log sum_y p(y) p^(x | y) from the per-class importance-sampled estimates p^ (still an upper
    bound in expectation), and `negative_elbo` the bound -log sum_y p(y) exp(ELBO(x, y)).
    """

    estimator = "importance_sampled"

    def __init__(self, image_shape=(1, 28, 28), architecture: Literal["mlp", "conv"] = "mlp",
                 latent_dim: int = 50, hidden_sizes: list[int] = (200, 200), channels: int = 32,
                 activation: Literal["tanh", "relu", "elu"] = "tanh",
                 objective: Literal["elbo", "iwae"] = "elbo", train_samples: int = 1,
                 eval_samples: int = 5000, val_samples: int = 10, conditional: bool = False,
                 pixel_levels: int = 2, decoder_components: int = 1):
        super().__init__(image_shape)
        require_positive(latent_dim=latent_dim, channels=channels, train_samples=train_samples,
                         eval_samples=eval_samples, val_samples=val_samples, decoder_components=decoder_components)
        if architecture not in ("mlp", "conv"):
            raise ValueError(f"architecture must be 'mlp' or 'conv', got {architecture!r}")
        if objective not in ("elbo", "iwae"):
            raise ValueError(f"objective must be 'elbo' or 'iwae', got {objective!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        self.latent_dim, self.objective, self.pixel_levels = latent_dim, objective, pixel_levels
        self.pixel_distribution = pixel_distribution_for(
            pixel_levels, "logistic_mixture", decoder_components, default_components=1,
            grey_only=f"decoder_components applies to grey levels (pixel_levels > 2) only, got {decoder_components} "
                      "with pixel_levels 2")
        outputs = self.pixel_distribution.params_per_pixel
        self.train_samples, self.eval_samples, self.val_samples = train_samples, eval_samples, val_samples
        if conditional and architecture != "mlp":
            raise ValueError("conditional: true needs architecture 'mlp'")
        if conditional:
            self.init_labels(DIGIT_CLASSES)
        if architecture == "mlp":
            self.encoder, self.decoder = mlp_pair(self.image_shape, hidden_sizes, latent_dim, activation,
                                                  self.num_classes if conditional else 0, outputs)
        else:
            self.encoder, self.decoder = conv_pair(self.image_shape, channels, latent_dim, activation, outputs)

    # --- the three distributions -------------------------------------------------------------
    # validate_args=False: the scales are positive by construction, and each validation would make
    # the GPU wait for a Python-side check at every step.
    def with_label(self, inputs: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """`inputs` (..., batch, features) followed by the one-hot labels (batch,) when conditional."""
        self.check_labels(labels)
        if labels is None:
            return inputs
        one_hot = F.one_hot(labels, self.num_classes).to(inputs.dtype)
        return torch.cat([inputs, one_hot.expand(*inputs.shape[:-1], self.num_classes)], -1)

    def posterior(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Independent:
        # softplus, not exp, keeps the scale positive without overflowing early in training
        self.check_labels(labels)
        inputs = self.pixel_distribution.network_input(x)
        inputs = inputs if labels is None else self.with_label(inputs.flatten(1), labels)
        mean, raw_scale = at_least_fp32(self.encoder(inputs)).chunk(2, dim=-1)
        return Independent(Normal(mean, F.softplus(raw_scale) + 1e-4, validate_args=False), 1, validate_args=False)

    def prior(self) -> Independent:
        zeros = torch.zeros(self.latent_dim, device=self.device)
        return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1, validate_args=False)

    def decoder_params(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The parameters of p(x | z) for codes of shape (..., latent_dim) (and labels of shape
        (batch,) matching z's last batch dimension when conditional): shape (..., P, C, H, W) in fp32,
        P = `pixel_distribution.params_per_pixel` (1, the logit, for binary pixels)."""
        z_in = self.with_label(z, labels)
        params = at_least_fp32(self.decoder(z_in.reshape(-1, z_in.shape[-1])))
        return params.view(*z.shape[:-1], self.pixel_distribution.params_per_pixel, *self.image_shape)

    def log_likelihood(self, z: torch.Tensor, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x | z) for codes (..., batch, latent_dim) and images (batch, C, H, W): shape (..., batch)."""
        return self.pixel_distribution.log_likelihood(self.decoder_params(z, labels), x)

    # --- bounds and estimates ----------------------------------------------------------------
    def log_weights(self, x: torch.Tensor, q: Independent, k: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x, z_j) - log q(z_j | x) for k reparameterized draws z_j ~ q: shape (k, batch)."""
        z = q.rsample((k,))
        return self.log_likelihood(z, x, labels) + self.prior().log_prob(z) - q.log_prob(z)

    @marginal_without_labels
    def negative_elbo(self, x: torch.Tensor, samples: int = 1, labels: torch.Tensor | None = None) -> torch.Tensor:
        """-ELBO per image: analytic KL(q(z|x) || p(z)) minus a `samples`-draw reconstruction term."""
        q = self.posterior(x, labels)
        reconstruction = self.log_likelihood(q.rsample((samples,)), x, labels).mean(0)
        return kl_divergence(q, self.prior()) - reconstruction

    @marginal_without_labels
    def importance_sampled_nll(self, x: torch.Tensor, k: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        """-log of the mean of k importance weights per image, drawn in chunks of samples so that
        memory stays bounded; chunks are combined with logsumexp, so no weight is exponentiated."""
        q = self.posterior(x, labels)
        chunk = max(1, ROWS_PER_CHUNK // (len(x) * self.pixel_distribution.params_per_pixel))
        partial = [torch.logsumexp(self.log_weights(x, q, min(chunk, k - start), labels), 0)
                   for start in range(0, k, chunk)]
        return math.log(k) - torch.logsumexp(torch.stack(partial), 0)

    def nll(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.importance_sampled_nll(x, self.eval_samples, labels)

    def validation_nll(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.importance_sampled_nll(x, self.val_samples, labels)

    @marginal_without_labels
    def training_bound(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The objective per image: the negative ELBO, or the negative k-sample IWAE bound."""
        if self.objective == "iwae":
            return -log_mean_exp(self.log_weights(x, self.posterior(x, labels), self.train_samples, labels), 0)
        return self.negative_elbo(x, self.train_samples, labels)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.training_bound(x, labels).mean()

    # --- pictures ------------------------------------------------------------------------------
    def prior_draws(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        return normal_noise((n, self.latent_dim), generator, self.device)

    def prior_decoder_params(self, n: int, generator: torch.Generator | None,
                             labels: torch.Tensor | None) -> torch.Tensor:
        """The decoder's parameters (n, P, C, H, W) at n codes z ~ p(z), after y ~ p(y) unless given when conditional."""
        labels = self.labels_or_prior(labels, n, generator) if self.conditional else None
        return self.decoder_params(self.prior_draws(n, generator), labels)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images of levels 0 .. pixel_levels - 1: z ~ p(z), then every pixel ~ p(x_i | z) (one
        uniform number per pixel)."""
        params = self.prior_decoder_params(n, generator, labels)
        return self.pixel_distribution.draw(params, uniform_noise((n, *self.image_shape), generator, self.device))

    @torch.no_grad()
    def sample_means(self, n: int, generator: torch.Generator | None = None,
                     labels: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder means E[x | z] / (pixel_levels - 1) on [0, 1] (the Bernoulli means for binary
        pixels) behind `sample`'s images when given an identically seeded generator."""
        return self.pixel_distribution.mean(self.prior_decoder_params(n, generator, labels))

    @torch.no_grad()
    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The posterior mean code, shape (batch, latent_dim)."""
        return self.posterior(x, labels).mean

    @torch.no_grad()
    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder means E[x | z] in pixel levels, shape (batch, C, H, W), as the images are
        (`HasLatentCode`): the Bernoulli means p(x_i = 1 | z) for binary pixels."""
        return self.pixel_distribution.mean(self.decoder_params(z, labels)) * (self.pixel_levels - 1)
