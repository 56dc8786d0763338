"""Atomic and durable writes: a reader, or the machine after a power cut, finds the old file (or
folder) or the new one, never a torn one. Standard library only; the checkpoints here and every
pipeline stage (through pipeline/io.py) write with it. Also the error for a checkpoint that today's
code cannot load, here so that every stage can report it without importing the models: importing
this module runs only models/__init__.py besides, which imports nothing of the package
(tests/test_digest.py checks that an edit to the models re-runs no data stage)."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def flush_to_disk(path: str | os.PathLike) -> None:
    """fsync a file, or a folder's entries."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path` to write; only if the block succeeds is it flushed to
    disk and renamed over `path` (and the rename flushed with the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        flush_to_disk(tmp)
        os.replace(tmp, path)
        flush_to_disk(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield an empty temporary folder beside `path`; only if the block succeeds is it flushed to disk
    and swapped in for `path`, so readers see the old folder, the new one, or (killed at the swap)
    none, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp", dir=path.parent))
    try:
        yield tmp
        for folder, _, names in os.walk(tmp):
            for name in names:
                flush_to_disk(Path(folder, name))
            flush_to_disk(folder)
        old = path.with_name(f".{path.name}.tmp-old{os.getpid()}")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        flush_to_disk(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class CheckpointMismatch(ValueError):
    """A checkpoint that today's code of its family cannot rebuild; the message is one line."""
