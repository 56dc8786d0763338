"""digest: for every model family, a checksum of exactly the code it runs, so that DVC re-runs a
family's train and evaluate stages when that code changes, and no other family's.

DVC cannot give each `train@<model>` stage its own list of code files (a `foreach` stage has one
fixed list), so each stage depends on `digests/<family>.sha256` instead: one line per file of the
family's module and of every module of `models/` that it imports, directly or not, in the format
of `sha256sum`, plus its line in the registry. The imports are read from the source, so the list
is never out of date. Code every family uses (the training loop, checkpoints) is listed in
dvc.yaml directly.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

from pipeline import stage
from pipeline.io import REPO_ROOT, atomic_dir

PACKAGE = "models"
DIGEST_DIR = Path("digests")


def family_registry() -> dict[str, str]:
    """models.FAMILIES (family -> "module:Class"), read from the source without importing torch."""
    tree = ast.parse((REPO_ROOT / PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "FAMILIES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError(f"{PACKAGE}/__init__.py defines no FAMILIES registry")


def imported_modules(path: Path) -> set[str]:
    """The `models.*` modules that the file at `path` imports (the package itself not counted)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found.update(name for name in names if name.startswith(PACKAGE + ".") and module_path(name).exists())
    return found


def module_path(module: str) -> Path:
    return REPO_ROOT / Path(*module.split(".")).with_suffix(".py")


def code_files(module: str) -> list[Path]:
    """The file of `module` and of every `models` module it imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(imported_modules(module_path(module)))
    return sorted(module_path(m) for m in seen)


def family_digest(family: str, registry: dict[str, str] | None = None) -> str:
    """`sha256sum`-style lines for the family's files, then its entry in `registry` (by default
    models.FAMILIES as written in the source)."""
    entry = (registry or family_registry())[family]
    lines = [f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(REPO_ROOT).as_posix()}"
             for path in code_files(entry.split(":")[0])]
    return "\n".join([*lines, f"# {family} = {entry}"]) + "\n"


def main(argv=None) -> None:
    stage.parse_args(__doc__.splitlines()[0], argv)
    families = family_registry()
    with atomic_dir(DIGEST_DIR) as tmp:
        for family in families:
            (tmp / f"{family}.sha256").write_text(family_digest(family, families))
    print(f"digest: {len(families)} families -> {DIGEST_DIR}/")


if __name__ == "__main__":
    stage.run(main)
