"""Load params.yaml, apply the active profile, and validate every value a stage reads.

Each section may hold profile overlays (`smoke:`, `quick:`, `full:`); the active `profile` picks
one, and more specific settings win: train -> train.<profile> -> models.<m>.train ->
models.<m>.<profile>.train (and likewise for a model's own keys).
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml

from models import FAMILIES, family_class
from models.base import require_positive
from pipeline.data import DATASETS, Dataset
from pipeline.digit_classifier import ClassifierConfig
from pipeline.io import PipelineError
from pipeline.train_config import TrainConfig

PROFILES = ("smoke", "quick", "full")
TOP_LEVEL_KEYS = ("profile", "data", "train", "evaluate", "classifier", "models")
MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
SECTIONS = ("data", "train", "evaluate", "classifier", "models")
SET_BY_THE_DATA = ("image_shape", "pixel_levels")  # constructor arguments that follow from a model's `data:`
SET_BY_TRAIN = {"fast": "fast_paths"}  # constructor arguments that follow from a training key


class ParamsLoader(yaml.SafeLoader):
    """YAML as DVC reads it (1.2): `1e-3` is a number, not the string PyYAML's 1.1 rules make it."""


ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d[\d_]*)?\.?\d+[eE][-+]?\d+$"), list("-+0123456789."))


@dataclass(frozen=True)
class DataConfig:
    binarization: Literal["stochastic", "threshold"] = "stochastic"
    seed: int = 0


@dataclass(frozen=True)
class EvaluateConfig:
    samples: int = 100           # images in the sample grid (a square number)
    completions: int = 10        # test images completed from their top half
    seed: int = 0
    batch_size: int = 1000
    max_test: int | None = None  # None: the whole test set

    def __post_init__(self):
        if self.samples < 1 or int(self.samples ** 0.5) ** 2 != self.samples:
            raise ValueError("samples must be a positive square number (it is drawn as a grid)")
        require_positive(completions=self.completions, batch_size=self.batch_size, max_test=self.max_test)


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


def load(path: str | Path | None = None) -> dict:
    path = Path(path or "params.yaml")
    try:
        text = path.read_text()
        params = yaml.load(text, Loader=ParamsLoader) or {}
        refuse_anchors(text, path)
    except FileNotFoundError:
        raise PipelineError(f"{path} not found: run from the repository root") from None
    except yaml.YAMLError as e:
        raise PipelineError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(params, dict):
        raise PipelineError(f"{path}: expected a mapping of {', '.join(TOP_LEVEL_KEYS)}")
    _check_keys("params.yaml", params, TOP_LEVEL_KEYS)
    for section in SECTIONS:
        if params.get(section) is not None and not isinstance(params[section], dict):
            raise PipelineError(f"{section}: expected a mapping, got {type(params[section]).__name__}")
    if not params.get("models"):
        raise PipelineError("models: define at least one model (a name with a `family:` and its settings)")
    if params.get("profile") not in PROFILES:
        raise PipelineError(f"profile: {params.get('profile')!r} is not one of {', '.join(PROFILES)}")
    return params


def refuse_anchors(text: str, path: Path) -> None:
    """`dvc exp run -S` rewrites params.yaml and silently drops an override of an anchored mapping."""
    for event in yaml.parse(text, Loader=ParamsLoader):
        if getattr(event, "anchor", None):
            raise PipelineError(f"{path}: YAML anchor or alias '{event.anchor}': write the values out "
                                "(`dvc exp run -S` drops overrides of anchored values)")


def profile_of(params: dict) -> str:
    return params["profile"]


def data_config(params: dict) -> DataConfig:
    return _validate(DataConfig, params.get("data") or {}, "data")


def evaluate_config(params: dict) -> EvaluateConfig:
    return _validate(EvaluateConfig, _overlay(params.get("evaluate"), params["profile"], "evaluate"), "evaluate")


def classifier_config(params: dict) -> ClassifierConfig:
    return _validate(ClassifierConfig, _overlay(params.get("classifier"), params["profile"], "classifier"), "classifier")


def model_names(params: dict) -> list[str]:
    return list((params.get("models") or {}).keys())


def model_spec(params: dict, name: str) -> ModelSpec:
    models = params.get("models") or {}
    if name not in models:
        raise PipelineError(f"models.{name}: no such model in params.yaml; defined: {', '.join(models) or 'none'}")
    if not MODEL_NAME.match(name):
        raise PipelineError(f"models.{name}: model names must be lower-case letters, digits and _")
    where = f"models.{name}"
    section = _overlay(models[name], params["profile"], where)
    family = section.pop("family", None)
    if family not in FAMILIES:
        raise PipelineError(f"{where}.family: {family!r} is not one of {', '.join(sorted(FAMILIES))}")
    data = model_data(section.pop("data", "binarized"), family, where)
    train_overrides = section.pop("train", None) or {}
    train_base = _overlay(params.get("train"), params["profile"], "train")
    _validate(TrainConfig, train_base, "train")
    train = _validate(TrainConfig, {**train_base, **train_overrides}, f"train (with {where}.train)")
    if train.dynamic_binarization and data_config(params).binarization == "threshold":
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
    return _validate(TrainConfig, {**dataclasses.asdict(train), **settings}, where)


def _overlay(section: Any, profile: str, where: str) -> dict:
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise PipelineError(f"{where}: expected a mapping, got {type(section).__name__}")
    base = {k: v for k, v in section.items() if k not in PROFILES}
    overlay = section.get(profile) or {}
    if not isinstance(overlay, dict):
        raise PipelineError(f"{where}.{profile}: expected a mapping, got {type(overlay).__name__}")
    merged = {**base, **overlay}
    if "train" in base or "train" in overlay:
        for part, label in ((base, where), (overlay, f"{where}.{profile}")):
            if part.get("train") is not None and not isinstance(part["train"], dict):
                raise PipelineError(f"{label}.train: expected a mapping, got {type(part['train']).__name__}")
        merged["train"] = {**(base.get("train") or {}), **(overlay.get("train") or {})}
    return merged


def _check_keys(where: str, values: dict, allowed) -> None:
    unknown = [k for k in values if k not in allowed]
    if unknown:
        raise PipelineError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")


def _as_json(values: dict, where: str) -> str:
    """Params are plain data: validating them as JSON in strict mode refuses `epochs: true` or
    `lr: "fast"` instead of quietly converting them, while YAML lists still fill tuple fields."""
    try:
        return json.dumps(values, allow_nan=True)
    except TypeError as e:
        raise PipelineError(f"{where}: only numbers, strings, booleans, lists and mappings are allowed ({e})") from None


def _validate(config_type, values: dict, where: str):
    allowed = [f.name for f in dataclasses.fields(config_type)]
    _check_keys(where, values, allowed)
    try:
        return pydantic.TypeAdapter(config_type).validate_json(_as_json(values, where), strict=True)
    except pydantic.ValidationError as e:
        raise PipelineError(f"{where}: {_first_error(e)}") from None


def _validate_kwargs(family: str, values: dict, where: str) -> dict:
    for key, train_key in SET_BY_TRAIN.items():
        if key in values:
            raise PipelineError(f"{where}.{key}: set train.{train_key} instead (for this model alone: "
                                f"{where}.train.{train_key})")
    signature = inspect.signature(family_class(family).__init__)
    fields = {p.name: (p.annotation if p.annotation is not inspect.Parameter.empty else Any, p.default)
              for p in list(signature.parameters.values())[1:] if p.name not in (*SET_BY_THE_DATA, *SET_BY_TRAIN)}
    _check_keys(where, values, list(fields))
    config = pydantic.ConfigDict(extra="forbid", protected_namespaces=())
    schema = pydantic.create_model(f"{family}_params", __config__=config, **fields)
    try:
        validated = schema.model_validate_json(_as_json(values, where), strict=True)
    except pydantic.ValidationError as e:
        raise PipelineError(f"{where}: {_first_error(e)}") from None
    return {k: getattr(validated, k) for k in values}


def _first_error(error: pydantic.ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ").replace("valid array", "list")
    return f"{key}: {message} (got {first.get('input')!r})" if key else message


def flatten(values: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}, for logging params to MLflow."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
