"""Use what was trained: `load("made")` is the model that the pipeline trained in this repository,
`load("made", rev="v1")` the one of another git revision or DVC experiment
(`from pipeline.trained import load`).

Another revision is read through DVC (`dvc.api.open`), which is imported only then: trained models
load where DVC and MLflow are not installed.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from models.base import GenerativeModel
from models.checkpoint import load_checkpoint
from pipeline.results import RESULTS_DIR, ModelResults  # standard library only: no DVC, no MLflow

PARAMS = "params.yaml"


def checkpoint_path(name: str) -> str:
    return ModelResults(name).checkpoint.as_posix()


def find_repo(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder holding dvc.yaml, from `start` (default: the current folder) upwards."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no dvc.yaml in {here} or above it: pass repo= the genbench checkout")


def trained_names(repo: Path) -> list[str]:
    return sorted(p.name for p in (repo / RESULTS_DIR).glob("*") if ModelResults(p.name, repo).checkpoint.is_file())


def load(name: str, rev: str | None = None, repo: str | os.PathLike | None = None,
         device: str | torch.device = "cpu") -> GenerativeModel:
    """The trained model `name` (in eval mode, on `device`), ready for `sample(n)`, `nll(x)` and,
    for autoregressive models, `complete(x, observed)`. `rev`: a git revision or DVC experiment
    name (default: the working tree's results/). A name that params.yaml does not define raises
    LookupError; a defined one without a checkpoint, FileNotFoundError."""
    root = find_repo(repo)
    if rev is None:
        path = root / checkpoint_path(name)
        if not path.is_file():
            if unknown := unknown_model(name, root, rev):
                raise unknown
            trained = ", ".join(trained_names(root)) or "none yet"
            raise FileNotFoundError(f"{path} is missing: run `dvc repro train@{name}` (trained here: {trained})")
        source = path
    else:
        try:
            source = io.BytesIO(read_at_revision(checkpoint_path(name), rev, root))
        except FileNotFoundError:
            if unknown := unknown_model(name, root, rev):
                raise unknown from None
            raise
    model, _ = load_checkpoint(source, device)
    return model


def unknown_model(name: str, repo: Path, rev: str | None) -> LookupError | None:
    """The error for a `name` that params.yaml (at `rev`) does not define; None where it does, or
    where params.yaml cannot be read (the caller's own error then stands). Only asked once a
    checkpoint is missing, so loading pays nothing for it."""
    try:
        import yaml  # here, not at the top: the models package needs only torch
    except ImportError:
        return None
    try:
        text = (repo / PARAMS).read_text() if rev is None else read_at_revision(PARAMS, rev, repo).decode()
        known = list((yaml.safe_load(text) or {}).get("models") or {})
    except (OSError, ImportError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return None
    if name in known:
        return None
    where = PARAMS if rev is None else f"{PARAMS} at {rev!r}"
    return LookupError(f"unknown model {name!r}: {where} defines {', '.join(known) or 'none'}")


def read_at_revision(path: str, rev: str, repo: Path) -> bytes:
    try:
        import dvc.api
        from dvc.exceptions import DvcException
    except ImportError:
        raise ImportError("loading another revision needs DVC (pip install dvc)") from None
    try:
        with dvc.api.open(path, repo=str(repo), rev=rev, mode="rb") as f:
            return f.read()
    except (DvcException, FileNotFoundError) as e:
        raise FileNotFoundError(f"{path} at revision {rev!r} of {repo}: {' '.join(str(e).split())}") from None
