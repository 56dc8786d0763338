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
# Settings that change where a model trains and in what batches it is scored, not its numbers (beyond the
# rounding of sums, and an importance sampler's draws, whose noise the tolerances cover): train's, evaluate's.
MACHINE_ONLY = ("device", "processes", "eval_batch_size")
EVALUATE_MACHINE_ONLY = ("batch_size",)


def configuration(params: dict, name: str, ignore: tuple[str, ...] = MACHINE_ONLY) -> str:
    """A digest of everything that shapes a model's numbers: its family and settings, its training
    settings but those in `ignore`, its data and the evaluation settings."""
    spec = model_spec(params, name)
    train = _without(dataclasses.asdict(spec.train), ignore)
    return params_hash(P.flatten({"family": spec.family, "kwargs": spec.kwargs, "train": train,
                                  "data": spec.data.name, "binarization": dataclasses.asdict(P.data_config(params)),
                                  "evaluate": _without(dataclasses.asdict(P.evaluate_config(params)),
                                                       EVALUATE_MACHINE_ONLY)}))


def _without(settings: dict, keys: tuple[str, ...]) -> dict:
    return {k: v for k, v in settings.items() if k not in keys}


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
