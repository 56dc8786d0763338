"""The committed reference of the quick profile, reference/quick.json: for each model the test NLL of
one configuration at seed 0, the tolerance within which another run of it must land, and the test
NLLs of that configuration over several training seeds (the report's noise column). Written by
`python -m pipeline.check --write-reference`, read by the check and the report."""
from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path

from pipeline import params as P
from pipeline.io import params_hash, read_json
from pipeline.model_params import model_spec
from pipeline.search_table import PROFILE

REFERENCE = Path(f"reference/{PROFILE}.json")
MACHINE_ONLY = ("device", "processes")   # train settings that change where a model trains, not its numbers


def configuration(params: dict, name: str, ignore: tuple[str, ...] = MACHINE_ONLY) -> str:
    """A digest of everything that shapes a model's numbers: its family and settings, its training
    settings but those in `ignore`, its data and the evaluation settings."""
    spec = model_spec(params, name)
    train = {k: v for k, v in dataclasses.asdict(spec.train).items() if k not in ignore}
    return params_hash(P.flatten({"family": spec.family, "kwargs": spec.kwargs, "train": train,
                                  "data": spec.data.name, "binarization": dataclasses.asdict(P.data_config(params)),
                                  "evaluate": dataclasses.asdict(P.evaluate_config(params))}))


def budget(params: dict) -> float | None:
    return model_spec(params, P.model_names(params)[0]).train.budget_flops


def read(path: Path = REFERENCE) -> dict | None:
    return read_json(path) if path.exists() else None


def entry_for(reference: dict | None, params: dict, name: str) -> dict | None:
    """The reference's entry for `name` when it is of this configuration, else None."""
    if reference is None or P.profile_of(params) != reference["profile"]:
        return None
    entry = reference["models"].get(name)
    return entry if entry is not None and entry["configuration"] == configuration(params, name) else None


def seed_sd(entry: dict | None) -> float:
    """The standard deviation of the test NLL over the entry's training seeds (NaN below two)."""
    values = [] if entry is None else entry.get("seed_test_nlls", [])
    return statistics.stdev(values) if len(values) > 1 else math.nan
