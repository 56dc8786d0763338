"""digest: checksums of exactly the code each stage and each model family runs, so that DVC re-runs
the stages an edit affects, and no others.

DVC cannot give each `train@<model>` stage its own list of code files (a `foreach` stage has one
fixed list), and a hand-written list goes stale as soon as a module imports another. So every
stage depends on generated files instead, in the format of `sha256sum`:
- `digests/stage-<stage>.sha256`: the stage's module (`pipeline/<stage>.py`) and every module of
  `pipeline/` or `models/` that it imports, directly or not;
- `digests/family-<family>.sha256`: the family's module and every module it imports, plus its
  entry in the registry `models.FAMILIES`.
`train@<model>` and `evaluate@<model>` depend on their stage file and their family's file, every
other stage on its stage file. The imports are read from the source (also those inside functions),
and a module counts the packages that Python runs before it (their `__init__.py`), so the lists are
never out of date. The statements of models/__init__.py that define the registry are left out of
its line (each family's entry is in its family's file), so adding a family re-runs no other
family's stages.

The settings of those two stages are generated the same way: `digests/train-<model>.json` and
`digests/evaluate-<model>.json` hold what each reads from params.yaml, resolved for the active
profile, and the stages depend on them rather than on params.yaml. DVC then reads params.yaml for
four stages instead of 58, its lock file (which it parses and rewrites after every stage) holds the
shared `train` section once instead of 27 times, and an edit to another profile's settings re-runs
no model.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import models
from pipeline import params as P
from pipeline import stage
from pipeline.io import REPO_ROOT, atomic_dir, write_json
from pipeline.model_params import model_spec

PACKAGES = ("pipeline", "models")
STAGES = ("prepare", "binarize", "grey", "classifier", "train", "evaluate", "report", "track")  # `python -m pipeline.<stage>`
REGISTRY_FILE = Path("models/__init__.py")
DIGEST_DIR = Path("digests")


def defines_registry(node: ast.stmt) -> bool:
    """Whether a statement assigns FAMILIES or one of its entries."""
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    for target in targets:
        while isinstance(target, ast.Subscript):
            target = target.value
        if isinstance(target, ast.Name) and target.id == "FAMILIES":
            return True
    return False


def module_path(module: str) -> Path | None:
    """The file of a project module (a package's `__init__.py`), or None for anything else."""
    path = REPO_ROOT / Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """The project modules that the file at `path` imports. `from models.base import x` imports
    `models.base`; `from models import x` imports the package `models` (or its module `models.x`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found.update(name for name in names if name.split(".")[0] in PACKAGES and module_path(name))
    return found


def packages_of(module: str) -> list[str]:
    """The packages Python imports before `module`: `models` and `models.nn` for `models.nn.sampling`."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def code_files(module: str) -> list[Path]:
    """The file of `module` and of every project module it imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(imported_modules(module_path(module)))
            todo.extend(package for package in packages_of(module) if module_path(package))
    return sorted(module_path(m) for m in seen)


def without_registry(source: str) -> str | None:
    """`source` less its statements that define the registry; None where it has none."""
    left_out = {line for node in ast.parse(source).body if defines_registry(node)
                for line in range(node.lineno - 1, node.end_lineno)}
    lines = source.splitlines(keepends=True)
    return "".join(line for i, line in enumerate(lines) if i not in left_out) if left_out else None


def checksum_line(path: Path) -> str:
    name = path.relative_to(REPO_ROOT).as_posix()
    if Path(name) == REGISTRY_FILE and (rest := without_registry(path.read_text())) is not None:
        return f"{hashlib.sha256(rest.encode()).hexdigest()}  {name} (less FAMILIES: each family's entry is in its own file)"
    return f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {name}"


def code_digest(module: str) -> str:
    return "".join(checksum_line(path) + "\n" for path in code_files(module))


def stage_digest(name: str) -> str:
    """`sha256sum`-style lines for the stage module `pipeline.<name>` and the code it imports."""
    return code_digest(f"pipeline.{name}")


def family_digest(family: str, registry: dict[str, str] | None = None) -> str:
    """`sha256sum`-style lines for the family's files, then its entry in `registry` (by default
    models.FAMILIES)."""
    entry = (registry or models.FAMILIES)[family]
    return code_digest(entry.split(":")[0]) + f"# {family} = {entry}\n"


def model_stage_settings(params: dict) -> dict[str, dict]:
    """For each model, what `train@<model>` and `evaluate@<model>` read from params.yaml, by file name."""
    evaluate = vars(P.evaluate_config(params))
    settings = {}
    for name in P.model_names(params):
        spec = model_spec(params, name)
        settings[f"train-{name}.json"] = {"profile": P.profile_of(params), "family": spec.family,
                                          "data": spec.data.name, "model": spec.kwargs, "train": vars(spec.train)}
        settings[f"evaluate-{name}.json"] = {"family": spec.family, "data": spec.data.name,
                                             "device": spec.train.device, "evaluate": evaluate}
    return settings


def write_digests(settings: dict[str, dict]) -> None:
    """digests/ anew: every stage's and family's code digest, and `settings` (file name -> values)."""
    with atomic_dir(DIGEST_DIR) as tmp:
        for name in STAGES:
            (tmp / f"stage-{name}.sha256").write_text(stage_digest(name))
        for family in models.FAMILIES:
            (tmp / f"family-{family}.sha256").write_text(family_digest(family))
        for name, values in settings.items():
            write_json(tmp / name, values)


def main(argv=None) -> None:
    stage.parse_args(__doc__.splitlines()[0], argv)
    settings = model_stage_settings(P.load())
    write_digests(settings)
    print(f"digest: {len(STAGES)} stages, {len(models.FAMILIES)} families and {len(settings) // 2} models' settings "
          f"-> {DIGEST_DIR}/")


if __name__ == "__main__":
    stage.run_as_script(main)
