"""Progress bars for the long loops: pixel-by-pixel sampling, evaluation batch by batch, training.

A bar (with its ETA) is drawn only where someone watches it: stderr is a terminal, CI is not set
and nobody asked for quiet (`--quiet`). A log file would otherwise collect thousands of
carriage-return updates.
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
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def bars_enabled() -> bool:
    return not _quiet and not in_ci() and sys.stderr.isatty()


def progress(iterable, desc: str, total: int | None = None, unit: str = "it"):
    """`iterable`, with a bar on stderr when `bars_enabled()`."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True,
                disable=not bars_enabled())


def pixels(positions, total: int | None = None):
    """The pixel loop of a sampler."""
    return progress(positions, "sampling", total=total, unit="px")
