"""Does bf16 autocast train a model as well as fp32 at the quick budget? Each searched winner (its fp32
validation NLLs over three seeds are in search/results.csv) is trained again under bf16 autocast with the
same seeds, through the search's own `seed_run`; a model is within its seed spread when the bf16 mean
lies within one fp32 seed standard deviation (at least 0.1% of its NLL) of the fp32 mean. bf16 runs on
any CPU here (`train.bf16: always`), slowly where the CPU has no AMX: the numbers, not the time, count.

    python -m bench.precision --models pixelcnn rnn --jobs 2    # a Markdown table for docs/benchmarks.md
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
from concurrent.futures import ProcessPoolExecutor

from pipeline import params as P
from pipeline import search
from pipeline import search_table as T

SEEDS = (0, 1, 2)


def verdict(fp32: list[float], bf16: list[float]) -> str:
    spread = max(statistics.stdev(fp32), 1e-3 * statistics.mean(fp32))
    return "within" if abs(statistics.mean(bf16) - statistics.mean(fp32)) <= spread else "outside"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    params = P.load()
    rows = T.current(T.read_table(), search.budget_of(params))
    best = T.winners(rows)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with ProcessPoolExecutor(args.jobs, mp_context=search.spawn_context()) as pool:
        runs = {(m, s): pool.submit(search.seed_run, params, m, {**json.loads(best[m]["settings"]), "train.bf16": "always"},
                                    s, threads)
                for m in args.models for s in SEEDS}
        print("| model | fp32 val NLL (3 seeds) | bf16 val NLL (3 seeds) | bf16 - fp32 | within fp32's seed spread |")
        print("|---|---|---|---|---|")
        for model in args.models:
            fp32 = T.seed_spread(rows, best[model])[:len(SEEDS)]
            bf16 = [runs[model, s].result()[0]["val_nll"] for s in SEEDS]
            print(f"| {model} | {statistics.mean(fp32):.2f} ± {statistics.stdev(fp32):.2f} | "
                  f"{statistics.mean(bf16):.2f} ± {statistics.stdev(bf16):.2f} | "
                  f"{statistics.mean(bf16) - statistics.mean(fp32):+.2f} | {verdict(fp32, bf16)} |", flush=True)


if __name__ == "__main__":
    main()
