"""Atomic file writes (models/files.py's, which the checkpoints use too) and checksums: a stage never
leaves a half-written output behind."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from models.files import atomic_dir, atomic_path  # noqa: F401 (the stages import them from here)

REPO_ROOT = Path(__file__).resolve().parent.parent


class PipelineError(Exception):
    """A problem the user can fix; stages print it as one line and exit non-zero."""


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def params_hash(values: dict) -> str:
    """A short, stable digest of a dict of settings."""
    return sha256_bytes(json.dumps(values, sort_keys=True, default=str).encode())[:16]


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
