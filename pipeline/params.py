"""Load params.yaml, apply the active profile, and validate a section against the dataclass of its
settings. A model's section becomes a `ModelSpec` in pipeline/model_params.py; this module needs
neither the models nor the training code, so the data stages that read params.yaml depend on
neither.

Each section may hold profile overlays (`smoke:`, `quick:`, `full:`); the active `profile` picks
one, and more specific settings win: train -> train.<profile> -> models.<m>.train ->
models.<m>.<profile>.train (and likewise for a model's own keys).
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml

from models.settings import require_positive
from pipeline.io import PipelineError

PROFILES = ("smoke", "quick", "full")
TOP_LEVEL_KEYS = ("profile", "data", "train", "evaluate", "classifier", "models")
SECTIONS = ("data", "train", "evaluate", "classifier", "models")


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
    check_keys("params.yaml", params, TOP_LEVEL_KEYS)
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
    return validate(DataConfig, params.get("data") or {}, "data")


def evaluate_config(params: dict) -> EvaluateConfig:
    return section_config(params, "evaluate", EvaluateConfig)


def section_config(params: dict, section: str, config_type):
    """The section `section` of params.yaml with the active profile's overlay, validated as a
    `config_type` (a dataclass whose fields are the section's keys)."""
    return validate(config_type, with_profile(params.get(section), params["profile"], section), section)


def model_names(params: dict) -> list[str]:
    return list((params.get("models") or {}).keys())


def with_profile(section: Any, profile: str, where: str) -> dict:
    """A section's keys with those of its `profile` overlay over them (and the same for its `train`)."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise PipelineError(f"{where}: expected a mapping, got {type(section).__name__}")
    base = {k: v for k, v in section.items() if k not in PROFILES}
    chosen = section.get(profile) or {}
    if not isinstance(chosen, dict):
        raise PipelineError(f"{where}.{profile}: expected a mapping, got {type(chosen).__name__}")
    merged = {**base, **chosen}
    if "train" in base or "train" in chosen:
        for part, label in ((base, where), (chosen, f"{where}.{profile}")):
            if part.get("train") is not None and not isinstance(part["train"], dict):
                raise PipelineError(f"{label}.train: expected a mapping, got {type(part['train']).__name__}")
        merged["train"] = {**(base.get("train") or {}), **(chosen.get("train") or {})}
    return merged


def check_keys(where: str, values: dict, allowed) -> None:
    unknown = [k for k in values if k not in allowed]
    if unknown:
        raise PipelineError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")


def as_json(values: dict, where: str) -> str:
    """Params are plain data: validating them as JSON in strict mode refuses `epochs: true` or
    `lr: "fast"` instead of quietly converting them, while YAML lists still fill tuple fields."""
    try:
        return json.dumps(values, allow_nan=True)
    except TypeError as e:
        raise PipelineError(f"{where}: only numbers, strings, booleans, lists and mappings are allowed ({e})") from None


def validate(config_type, values: dict, where: str):
    """`values` as a `config_type`; an unknown key or a bad value is a one-line error naming it."""
    allowed = [f.name for f in dataclasses.fields(config_type)]
    check_keys(where, values, allowed)
    try:
        return pydantic.TypeAdapter(config_type).validate_json(as_json(values, where), strict=True)
    except pydantic.ValidationError as e:
        raise PipelineError(f"{where}: {first_error(e)}") from None


def first_error(error: pydantic.ValidationError) -> str:
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
