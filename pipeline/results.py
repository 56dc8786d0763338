"""The contract for results/<model>/: the name of every file a model's stages write there, and the
keys of its two JSON files, train.json (`TrainSummary`) and metrics.json (`Metrics`), defined here
once and used by train, evaluate, report, track, score and `pipeline.trained`; and where the report and
the classifier's metrics are.

No DVC, no MLflow: `pipeline.trained` imports it on machines without them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from pipeline.io import PipelineError, read_json, write_json

RESULTS_DIR = Path("results")
SAMPLES_FIGURE = "samples.png"  # the one figure every model has, in figures/
CLASSIFIER_METRICS = Path("classifier/metrics.json")  # the classifier's test accuracy and the real images' scores
CLASSIFIER_MODEL = Path("classifier/model.pt")       # its weights, its config and the test set's feature statistics


@dataclass(frozen=True)
class ReportFiles:
    """The report stage's files."""
    folder: Path = Path("reports")

    @property
    def markdown(self) -> Path:
        return self.folder / "results.md"      # the leaderboards and tables

    @property
    def table(self) -> Path:
        return self.folder / "results.csv"     # every key of every model, a row each

    @property
    def nll(self) -> Path:
        return self.folder / "nll.png"

    @property
    def samples(self) -> Path:
        return self.folder / "samples.png"

    @property
    def curves(self) -> Path:
        return self.folder / "curves.png"

    @property
    def compute(self) -> Path:
        return self.folder / "compute.png"

    @property
    def frontier(self) -> Path:
        return self.folder / "frontier.png"    # from the search's table, for a run at the quick budget

    @property
    def page(self) -> Path:
        return self.folder / "index.html"      # all of it in one self-contained page

    def all(self) -> list[Path]:
        return [self.markdown, self.table, self.nll, self.samples, self.curves, self.compute, self.frontier, self.page]


REPORT = ReportFiles()


def read_ceiling() -> dict | None:
    """The classifier stage's metrics: its test accuracy and the real test images' scores."""
    return read_json(CLASSIFIER_METRICS) if CLASSIFIER_METRICS.exists() else None


@dataclass(frozen=True)
class ModelResults:
    """The files of results/<model>/ under `root` (default: the current folder, where stages run)."""
    name: str
    root: Path = Path()

    @property
    def folder(self) -> Path:
        return self.root / RESULTS_DIR / self.name

    # written by train@<model>
    @property
    def checkpoint(self) -> Path:
        return self.folder / "model.pt"

    @property
    def train_summary(self) -> Path:
        return self.folder / "train.json"  # TrainSummary

    @property
    def curves(self) -> Path:
        return self.folder / "curves.csv"  # one row per epoch

    def resume_state(self, key: str) -> Path:
        """Where a killed run's state waits for the next attempt (deleted once training ends)."""
        return self.folder / f".resume-{key}.pt"

    def resume_states(self) -> list[Path]:
        return sorted(self.folder.glob(".resume-*.pt"))

    # written by evaluate@<model>
    @property
    def metrics(self) -> Path:
        return self.folder / "metrics.json"  # Metrics

    @property
    def timing(self) -> Path:
        return self.folder / "eval.json"  # EvalTiming

    @property
    def per_image_nll(self) -> Path:
        return self.folder / "test_nll.npy"  # one NLL per test image, in test-set order: for paired comparisons

    @property
    def figures(self) -> Path:
        return self.folder / "figures"

    @property
    def samples(self) -> Path:
        return self.figures / SAMPLES_FIGURE

    def require(self, stage: str, *paths: Path) -> None:
        """A one-line error naming the first of `paths` that is missing and the stage that writes it."""
        for path in paths:
            if not path.exists():
                raise PipelineError(f"{path} is missing: run `dvc repro {stage}@{self.name}` first")

    def read_train_summary(self) -> TrainSummary:
        self.require("train", self.train_summary)
        return TrainSummary.read(self.train_summary, f"train@{self.name}")

    def read_metrics(self) -> Metrics:
        self.require("evaluate", self.metrics)
        return Metrics.read(self.metrics, f"evaluate@{self.name}")

    def read_timing(self) -> EvalTiming:
        self.require("evaluate", self.timing)
        return EvalTiming.read(self.timing, f"evaluate@{self.name}")


class _JsonRecord:
    """A dataclass written as one JSON object, a key per field. A field that defaults to None is
    optional: written only when it has a value, and may be absent when read."""

    def to_json(self) -> dict:
        optional = {f.name for f in dataclasses.fields(self) if f.default is None}
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k not in optional}

    def write(self, path: Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def read(cls, path: Path, stage: str):
        """The record in `path`; a key missing or unknown is a one-line error naming the file, the key
        and the stage to re-run (`stage`)."""
        data = read_json(path)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in fields:
            if key not in data and fields[key].default is dataclasses.MISSING:
                raise PipelineError(f"{path} has no key {key!r}: run `dvc repro {stage}` to rewrite it")
        for key in data:
            if key not in fields:
                raise PipelineError(f"{path} has an unknown key {key!r}: run `dvc repro {stage}` to rewrite it")
        return cls(**data)


@dataclass(frozen=True)
class TrainSummary(_JsonRecord):
    """train.json: what train@<model> trained and how it went."""
    model: str
    family: str
    profile: str
    device: str                # "cpu", "cuda (<GPU name>)", with " x <n> processes" when data parallel
    parameters: int
    epochs_run: int
    best_epoch: int            # the epoch in model.pt: the best validation NLL
    best_val_nll: float
    train_seconds: float
    train_flops: int           # the training compute spent, forward and backward (pipeline/flops.py)
    flops_per_image: int       # of one training image
    train_images: int
    val_images: int
    binarization: str          # "fixed" (one draw), "resampled" (a new draw each epoch) or "none" (grey levels)
    settings: dict             # the family's constructor arguments from params.yaml
    data_sha256: str
    estimator: str
    params: dict               # the params logged to MLflow (flattened)
    data: str = "binarized"    # the dataset trained on: "binarized" or "grey" (pipeline/data.py)


@dataclass(frozen=True)
class Metrics(_JsonRecord):
    """metrics.json: evaluate@<model>'s test numbers, only those that the same inputs reproduce
    exactly (the time taken is in eval.json). NLLs in nats per image, each with its standard error."""
    estimator: str             # what test_nll is: "exact", "importance_sampled" or "dequantized"
    test_nll: float
    test_nll_stderr: float
    test_bpd: float
    test_images: int
    inception_score: float     # of the samples, by the digit classifier (pipeline/digit_classifier.py)
    frechet_distance: float
    train_flops: int           # from train.json: the compute the model was trained with
    flops_per_image: int
    data: str = "binarized"    # the test set's dataset, "binarized" or "grey": numbers of two datasets never compare
    # models with a negative ELBO (HasNegativeELBO)
    test_neg_elbo: float | None = None
    test_neg_elbo_stderr: float | None = None
    # class-conditional models: -log p(x|y), and the generative classifier argmax_y p(x|y) p(y)
    test_conditional_nll: float | None = None
    test_conditional_nll_stderr: float | None = None
    generative_accuracy: float | None = None
    test_label_nll: float | None = None
    test_label_nll_stderr: float | None = None
    label_nll_estimator: str | None = None


@dataclass(frozen=True)
class EvalTiming(_JsonRecord):
    """eval.json: what differs between two runs on the same inputs, kept apart from metrics.json."""
    eval_seconds: float
    device: str
