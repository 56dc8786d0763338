"""Checks every exact model must pass, on images small enough to enumerate."""
import pytest
import torch

from tests.helpers import (
    all_binary_images,
    chi_square_pvalue,
    fast_and_generic_fill,
    input_jacobian,
    randomize,
    total_probability,
)
from tests.toys import AUTOREGRESSIVE, EXACT

TOY = (1, 4, 4)


@pytest.mark.parametrize("name", EXACT)
def test_probabilities_sum_to_one_over_all_4x4_images(name):
    model = randomize(EXACT[name](TOY))
    assert total_probability(model, TOY) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_logit_i_depends_only_on_earlier_pixels(name):
    model = randomize(AUTOREGRESSIVE[name](TOY))
    masks = range(getattr(model, "num_masks", 1))
    x = torch.bernoulli(torch.full(TOY, 0.5), generator=torch.Generator().manual_seed(1))
    for k in masks:
        if hasattr(model, "use_mask"):
            model.use_mask(k)
        position = torch.empty(model.num_pixels, dtype=torch.long)
        position[model.ordering()] = torch.arange(model.num_pixels)
        jacobian = input_jacobian(model.pixel_params, x)
        allowed = position[None, :] < position[:, None]  # [i, j]: j comes before i
        assert torch.all(jacobian[~allowed] == 0), f"mask {k}: a logit sees its own or a later pixel"
        assert torch.count_nonzero(jacobian[allowed]) > 0, f"mask {k}: no logit depends on anything"


@pytest.mark.parametrize("name", EXACT)
def test_sample_frequencies_match_model_probabilities(name):
    shape = (1, 2, 2)
    model = randomize(EXACT[name](shape), std=1.0).eval()
    images = all_binary_images(shape)
    probs = torch.exp(-model.nll(images).detach().double())
    samples = model.sample(20_000, torch.Generator().manual_seed(0))
    assert set(samples.unique().tolist()) <= {0.0, 1.0}
    index = (samples.flatten(1) * (2 ** torch.arange(3, -1, -1))).sum(1).long()
    counts = torch.bincount(index, minlength=len(images)).double()
    assert chi_square_pvalue(counts, probs) > 1e-3


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_completion_keeps_observed_pixels_and_fills_the_rest(name):
    model = randomize(AUTOREGRESSIVE[name](TOY)).eval()
    x = torch.ones(3, *TOY)
    observed = torch.zeros_like(x, dtype=torch.bool)
    observed[..., :2, :] = True
    completed = model.complete(x, observed, torch.Generator().manual_seed(0))
    assert torch.equal(completed[observed], x[observed])
    assert set(completed.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name", EXACT)
def test_same_seed_same_samples(name):
    model = randomize(EXACT[name](TOY)).eval()
    a = model.sample(8, torch.Generator().manual_seed(3))
    b = model.sample(8, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_fast_sampling_equals_one_full_pass_per_pixel(name):
    """A family's own `fill` (caches, incremental state) must draw exactly what the generic one does."""
    fast, reference = fast_and_generic_fill(randomize(AUTOREGRESSIVE[name](TOY)).eval())
    assert torch.equal(fast, reference)
