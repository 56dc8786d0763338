"""What every stage's entry point shares: flags, and turning known problems into one-line errors."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from pipeline.io import PipelineError


def parse_args(description: str, argv=None, with_model: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    if with_model:
        parser.add_argument("model", help="a model name from params.yaml's `models` section")
    parser.add_argument("--quiet", action="store_true", default=bool(os.environ.get("CI")),
                        help="no progress bars, short logs (the default when CI is set)")
    return parser.parse_args(argv)


def run(main: Callable[[], None]) -> None:
    """Run a stage; a PipelineError (or another expected failure) becomes 'error: ...' and exit 1."""
    try:
        main()
    except PipelineError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("interrupted")
