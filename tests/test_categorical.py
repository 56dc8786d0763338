"""The independent-pixel baseline over grey levels (models/categorical.py): exact normalization over
every tiny image, its equivalence with independent Bernoulli pixels at two levels, the fit from
counts, sampling, the FLOP count and checkpoints."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models import build_model
from models.base import CountsItsTrainingFlops, FitsWithoutGradients
from models.bernoulli import IndependentBernoulli
from models.categorical import IndependentCategorical
from models.checkpoint import load_checkpoint, save_checkpoint
from pipeline.flops import training_flops_per_image
from tests.helpers import all_binary_images, all_level_images, chi_square_pvalue, randomize

TOY = (1, 2, 2)
LEVELS = 4


def random_levels(n: int, levels: int, shape=TOY, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, levels, (n, *shape), generator=torch.Generator().manual_seed(seed)).float()


def test_probabilities_sum_to_one_over_every_2x2_image_with_4_levels():
    model = randomize(IndependentCategorical(TOY, pixel_levels=LEVELS), std=2.0).double()
    images = all_level_images(TOY, LEVELS)
    assert len(images) == LEVELS ** 4
    with torch.no_grad():
        total = torch.exp(-model.nll(images)).sum()
    assert float(total) == pytest.approx(1.0, abs=1e-12)


def test_two_levels_are_the_independent_bernoulli_model_with_matching_logits():
    shape = (1, 4, 4)
    bernoulli = randomize(IndependentBernoulli(shape), std=2.0).double()
    categorical = IndependentCategorical(shape, pixel_levels=2).double()
    with torch.no_grad():  # logits (0, t) for level 0 and level 1: softmax = (1 - sigmoid(t), sigmoid(t))
        categorical.logits[1].copy_(bernoulli.logits)
        images = all_binary_images(shape).double()
        assert torch.allclose(categorical.nll(images), bernoulli.nll(images), rtol=0, atol=1e-12)


def test_fit_from_counts_gives_the_smoothed_level_frequencies_and_returns_their_nll():
    model = IndependentCategorical(TOY, pixel_levels=LEVELS, smoothing=0.5)
    images = random_levels(500, LEVELS)
    training_nll = model.fit_epoch(images)
    flat = images.flatten(1).long()
    for pixel in range(model.num_pixels):
        counts = torch.bincount(flat[:, pixel], minlength=LEVELS).double()
        expected = (counts + 0.5) / (len(images) + LEVELS * 0.5)
        assert torch.allclose(model.level_log_probs().flatten(1)[:, pixel].double().exp(), expected, atol=1e-6)
    assert training_nll == pytest.approx(float(model.nll(images).detach().double().mean()), rel=1e-6)
    assert isinstance(model, FitsWithoutGradients) and model.fits_without_gradients
    assert not IndependentCategorical(TOY, fit="gradient").fits_without_gradients


def test_fit_from_counts_is_the_maximum_likelihood_as_smoothing_vanishes():
    """With every level seen at every pixel, the gradient of the mean NLL at the fitted logits is
    p - frequency, which vanishes as the smoothing does."""
    model = IndependentCategorical(TOY, pixel_levels=LEVELS, smoothing=1e-9)
    images = random_levels(400, LEVELS, seed=3)
    model.fit_epoch(images)
    model.nll(images).mean().backward()
    assert model.logits.grad.abs().max() < 1e-5


def test_samples_are_levels_in_range_drawn_with_the_models_probabilities():
    model = randomize(IndependentCategorical(TOY, pixel_levels=LEVELS), std=1.0).eval()
    samples = model.sample(20_000, torch.Generator().manual_seed(0))
    assert samples.shape == (20_000, *TOY) and samples.dtype == torch.float32
    assert torch.equal(samples, samples.round()) and samples.min() >= 0 and samples.max() <= LEVELS - 1
    assert torch.equal(samples, model.sample(20_000, torch.Generator().manual_seed(0)))
    images = all_level_images(TOY, LEVELS)
    probabilities = torch.exp(-model.nll(images).detach().double())
    index = (samples.flatten(1).long() * LEVELS ** torch.arange(3, -1, -1)).sum(1)  # the image's row in `images`
    counts = torch.bincount(index, minlength=len(images)).double()
    assert chi_square_pvalue(counts, probabilities) > 1e-3


def test_samples_with_256_levels_reach_the_levels_the_model_favours():
    model = IndependentCategorical((1, 1, 3), pixel_levels=256)
    with torch.no_grad():
        model.logits[[0, 128, 255], 0, 0, [0, 1, 2]] = 30.0  # each pixel almost surely one level
    samples = model.sample(50, torch.Generator().manual_seed(1))
    assert torch.equal(samples, torch.tensor([0.0, 128.0, 255.0]).view(1, 1, 1, 3).expand(50, -1, -1, -1))


def test_the_pipeline_takes_the_familys_own_flop_count_where_the_counter_sees_nothing():
    model = IndependentCategorical((1, 28, 28), pixel_levels=256, fit="gradient")
    counter = FlopCounterMode(display=False)
    with counter:
        model.loss(random_levels(4, 256, (1, 28, 28))).backward()
    assert counter.get_total_flops() == 0
    assert isinstance(model, CountsItsTrainingFlops)
    assert training_flops_per_image(model) == model.training_flops_per_image() > 0


def test_a_checkpoint_with_256_levels_round_trips(tmp_path):
    kwargs = {"pixel_levels": 256, "smoothing": 0.1}
    model = build_model("categorical", (1, 4, 4), **kwargs)
    images = random_levels(200, 256, (1, 4, 4))
    model.fit_epoch(images)
    save_checkpoint(tmp_path / "model.pt", model, "categorical", kwargs)
    loaded, _ = load_checkpoint(tmp_path / "model.pt")
    assert isinstance(loaded, IndependentCategorical) and loaded.pixel_levels == 256
    assert torch.equal(loaded.nll(images), model.nll(images))


@pytest.mark.parametrize("key, value", [("pixel_levels", 1), ("fit", "em"), ("smoothing", 0.0)])
def test_bad_params_are_one_line_errors_naming_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        IndependentCategorical(TOY, **{key: value})
