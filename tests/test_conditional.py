"""Class-conditional models (`conditional: true`): p(x | y) for every y is a distribution of its own,
the label prior mixes them into the marginal that the shared tests check (tests/toys.py, CONDITIONAL),
each logit still sees only earlier pixels, the fast samplers honour the labels, the training loop
feeds labels, and evaluate's generative-classifier numbers agree with Bayes' rule."""
import inspect
import math
import typing

import pytest
import torch

from models import build_model
from models.base import ClassConditional
from models.vae import VAE
from pipeline.evaluate import conditional_metrics
from pipeline.train_config import TrainConfig
from pipeline.training_loop import TrainingData, fit, mean_nll
from tests.helpers import all_binary_images, fast_and_generic_fill, input_jacobian, randomize
from tests.toys import CONDITIONAL, with_label_prior

TOY = (1, 4, 4)


@pytest.mark.parametrize("name", CONDITIONAL)
def test_every_class_conditional_distribution_sums_to_one(name):
    model = randomize(CONDITIONAL[name](TOY)).eval()
    images = all_binary_images(TOY)
    for y in (0, 7):
        with torch.no_grad():
            nll = model.nll(images, labels=torch.full((len(images),), y))
        assert float(torch.exp(-nll.double()).sum()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("name", CONDITIONAL)
def test_logits_depend_on_the_label_and_only_on_earlier_pixels(name):
    model = randomize(CONDITIONAL[name](TOY))
    x = torch.bernoulli(torch.full(TOY, 0.5), generator=torch.Generator().manual_seed(1))
    position = torch.empty(model.num_pixels, dtype=torch.long)
    position[model.ordering()] = torch.arange(model.num_pixels)
    jacobian = input_jacobian(lambda batch: model.pixel_params(batch, labels=torch.tensor([3])), x)
    assert torch.all(jacobian[~(position[None, :] < position[:, None])] == 0)
    with torch.no_grad():
        three, five = (model.pixel_params(x[None], labels=torch.tensor([y])) for y in (3, 5))
    assert (three != five).flatten().all(), "some pixel's logit ignores the label"


@pytest.mark.parametrize("name", CONDITIONAL)
def test_fast_sampling_with_labels_equals_one_full_pass_per_pixel(name):
    model = randomize(CONDITIONAL[name](TOY)).eval()
    fast, reference = fast_and_generic_fill(model, labels=torch.tensor([0, 1, 2, 7, 8, 9]))
    assert torch.equal(fast, reference)


@pytest.mark.parametrize("name", ["made_conditional", "pixelcnn_conditional"])  # one mask: loss and nll agree
def test_the_training_loss_given_labels_is_the_mean_conditional_nll(name):
    model = randomize(CONDITIONAL[name](TOY))
    x, labels = torch.bernoulli(torch.full((5, *TOY), 0.5)), torch.tensor([0, 3, 3, 9, 1])
    with torch.no_grad():
        assert float(model.loss(x, labels)) == pytest.approx(float(model.nll(x, labels=labels).mean()), rel=1e-6)


def test_labels_are_refused_by_unconditional_models_and_required_by_conditional_logits():
    x = torch.zeros(2, *TOY)
    with pytest.raises(ValueError, match="without conditional"):
        build_model("made", TOY, hidden_sizes=[8]).pixel_params(x, labels=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="needs labels"):
        build_model("pixelcnn", TOY, channels=4, residual_blocks=0, first_kernel=3, conditional=True).pixel_params(x)
    with pytest.raises(ValueError, match="conditional"):
        VAE(TOY, architecture="conv", conditional=True)
    assert not isinstance(build_model("made", TOY, hidden_sizes=[8]), ClassConditional)


@pytest.mark.parametrize("name", CONDITIONAL)
def test_class_conditional_is_recognised_as_python_3_12_checks_protocols(name):
    # From Python 3.12 isinstance() finds a protocol's members with inspect.getattr_static, which
    # misses nn.Module buffers and submodules: every member must be a plain attribute or a method.
    members = typing._get_protocol_attrs(ClassConditional)
    conditional, unconditional = CONDITIONAL[name](TOY), build_model("made", TOY, hidden_sizes=[8])
    missing = object()
    assert all(inspect.getattr_static(conditional, m, missing) is not missing for m in members)
    assert any(inspect.getattr_static(unconditional, m, missing) is missing for m in members)


def digit_images(labels: torch.Tensor) -> torch.Tensor:
    """Digit y lights pixel y (of 16) and, independently, the others with probability 0.1."""
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(len(labels), 16, generator=gen) < 0.1).float()
    x[torch.arange(len(labels)), labels] = 1
    return x.view(-1, *TOY)


def test_the_training_loop_feeds_labels_and_the_label_makes_images_cheaper():
    gen = torch.Generator().manual_seed(0)
    train_labels, val_labels = torch.randint(10, (2000,), generator=gen), torch.randint(10, (500,), generator=gen)
    model = build_model("made", TOY, hidden_sizes=[32], conditional=True)
    model.set_label_prior(train_labels)
    cfg = TrainConfig(epochs=6, batch_size=50, lr=0.02, patience=None, device="cpu", eval_batch_size=500)
    result = fit(model, TrainingData(digit_images(train_labels), None, "cpu", False, train_labels),
                 digit_images(val_labels), cfg, quiet=True, val_labels=val_labels)
    val = digit_images(val_labels)
    assert result.best_val_nll == pytest.approx(mean_nll(model, val, 500, val_labels), rel=1e-6)
    # the label tells which pixel is lit (the mutual information is below log 10 = 2.3 nats: others may be lit too)
    assert 1.0 < mean_nll(model, val, 500) - result.best_val_nll < math.log(10)


@pytest.mark.parametrize("make", [CONDITIONAL["made_conditional"],
                                  lambda shape: with_label_prior(VAE(shape, latent_dim=2, hidden_sizes=[8],
                                                                     eval_samples=4, conditional=True))])
def test_generative_classifier_numbers_follow_bayes_rule(make):
    model = randomize(make(TOY), std=0.5).eval()
    labels = torch.arange(10).repeat(3)
    x = digit_images(labels)
    torch.manual_seed(0)
    metrics, marginal = conditional_metrics(model, x, labels, batch_size=7)
    torch.manual_seed(0)
    joint = torch.cat([model.class_log_joint(x[i:i + 7]).double() for i in range(0, len(x), 7)])
    log_prior = model.label_log_prior.double()[labels]
    assert torch.allclose(marginal, -torch.logsumexp(joint, 1))
    assert metrics["generative_accuracy"] == pytest.approx(float((joint.argmax(1) == labels).double().mean()))
    # -log p(x) = -log p(x|y) - log p(y) + log p(y|x), averaged over the images
    assert float(marginal.mean()) == pytest.approx(
        metrics["test_conditional_nll"] - float(log_prior.mean()) - metrics["test_label_nll"], rel=1e-9)
    assert metrics["label_nll_estimator"] == model.estimator


def test_conditional_vae_samples_follow_the_given_labels_and_its_marginal_bound_holds():
    model = with_label_prior(randomize(VAE(TOY, latent_dim=2, hidden_sizes=[8], eval_samples=64, conditional=True),
                                       std=0.5)).eval()
    means_a = model.sample_means(5, torch.Generator().manual_seed(0), labels=torch.full((5,), 2))
    means_b = model.sample_means(5, torch.Generator().manual_seed(0), labels=torch.full((5,), 8))
    assert not torch.allclose(means_a, means_b)
    x = digit_images(torch.arange(10))
    torch.manual_seed(0)
    assert (model.negative_elbo(x) >= model.nll(x) - 0.5).all()  # the ELBO bound is the looser one
