"""What every stage's entry point shares: flags, and turning known problems into one-line errors."""
from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable

from models.files import CheckpointMismatch
from pipeline.io import PipelineError
from pipeline.progress import in_ci, set_quiet


def parse_args(description: str, argv=None, with_model: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    if with_model:
        parser.add_argument("model", help="a model name from params.yaml's `models` section")
    parser.add_argument("--quiet", action="store_true", default=in_ci(),
                        help="no progress bars, short logs (the default when CI is set)")
    args = parser.parse_args(argv)
    set_quiet(args.quiet)
    return args


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe_os_error(e: OSError) -> str:
    where = f" ({e.filename})" if e.filename else ""
    if e.errno == errno.ENOSPC:
        return (f"no space left on device{where}: free some space and re-run; "
                "outputs are written atomically, so nothing half-written was kept")
    return f"{e.strerror or e}{where}"


def run(main: Callable[[], None]) -> None:
    """Run a stage; a PipelineError, a checkpoint its family's code no longer fits, or an OSError
    from the machine (a full disk, a missing permission), becomes 'error: ...' on one line and exit
    status 1."""
    try:
        main()
    except (PipelineError, CheckpointMismatch) as e:
        sys.exit(f"error: {one_line(e)}")
    except OSError as e:
        sys.exit(f"error: {one_line(describe_os_error(e))}")
    except KeyboardInterrupt:
        sys.exit("interrupted")


def run_as_script(main: Callable[[], None]) -> None:
    """`run(main)` as a DVC stage's process: once it has succeeded (its outputs written and closed),
    the process ends without the interpreter's teardown, slow with torch imported and of no use to a
    stage. Not for a process with work still in flight at exit (MLflow's)."""
    run(main)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
