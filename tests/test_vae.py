"""Checks of the latent-variable family on tiny images: the importance-sampled NLL against the exact
marginal likelihood (numerical integration over a one-dimensional latent), its relation to the
ELBO, the analytic KL, and the capabilities the evaluate stage draws pictures from."""
import math

import pytest
import torch
import torch.nn.functional as F

from models.vae import VAE
from pipeline.evaluate import draw_samples, elbo_metrics, render_figures
from pipeline.params import EvaluateConfig
from tests.helpers import all_binary_images, fit_encoder, randomize
from tests.toys import LATENT

TOY = (1, 4, 4)


def toy_images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, *TOY), 0.5), generator=torch.Generator().manual_seed(seed))


def one_dimensional_toy(x: torch.Tensor | None = None, steps: int = 300) -> VAE:
    """A random decoder with a one-dimensional latent; given images `x`, its encoder is then fitted
    to them by the ELBO (the decoder held fixed), so that q(z|x) is a proposal as training makes it."""
    model = randomize(VAE(TOY, latent_dim=1, hidden_sizes=[8]), std=0.5, seed=2)
    return model.eval() if x is None else fit_encoder(model, x, steps)


@torch.no_grad()
def exact_nll(model: VAE, x: torch.Tensor, points: int = 20_001, bound: float = 12.0) -> torch.Tensor:
    """-log of the integral of p(x | z) N(z; 0, 1) over z in [-bound, bound] (trapezoid rule on a
    fine grid; the prior mass outside is below 1e-30). Needs latent_dim = 1."""
    z = torch.linspace(-bound, bound, points, dtype=torch.float64)
    logits = model.decoder_params(z[:, None].float()).flatten(1).double()  # (points, pixels)
    log_weight = -0.5 * z ** 2 - 0.5 * math.log(2 * math.pi) + math.log(z[1] - z[0])
    log_weight[[0, -1]] -= math.log(2)
    nll = []
    for batch in x.flatten(1).double().split(2048):
        log_likelihood = batch @ F.logsigmoid(logits).T + (1 - batch) @ F.logsigmoid(-logits).T
        nll.append(-torch.logsumexp(log_likelihood + log_weight, dim=1))
    return torch.cat(nll)


def mean_over_repeats(estimate, x: torch.Tensor, repeats: int) -> torch.Tensor:
    """The mean of `repeats` independent runs of `estimate` per image, and its standard error."""
    values = estimate(x.repeat(repeats, 1, 1, 1)).view(repeats, len(x)).double()
    return values.mean(0), values.std(0) / math.sqrt(repeats)


def test_numerical_integration_is_a_normalized_reference():
    model = one_dimensional_toy()
    total = torch.exp(-exact_nll(model, all_binary_images(TOY), points=2001)).sum()
    assert float(total) == pytest.approx(1.0, abs=1e-6)


def test_importance_sampled_nll_converges_to_the_exact_nll():
    x = toy_images(6)
    model = one_dimensional_toy(x)
    exact = exact_nll(model, x)
    with torch.no_grad():
        few = model.importance_sampled_nll(x, 2)
        many = model.importance_sampled_nll(x, 200_000)
    assert torch.allclose(many.double(), exact, atol=2e-3), (many, exact)
    assert (few.double() - exact).abs().mean() > 10 * (many.double() - exact).abs().mean()


def test_importance_sampled_nll_is_below_the_negative_elbo_and_falls_with_k():
    x = toy_images(6)
    model = one_dimensional_toy(x, steps=10)  # a rough proposal: clear gaps between the k
    torch.manual_seed(0)
    with torch.no_grad():
        neg_elbo, elbo_se = mean_over_repeats(lambda b: model.negative_elbo(b, samples=16), x, 20_000)
        means = {k: mean_over_repeats(lambda b: model.importance_sampled_nll(b, k), x, 20_000) for k in (1, 4, 32)}
    exact = exact_nll(model, x)

    def below(a, b):  # a < b in expectation, by more than three standard errors
        return torch.all(a[0] < b[0] - 3 * torch.sqrt(a[1] ** 2 + b[1] ** 2))

    # k = 1 is the ELBO with a sampled KL term: the same value in expectation.
    (one, one_se), (thirty_two, thirty_two_se) = means[1], means[32]
    assert torch.all((one - neg_elbo).abs() < 5 * torch.sqrt(one_se ** 2 + elbo_se ** 2))
    assert below(means[4], means[1]) and below(means[32], means[4])
    assert below(means[32], (neg_elbo, elbo_se))
    assert torch.all(thirty_two > exact - 3 * thirty_two_se)


def test_analytic_kl_matches_a_monte_carlo_estimate():
    torch.manual_seed(0)
    model = randomize(VAE(TOY, latent_dim=3, hidden_sizes=[8]), seed=3)
    with torch.no_grad():
        q = model.posterior(toy_images(4))
        analytic = torch.distributions.kl_divergence(q, model.prior())
        z = q.sample((200_000,))
        log_ratio = q.log_prob(z) - model.prior().log_prob(z)
    monte_carlo, stderr = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(len(z))
    assert torch.all((analytic - monte_carlo).abs() < 5 * stderr + 1e-4), (analytic, monte_carlo)


@pytest.mark.parametrize("name", LATENT)
def test_sample_encode_decode_shapes_and_values(name):
    model = randomize(LATENT[name](TOY), std=0.3).eval()
    samples = model.sample(8, torch.Generator().manual_seed(0))
    means = model.sample_means(8, torch.Generator().manual_seed(0))
    codes = model.encode(toy_images(5))
    decoded = model.decode(codes)
    assert samples.shape == means.shape == (8, *TOY)
    assert set(samples.unique().tolist()) <= {0.0, 1.0}
    assert codes.shape == (5, model.latent_dim)
    assert decoded.shape == (5, *TOY)
    assert float(means.min()) >= 0 and float(means.max()) <= 1 and 0 <= float(decoded.min()) <= 1
    assert torch.equal(samples, model.sample(8, torch.Generator().manual_seed(0)))


def test_sample_means_are_the_means_of_the_same_seeded_samples():
    model = randomize(VAE(TOY, latent_dim=2, hidden_sizes=[8]), std=1.0).eval()
    samples = model.sample(20_000, torch.Generator().manual_seed(5))
    paired = model.sample_means(20_000, torch.Generator().manual_seed(5))
    unpaired = model.sample_means(20_000, torch.Generator().manual_seed(6))
    # Paired with its own mean m, a Bernoulli draw s has E(s - m)^2 = E m(1 - m); unpaired, more.
    expected = float((paired * (1 - paired)).mean())
    assert float(((samples - paired) ** 2).mean()) == pytest.approx(expected, rel=0.02)
    assert float(((samples - unpaired) ** 2).mean()) > 1.2 * expected


@pytest.mark.parametrize("name", LATENT)
def test_training_loss_is_fp32_and_finite_under_bf16_autocast(name):
    model = randomize(LATENT[name](TOY), std=0.3)
    x = toy_images(16)
    torch.manual_seed(0)
    full = model.loss(x)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model.loss(x)
    mixed.backward()
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed)
    assert float(mixed.detach()) == pytest.approx(float(full.detach()), rel=0.05)


@pytest.mark.parametrize("key, value", [("latent_dim", 0), ("eval_samples", 0), ("objective", "vi"),
                                        ("architecture", "rnn"), ("hidden_sizes", [])])
def test_bad_params_are_one_line_errors_naming_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        VAE(TOY, **{key: value})


def test_evaluate_reports_the_negative_elbo_only_for_models_that_have_one():
    from models.bernoulli import IndependentBernoulli
    x = toy_images(50)
    metrics = elbo_metrics(LATENT["vae"](TOY).eval(), x, batch_size=20)
    assert set(metrics) == {"test_neg_elbo", "test_neg_elbo_stderr"} and metrics["test_neg_elbo"] > 0
    assert elbo_metrics(IndependentBernoulli(TOY), x, batch_size=20) == {}


def test_two_dimensional_latent_gets_a_scatter_of_the_test_codes(tmp_path):
    model = randomize(VAE(TOY, latent_dim=2, hidden_sizes=[8]), std=0.5).eval()
    cfg = EvaluateConfig(samples=4, completions=2, batch_size=16)
    samples = draw_samples(model, cfg, quality_samples=6)
    written = render_figures(model, samples, toy_images(40), torch.arange(40) % 10, cfg, tmp_path)
    names = {path.name for path in written}
    assert names == {"samples.png", "sample_means.png", "reconstructions.png", "interpolations.png",
                     "latent_scatter.png"}
    assert all(path.stat().st_size > 0 for path in written)
