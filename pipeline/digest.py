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
so the lists are never out of date. The registry itself is left out of the package's line, so
adding a family re-runs no other family's stages.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

from pipeline import stage
from pipeline.io import REPO_ROOT, atomic_dir

PACKAGES = ("pipeline", "models")
STAGES = ("prepare", "binarize", "grey", "classifier", "train", "evaluate", "report", "track")  # `python -m pipeline.<stage>`
REGISTRY_FILE = Path("models/__init__.py")
DIGEST_DIR = Path("digests")


def _registry_node(tree: ast.Module) -> ast.Assign:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "FAMILIES" for t in node.targets):
            return node
    raise RuntimeError(f"{REGISTRY_FILE} defines no FAMILIES registry")


def family_registry() -> dict[str, str]:
    """models.FAMILIES (family -> "module:Class"), read from the source without importing torch."""
    return ast.literal_eval(_registry_node(ast.parse((REPO_ROOT / REGISTRY_FILE).read_text())).value)


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


def code_files(module: str) -> list[Path]:
    """The file of `module` and of every project module it imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(imported_modules(module_path(module)))
    return sorted(module_path(m) for m in seen)


def checksum_line(path: Path) -> str:
    name = path.relative_to(REPO_ROOT).as_posix()
    if Path(name) != REGISTRY_FILE:
        return f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {name}"
    lines = path.read_text().splitlines(keepends=True)
    node = _registry_node(ast.parse("".join(lines)))
    rest = "".join(lines[:node.lineno - 1] + lines[node.end_lineno:])
    return f"{hashlib.sha256(rest.encode()).hexdigest()}  {name} (less FAMILIES: each family's entry is in its own file)"


def code_digest(module: str) -> str:
    return "".join(checksum_line(path) + "\n" for path in code_files(module))


def stage_digest(name: str) -> str:
    """`sha256sum`-style lines for the stage module `pipeline.<name>` and the code it imports."""
    return code_digest(f"pipeline.{name}")


def family_digest(family: str, registry: dict[str, str] | None = None) -> str:
    """`sha256sum`-style lines for the family's files, then its entry in `registry` (by default
    models.FAMILIES as written in the source)."""
    entry = (registry or family_registry())[family]
    return code_digest(entry.split(":")[0]) + f"# {family} = {entry}\n"


def main(argv=None) -> None:
    stage.parse_args(__doc__.splitlines()[0], argv)
    families = family_registry()
    with atomic_dir(DIGEST_DIR) as tmp:
        for name in STAGES:
            (tmp / f"stage-{name}.sha256").write_text(stage_digest(name))
        for family in families:
            (tmp / f"family-{family}.sha256").write_text(family_digest(family, families))
    print(f"digest: {len(STAGES)} stages and {len(families)} families -> {DIGEST_DIR}/")


if __name__ == "__main__":
    stage.run(main)
