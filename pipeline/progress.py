"""Progress bars for the long loops: pixel-by-pixel sampling, evaluation batch by batch, training.

A bar (with its ETA) is drawn only where someone watches it: stderr is a terminal, not in CI and
nobody asked for quiet (`--quiet`). A log file would otherwise collect thousands of
carriage-return updates. The models draw no bar themselves: a stage hands a model
`sampling_bar` as its `progress` (models/base.py).
"""
from __future__ import annotations

import os
import sys

from tqdm import tqdm

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence every bar of this process (the stages' --quiet)."""
    global _quiet
    _quiet = quiet


def in_ci() -> bool:
    """Whether this runs in CI: CI set to anything but empty, 0, false or no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def bars_enabled() -> bool:
    return not _quiet and not in_ci() and sys.stderr.isatty()


def progress(iterable, desc: str, total: int | None = None, unit: str = "it"):
    """`iterable`, with a bar on stderr when `bars_enabled()`."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True,
                disable=not bars_enabled())


def sampling_bar(steps, total: int | None = None, unit: str = "px"):
    """A model's `progress`: the steps of its sampler (pixels, or rows), with a bar."""
    return progress(steps, "sampling", total=total, unit=unit)
