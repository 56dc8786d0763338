"""search: each model's best configuration at the quick profile's training budget, by an Optuna study.

One study per model and budget. Each trial draws a configuration from the model's space in
search/space.yaml (a learning rate on a log scale, a batch size, sizes as choices), trains it through
`fit_model`, the function the train stage calls, at the quick budget (`train.quick.budget_flops`),
and is judged on its validation NLL alone: the test set is never read. A trial reports its validation
NLL at every point the run validates (1/64, 1/32, ..., 1 of the budget) and successive halving stops
one that is not in the best third of the trials before it at 1/4 of the budget, so that a wide space
costs about what a small grid did. The first trial of a study is params.yaml's quick setting. Every
finished or pruned trial lands in search/results.csv (`pipeline/search_table.py`), which the report and
the compute frontier read; the quick settings in params.yaml are the winners (`--winners` prints them,
with any edge of its range they sit on).

The studies live in a local SQLite file (search/studies.db) unless `--storage` names another database:
several machines given one PostgreSQL URL work on the same studies at once (docs/operations.md).
An interrupted search resumes: a study runs only the trials it still lacks.

    python -m pipeline.search --jobs 2                  # every model's study (the trials still to run)
    python -m pipeline.search --models pixelcnn rnn     # some models only
    python -m pipeline.search --seeds 1 2 --jobs 2      # the winners with two more seeds
    python -m pipeline.search --winners                 # the best trial of each model, as params.yaml keys
    python -m pipeline.search --storage postgresql+psycopg://user@host/db --models nade   # a shared study
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from pipeline import params as P
from pipeline import search_table as T
from pipeline.io import PipelineError
from pipeline.model_params import ModelSpec
from pipeline.parallel import die_with_parent
from pipeline.progress import in_ci

SPACE = Path("search/space.yaml")
STORAGE = "sqlite:///search/studies.db"
PROFILE = T.PROFILE
PRUNE_AT = 16         # of 64ths of the budget: trials are compared at 1/4 of it, where the best third goes on
PRUNE_FACTOR = 3      # (the next rung, 3/4, lies past the last validation before the end, where none is pruned)
RANDOM_TRIALS = 5     # trials drawn at random before TPE models the others
EDGE = 0.05           # a value within this share of its (log) range of an end sits on that edge
BATCH = "train.batch_size"


@dataclass(frozen=True)
class Axis:
    """One dimension of a model's space: `choices` (values, or mappings of keys that change
    together), or a range from `low` to `high` (`log`: on a log scale; integers when both ends are;
    `limit`: the end, low or high, where a winner is at a limit, not on an edge: one set on purpose,
    a batch range's floor, or an integer range's 1, below which nothing lies)."""
    name: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    limit: str | None = None

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    def suggest(self, trial) -> dict:
        """The trial's value of this axis, as params keys and values."""
        if self.choices:
            value = json.loads(trial.suggest_categorical(self.name, [json.dumps(c) for c in self.choices]))
            return value if isinstance(value, dict) else {self.name: value}
        if self.integer:
            return {self.name: trial.suggest_int(self.name, self.low, self.high, log=self.log)}
        # three significant digits: what a person would write in params.yaml, and no worse a point
        return {self.name: float(f"{trial.suggest_float(self.name, self.low, self.high, log=self.log):.3g}")}

    def distribution(self):
        import optuna

        if self.choices:
            return optuna.distributions.CategoricalDistribution([json.dumps(c) for c in self.choices])
        kind = optuna.distributions.IntDistribution if self.integer else optuna.distributions.FloatDistribution
        return kind(self.low, self.high, log=self.log)

    def value_of(self, settings: dict):
        """This axis's value (as a trial holds it) for `settings` (the keys of a model's spec), or None
        where they lie outside it."""
        if self.choices:
            for choice in self.choices:
                keys = choice if isinstance(choice, dict) else {self.name: choice}
                if all(settings.get(k) == v for k, v in keys.items()):
                    return json.dumps(choice)
            return None
        value = settings.get(self.name)
        return value if value is not None and self.low <= value <= self.high else None

    def position(self, settings: dict) -> float | None:
        """Where `settings` lie along this axis, 0 (low, the first choice) to 1 (high, the last)."""
        if self.choices:
            index = next((i for i, c in enumerate(self.choices)
                          if (c.items() <= settings.items() if isinstance(c, dict) else settings.get(self.name) == c)),
                         None)
            return None if index is None or len(self.choices) < 2 else index / (len(self.choices) - 1)
        value = settings.get(self.name)
        if value is None:
            return None
        scale = math.log if self.log else float
        return (scale(value) - scale(self.low)) / (scale(self.high) - scale(self.low))


@dataclass(frozen=True)
class Space:
    model: str
    trials: int
    axes: tuple[Axis, ...]

    def suggest(self, trial) -> dict:
        return {k: v for axis in self.axes for k, v in axis.suggest(trial).items()}

    def as_trial(self, row: dict):
        """A finished or pruned trial rebuilt from its row of the table (for a study whose database is
        not on this machine: the committed table is the record), or None if it lies outside the space."""
        import optuna

        settings = json.loads(row["settings"])
        values = {axis.name: axis.value_of(settings) for axis in self.axes}
        if None in values.values():
            return None
        steps = {2 ** k: v for k, (_, v) in enumerate(row["curve"])}
        rungs = {f"completed_rung_{k}": steps[PRUNE_AT * PRUNE_FACTOR ** k] for k in range(2)
                 if PRUNE_AT * PRUNE_FACTOR ** k in steps}
        finished = row["state"] == T.FINISHED and math.isfinite(row["val_nll"])
        return optuna.trial.create_trial(
            params=values, distributions={axis.name: axis.distribution() for axis in self.axes},
            value=row["val_nll"] if finished else None, intermediate_values=steps, system_attrs=rungs,
            user_attrs={"row": row},
            state=optuna.trial.TrialState.COMPLETE if finished else optuna.trial.TrialState.PRUNED)

    def values_of(self, spec: ModelSpec) -> dict:
        """The trial parameters of a spec's settings (its model's keys, and `train.` keys), on the axes
        they lie inside."""
        settings = {**{k: list(v) if isinstance(v, tuple) else v for k, v in spec.kwargs.items()},
                    **{f"train.{k}": v for k, v in vars(spec.train).items()}}
        values = {axis.name: axis.value_of(settings) for axis in self.axes}
        return {name: value for name, value in values.items() if value is not None}

    def edges(self, settings: dict) -> list[str]:
        """The axes of a range (or of more than two choices) on whose end, not a `limit`, `settings` sit."""
        found = []
        for axis in self.axes:
            position = axis.position(settings)
            if position is None or (axis.choices and len(axis.choices) < 3):
                continue
            end = "low" if position <= EDGE else "high" if position >= 1 - EDGE else None
            if end is not None and end != axis.limit:
                found.append(f"{axis.name} at its {end} end")
        return found


def parse_axis(model: str, name: str, value) -> Axis:
    where = f"{SPACE}: {model}.{name}"
    if isinstance(value, list) and value:
        return Axis(name, choices=tuple(value))
    if isinstance(value, dict) and {"low", "high"} <= set(value) <= {"low", "high", "log", "limit"}:
        low, high = value["low"], value["high"]
        if value.get("limit") not in (None, "low", "high"):
            raise PipelineError(f"{where}: limit must be low or high, got {value['limit']!r}")
        if not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and low < high):
            raise PipelineError(f"{where}: low and high must be numbers with low < high, got {low} and {high}")
        if value.get("log") and low <= 0:
            raise PipelineError(f"{where}: a log range needs low > 0, got {low}")
        limit = value.get("limit") or ("low" if isinstance(low, int) and low == 1 else None)
        return Axis(name, low=low, high=high, log=bool(value.get("log")), limit=limit)
    raise PipelineError(f"{where}: expected a non-empty list of choices or {{low, high, log}}, got {value!r}")


def read_space(path: Path = SPACE) -> dict[str, Space]:
    spaces = yaml.load(path.read_text(), Loader=P.ParamsLoader) or {}
    default_trials = spaces.pop("trials", 16)
    smallest_batch = spaces.pop("smallest_batch", 1)
    out = {}
    for model, axes in spaces.items():
        axes = dict(axes or {})
        trials = axes.pop("trials", default_trials)
        parsed = tuple(at_floor(path, model, parse_axis(model, n, v), smallest_batch) for n, v in axes.items())
        out[model] = Space(model, int(trials), parsed)
    return out


def at_floor(path: Path, model: str, axis: Axis, smallest_batch: int) -> Axis:
    """A batch range starts at the space's `smallest_batch`, its low limit: a smaller batch is ruled
    out, not untried."""
    if axis.name != BATCH:
        return axis
    if axis.low < smallest_batch:
        raise PipelineError(f"{path}: {model}.{BATCH} starts at {axis.low}, below smallest_batch ({smallest_batch})")
    return replace(axis, limit="low") if axis.low == smallest_batch else axis


def budget_of(params: dict) -> float:
    budget = ((params.get("train") or {}).get(PROFILE) or {}).get("budget_flops")
    if not budget:
        raise PipelineError(f"train.{PROFILE}.budget_flops: the search needs the quick profile's budget")
    return float(budget)


def study_name(model: str, budget: float) -> str:
    return f"{model}@{budget:.1e}"


def prune_step(record: dict) -> int:
    """A validation's position as Optuna's step: 1, 2, 4, ... 64ths of the budget."""
    return 2 ** (record["epoch"] - 1)


class Pruned(Exception):
    """Raised from `fit`'s per-validation callback when the study prunes the trial."""


def train_row(params: dict, model: str, settings: dict, seed: int = 0, trial=None) -> dict:
    """Train one configuration on the CPU through `fit_model` and return its row of the table. Given
    an Optuna `trial`, report each validation to it and stop when it is pruned."""
    import torch

    from pipeline.fit_model import build, fit_model
    from pipeline.layout import TRAIN_SIZE
    from pipeline.training_loop import Rounds, TrainingDiverged

    spec = T.spec_of(params, model, settings, seed)
    device = torch.device("cpu")
    network = build(spec, device)
    history: list[dict] = []
    state = T.FINISHED if trial is not None else T.SEED_RUN

    rounds = Rounds.plan(network, spec.train.max_train or TRAIN_SIZE, spec.train)

    def on_validation(record: dict, improved: bool) -> None:
        history.append(record)
        if trial is not None:
            trial.report(record["val_nll"], prune_step(record))
            if record["epoch"] < len(rounds.ends) and trial.should_prune():  # a run that has finished is not pruned
                raise Pruned

    start = time.perf_counter()
    try:
        fit_model(spec, device, model=network, quiet=True, on_epoch=on_validation)
    except Pruned:
        state = T.PRUNED
    except TrainingDiverged:
        history.clear()
        state = T.DIVERGED
    best = min(history, key=lambda r: r["val_nll"]) if history else {"flops": 0, "val_nll": math.inf}
    return {"model": model, "data": spec.data.name, "family": spec.family, "search": T.SEARCH,
            "trial": None if trial is None else trial.number, "state": state,
            "settings": T.settings_key(settings), "seed": seed,
            "parameters": sum(p.numel() for p in network.parameters()),
            "flops_per_image": rounds.flops_per_image, "budget_flops": spec.train.budget_flops,
            "train_images": history[-1]["images"] if history else 0, "val_nll": round(best["val_nll"], 4),
            "best_flops": best["flops"], "curve": [[r["flops"], round(r["val_nll"], 4)] for r in history],
            "seconds": round(time.perf_counter() - start, 1), "estimator": network.estimator}


def sampler_for(model: str, trial_number: int):
    """TPE seeded by the model and the trial's number (the same on every machine), so that a study
    resumed after trial k proposes what an uninterrupted one would have."""
    import optuna

    return optuna.samplers.TPESampler(seed=zlib.crc32(model.encode()) + trial_number, n_startup_trials=RANDOM_TRIALS)


def open_study(model: str, budget: float, storage: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=study_name(model, budget), storage=storage, direction="minimize", load_if_exists=True,
        sampler=sampler_for(model, 0),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=PRUNE_AT, reduction_factor=PRUNE_FACTOR))


def same_choices(space: Space, study) -> bool:
    """Whether the study's trials drew every choice axis from the choices the space offers now."""
    return all(t.distributions[axis.name] == axis.distribution()
               for axis in space.axes if axis.choices for t in study.trials if axis.name in t.distributions)


def untried_choices(space: Space, study) -> list[dict]:
    """The best trial's values with each choice no trial has drawn yet: a size added to widen the space
    is tried beside the winner's other settings first, not left to the sampler's chance."""
    import optuna

    finished = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    if not finished:
        return []
    best = min(finished, key=lambda t: t.value).params
    # a trial that trained (finished, pruned or diverged) or waits to; not one a killed search left
    tried = [t.params for t in study.trials if "row" in t.user_attrs] + \
        [t.system_attrs.get("fixed_params", {}) for t in study.get_trials(states=(optuna.trial.TrialState.WAITING,))]
    return [{**best, axis.name: json.dumps(choice)} for axis in space.axes if axis.choices
            for choice in axis.choices if all(p.get(axis.name) != json.dumps(choice) for p in tried)]


def study_rows(study) -> list[dict]:
    """The table rows of a study's trials that trained (finished, pruned or diverged)."""
    return [t.user_attrs["row"] for t in study.trials if "row" in t.user_attrs]


def run_study(params: dict, space: Space, storage: str, threads: int, quiet: bool) -> list[dict]:
    """Run the trials `space.model`'s study still lacks (in a worker process); return all of its rows."""
    import optuna
    import torch

    torch.set_num_threads(threads)
    budget = budget_of(params)
    study = open_study(space.model, budget, storage)
    recorded = None
    if study.trials and not same_choices(space, study):  # Optuna cannot add a choice to a study's parameter
        recorded = study_rows(study)
        optuna.delete_study(study_name=study.study_name, storage=storage)
        study = open_study(space.model, budget, storage)
    if not study.trials:
        if recorded is None:
            recorded = [r for r in T.read_table() if r["model"] == space.model and r["search"] == T.SEARCH
                        and r["trial"] is not None and math.isclose(r["budget_flops"], budget)]
        study.add_trials([t for t in map(space.as_trial, sorted(recorded, key=lambda r: r["trial"])) if t])
    if storage.startswith("sqlite"):  # one machine: a trial still running is one a killed search left
        for stale in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
    if not study.trials:  # the first trial: params.yaml's quick settings, the best known so far
        study.enqueue_trial(space.values_of(T.spec_of(params, space.model, {})), skip_if_exists=True)
    for values in untried_choices(space, study):
        study.enqueue_trial(values)
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    start = time.perf_counter()
    for number in range(len(done), space.trials):
        study.sampler = sampler_for(space.model, len(study.trials))
        trial = study.ask()
        row = train_row(params, space.model, space.suggest(trial), trial=trial)
        trial.set_user_attr("row", row)
        if row["state"] == T.PRUNED:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, row["val_nll"] if math.isfinite(row["val_nll"]) else None,
                       state=None if math.isfinite(row["val_nll"]) else optuna.trial.TrialState.FAIL)
        if not quiet:
            left = space.trials - number - 1
            eta = (time.perf_counter() - start) / (number + 1 - len(done)) * left
            print(f"{space.model} trial {number + 1}/{space.trials} {row['state']}: val {row['val_nll']:.2f} nats "
                  f"{row['settings']} ({row['seconds']:.0f}s; this study's ETA {eta / 60:.0f} min)", flush=True)
    return study_rows(study)


def seed_run(params: dict, model: str, settings: dict, seed: int, threads: int) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
    return [train_row(params, model, settings, seed)]


def merge(rows: list[dict], new: list[dict]) -> list[dict]:
    """The table with `new` rows: a study's trials in place of every trial of its model in this search
    at their budget (the study is the record), a seed run in place of the same model, settings, seed
    and budget. Rows of other budgets stay."""
    studied = {(r["model"], r["budget_flops"]) for r in new if r["trial"] is not None}
    seed_runs = {seed_key(r) for r in new if r["trial"] is None}

    def replaced(r):
        if r["search"] != T.SEARCH:
            return False
        return ((r["model"], r["budget_flops"]) in studied and r["trial"] is not None) or seed_key(r) in seed_runs
    return [r for r in rows if not replaced(r)] + new


def seed_key(row: dict) -> tuple:
    return row["model"], row["settings"], row["seed"], row["budget_flops"]


def check_space(params: dict, spaces: dict[str, Space], models: list[str] | None) -> list[Space]:
    """The spaces to search, each of a model of params.yaml whose keys validate at both ends."""
    unknown = set(models or []) - set(spaces)
    if unknown:
        raise PipelineError(f"--models: {', '.join(sorted(unknown))} not in {SPACE}")
    chosen = [spaces[m] for m in models] if models else list(spaces.values())  # in the order asked
    for space in chosen:
        for axis in space.axes:  # a bad key or value fails now, before hours of training
            for value in (axis.choices or (axis.low, axis.high)):
                T.spec_of(params, space.model, value if isinstance(value, dict) else {axis.name: value})
    return chosen


def require_data(params: dict, chosen: list[Space]) -> None:
    """Missing data fails before any study trains, not after the studies before it have."""
    for space in chosen:
        folder = T.spec_of(params, space.model, {}).data.folder
        if not (folder / "train.npy").exists():
            raise PipelineError(f"{folder}/train.npy is missing ({space.model}'s data): run `dvc repro` first")


def run(jobs: int, tasks: list[tuple], quiet: bool) -> None:
    """Run `tasks` ((function, *arguments), each returning table rows) on `jobs` worker processes,
    writing the table after each."""
    # a worker dies with the search: one killed alone would otherwise train on, orphaned
    with ProcessPoolExecutor(max_workers=jobs, mp_context=spawn_context(), initializer=die_with_parent) as pool:
        futures = [pool.submit(*task) for task in tasks]
        for done, future in enumerate(as_completed(futures), start=1):
            T.write_table(merge(T.read_table(), future.result()))  # read again: another search may have written
            if not quiet:
                print(f"search: {done}/{len(tasks)} done, {T.TABLE} written", flush=True)


def spawn_context():
    import multiprocessing
    return multiprocessing.get_context("spawn")  # a forked worker would inherit torch's thread pool


def winners_yaml(rows: list[dict], budget: float, spaces: dict[str, Space]) -> str:
    lines = []
    rows = T.current(rows, budget)
    for model, row in sorted(T.winners(rows).items()):
        spread = T.seed_spread(rows, row)
        settings = json.loads(row["settings"])
        edges = spaces[model].edges(settings) if model in spaces and row["search"] == T.SEARCH else []
        lines.append(f"{model}: {row['settings']}  # {row['search']}, val {row['val_nll']:.2f} nats"
                     f"{f', seeds {min(spread):.2f}-{max(spread):.2f}' if len(spread) > 1 else ''}"
                     f"{'; on an edge: ' + ', '.join(edges) if edges else ''}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", help="only these models of the space")
    parser.add_argument("--jobs", type=int, default=1, help="studies run at once (the cores are shared)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[], help="train the winners with these seeds")
    parser.add_argument("--threads", type=int, help="torch threads per study (default: the cores / jobs)")
    parser.add_argument("--storage", default=STORAGE, help=f"the studies' database (default {STORAGE})")
    parser.add_argument("--winners", action="store_true", help="print each model's best settings and stop")
    parser.add_argument("--quiet", action="store_true", default=in_ci())
    args = parser.parse_args(argv)
    params = P.load()
    budget, spaces = budget_of(params), read_space()
    if args.winners:
        print(winners_yaml(T.read_table(), budget, spaces))
        return
    chosen = check_space(params, spaces, args.models)
    require_data(params, chosen)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    if args.seeds:
        searched = T.current([r for r in T.read_table() if r["search"] == T.SEARCH], budget)
        best = T.winners(searched)
        done = {seed_key(r) for r in searched}
        tasks = [(seed_run, params, s.model, json.loads(best[s.model]["settings"]), seed, threads)
                 for s in chosen if s.model in best for seed in args.seeds
                 if seed_key({**best[s.model], "seed": seed}) not in done]
    else:
        Path("search").mkdir(exist_ok=True)
        for space in chosen:  # the database's tables and the studies once, before workers share them
            open_study(space.model, budget, args.storage)
        tasks = [(run_study, params, s, args.storage, threads, args.quiet) for s in chosen]
    if not args.quiet:
        print(f"search: {len(tasks)} {'seed runs' if args.seeds else 'studies'} at {budget:.1e} FLOPs each, "
              f"{args.jobs} at a time on {threads} thread(s) each", flush=True)
    run(args.jobs, tasks, args.quiet)


if __name__ == "__main__":
    try:
        main()
    except PipelineError as e:
        sys.exit(f"error: {' '.join(str(e).split())}")
