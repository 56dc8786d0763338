"""Autoregressive models over grey levels (PixelCNN, Gated PixelCNN, MADE, the RNN and the transformer
with a discretized logistic mixture or a softmax per pixel): exact normalization over every 2x2 image
of 4 levels, the dependency test, the fast samplers against the generic one, and checkpoints."""
import pytest
import torch

from models import FAMILIES, build_model
from models.base import AutoregressiveModel
from models.checkpoint import load_checkpoint, save_checkpoint
from pipeline.model_params import models_grey_levels
from tests.helpers import all_level_images, randomize

LEVELS = 4
OUTPUTS = ("logistic_mixture", "softmax")
GREY = {  # name -> (family, kwargs) for images of a few levels
    "pixelcnn": ("pixelcnn", {"channels": 8, "residual_blocks": 1, "first_kernel": 3, "kernel": 3, "head_channels": 8}),
    "made": ("made", {"hidden_sizes": [12, 12]}),
    "made_direct": ("made", {"hidden_sizes": [12], "direct_connections": True}),
    "made_masks": ("made", {"hidden_sizes": [12], "num_masks": 3, "eval_masks": 3, "order_agnostic": True,
                            "direct_connections": True}),
    "gated_pixelcnn": ("gated_pixelcnn", {"channels": 6, "layers": 2, "first_kernel": 3, "kernel": 3,
                                          "head_channels": 8}),
    "rnn": ("rnn", {"hidden": 8, "embedding": 4, "input_window": 2}),
    "transformer": ("transformer", {"dim": 8, "layers": 2, "heads": 2, "input_window": 2}),
}

BINARY_ONLY = {  # family -> why it takes no pixel_levels (the other families are tested on grey levels)
    "bernoulli": "independent Bernoulli pixels; `categorical` is its grey-level counterpart",
    "fvsbn": "a logistic regression per pixel is the model",
    "nade": "defined for binary pixels; its real-valued relative, RNADE, is another model",
    "markov": "a pair of Bernoulli parameters per position; 256 x 256 transitions per position is another model",
    "mixture": "a mixture of independent-Bernoulli components; a mixture of categoricals is another model",
}


def test_every_family_takes_grey_levels_or_gives_the_reason_it_does_not():
    assert {family for family in FAMILIES if not models_grey_levels(family)} == set(BINARY_ONLY)


def grey_model(name: str, output: str, shape, levels: int = LEVELS, seed: int = 0):
    family, kwargs = GREY[name]
    model = build_model(family, shape, pixel_levels=levels, output=output, components=2, **kwargs)
    return randomize(model, std=0.5, seed=seed).double().eval()


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("name", GREY)
def test_probabilities_sum_to_one_over_every_2x2_image_of_4_levels(name, output):
    model = grey_model(name, output, (1, 2, 2))
    with torch.no_grad():
        total = torch.exp(-model.nll(all_level_images((1, 2, 2), LEVELS))).sum()
    assert abs(float(total) - 1) < 1e-9


def influence(model, shape) -> torch.Tensor:
    """(D, D): entry [i, j] is True when pixel j changes a parameter of pixel i's conditional, for
    some random image (one backward pass per image and pixel's parameter)."""
    d = shape[1] * shape[2]
    seen = torch.zeros(d, d, dtype=torch.bool)
    for seed in range(3):
        image = torch.randint(0, LEVELS, shape, generator=torch.Generator().manual_seed(seed)).double()
        copies = image.expand(d, *shape).clone().requires_grad_()
        params = model.pixel_params(copies).reshape(d, model.params_per_pixel, d)  # copy k carries pixel k's parameters
        params.diagonal(dim1=0, dim2=2).sum().backward()
        seen |= copies.grad.view(d, d) != 0
    return seen


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("name", GREY)
def test_a_pixels_conditional_depends_only_on_the_pixels_before_it(name, output):
    shape = (1, 3, 4)
    model = grey_model(name, output, shape)
    seen = influence(model, shape)
    order = model.ordering().tolist()
    position = {pixel: k for k, pixel in enumerate(order)}
    for i in range(seen.shape[0]):
        later = [j for j in range(seen.shape[1]) if position[j] >= position[i] and seen[i, j]]
        assert not later, f"pixel {i}'s conditional depends on pixels at or after it: {later}"
    assert seen.any(), "nothing depends on anything: the test would pass for any model"


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("name", ["pixelcnn", "made_direct", "gated_pixelcnn", "rnn", "transformer"])
def test_the_fast_sampler_equals_the_generic_one_given_the_same_noise(name, output):
    shape, batch = (1, 3, 4), 5
    model = grey_model(name, output, shape, levels=256)
    gen = torch.Generator().manual_seed(2)
    x = torch.randint(0, 256, (batch, *shape), generator=gen).double()
    noise = torch.rand(x.shape, generator=gen, dtype=torch.float64)
    observed = torch.rand(x.shape, generator=gen) < 0.3
    fast = model.fill(x * observed, observed, noise)
    assert torch.equal(fast, AutoregressiveModel.fill(model, x * observed, observed, noise))
    assert torch.equal(fast[observed], x[observed])
    assert torch.equal(fast, fast.round()) and fast.min() >= 0 and fast.max() <= 255


def test_samples_follow_the_models_probabilities():
    model = grey_model("pixelcnn", "logistic_mixture", (1, 1, 2), levels=3).float()
    samples = model.sample(6000, torch.Generator().manual_seed(0)).flatten(1)
    images = all_level_images((1, 1, 2), 3).float()
    with torch.no_grad():
        expected = torch.exp(-model.nll(images))
    counts = torch.stack([(samples == image.flatten()).all(1).double().mean() for image in images])
    assert (counts - expected).abs().max() < 0.025


def test_grey_settings_on_binary_pixels_and_too_few_levels_are_errors():
    with pytest.raises(ValueError, match="output and components choose the conditional over grey levels"):
        build_model("pixelcnn", (1, 4, 4), output="softmax")
    with pytest.raises(ValueError, match="pixel_levels must be >= 2"):
        build_model("made", (1, 4, 4), pixel_levels=1)
    with pytest.raises(ValueError, match="output must be 'logistic_mixture' or 'softmax'"):
        build_model("made", (1, 4, 4), pixel_levels=256, output="gaussian")


@pytest.mark.parametrize("name", ["pixelcnn", "made_masks", "gated_pixelcnn", "rnn", "transformer"])
def test_a_grey_checkpoint_round_trips_with_the_same_nll(name, tmp_path):
    family, kwargs = GREY[name]
    kwargs = {**kwargs, "pixel_levels": 256, "output": "logistic_mixture", "components": 3}
    model = randomize(build_model(family, (1, 4, 4), **kwargs), std=0.3).eval()
    save_checkpoint(tmp_path / "model.pt", model, family, kwargs)
    loaded, _ = load_checkpoint(tmp_path / "model.pt")
    x = torch.randint(0, 256, (3, 1, 4, 4), generator=torch.Generator().manual_seed(0)).float()
    assert loaded.pixel_levels == 256 and torch.equal(loaded.nll(x), model.nll(x))


@pytest.mark.parametrize("family", ["pixelcnn", "made", "gated_pixelcnn", "rnn", "transformer"])
def test_grey_training_under_bf16_autocast_is_finite_and_close_to_fp32(family):
    model = randomize(build_model(family, (1, 4, 4), pixel_levels=256, **GREY[family][1]), std=0.1)
    x = torch.randint(0, 256, (4, 1, 4, 4), generator=torch.Generator().manual_seed(0)).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss(x)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        assert abs(loss.item() - model.loss(x).item()) < 0.01 * loss.item()
