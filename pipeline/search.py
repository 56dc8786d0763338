"""search: each model's best configuration at the quick profile's training budget.

Every point of a model's grid in search/grid.yaml (its size knobs, batch size and learning rate) trains
at the quick budget (`train.quick.budget_flops`) on the quick profile's data and is judged on its
validation NLL alone: the test set is never read. Each finished point becomes a row of
search/results.csv, so an interrupted search resumes where it stopped, and a point already in the
table is not trained again. The quick settings in params.yaml are the winners (`--winners` prints
them); `--seeds 1 2` trains each winner again with other seeds, for the spread of training noise.

    python -m pipeline.search --jobs 2                  # the whole grid (skips points already done)
    python -m pipeline.search --models pixelcnn rnn     # some models only
    python -m pipeline.search --seeds 1 2 --jobs 2      # the winners with two more seeds
    python -m pipeline.search --winners                 # the best point of each model, as params.yaml keys
"""
from __future__ import annotations

import argparse
import copy
import csv
import io
import itertools
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline import params as P
from pipeline.io import PipelineError, write_text
from pipeline.progress import in_ci

GRID = Path("search/grid.yaml")
TABLE = Path("search/results.csv")
PROFILE = "quick"
COLUMNS = ["model", "data", "family", "settings", "seed", "parameters", "flops_per_image", "budget_flops",
           "train_images", "val_nll", "best_flops", "curve", "seconds", "estimator"]


@dataclass(frozen=True)
class Point:
    model: str
    settings: dict   # params keys over the model's quick settings: `channels`, `train.lr`, ...
    seed: int = 0

    @property
    def key(self) -> tuple:
        return self.model, settings_key(self.settings), self.seed


def settings_key(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True)


def grid_points(model: str, axes: dict) -> list[Point]:
    """The product of a model's axes. An axis is a list of values for one key, or a list of mappings
    of several keys that change together (a size: channels with its head)."""
    names, choices = list(axes), []
    for name in names:
        values = axes[name]
        if not isinstance(values, list) or not values:
            raise PipelineError(f"{GRID}: {model}.{name}: expected a non-empty list of values")
        choices.append([v if isinstance(v, dict) else {name: v} for v in values])
    return [Point(model, {k: v for part in combo for k, v in part.items()}) for combo in itertools.product(*choices)]


def read_grid(path: Path = GRID) -> dict[str, list[Point]]:
    grid = yaml.load(path.read_text(), Loader=P.ParamsLoader) or {}
    return {model: grid_points(model, axes) for model, axes in grid.items()}


def with_settings(params: dict, point: Point) -> dict:
    """params.yaml under the quick profile, with `point`'s settings over the model's quick overlay."""
    params = copy.deepcopy(params)
    params["profile"] = PROFILE
    section = params["models"].setdefault(point.model, {})
    overlay = section.setdefault(PROFILE, {}) or {}
    section[PROFILE] = overlay
    for key, value in point.settings.items():
        if key.startswith("train."):
            overlay.setdefault("train", {})[key.removeprefix("train.")] = value
        else:
            overlay[key] = value
    overlay.setdefault("train", {})["seed"] = point.seed
    return params


def spec_of(params: dict, point: Point) -> P.ModelSpec:
    return P.model_spec(with_settings(params, point), point.model)


def train_point(params: dict, point: Point, threads: int) -> dict:
    """Train one point (in a worker process) and return its row of the table."""
    import torch

    from models import build_model
    from pipeline.data import IMAGE_SHAPE, load_split
    from pipeline.train import labels_for
    from pipeline.training_loop import TrainingData, TrainingDiverged, fit

    torch.set_num_threads(threads)
    spec = spec_of(params, point)
    torch.manual_seed(spec.train.seed)
    model = build_model(spec.family, IMAGE_SHAPE, **spec.kwargs)
    train_labels, val_labels = labels_for(model, spec)
    train = TrainingData(load_split("train", spec.train.max_train, spec.data.folder), None, torch.device("cpu"),
                         False, train_labels)
    val = load_split("val", spec.train.max_val, spec.data.folder)
    start = time.perf_counter()
    try:
        result = fit(model, train, val, spec.train, quiet=True, val_labels=val_labels)
        history, best, per_image = result.history, result.best_val_nll, result.flops_per_image
    except TrainingDiverged:
        history, best, per_image = [], math.inf, 0
    best_record = min(history, key=lambda r: r["val_nll"]) if history else {"flops": 0}
    return {"model": point.model, "data": spec.data.name, "family": spec.family,
            "settings": settings_key(point.settings), "seed": point.seed,
            "parameters": sum(p.numel() for p in model.parameters()), "flops_per_image": per_image,
            "budget_flops": spec.train.budget_flops, "train_images": history[-1]["images"] if history else 0,
            "val_nll": round(best, 4), "best_flops": best_record["flops"],
            "curve": json.dumps([[r["flops"], round(r["val_nll"], 4)] for r in history]),
            "seconds": round(time.perf_counter() - start, 1), "estimator": model.estimator}


def read_table(path: Path = TABLE) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["seed"], row["parameters"], row["flops_per_image"] = int(row["seed"]), int(row["parameters"]), \
            int(row["flops_per_image"])
        row["budget_flops"], row["val_nll"] = float(row["budget_flops"]), float(row["val_nll"])
        row["curve"] = json.loads(row["curve"])
    return rows


def write_table(rows: list[dict], path: Path = TABLE) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: (r["model"], r["settings"], r["seed"])):
        writer.writerow({**row, "curve": row["curve"] if isinstance(row["curve"], str) else json.dumps(row["curve"])})
    write_text(path, out.getvalue())


def at_budget(rows: list[dict], budget: float) -> list[dict]:
    """The rows trained at `budget` (a table can hold points of an earlier budget)."""
    return [r for r in rows if math.isclose(r["budget_flops"], budget, rel_tol=1e-9)]


def current(rows: list[dict], budget: float, grid: dict[str, list[Point]]) -> list[dict]:
    """The rows of the current search: at `budget`, of a point of `grid` (any seed). The table keeps
    the points of earlier budgets and grids, which no longer compete."""
    points = {(model, settings_key(p.settings)) for model, ps in grid.items() for p in ps}
    return [r for r in at_budget(rows, budget) if (r["model"], r["settings"]) in points]


def winners(rows: list[dict]) -> dict[str, dict]:
    """Each model's seed-0 row with the lowest validation NLL."""
    best: dict[str, dict] = {}
    for row in rows:
        if row["seed"] == 0 and (row["model"] not in best or row["val_nll"] < best[row["model"]]["val_nll"]):
            best[row["model"]] = row
    return best


def seed_spread(rows: list[dict], winner: dict) -> list[float]:
    """The validation NLLs of the winner's settings over every seed trained."""
    return [r["val_nll"] for r in rows if r["model"] == winner["model"] and r["settings"] == winner["settings"]]


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
        values = self.seed_nlls
        if len(values) < 2:
            return math.nan
        mean = sum(values) / len(values)
        return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


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


def budget_of(params: dict) -> float:
    budget = ((params.get("train") or {}).get(PROFILE) or {}).get("budget_flops")
    if not budget:
        raise PipelineError(f"train.{PROFILE}.budget_flops: the search needs the quick profile's budget")
    return float(budget)


def planned(params: dict, grid: dict[str, list[Point]], models: list[str] | None, seeds: list[int],
            done: list[dict]) -> list[Point]:
    budget = budget_of(params)
    finished = {(r["model"], r["settings"], r["seed"]) for r in at_budget(done, budget)}
    if seeds:
        best = winners(current(done, budget, grid))
        points = [Point(m, json.loads(best[m]["settings"]), s) for m in best for s in seeds]
    else:
        points = [p for ps in grid.values() for p in ps]
    unknown = set(models or []) - set(grid)
    if unknown:
        raise PipelineError(f"--models: {', '.join(sorted(unknown))} not in {GRID}")
    for point in points:
        spec_of(params, point)  # a bad key or value fails now, before hours of training
    return [p for p in points if (not models or p.model in models) and p.key not in finished]


def run(params: dict, points: list[Point], jobs: int, quiet: bool) -> None:
    rows = read_table()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=_spawn()) as pool:
        futures = {pool.submit(train_point, params, p, threads): p for p in points}
        for done, future in enumerate(as_completed(futures), start=1):
            row = future.result()
            rows = [r for r in rows if (r["model"], r["settings"], r["seed"]) != futures[future].key] + [row]
            write_table(rows)
            elapsed = time.perf_counter() - start
            if not quiet:
                eta = elapsed / done * (len(points) - done)
                print(f"[{done}/{len(points)}] {row['model']} {row['settings']} seed {row['seed']}: "
                      f"val {row['val_nll']:.2f} nats ({row['seconds']:.0f}s; ETA {eta / 60:.0f} min)", flush=True)


def _spawn():
    import multiprocessing
    return multiprocessing.get_context("spawn")  # a forked worker would inherit torch's thread pool


def winners_yaml(rows: list[dict], budget: float, grid: dict[str, list[Point]]) -> str:
    lines = []
    rows = current(rows, budget, grid)
    for model, row in sorted(winners(rows).items()):
        spread = seed_spread(rows, row)
        lines.append(f"{model}: {row['settings']}  # val {row['val_nll']:.2f} nats"
                     f"{f', seeds {min(spread):.2f}-{max(spread):.2f}' if len(spread) > 1 else ''}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", help="only these models of the grid")
    parser.add_argument("--jobs", type=int, default=1, help="points trained at once (the cores are shared)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[], help="train the winners with these seeds")
    parser.add_argument("--winners", action="store_true", help="print each model's best settings and stop")
    parser.add_argument("--quiet", action="store_true", default=in_ci())
    args = parser.parse_args(argv)
    params = P.load()
    if args.winners:
        print(winners_yaml(read_table(), budget_of(params), read_grid()))
        return
    points = planned(params, read_grid(), args.models, args.seeds, read_table())
    if not args.quiet:
        print(f"search: {len(points)} points to train at {budget_of(params):.1e} FLOPs each, {args.jobs} at a time",
              flush=True)
    run(params, points, args.jobs, args.quiet)


if __name__ == "__main__":
    try:
        main()
    except PipelineError as e:
        sys.exit(f"error: {' '.join(str(e).split())}")
