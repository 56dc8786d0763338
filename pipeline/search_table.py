"""The search's table, search/results.csv: one row per trained configuration (a trial of a model's
study, pruned or finished, or a winner trained again with another seed), the model a row's settings
make (`spec_of`), and what the report reads from it: each model's winner and seed spread, and each
track's compute frontier. Imports nothing of the search itself (Optuna), DVC or MLflow."""
from __future__ import annotations

import copy
import csv
import io
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from pipeline.io import write_text
from pipeline.model_params import ModelSpec, model_spec

TABLE = Path("search/results.csv")
PROFILE = "quick"        # the profile whose budget the search is run at
COLUMNS = ["model", "data", "family", "search", "trial", "state", "settings", "seed", "parameters",
           "flops_per_image", "budget_flops", "train_images", "val_nll", "best_flops", "curve", "seconds", "estimator"]
SEARCH = "optuna-fp32"   # the current search: Optuna studies, fp32 training
LEGACY = "grid-bf16"     # the grid before it (bf16 on an AMX CPU): its rows stand where a model has no study yet
FINISHED = "complete"    # a trial that trained to the budget (or its epoch cap)
PRUNED = "pruned"        # stopped at a fraction of the budget, clearly behind the others there
DIVERGED = "diverged"    # its loss or validation NLL stopped being finite
SEED_RUN = "seed"        # a winner trained again with another seed


def settings_key(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True)


def with_settings(params: dict, model: str, settings: dict, seed: int = 0) -> dict:
    """params.yaml under the quick profile, with `settings` over the model's quick overlay."""
    params = copy.deepcopy(params)
    params["profile"] = PROFILE
    section = params["models"].setdefault(model, {})
    overlay = section.get(PROFILE) or {}
    section[PROFILE] = overlay
    for key, value in settings.items():
        if key.startswith("train."):
            overlay.setdefault("train", {})[key.removeprefix("train.")] = value
        else:
            overlay[key] = value
    overlay.setdefault("train", {})["seed"] = seed
    return params


def spec_of(params: dict, model: str, settings: dict, seed: int = 0) -> ModelSpec:
    """The model a row's `settings` and `seed` make: the quick profile's spec with them applied."""
    return model_spec(with_settings(params, model, settings, seed), model)


def read_table(path: Path = TABLE) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["search"], row["state"] = row.get("search") or LEGACY, row.get("state") or FINISHED
        row["trial"] = int(row["trial"]) if row.get("trial") not in (None, "") else None
        row["seed"], row["parameters"], row["flops_per_image"] = int(row["seed"]), int(row["parameters"]), \
            int(row["flops_per_image"])
        row["budget_flops"], row["val_nll"] = float(row["budget_flops"]), float(row["val_nll"])
        row["curve"] = json.loads(row["curve"])
    return rows


def write_table(rows: list[dict], path: Path = TABLE) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: (r["model"], r["search"], r["trial"] if r["trial"] is not None else -1,
                                           r["settings"], r["seed"])):
        writer.writerow({**row, "trial": "" if row["trial"] is None else row["trial"],
                         "curve": row["curve"] if isinstance(row["curve"], str) else json.dumps(row["curve"])})
    write_text(path, out.getvalue())


def at_budget(rows: list[dict], budget: float) -> list[dict]:
    """The rows trained at `budget` (a table can hold points of an earlier budget)."""
    return [r for r in rows if math.isclose(r["budget_flops"], budget, rel_tol=1e-9)]


def current(rows: list[dict], budget: float) -> list[dict]:
    """The rows of the current search at `budget`: each model's rows of the Optuna search where it has
    any, else those of the grid before it. The table keeps earlier budgets and searches, which no
    longer compete."""
    rows = at_budget(rows, budget)
    searched = {r["model"] for r in rows if r["search"] == SEARCH}
    return [r for r in rows if r["search"] == (SEARCH if r["model"] in searched else LEGACY)]


def winners(rows: list[dict]) -> dict[str, dict]:
    """Each model's finished seed-0 row with the lowest validation NLL (a pruned trial never wins)."""
    best: dict[str, dict] = {}
    for row in rows:
        if row["seed"] != 0 or row["state"] != FINISHED:
            continue
        if row["model"] not in best or row["val_nll"] < best[row["model"]]["val_nll"]:
            best[row["model"]] = row
    return best


def seed_spread(rows: list[dict], winner: dict) -> list[float]:
    """The validation NLLs of the winner's settings over every seed trained to the end."""
    return [r["val_nll"] for r in rows if r["model"] == winner["model"] and r["settings"] == winner["settings"]
            and r["state"] != PRUNED]


def frontier(rows: list[dict], flops: list[float]) -> dict[str, list[float]]:
    """For each model, the best validation NLL any of its points reached with at most each FLOPs value
    of `flops` (NaN before its first validation). A point validates at the budget's log-spaced
    fractions on its way to the budget, with its learning rate not yet decayed there."""
    out = {}
    for model in sorted({r["model"] for r in rows}):
        records = [(f, v) for r in rows if r["model"] == model and r["seed"] == 0 for f, v in r["curve"]]
        # a point validates at the first whole batch past each fraction: within one image's FLOPs of it
        out[model] = [min((v for f, v in records if f <= budget * 1.01), default=math.nan) for budget in flops]
    return out


def frontier_flops(budget: float, points: int) -> list[float]:
    """The FLOPs values at which every point validated: the budget's log-spaced fractions."""
    return [budget / 2 ** k for k in reversed(range(points))]


def leads(front: dict[str, list[float]], flops: list[float]) -> list[tuple[float, str]]:
    """(FLOPs, model) where a model of `front` takes the lead: the lowest frontier value there."""
    changes: list[tuple[float, str]] = []
    for i, f in enumerate(flops):
        reached = {m: values[i] for m, values in front.items() if not math.isnan(values[i])}
        leader = min(reached, key=reached.get) if reached else None
        if leader is not None and (not changes or changes[-1][1] != leader):
            changes.append((f, leader))
    return changes


BASELINE_FAMILIES = {"binarized": "bernoulli", "grey": "categorical"}  # each track's independent pixels


@dataclass(frozen=True)
class ModelSearch:
    """What the search found for one model at the budget."""
    points: int               # configurations tried (seed 0)
    best_val_nll: float       # the winner's
    seed_nlls: list[float]    # the winner's validation NLL with each seed trained
    beats_baseline: bool      # whether its best point beat its track's independent baseline
    is_baseline: bool = False  # it is that baseline

    @property
    def seed_sd(self) -> float:
        return statistics.stdev(self.seed_nlls) if len(self.seed_nlls) > 1 else math.nan


@dataclass(frozen=True)
class SearchSummary:
    budget: float
    flops: list[float]                               # the frontier's FLOPs values
    frontiers: dict[str, dict[str, list[float]]]     # track -> model -> best validation NLL at each
    leaders: dict[str, list[tuple[float, str]]]      # track -> where each leader takes over
    models: dict[str, ModelSearch]


def summarize(rows: list[dict], budget: float, points: int, conditional: set[str] = frozenset()) -> SearchSummary:
    """The search of `rows` (those of the current search) at `budget`: each track's frontier and
    leaders (class-conditional models, whose validation NLL is -log p(x | y), are left out of both)
    and each model's winner and seed spread."""
    flops = frontier_flops(budget, points)
    best = winners(rows)
    baselines = {r["data"]: r["model"] for r in best.values() if BASELINE_FAMILIES.get(r["data"]) == r["family"]}
    frontiers, leaders = {}, {}
    for data in sorted({r["data"] for r in rows}):
        track = [r for r in rows if r["data"] == data and r["model"] not in conditional]
        frontiers[data] = frontier(track, flops)
        leaders[data] = leads(frontiers[data], flops)
    models = {}
    for model, row in best.items():
        baseline = best.get(baselines.get(row["data"], ""))
        models[model] = ModelSearch(sum(r["model"] == model and r["seed"] == 0 for r in rows), row["val_nll"],
                                    seed_spread(rows, row), baseline is None or row["val_nll"] < baseline["val_nll"],
                                    baseline is row)
    return SearchSummary(budget, flops, frontiers, leaders, models)
