"""A model's section of params.yaml as a `ModelSpec`: its family, the keyword arguments of the
family's constructor (validated against the constructor's signature and type annotations), its
training settings (`train:` merged per model and profile into a `TrainConfig`) and its data."""
from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass
from typing import Any

import pydantic

from models import FAMILIES, family_class
from pipeline import params as P
from pipeline.io import PipelineError
from pipeline.layout import DATASETS, Dataset
from pipeline.train_config import TrainConfig

MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
SET_BY_THE_DATA = ("image_shape", "pixel_levels")  # constructor arguments that follow from a model's `data:`
SET_BY_TRAIN = {"fast": "fast_paths"}  # constructor arguments that follow from a training key


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    kwargs: dict        # the family's constructor arguments, `pixel_levels` included for grey data
    train: TrainConfig
    data: Dataset

    @property
    def binarization(self) -> str:
        """The training regime that a published number must share: one fixed draw, or a new draw each
        epoch; "none" for grey levels."""
        if self.data.pixel_levels > 2:
            return "none"
        return "resampled" if self.train.dynamic_binarization else "fixed"


def model_spec(params: dict, name: str) -> ModelSpec:
    models = params.get("models") or {}
    if name not in models:
        raise PipelineError(f"models.{name}: no such model in params.yaml; defined: {', '.join(models) or 'none'}")
    if not MODEL_NAME.match(name):
        raise PipelineError(f"models.{name}: model names must be lower-case letters, digits and _")
    where = f"models.{name}"
    section = P.with_profile(models[name], params["profile"], where)
    family = section.pop("family", None)
    if family not in FAMILIES:
        raise PipelineError(f"{where}.family: {family!r} is not one of {', '.join(sorted(FAMILIES))}")
    data = model_data(section.pop("data", "binarized"), family, where)
    train_overrides = section.pop("train", None) or {}
    train_base = P.with_profile(params.get("train"), params["profile"], "train")
    P.validate(TrainConfig, train_base, "train")
    train = P.validate(TrainConfig, {**train_base, **train_overrides}, f"train (with {where}.train)")
    if train.dynamic_binarization and P.data_config(params).binarization == "threshold":
        raise PipelineError(f"{where}: train.dynamic_binarization draws training images from the grey levels, "
                            "but data.binarization: threshold makes the test set by thresholding them; "
                            "use one regime for both")
    if train.dynamic_binarization and data.pixel_levels > 2:
        raise PipelineError(f"{where}: train.dynamic_binarization redraws binarized training images, "
                            f"but this model is trained on data: {data.name}")
    kwargs = _validate_kwargs(family, section, where)
    if data.pixel_levels > 2:
        kwargs["pixel_levels"] = data.pixel_levels
    return ModelSpec(name, family, kwargs, train, data)


def models_grey_levels(family: str) -> bool:
    """Whether a family takes `pixel_levels`, i.e. can model more than two levels per pixel."""
    return "pixel_levels" in inspect.signature(family_class(family).__init__).parameters


def model_data(name: Any, family: str, where: str) -> Dataset:
    """The dataset a model section names (dvc.yaml's stages depend on `data/<name>`, so params.yaml
    names it for every model, although the stages take binarized when it is absent)."""
    if name not in DATASETS:
        raise PipelineError(f"{where}.data: {name!r} is not one of {', '.join(DATASETS)}")
    data = DATASETS[name]
    if data.pixel_levels > 2 and not models_grey_levels(family):
        grey_families = ", ".join(f for f in sorted(FAMILIES) if models_grey_levels(f))
        raise PipelineError(f"{where}: family {family} models binarized images only, not data: {name}; "
                            f"families for {data.pixel_levels} levels: {grey_families}")
    return data


def with_train_settings(train: TrainConfig, settings: dict, where: str) -> TrainConfig:
    """`train` with `settings` (name: value) over it, validated as params.yaml's train keys are."""
    return P.validate(TrainConfig, {**dataclasses.asdict(train), **settings}, where)


def _validate_kwargs(family: str, values: dict, where: str) -> dict:
    for key, train_key in SET_BY_TRAIN.items():
        if key in values:
            raise PipelineError(f"{where}.{key}: set train.{train_key} instead (for this model alone: "
                                f"{where}.train.{train_key})")
    # eval_str: the families' annotations are strings (`from __future__ import annotations`), whose
    # names (Literal, ...) only the family's own module defines
    signature = inspect.signature(family_class(family).__init__, eval_str=True)
    fields = {p.name: (p.annotation if p.annotation is not inspect.Parameter.empty else Any, p.default)
              for p in list(signature.parameters.values())[1:] if p.name not in (*SET_BY_THE_DATA, *SET_BY_TRAIN)}
    P.check_keys(where, values, list(fields))
    config = pydantic.ConfigDict(extra="forbid", protected_namespaces=())
    schema = pydantic.create_model(f"{family}_params", __config__=config, **fields)
    try:
        validated = schema.model_validate_json(P.as_json(values, where), strict=True)
    except pydantic.ValidationError as e:
        raise PipelineError(f"{where}: {P.first_error(e)}") from None
    return {k: getattr(validated, k) for k in values}
