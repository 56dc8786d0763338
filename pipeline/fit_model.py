"""The one way a model of params.yaml is trained: build it, load its data in its training regime
(fixed or resampled binarization, grey levels, digit labels for a class-conditional model), and run
`fit`. The train stage, the search and bench/ all call `fit_model`, so a setting the train stage
honours is searched under the same regime.
Imports only torch and tqdm (through the loop), so it runs where DVC and MLflow are not installed."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from models import build_model
from models.base import ClassConditional, GenerativeModel
from pipeline.data import load_labels, load_split, load_train_grey_levels
from pipeline.io import PipelineError
from pipeline.layout import IMAGE_SHAPE
from pipeline.parallel import SINGLE, World
from pipeline.training_loop import FitResult, TrainingData, fit


@dataclass
class FittedModel:
    model: GenerativeModel  # holding the weights of its best validation
    result: FitResult
    train_images: int
    val_images: int


def build(spec, device: torch.device) -> GenerativeModel:
    """The model of `spec` on `device`, seeded by its `train.seed`, its fast paths on or off as
    `train.fast_paths` says (a bad constructor argument is a one-line error naming the model)."""
    torch.manual_seed(spec.train.seed)
    try:
        return build_model(spec.family, IMAGE_SHAPE, fast=spec.train.fast_paths, **spec.kwargs).to(device)
    except (TypeError, ValueError) as e:
        raise PipelineError(f"models.{spec.name}: {e}") from None


def labels_for(model: GenerativeModel, spec) -> tuple:
    """The training and validation digits of a class-conditional model, whose label prior p(y)
    becomes the training label frequencies; (None, None) for any other model."""
    if not isinstance(model, ClassConditional):
        return None, None
    train_labels = load_labels("train", spec.train.max_train, spec.data.folder)
    model.set_label_prior(train_labels)
    return train_labels, load_labels("val", spec.train.max_val, spec.data.folder)


def training_data(spec, device: torch.device, labels: torch.Tensor | None) -> TrainingData:
    cfg = spec.train
    grey_levels = load_train_grey_levels(cfg.max_train) if cfg.dynamic_binarization else None
    return TrainingData(load_split("train", cfg.max_train, spec.data.folder), grey_levels, device,
                        cfg.dynamic_binarization, labels)


def fit_model(spec, device: torch.device, *, model: GenerativeModel | None = None, quiet: bool = False,
              state_path: str | Path | None = None, on_epoch: Callable[[dict, bool], None] | None = None,
              world: World = SINGLE) -> FittedModel:
    """Train the model of `spec` (a `pipeline.model_params.ModelSpec`) on `device`; `model` when the caller
    has built it already with `build`. Raises `TrainingDiverged` as `fit` does."""
    model = model if model is not None else build(spec, device)
    train_labels, val_labels = labels_for(model, spec)
    train = training_data(spec, device, train_labels)
    val = load_split("val", spec.train.max_val, spec.data.folder)
    result = fit(model, train, val, spec.train, state_path=state_path, on_epoch=on_epoch, quiet=quiet,
                 val_labels=val_labels, world=world)
    return FittedModel(model, result, len(train), len(val))
