"""classifier: train the digit classifier behind the sample-quality scores (pipeline/digit_classifier.py) on
the training split's binarized images; record its test accuracy and the scores of real test images,
the ceiling that every model's samples are compared with."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline import params as P
from pipeline import stage
from pipeline.data import BINARIZED_DIR, IMAGE_SHAPE, load_labels, load_split
from pipeline.digit_classifier import (
    ClassifierConfig,
    DigitClassifier,
    accuracy,
    build_classifier,
    embed,
    gaussian_stats,
    quality_scores,
    train_classifier,
)
from pipeline.io import PipelineError, atomic_path, read_json, write_json
from pipeline.results import CLASSIFIER_METRICS

CLASSIFIER_DIR = Path("classifier")
MODEL_FILE = CLASSIFIER_DIR / "model.pt"          # the weights, its config and the test set's feature statistics


@dataclass(frozen=True)
class TrainedClassifier:
    model: DigitClassifier
    config: ClassifierConfig
    reference: tuple[torch.Tensor, torch.Tensor]  # the binarized test set's feature (mean, covariance)
    binarization: str                             # how the digits it learnt were binarized (data.binarization)


def save(model: DigitClassifier, cfg: ClassifierConfig, reference: tuple[torch.Tensor, torch.Tensor]) -> None:
    binarization = read_json(BINARIZED_DIR / "manifest.json")["binarization"]
    with atomic_path(MODEL_FILE) as tmp:
        torch.save({"config": dataclasses.asdict(cfg), "state_dict": model.state_dict(),
                    "test_mean": reference[0], "test_cov": reference[1], "binarization": binarization}, tmp)


def load() -> TrainedClassifier:
    if not MODEL_FILE.exists():
        raise PipelineError(f"{MODEL_FILE} is missing: run `dvc repro classifier` first")
    saved = torch.load(MODEL_FILE, map_location="cpu", weights_only=True)
    if "binarization" not in saved:
        raise PipelineError(f"{MODEL_FILE} predates grey-level scoring: run `dvc repro classifier`")
    cfg = ClassifierConfig(**saved["config"])
    model = build_classifier(cfg, IMAGE_SHAPE)
    model.load_state_dict(saved["state_dict"])
    return TrainedClassifier(model.eval(), cfg, (saved["test_mean"], saved["test_cov"]), saved["binarization"])


def train_and_score(cfg: ClassifierConfig) -> dict:
    started = time.perf_counter()
    model = train_classifier(load_split("train", cfg.max_train), load_labels("train", cfg.max_train), cfg)
    test, labels = load_split("test"), load_labels("test")
    reference = gaussian_stats(embed(model, test)[1])
    real = quality_scores(model, test[:cfg.quality_samples], reference)
    CLASSIFIER_DIR.mkdir(exist_ok=True)
    save(model, cfg, reference)
    metrics = {"test_accuracy": accuracy(model, test, labels), "quality_samples": min(cfg.quality_samples, len(test)),
               "real_inception_score": real["inception_score"], "real_frechet_distance": real["frechet_distance"]}
    write_json(CLASSIFIER_METRICS, metrics)
    print(f"classifier: test accuracy {metrics['test_accuracy']:.4f}; {metrics['quality_samples']} real test images: "
          f"inception score {real['inception_score']:.2f}, Frechet distance {real['frechet_distance']:.2f} "
          f"({time.perf_counter() - started:.0f}s)")
    return metrics


def main(argv=None) -> None:
    stage.parse_args(__doc__.splitlines()[0], argv)
    train_and_score(P.classifier_config(P.load()))


if __name__ == "__main__":
    stage.run(main)
