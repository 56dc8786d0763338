"""check: whether this workspace's results reproduce the committed reference of the quick profile.

One line per model: the reference test NLL, yours, the tolerance, pass or fail; exit status 1 when
any model is outside its tolerance, has no result, or has other settings or family code than the
reference's, or when the reference is of another profile or budget (one line that says so).

Each tolerance comes from how far one configuration and seed moves when only the arithmetic changes
(another thread count, another CPU): the test and validation NLLs of the runs the reference is made
from (at least two), and of an earlier reference's runs on another machine (`--elsewhere`) wherever
that model's configuration and its family's code are still the same. It is twice the largest
difference seen, at least 0.1% of the model's NLL, and never more than 1%: a model that moves more
than that is a defect to fix, not a tolerance to widen.
The reference also keeps each model's test NLL over training seeds (workspaces of the same commit
with another `train.seed`): the noise the report states beside each number.

    python -m pipeline.check        # after `dvc repro` (make check)
    python -m pipeline.check --write-reference RUN [RUN ...] --seeds RUN [RUN ...] \
        --elsewhere reference/machines/OTHER.json     # maintainers
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch

from pipeline import params as P
from pipeline import search_table as T
from pipeline import stage
from pipeline.io import PipelineError, read_json, sha256_bytes, write_json
from pipeline.model_params import model_spec
from pipeline.reference import MACHINE_ONLY, REFERENCE, budget, configuration
from pipeline.reference import read as read_reference
from pipeline.results import Metrics, ModelResults, TrainSummary

PROFILE = T.PROFILE
MAX_TOLERANCE = 0.01   # of the model's NLL: beyond it a model does not reproduce
MIN_TOLERANCE = 1e-3   # of the model's NLL: the last digits another CPU's arithmetic may change
SPREAD_FACTOR = 2      # the tolerance is this many times the largest difference the runs showed


def test_nll(root: Path, name: str) -> float | None:
    path = root / ModelResults(name).metrics
    return Metrics.read(path, f"evaluate@{name}").test_nll if path.exists() else None


def val_nll(root: Path, name: str) -> float:
    return TrainSummary.read(root / ModelResults(name).train_summary, f"train@{name}").best_val_nll


def spread(values: list[float]) -> float:
    return max(values) - min(values)


def tolerance(test_nlls: list[float], val_nlls: list[float]) -> tuple[float, float]:
    """(the largest difference of one configuration's runs, its tolerance): SPREAD_FACTOR times that,
    and at least MIN_TOLERANCE of its NLL."""
    moved = max(spread(test_nlls), spread(val_nlls))
    return moved, max(SPREAD_FACTOR * moved, MIN_TOLERANCE * abs(test_nlls[0]))


def test_nlls(runs: list[Path], name: str) -> list[float]:
    nlls = [test_nll(run, name) for run in runs]
    if missing := [str(run) for run, v in zip(runs, nlls) if v is None]:
        raise PipelineError(f"models.{name}: no {ModelResults(name).metrics} in {', '.join(missing)}")
    return nlls


def family_digest_file(family: str) -> Path:
    return Path("digests") / f"family-{family}.sha256"   # as the digest stage writes it


def family_code(run: Path, family: str) -> str | None:
    """A digest of the family's code as the run's `dvc repro` found it (its digests/ file)."""
    path = run / family_digest_file(family)
    return sha256_bytes(path.read_bytes())[:16] if path.exists() else None


def runs_elsewhere(earlier: list[dict], name: str, config: str, code: str) -> tuple[list, list, list]:
    """(test NLLs, validation NLLs, machines) of the earlier references' runs of this very model:
    the same configuration and the same family code."""
    tests, vals, machines = [], [], []
    for reference in earlier:
        entry = reference["models"].get(name)
        if entry and entry["configuration"] == config and entry.get("code") == code:
            tests += entry["test_nlls"]
            vals += entry["val_nlls"]
            machines.append(reference["machine"])
    return tests, vals, machines


def seed_of(params: dict, name: str) -> int:
    return model_spec(params, name).train.seed


def check_seed_run(params: dict, run: Path) -> dict:
    """The params of a seed workspace, refused unless each model has this configuration with another seed."""
    theirs, but_seed = P.load(run / "params.yaml"), (*MACHINE_ONLY, "seed")
    for name in P.model_names(params):
        if configuration(theirs, name, but_seed) != configuration(params, name, but_seed) \
                or seed_of(theirs, name) == seed_of(params, name):
            raise PipelineError(f"{run}: models.{name} is not this configuration with another train.seed")
    return theirs


def machine() -> str:
    """What the arithmetic depends on: the CPU, the vector instructions torch's kernels use, torch."""
    return (f"{platform.machine()}, {os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()} kernels, "
            f"torch {torch.__version__.split('+')[0]}")


def write_reference(runs: list[Path], params: dict, out: Path = REFERENCE, seed_runs: list[Path] = (),
                    elsewhere: list[dict] = ()) -> dict:
    """The reference from `runs` (workspaces of this commit after `dvc repro`, on other thread counts
    or machines), `seed_runs` (the same with other seeds) and `elsewhere` (earlier references from
    other machines): the first run's test NLLs, with tolerances from how far the runs moved."""
    if len(runs) < 2:
        raise PipelineError("a reference needs two runs of one configuration or more (other thread counts or "
                            "machines): their spread is the tolerance")
    if P.profile_of(params) != PROFILE:
        raise PipelineError(f"profile: the reference is of the {PROFILE} profile, params.yaml runs {P.profile_of(params)}")
    seed_params = [check_seed_run(params, run) for run in seed_runs]
    models, unstable = {}, []
    for name in P.model_names(params):
        spec, here = model_spec(params, name), configuration(params, name)
        if (code := family_code(runs[0], spec.family)) is None:
            raise PipelineError(f"{runs[0]}: no {family_digest_file(spec.family)}: a reference is written from "
                                "workspaces after `dvc repro`")
        other_tests, other_vals, machines = runs_elsewhere(elsewhere, name, here, code)
        nlls = test_nlls(runs, name) + other_tests
        vals = [val_nll(run, name) for run in runs] + other_vals
        moved, tol = tolerance(nlls, vals)
        if tol > MAX_TOLERANCE * abs(nlls[0]):
            unstable.append(f"{name} (test {', '.join(f'{v:.2f}' for v in nlls)}; "
                            f"validation {', '.join(f'{v:.2f}' for v in vals)})")
        models[name] = {"test_nll": nlls[0], "tolerance": round(tol, 4), "moved": round(moved, 4),
                        "test_nlls": nlls, "val_nlls": vals, "data": spec.data.name,
                        "configuration": here, "code": code, "elsewhere": machines,
                        "seeds": [seed_of(params, name), *(seed_of(p, name) for p in seed_params)],
                        "seed_test_nlls": [nlls[0], *test_nlls(list(seed_runs), name)]}
    if unstable:
        raise PipelineError(f"these models differ by more than {MAX_TOLERANCE:.0%} of their NLL between runs of one "
                            f"configuration: {'; '.join(unstable)}: fix them before writing a reference")
    reference = {"profile": PROFILE, "budget_flops": budget(params), "runs": [str(r) for r in runs],
                 "seed_runs": [str(r) for r in seed_runs],
                 "machine": machine(), "models": models}
    write_json(out, reference)
    return reference


def check(params: dict, reference: dict, root: Path = Path(".")) -> tuple[list[str], bool]:
    """(one line per model, whether every model reproduces the reference)."""
    where = f"{REFERENCE} is of the {reference['profile']} profile at {reference['budget_flops']:.1e} FLOPs"
    if P.profile_of(params) != reference["profile"] or budget(params) != reference["budget_flops"]:
        raise PipelineError(f"{where}; this workspace runs the {P.profile_of(params)} profile"
                            f"{f' at {budget(params):.1e} FLOPs' if budget(params) else ''}: nothing to compare")
    lines = [f"{'model':<22} {'reference':>10} {'yours':>10} {'tolerance':>9}  result"]
    passed = True
    for name in P.model_names(params):
        ref, family = reference["models"].get(name), model_spec(params, name).family
        yours, code = test_nll(root, name), family_code(root, family)
        if ref is None:
            verdict = "no reference for this model"
        elif yours is None:
            verdict = f"FAIL: no {ModelResults(name).metrics}: run `dvc repro`"
        elif ref["configuration"] != configuration(params, name):
            verdict = "FAIL: params.yaml's settings differ from the reference's"
        elif code and code != ref.get("code", code):
            verdict = f"FAIL: the {family} family's code differs from the reference's"
        else:
            verdict = "pass" if abs(yours - ref["test_nll"]) <= ref["tolerance"] else "FAIL"
        passed &= not verdict.startswith("FAIL")
        lines.append(f"{name:<22} {_nats(ref and ref['test_nll']):>10} {_nats(yours):>10} "
                     f"{_nats(ref and ref['tolerance'], '±'):>9}  {verdict}")
    return lines, passed


def _nats(value: float | None, sign: str = "") -> str:
    return "-" if value is None else f"{sign}{value:.2f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-reference", nargs="+", type=Path, metavar="RUN",
                        help="write the reference from these workspaces (the first gives the values)")
    parser.add_argument("--seeds", nargs="+", type=Path, default=[], metavar="RUN",
                        help="with --write-reference: workspaces of the same settings with other train.seed values")
    parser.add_argument("--elsewhere", nargs="+", type=Path, default=[], metavar="REFERENCE",
                        help="with --write-reference: earlier references written on machines with other CPUs")
    args = parser.parse_args(argv)
    params = P.load()
    if args.write_reference:
        reference = write_reference(args.write_reference, params, seed_runs=args.seeds,
                                    elsewhere=[read_json(path) for path in args.elsewhere])
        print(f"check: {REFERENCE} written: {len(reference['models'])} models from {len(args.write_reference)} runs "
              f"and {len(args.seeds)} other seeds")
        return
    reference = read_reference()
    if reference is None:
        raise PipelineError(f"no {REFERENCE}: this checkout has no reference to compare with")
    lines, passed = check(params, reference)
    print("\n".join(lines))
    print(f"check: {'every model reproduces' if passed else 'some models do not reproduce'} {REFERENCE}")
    if not passed:
        sys.exit(1)


if __name__ == "__main__":
    stage.run(main)
