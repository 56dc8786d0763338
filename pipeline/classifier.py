"""classifier: train the digit classifier behind the sample-quality scores (pipeline/digit_classifier.py) on
the training split's binarized images; record its test accuracy and the scores of real test images,
the ceiling that every model's samples are compared with."""
from __future__ import annotations

import time

from pipeline import params as P
from pipeline import stage
from pipeline.data import load_labels, load_split
from pipeline.digit_classifier import (
    ClassifierConfig,
    TrainedClassifier,
    accuracy,
    embed,
    gaussian_stats,
    quality_scores,
    save_classifier,
    train_classifier,
)
from pipeline.io import read_json, write_json
from pipeline.layout import BINARIZED_DIR
from pipeline.results import CLASSIFIER_METRICS


def train_and_score(cfg: ClassifierConfig) -> dict:
    started = time.perf_counter()
    model = train_classifier(load_split("train", cfg.max_train), load_labels("train", cfg.max_train), cfg)
    test, labels = load_split("test"), load_labels("test")
    reference = gaussian_stats(embed(model, test)[1])
    real = quality_scores(model, test[:cfg.quality_samples], reference)
    binarization = read_json(BINARIZED_DIR / "manifest.json")["binarization"]
    save_classifier(TrainedClassifier(model, cfg, reference, binarization))
    metrics = {"test_accuracy": accuracy(model, test, labels), "quality_samples": min(cfg.quality_samples, len(test)),
               "real_inception_score": real["inception_score"], "real_frechet_distance": real["frechet_distance"]}
    write_json(CLASSIFIER_METRICS, metrics)
    print(f"classifier: test accuracy {metrics['test_accuracy']:.4f}; {metrics['quality_samples']} real test images: "
          f"inception score {real['inception_score']:.2f}, Frechet distance {real['frechet_distance']:.2f} "
          f"({time.perf_counter() - started:.0f}s)")
    return metrics


def main(argv=None) -> None:
    stage.parse_args(__doc__.splitlines()[0], argv)
    train_and_score(P.section_config(P.load(), "classifier", ClassifierConfig))


if __name__ == "__main__":
    stage.run_as_script(main)
