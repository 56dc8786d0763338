"""The per-pixel distributions over grey levels (models/nn/pixel_distributions.py)."""
import pytest
import torch

from models.nn.pixel_distributions import Categorical, DiscretizedLogisticMixture, pixel_distribution

DISTRIBUTIONS = {
    "logistic_mixture_256": lambda: DiscretizedLogisticMixture(256, 5),
    "logistic_mixture_4": lambda: DiscretizedLogisticMixture(4, 2),
    "one_logistic_256": lambda: DiscretizedLogisticMixture(256, 1),
    "softmax_256": lambda: Categorical(256),
}


def random_params(distribution, spread: float = 3.0, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(4, distribution.params_per_pixel, 2, 3, generator=generator, dtype=torch.float64) * spread


@pytest.mark.parametrize("name", DISTRIBUTIONS)
@pytest.mark.parametrize("spread", [0.1, 3.0, 30.0])  # 30: scales from e^-7 to e^30, means far outside [-1, 1]
def test_the_levels_probabilities_sum_to_one(name, spread):
    distribution = DISTRIBUTIONS[name]()
    log_probs = distribution.level_log_probs(random_params(distribution, spread))
    assert log_probs.shape == (4, distribution.levels, 2, 3)
    assert torch.isfinite(log_probs).all()
    assert torch.allclose(log_probs.exp().sum(1), torch.ones(4, 2, 3, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_log_prob_is_the_observed_levels_entry(name):
    distribution = DISTRIBUTIONS[name]()
    params = random_params(distribution)
    x = torch.randint(0, distribution.levels, (4, 2, 3), generator=torch.Generator().manual_seed(1)).double()
    expected = distribution.level_log_probs(params).gather(1, x.long().unsqueeze(1)).squeeze(1)
    assert torch.allclose(distribution.log_prob(params, x), expected, atol=1e-12)


def test_a_logistic_bins_mass_is_the_difference_of_its_cdf():
    """One component with mean 0 and scale 0.1 on 4 levels: bins split [-1, 1] at -2/3, 0 and 2/3."""
    distribution = DiscretizedLogisticMixture(4, 1)
    params = torch.tensor([0.0, 0.0, torch.log(torch.tensor(0.1))], dtype=torch.float64).view(1, 3, 1)
    # levels 0..3 sit at -1, -1/3, 1/3, 1: the bins are (-inf, -2/3], [-2/3, 0], [0, 2/3], [2/3, inf)
    edges = torch.tensor([-2 / 3, 0.0, 2 / 3], dtype=torch.float64) / 0.1
    cdf = torch.sigmoid(edges)
    expected = torch.stack([cdf[0], cdf[1] - cdf[0], cdf[2] - cdf[1], 1 - cdf[2]])
    assert torch.allclose(distribution.level_log_probs(params).exp().flatten(), expected, atol=1e-14)


@pytest.mark.parametrize("name", ["logistic_mixture_4", "softmax_256"])
def test_draws_follow_the_probabilities(name):
    distribution = DISTRIBUTIONS[name]()
    params = random_params(distribution, 1.0)[:1, :, :1, :1].expand(20_000, -1, 1, 1)
    noise = torch.rand(20_000, 1, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    draws = distribution.draw(params, noise)
    assert draws.dtype == torch.float64 and draws.min() >= 0 and draws.max() <= distribution.levels - 1
    assert torch.equal(draws, draws.round())
    frequencies = torch.bincount(draws.long().flatten(), minlength=distribution.levels).double() / 20_000
    probabilities = distribution.level_log_probs(params[:1]).exp().flatten()
    assert (frequencies - probabilities).abs().max() < 0.015
    assert torch.allclose(distribution.mean(params[:1]).flatten(),
                          (probabilities * torch.arange(distribution.levels)).sum() / (distribution.levels - 1))


def test_an_unknown_output_or_too_few_levels_is_a_clear_error():
    with pytest.raises(ValueError, match="output must be 'logistic_mixture' or 'softmax'"):
        pixel_distribution("gaussian", 256, 5)
    with pytest.raises(ValueError, match="pixel_levels must be >= 2"):
        pixel_distribution("softmax", 1, 5)
    with pytest.raises(ValueError, match="components must be >= 1"):
        pixel_distribution("logistic_mixture", 256, 0)
