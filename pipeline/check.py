"""check: whether this workspace's results reproduce the committed reference of the quick profile.

One line per model: the reference test NLL, yours, the tolerance, pass or fail; exit status 1 when
any model is outside its tolerance or has no result, or when the reference is of another profile or
budget (one line that says so). Each tolerance comes from the spread of the same configuration and seed across the runs the
reference was made from (other thread counts, other CPUs), and none exceeds 1% of the model's NLL:
a model that varies more than that is a defect to fix, not a tolerance to widen.

    python -m pipeline.check                                  # after `dvc repro` (make check)
    python -m pipeline.check --write-reference RUN [RUN ...]  # maintainers: from workspaces of one commit
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
from pathlib import Path

from pipeline import params as P
from pipeline.io import PipelineError, params_hash, read_json, write_json
from pipeline.results import Metrics, ModelResults

REFERENCE = Path("reference/quick.json")
PROFILE = "quick"
MAX_TOLERANCE = 0.01   # of the model's NLL: beyond it a model does not reproduce
MIN_TOLERANCE = 1e-3   # of the model's NLL: the last digits another CPU's arithmetic may change
SPREAD_FACTOR = 2      # the tolerance is this many times the largest difference the runs showed


def configuration(params: dict, name: str) -> str:
    """A digest of everything that shapes a model's numbers: its family and settings, its training
    settings but the device, its data and the evaluation settings."""
    spec = P.model_spec(params, name)
    train = {k: v for k, v in dataclasses.asdict(spec.train).items() if k not in ("device", "processes")}
    return params_hash(P.flatten({"family": spec.family, "kwargs": spec.kwargs, "train": train,
                                  "data": spec.data.name, "binarization": dataclasses.asdict(P.data_config(params)),
                                  "evaluate": dataclasses.asdict(P.evaluate_config(params))}))


def budget(params: dict) -> float | None:
    return P.model_spec(params, P.model_names(params)[0]).train.budget_flops


def test_nll(root: Path, name: str) -> float | None:
    path = root / ModelResults(name).metrics
    return Metrics.read(path, f"evaluate@{name}").test_nll if path.exists() else None


def tolerance(nlls: list[float]) -> tuple[float, float]:
    """(the spread of a model's runs, its tolerance): SPREAD_FACTOR times the largest difference from
    the first run, and at least MIN_TOLERANCE of its NLL."""
    spread = max(abs(v - nlls[0]) for v in nlls)
    return spread, max(SPREAD_FACTOR * spread, MIN_TOLERANCE * abs(nlls[0]))


def write_reference(runs: list[Path], params: dict, out: Path = REFERENCE) -> dict:
    """The reference from `runs` (workspaces of this commit after `dvc repro`, on other thread counts
    or machines): the first run's test NLLs, with tolerances from the spread of all of them."""
    if P.profile_of(params) != PROFILE:
        raise PipelineError(f"profile: the reference is of the {PROFILE} profile, params.yaml runs {P.profile_of(params)}")
    models, unstable = {}, []
    for name in P.model_names(params):
        nlls = [test_nll(run, name) for run in runs]
        if missing := [str(run) for run, v in zip(runs, nlls) if v is None]:
            raise PipelineError(f"models.{name}: no {ModelResults(name).metrics} in {', '.join(missing)}")
        spread, tol = tolerance(nlls)
        if tol > MAX_TOLERANCE * abs(nlls[0]):
            unstable.append(f"{name} ({', '.join(f'{v:.2f}' for v in nlls)})")
        models[name] = {"test_nll": nlls[0], "tolerance": round(tol, 4), "spread": round(spread, 4), "runs": nlls,
                        "data": P.model_spec(params, name).data.name, "configuration": configuration(params, name)}
    if unstable:
        raise PipelineError(f"these models differ by more than {MAX_TOLERANCE:.0%} of their NLL between runs of one "
                            f"configuration: {'; '.join(unstable)}: fix them before writing a reference")
    reference = {"profile": PROFILE, "budget_flops": budget(params), "runs": [str(r) for r in runs],
                 "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "models": models}
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
        ref = reference["models"].get(name)
        yours = test_nll(root, name)
        if ref is None:
            verdict = "no reference for this model"
        elif yours is None:
            verdict = f"FAIL: no {ModelResults(name).metrics}: run `dvc repro`"
        elif ref["configuration"] != configuration(params, name):
            verdict = "FAIL: params.yaml's settings differ from the reference's"
        else:
            verdict = "pass" if abs(yours - ref["test_nll"]) <= ref["tolerance"] else "FAIL"
        passed &= not verdict.startswith("FAIL")
        lines.append(f"{name:<22} {_nats(ref and ref['test_nll']):>10} {_nats(yours):>10} "
                     f"{_nats(ref and ref['tolerance'], '±'):>9}  {verdict}")
    return lines, passed


def _nats(value: float | None, sign: str = "") -> str:
    return "-" if value is None else f"{sign}{value:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-reference", nargs="+", type=Path, metavar="RUN",
                        help="write the reference from these workspaces (the first gives the values)")
    args = parser.parse_args(argv)
    params = P.load()
    if args.write_reference:
        reference = write_reference(args.write_reference, params)
        print(f"check: {REFERENCE} written: {len(reference['models'])} models from {len(args.write_reference)} runs")
        return 0
    if not REFERENCE.exists():
        raise PipelineError(f"no {REFERENCE}: this checkout has no reference to compare with")
    lines, passed = check(params, read_json(REFERENCE))
    print("\n".join(lines))
    print(f"check: {'every model reproduces' if passed else 'some models do not reproduce'} {REFERENCE}")
    return 0 if passed else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PipelineError as e:
        sys.exit(f"error: {' '.join(str(e).split())}")
