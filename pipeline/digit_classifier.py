"""The digit classifier (its network and training) and the sample-quality scores it gives: an
MNIST-specific Inception Score and Frechet distance.

The Inception Score and the FID of the literature use an ImageNet network; on binarized MNIST the
usual substitute, used here, is a small convolutional classifier trained on the training split's
binarized digits (the `classifier` stage). For n images (a model's samples, or real test images as
the ceiling):

- inception_score = exp(mean_x KL(p(y | x) || p(y))), p(y) the mean of p(y | x) over the n images:
  high when each image is confidently one digit and all ten digits appear (at most 10);
- frechet_distance = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians fitted to
  the classifier's penultimate features of the n images and of the whole test set: 0 for identical
  feature statistics, lower is better.

Both depend on this classifier and on n, so they compare models within this benchmark only, never
with numbers from elsewhere. The trained classifier is kept in one file (`save_classifier`,
`load_classifier`), which the classifier stage writes and the evaluate stage reads.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.settings import DIGIT_CLASSES, require_positive
from pipeline.io import PipelineError, atomic_path
from pipeline.layout import IMAGE_SHAPE
from pipeline.results import CLASSIFIER_MODEL


@dataclass(frozen=True)
class ClassifierConfig:
    channels: int = 16          # the first convolution's channels (the second has twice as many)
    features: int = 64          # the penultimate layer: the features of the Frechet distance
    epochs: int = 2
    batch_size: int = 100
    lr: float = 2.0e-3
    seed: int = 0
    max_train: int | None = None
    quality_samples: int = 1000  # images scored per model (its samples) and for the ceiling (real test images)

    def __post_init__(self):
        require_positive(channels=self.channels, features=self.features, epochs=self.epochs,
                         batch_size=self.batch_size, max_train=self.max_train)
        if self.quality_samples < 2:
            raise ValueError(f"quality_samples must be >= 2 (a covariance needs two images), got {self.quality_samples}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be > 0 and finite, got {self.lr}")


class DigitClassifier(nn.Module):
    """Two stride-2 5x5 convolutions (28 -> 14 -> 7), a `features`-unit layer, ten logits."""

    def __init__(self, channels: int = 16, features: int = 64, num_classes: int = DIGIT_CLASSES):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, channels, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 5, stride=2, padding=2), nn.ReLU(),
            nn.Flatten(), nn.LazyLinear(features), nn.ReLU())
        self.head = nn.Linear(features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_classifier(cfg: ClassifierConfig, image_shape) -> DigitClassifier:
    model = DigitClassifier(cfg.channels, cfg.features)
    model(torch.zeros(1, *image_shape))  # sizes the lazy layer for this image shape
    return model


@dataclass(frozen=True)
class TrainedClassifier:
    model: DigitClassifier
    config: ClassifierConfig
    reference: tuple[torch.Tensor, torch.Tensor]  # the binarized test set's feature (mean, covariance)
    binarization: str                             # how the digits it learnt were binarized (data.binarization)


def save_classifier(trained: TrainedClassifier) -> None:
    with atomic_path(CLASSIFIER_MODEL) as tmp:
        torch.save({"config": dataclasses.asdict(trained.config), "state_dict": trained.model.state_dict(),
                    "test_mean": trained.reference[0], "test_cov": trained.reference[1],
                    "binarization": trained.binarization}, tmp)


def load_classifier() -> TrainedClassifier:
    if not CLASSIFIER_MODEL.exists():
        raise PipelineError(f"{CLASSIFIER_MODEL} is missing: run `dvc repro classifier` first")
    saved = torch.load(CLASSIFIER_MODEL, map_location="cpu", weights_only=True)
    if "binarization" not in saved:
        raise PipelineError(f"{CLASSIFIER_MODEL} predates grey-level scoring: run `dvc repro classifier`")
    cfg = ClassifierConfig(**saved["config"])
    model = build_classifier(cfg, IMAGE_SHAPE)
    model.load_state_dict(saved["state_dict"])
    return TrainedClassifier(model.eval(), cfg, (saved["test_mean"], saved["test_cov"]), saved["binarization"])


def train_classifier(images: torch.Tensor, labels: torch.Tensor, cfg: ClassifierConfig) -> DigitClassifier:
    """Adam on the cross-entropy, `cfg.epochs` passes in a seeded order."""
    torch.manual_seed(cfg.seed)
    model = build_classifier(cfg, images.shape[1:])
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    order_rng = torch.Generator().manual_seed(cfg.seed)
    model.train()
    for _ in range(cfg.epochs):
        for rows in torch.randperm(len(images), generator=order_rng).split(cfg.batch_size):
            loss = F.cross_entropy(model(images[rows]), labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def embed(classifier: DigitClassifier, images: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(p(y | x), penultimate features) of every image, in float64."""
    classifier.eval()
    probs, features = [], []
    for batch in images.split(batch_size):
        h = classifier.features(batch.float())
        probs.append(torch.softmax(classifier.head(h), 1).double())
        features.append(h.double())
    return torch.cat(probs), torch.cat(features)


@torch.no_grad()
def accuracy(classifier: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    probs, _ = embed(classifier, images)
    return float((probs.argmax(1) == labels).double().mean())


def inception_score(probs: torch.Tensor) -> float:
    """exp(mean KL(p(y | x) || p(y))) for the rows p(y | x) of `probs`."""
    marginal = probs.mean(0, keepdim=True)
    kl = (probs * (torch.log(probs.clamp_min(1e-30)) - torch.log(marginal.clamp_min(1e-30)))).sum(1)
    return float(torch.exp(kl.mean()))


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased) covariance of the rows, in float64."""
    features = features.double()
    return features.mean(0), torch.cov(features.T)


def psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (tiny negative
    eigenvalues from rounding are set to 0)."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Between Gaussians a = (mean, cov) and b. tr((S_a S_b)^(1/2)) is the sum of the square roots
    of the eigenvalues of S_a^(1/2) S_b S_a^(1/2), which is symmetric: no general matrix square root."""
    (mu_a, cov_a), (mu_b, cov_b) = a, b
    root_a = psd_sqrt(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float(((mu_a - mu_b) ** 2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross)


def quality_scores(classifier: DigitClassifier, images: torch.Tensor,
                   reference: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """The Inception Score of `images` and the Frechet distance of their features to `reference`
    (the test set's feature mean and covariance)."""
    probs, features = embed(classifier, images)
    return {"inception_score": inception_score(probs),
            "frechet_distance": frechet_distance(gaussian_stats(features), reference)}
