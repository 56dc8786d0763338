"""The sample-quality scores (pipeline/digit_classifier.py): their formulas, and that on MNIST they rank real
digits above independent-pixel samples above uniform noise."""
import numpy as np
import pytest
import torch

from pipeline.binarize import binarize
from pipeline.data import load_labels, load_split
from pipeline.digit_classifier import (
    ClassifierConfig,
    accuracy,
    embed,
    frechet_distance,
    gaussian_stats,
    inception_score,
    quality_scores,
    train_classifier,
)
from pipeline.params import DataConfig
from pipeline.report import markdown


def random_stats(dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return gaussian_stats(torch.randn(3 * dim, dim, generator=gen, dtype=torch.float64) * torch.rand(dim, generator=gen))


def test_frechet_distance_matches_scipys_matrix_square_root():
    from scipy.linalg import sqrtm
    (mu_a, cov_a), (mu_b, cov_b) = random_stats(6, 0), random_stats(6, 1)
    root = np.real(sqrtm(cov_a.numpy() @ cov_b.numpy()))
    expected = float(((mu_a - mu_b) ** 2).sum()) + np.trace(cov_a.numpy() + cov_b.numpy() - 2 * root)
    assert frechet_distance((mu_a, cov_a), (mu_b, cov_b)) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance((mu_a, cov_a), (mu_a, cov_a)) == pytest.approx(0.0, abs=1e-8)


def test_inception_score_is_the_number_of_equally_used_confident_classes():
    assert inception_score(torch.eye(10, dtype=torch.float64).repeat(3, 1)) == pytest.approx(10.0)
    assert inception_score(torch.eye(10, dtype=torch.float64)[[4] * 30]) == pytest.approx(1.0)
    assert inception_score(torch.full((30, 10), 0.1, dtype=torch.float64)) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def mnist(tmp_path_factory, raw_mnist):
    out = tmp_path_factory.mktemp("binarized")
    binarize(DataConfig(), raw_mnist, out)
    return out


def test_scores_rank_real_digits_above_independent_pixels_above_uniform_noise(mnist):
    cfg = ClassifierConfig(epochs=2, max_train=10000)
    train = load_split("train", cfg.max_train, root=mnist)
    classifier = train_classifier(train, load_labels("train", cfg.max_train, root=mnist), cfg)
    test = load_split("test", 2000, root=mnist)
    assert accuracy(classifier, test, load_labels("test", 2000, root=mnist)) > 0.9
    reference = gaussian_stats(embed(classifier, test)[1])
    gen, n = torch.Generator().manual_seed(0), 300
    independent = (torch.rand(n, *train.shape[1:], generator=gen) < train.mean(0)).float()
    noise = (torch.rand(n, *train.shape[1:], generator=gen) < 0.5).float()
    real, bernoulli, uniform = (quality_scores(classifier, images, reference)
                                for images in (load_split("val", n, root=mnist), independent, noise))
    assert real["inception_score"] > bernoulli["inception_score"] > uniform["inception_score"]
    assert real["frechet_distance"] < bernoulli["frechet_distance"] < uniform["frechet_distance"]


def test_the_report_states_the_ceiling_beside_the_scores():
    from tests.test_report import toy_table
    ceiling = {"quality_samples": 500, "test_accuracy": 0.975, "real_inception_score": 8.8,
               "real_frechet_distance": 13.4}
    text = markdown(toy_table().assign(vs_best_exact=None, vs_best_exact_stderr=None), "smoke", ceiling)
    assert "500 real test images: inception score 8.80, Frechet distance 13.4" in text
    assert "| IS / FD " in text.split("## Binarized MNIST, exact")[1] and "| 5.00 / 80.0 " in text
