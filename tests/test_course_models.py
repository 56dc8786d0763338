"""The Markov chain and the Bernoulli mixture beyond the shared checks of tests/toys.py: the
closed-form and EM fits, and that both go through the training loop."""
import pytest
import torch

from models import build_model
from models.markov import MarkovChain
from models.mixture import BernoulliMixture
from pipeline.train_config import TrainConfig
from pipeline.training_loop import TrainingData, fit, mean_nll

SHAPE = (1, 3, 4)


def images_from_a_chain(n: int, seed: int) -> torch.Tensor:
    """Raster-order chains that copy the previous pixel with probability 0.8."""
    gen = torch.Generator().manual_seed(seed)
    flat = torch.zeros(n, 12)
    flat[:, 0] = (torch.rand(n, generator=gen) < 0.3).float()
    for i in range(1, 12):
        copy = torch.rand(n, generator=gen) < 0.8
        flat[:, i] = torch.where(copy, flat[:, i - 1], 1 - flat[:, i - 1])
    return flat.view(n, *SHAPE)


def empirical_transitions(images: torch.Tensor) -> tuple[float, list[float], list[float]]:
    """p(x_1 = 1) and p(x_i = 1 | x_{i-1} = v) for v = 0, 1, counted one image at a time."""
    rows = images.flatten(1).tolist()
    first = sum(r[0] for r in rows) / len(rows)
    after = {0: [], 1: []}
    for i in range(1, len(rows[0])):
        for v in (0, 1):
            followers = [r[i] for r in rows if r[i - 1] == v]
            after[v].append(sum(followers) / len(followers))
    return first, after[0], after[1]


def config(**overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 50, "lr": 0.1, "patience": None, "device": "cpu",
                          "eval_batch_size": 500, **overrides})


def test_markov_has_2d_minus_1_parameters():
    assert sum(p.numel() for p in MarkovChain(SHAPE).parameters()) == 2 * 12 - 1


def test_closed_form_markov_fit_equals_the_empirical_transition_frequencies():
    images = images_from_a_chain(400, seed=0)
    model = MarkovChain(SHAPE, smoothing=1e-9)
    model.fit_epoch(images)
    first, after_0, after_1 = empirical_transitions(images)
    assert float(torch.sigmoid(model.first.detach())) == pytest.approx(first, abs=1e-6)
    assert torch.sigmoid(model.after_0.detach()).tolist() == pytest.approx(after_0, abs=1e-6)
    assert torch.sigmoid(model.after_1.detach()).tolist() == pytest.approx(after_1, abs=1e-6)


def test_smoothing_adds_pseudo_counts_and_keeps_unseen_transitions_finite():
    images = torch.zeros(10, *SHAPE)  # never a 1: every "after a 1" transition is unseen
    model = MarkovChain(SHAPE, smoothing=1.0)
    model.fit_epoch(images)
    assert torch.sigmoid(model.after_0.detach()).tolist() == pytest.approx([1 / 12] * 11)   # (0 + 1) / (10 + 2)
    assert torch.sigmoid(model.after_1.detach()).tolist() == pytest.approx([0.5] * 11)      # (0 + 1) / (0 + 2)
    assert torch.isfinite(model.nll(torch.ones(1, *SHAPE))).all()


def test_the_training_loop_fits_the_chain_from_counts_in_one_epoch_and_gradients_approach_it():
    train, val = images_from_a_chain(1000, seed=0), images_from_a_chain(500, seed=1)
    counted = MarkovChain(SHAPE)
    result = fit(counted, TrainingData(train, None, "cpu", False), val, config(), quiet=True)
    reference = MarkovChain(SHAPE)
    expected_train_nll = reference.fit_epoch(train)
    assert torch.equal(counted.after_1, reference.after_1)
    assert result.history[0]["train_loss"] == pytest.approx(expected_train_nll, rel=1e-6)
    trained = MarkovChain(SHAPE, fit="gradient")
    fit(trained, TrainingData(train, None, "cpu", False), val, config(epochs=15), quiet=True)
    assert mean_nll(trained, train, 500) >= mean_nll(counted, train, 500) - 0.01  # counts are the optimum
    assert mean_nll(trained, val, 500) == pytest.approx(result.best_val_nll, abs=0.1)


def test_em_never_increases_the_nll_and_recovers_a_two_component_mixture():
    gen = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.9] * 6 + [0.1] * 6, [0.1] * 6 + [0.9] * 6])
    which = torch.randint(2, (3000,), generator=gen)
    images = (torch.rand(3000, 12, generator=gen) < means[which]).float().view(-1, *SHAPE)
    torch.manual_seed(0)
    model = BernoulliMixture(SHAPE, components=2, smoothing=0.01)
    losses = [model.fit_epoch(images) for _ in range(20)]
    assert all(b <= a + 1e-5 for a, b in zip(losses, losses[1:]))  # float32 parameters
    found = model.component_means().view(2, 12)
    assert torch.allclose(found.sort(0).values, means.sort(0).values, atol=0.05)
    true_nll = -torch.logsumexp(torch.distributions.Bernoulli(means).log_prob(images.view(-1, 1, 12)).sum(-1)
                                + torch.log(torch.tensor(0.5)), 1).mean()
    assert float(model.nll(images).mean().detach()) == pytest.approx(float(true_nll), abs=0.05)


def test_component_means_come_most_probable_first():
    model = BernoulliMixture(SHAPE, components=3)
    with torch.no_grad():
        model.mixing_logits.copy_(torch.tensor([0.0, 2.0, 1.0]))
    means = model.component_means()
    assert means.shape == (3, *SHAPE)
    assert torch.allclose(means[0], torch.sigmoid(model.pixel_logits[1].detach()).view(SHAPE))


@pytest.mark.parametrize("family, kwargs, key", [
    ("markov", {"fit": "em"}, "fit"), ("markov", {"smoothing": 0.0}, "smoothing"),
    ("mixture", {"components": 0}, "components"), ("mixture", {"fit": "counts"}, "fit"),
])
def test_bad_params_are_one_line_errors_naming_the_key(family, kwargs, key):
    with pytest.raises(ValueError, match=key):
        build_model(family, SHAPE, **kwargs)
