"""Where the time of a `dvc repro` goes: each stage's wall time from the moment DVC starts it to the
moment it starts the next, split into the training loops and test-set NLLs the stages report
themselves (`train_seconds` of results/<model>/train.json, `eval_seconds` of eval.json) and the rest
(process start-up and imports, sampling, figures and sample-quality scores, DVC's own bookkeeping).

    python -m bench.repro_times [DVC REPRO ARGS...] > repro.log   # runs `dvc repro`, lines time-stamped
    python -m bench.repro_times --log repro.log                   # the table of an earlier run

The first form passes DVC's output through with each line's seconds since the start, then prints
the table; run it in a workspace where everything is to be reproduced (a fresh clone).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from pipeline.results import ModelResults

STAGE_LINE = re.compile(r"^\s*([\d.]+) Running stage '([^']+)'")
END_LINE = re.compile(r"^\s*([\d.]+) ")


def run_repro(args: list[str]) -> list[str]:
    """Run `dvc repro ARGS`, print its output with each line's seconds since the start, and return those lines."""
    start = time.perf_counter()
    lines = []
    with subprocess.Popen(["dvc", "repro", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        for line in p.stdout:
            lines.append(f"{time.perf_counter() - start:8.1f} {line}")
            print(lines[-1], end="", flush=True)
    lines.append(f"{time.perf_counter() - start:8.1f} dvc repro exited {p.returncode}\n")
    print(lines[-1], end="")
    return lines


def stage_walls(lines: list[str]) -> dict[str, float]:
    """Each stage's seconds, from its `Running stage` line to the next one (or to the last line)."""
    starts = [(float(m[1]), m[2]) for m in map(STAGE_LINE.match, lines) if m]
    end = max(float(m[1]) for m in map(END_LINE.match, lines) if m)
    return {name: (starts[i + 1][0] if i + 1 < len(starts) else end) - t for i, (t, name) in enumerate(starts)}


def reported_seconds(stage: str) -> float:
    """The training loop's or the test NLL's seconds that a per-model stage wrote, else 0."""
    kind, _, model = stage.partition("@")
    if kind not in ("train", "evaluate"):
        return 0.0
    results = ModelResults(model)
    path, key = (results.train_summary, "train_seconds") if kind == "train" else (results.timing, "eval_seconds")
    return float(json.loads(path.read_text()).get(key) or 0) if path.is_file() else 0.0


def table(walls: dict[str, float]) -> str:
    groups: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for stage, wall in walls.items():
        group = groups[stage.partition("@")[0]]
        group[0] += 1
        group[1] += wall
        group[2] += reported_seconds(stage)
    rows = ["| stages | count | wall s | of it training / test NLL s | the rest s |", "|---|---|---|---|---|"]
    for name, (count, wall, own) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        rows.append(f"| {name} | {count} | {wall:.0f} | {own:.0f} | {wall - own:.0f} |")
    total = sum(walls.values())
    own = sum(g[2] for g in groups.values())
    rows.append(f"| all | {len(walls)} | {total:.0f} | {own:.0f} | {total - own:.0f} |")
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, help="a log this tool wrote before: only print its table")
    args, repro_args = parser.parse_known_args(argv)
    lines = args.log.read_text().splitlines(keepends=True) if args.log else run_repro(repro_args)
    walls = stage_walls(lines)
    if not walls:
        sys.exit("error: no `Running stage` line in the log: nothing was reproduced")
    print(table(walls))


if __name__ == "__main__":
    main()
