"""The VAE on grey levels (a discretized logistic mixture decoder) on 2x2 images of 4 levels, small
enough to enumerate all 256: the decoder's normalization, the importance-sampled NLL against the
exact marginal likelihood (numerical integration over a one-dimensional latent) and the ELBO,
samples against the exact probabilities, the conditional model and checkpoints."""
import math

import pytest
import torch
import torch.nn.functional as F

from models.checkpoint import load_checkpoint, save_checkpoint
from models.vae import VAE
from pipeline.flops import training_flops_per_image
from tests.helpers import all_level_images, chi_square_pvalue, fit_encoder, randomize
from tests.toys import with_label_prior

TOY = (1, 2, 2)
LEVELS = 4
ALL_IMAGES = all_level_images(TOY, LEVELS)


def toy_images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, LEVELS, (n, *TOY), generator=torch.Generator().manual_seed(seed)).float()


def one_dimensional_toy(x: torch.Tensor | None = None, steps: int = 200) -> VAE:
    """A random decoder (a mixture of two logistics per pixel) with a one-dimensional latent; given
    images `x`, its encoder is then fitted to them by the ELBO (the decoder held fixed), so that
    q(z|x) is a proposal as training makes it."""
    model = randomize(VAE(TOY, latent_dim=1, hidden_sizes=[8], pixel_levels=LEVELS, decoder_components=2), std=0.7, seed=2)
    return model.eval() if x is None else fit_encoder(model, x, steps)


GRID = torch.linspace(-12.0, 12.0, 20_001, dtype=torch.float64)  # the prior mass outside is below 1e-30
# the trapezoid rule's weights on GRID
LOG_STEP = torch.full_like(GRID, math.log(GRID[1] - GRID[0])).index_add(0, torch.tensor([0, len(GRID) - 1]),
                                                                         torch.full((2,), -math.log(2), dtype=torch.float64))


@torch.no_grad()
def log_joint_on_grid(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """log p(x | z) + log N(z; 0, 1) in float64 for every image and every z on GRID, (images, points).
    Needs latent_dim = 1."""
    params = model.decoder_params(GRID[:, None].float()).double()  # (points, P, C, H, W)
    table = model.pixel_distribution.level_log_probs(params)  # (points, L, C, H, W)
    table = table.flatten(2).transpose(1, 2).flatten(1)  # (points, pixels * L): pixel-major, as one_hot below
    one_hot = F.one_hot(x.flatten(1).long(), LEVELS).flatten(1).double()  # (images, pixels * L)
    return one_hot @ table.T - 0.5 * GRID ** 2 - 0.5 * math.log(2 * math.pi)


def exact_nll(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """-log of the integral of p(x, z) over z (trapezoid rule on a fine grid)."""
    return -torch.logsumexp(log_joint_on_grid(model, x) + LOG_STEP, dim=1)


@torch.no_grad()
def integrated_negative_elbo(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """-ELBO = the integral of q(z|x) (log q(z|x) - log p(x, z)) over z, by the same rule."""
    q = model.posterior(x.float())
    log_q = torch.distributions.Normal(q.mean.double(), q.stddev.double()).log_prob(GRID)  # (images, points)
    return (torch.exp(log_q + LOG_STEP) * (log_q - log_joint_on_grid(model, x))).sum(1)


def mean_over_repeats(estimate, x: torch.Tensor, repeats: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of `repeats` independent runs of `estimate` per image, and its standard error."""
    values = estimate(x.repeat(repeats, 1, 1, 1)).view(repeats, len(x)).double()
    return values.mean(0), values.std(0) / math.sqrt(repeats)


def image_index(images: torch.Tensor) -> torch.Tensor:
    """Each image's row in ALL_IMAGES."""
    return (images.flatten(1).long() * LEVELS ** torch.arange(3, -1, -1)).sum(1)


def test_the_decoder_distribution_sums_to_one_over_every_image_for_a_given_code():
    model = one_dimensional_toy()
    with torch.no_grad():
        for z in torch.linspace(-3, 3, 5):
            codes = z.view(1, 1).expand(len(ALL_IMAGES), 1)
            log_likelihood = model.log_likelihood(codes, ALL_IMAGES.float())
            assert float(torch.logsumexp(log_likelihood.double(), 0)) == pytest.approx(0.0, abs=1e-5)


def test_numerical_integration_is_a_normalized_reference():
    total = torch.exp(-exact_nll(one_dimensional_toy(), ALL_IMAGES)).sum()
    assert float(total) == pytest.approx(1.0, abs=1e-6)


def test_exact_nll_is_below_the_negative_elbo_and_many_draws_estimate_it():
    x = toy_images(6)
    model = one_dimensional_toy(x)
    exact, integrated = exact_nll(model, x), integrated_negative_elbo(model, x)
    torch.manual_seed(0)
    with torch.no_grad():
        neg_elbo, elbo_se = mean_over_repeats(lambda b: model.negative_elbo(b, samples=64), x, 500)
        many = model.importance_sampled_nll(x, 100_000).double()
    assert torch.all(exact < integrated), (exact, integrated)  # the gap is KL(q(z|x) || p(z|x)) > 0
    assert torch.all((neg_elbo - integrated).abs() < 4 * elbo_se + 1e-5), (neg_elbo, integrated)
    assert torch.allclose(many, exact, atol=2e-3), (many, exact)


def test_importance_sampled_nll_is_an_upper_bound_in_expectation_that_tightens_with_k():
    x = toy_images(6)
    model = one_dimensional_toy(x, steps=10)  # a rough proposal: clear gaps between the k
    torch.manual_seed(0)
    with torch.no_grad():
        means = {k: mean_over_repeats(lambda b: model.importance_sampled_nll(b, k), x, 5_000) for k in (1, 4, 32)}
    exact = exact_nll(model, x)

    def below(a, b):  # a < b in expectation, by more than three standard errors
        return torch.all(a[0] < b[0] - 3 * torch.sqrt(a[1] ** 2 + b[1] ** 2))

    assert below(means[4], means[1]) and below(means[32], means[4])
    thirty_two, thirty_two_se = means[32]
    assert torch.all(thirty_two > exact - 3 * thirty_two_se)


def test_samples_are_levels_drawn_with_the_exact_marginal_probabilities():
    model = one_dimensional_toy()
    samples = model.sample(20_000, torch.Generator().manual_seed(0))
    assert samples.shape == (20_000, *TOY)
    assert torch.equal(samples, samples.round()) and samples.min() >= 0 and samples.max() <= LEVELS - 1
    assert torch.equal(samples, model.sample(20_000, torch.Generator().manual_seed(0)))
    counts = torch.bincount(image_index(samples), minlength=len(ALL_IMAGES)).double()
    assert chi_square_pvalue(counts, torch.exp(-exact_nll(model, ALL_IMAGES))) > 1e-3


def test_sample_means_are_the_scaled_means_of_the_same_seeded_samples():
    model = randomize(VAE(TOY, latent_dim=2, hidden_sizes=[8], pixel_levels=LEVELS), std=1.0).eval()
    scaled = model.sample(20_000, torch.Generator().manual_seed(5)) / (LEVELS - 1)
    paired = model.sample_means(20_000, torch.Generator().manual_seed(5))
    unpaired = model.sample_means(20_000, torch.Generator().manual_seed(6))
    assert paired.min() >= 0 and paired.max() <= 1
    residual = scaled - paired  # mean zero given z, so over the draws too
    assert float(residual.mean().abs()) < 4 * float(residual.std()) / math.sqrt(residual.numel())
    assert float(((scaled - unpaired) ** 2).mean()) > 1.2 * float((residual ** 2).mean())


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_256_levels_sample_encode_decode_and_train_under_bf16_autocast(architecture):
    shape = (1, 4, 4)
    model = VAE(shape, architecture=architecture, latent_dim=2, hidden_sizes=[16], channels=4, pixel_levels=256,
                decoder_components=3, eval_samples=8)
    x = torch.randint(0, 256, (5, *shape), generator=torch.Generator().manual_seed(0)).float()
    samples = model.sample(6, torch.Generator().manual_seed(1))
    assert samples.shape == (6, *shape) and torch.equal(samples, samples.round())
    assert samples.min() >= 0 and samples.max() <= 255
    decoded = model.decode(model.encode(x))
    assert decoded.shape == x.shape and decoded.min() >= 0 and decoded.max() <= 255  # means, in levels
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss(x)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert torch.isfinite(model.nll(x)).all()


def test_the_flop_count_sees_the_decoder_outputs_of_every_logistic():
    hidden, pixels = 16, 16
    one, three = (VAE((1, 4, 4), hidden_sizes=[hidden], latent_dim=2, pixel_levels=256, decoder_components=k)
                  for k in (1, 3))
    more_outputs = pixels * 3 * (3 - 1)  # a mixture logit, a mean and a log-scale per pixel and logistic
    # each output is a multiply-add (2 FLOPs) per hidden unit forward, for the weight gradient and for the input gradient
    assert training_flops_per_image(three) - training_flops_per_image(one) == 3 * 2 * hidden * more_outputs


def test_conditional_grey_vae_depends_on_the_label_and_samples_levels():
    model = with_label_prior(randomize(VAE(TOY, latent_dim=2, hidden_sizes=[8], pixel_levels=LEVELS, conditional=True,
                                           eval_samples=16), std=0.7))
    z = torch.zeros(2, 2)
    with torch.no_grad():
        params = model.decoder_params(z, labels=torch.tensor([0, 1]))
    assert not torch.allclose(params[0], params[1])
    x = toy_images(4)
    assert torch.isfinite(model.nll(x)).all() and torch.isfinite(model.nll(x, labels=torch.tensor([0, 1, 2, 3]))).all()
    samples = model.sample(10, torch.Generator().manual_seed(0), labels=torch.arange(10))
    assert torch.equal(samples, samples.round()) and samples.min() >= 0 and samples.max() <= LEVELS - 1
    with pytest.raises(ValueError, match="conditional: true needs architecture 'mlp'"):
        VAE((1, 4, 4), architecture="conv", pixel_levels=256, conditional=True)


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_a_checkpoint_with_256_levels_round_trips_with_the_same_nll(tmp_path, architecture):
    kwargs = {"architecture": architecture, "latent_dim": 2, "hidden_sizes": [8], "channels": 4, "pixel_levels": 256,
              "decoder_components": 2, "eval_samples": 16}
    model = randomize(VAE((1, 4, 4), **kwargs), std=0.3).eval()
    save_checkpoint(tmp_path / "model.pt", model, "vae", kwargs)
    loaded, _ = load_checkpoint(tmp_path / "model.pt")
    assert loaded.pixel_levels == 256
    x = torch.randint(0, 256, (3, 1, 4, 4), generator=torch.Generator().manual_seed(0)).float()
    nll = []
    for candidate in (model, loaded):
        torch.manual_seed(7)
        with torch.no_grad():
            nll.append(candidate.nll(x))
    assert torch.equal(*nll)


@pytest.mark.parametrize("kwargs, message", [
    ({"pixel_levels": 1}, "pixel_levels must be >= 2"),
    ({"pixel_levels": 256, "decoder_components": 0}, "decoder_components must be >= 1"),
    ({"decoder_components": 2}, "decoder_components applies to grey levels"),
])
def test_bad_params_are_one_line_errors_naming_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAE(TOY, **kwargs)
