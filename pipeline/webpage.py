"""The report as one self-contained HTML page (`reports/index.html`): a compact leaderboard per
estimator with each model's samples beside its row, and the report's charts. The pictures are
inlined, so the file opens from disk with no server and no network."""
from __future__ import annotations

import base64
import math
import re
from html import escape
from pathlib import Path

import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0 2rem; }
th, td { padding: 0.3rem 0.7rem; border-bottom: 1px solid #ddd; text-align: right; vertical-align: middle; }
td { white-space: nowrap; }
th { background: #f4f4f4; }
td.model, th.model, td.published { text-align: left; }
td.samples img { height: 72px; image-rendering: pixelated; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; }
li { margin: 0.3rem 0; }
"""
COLUMNS = ("model", "samples", "test NLL (nats)", "bits/dim", "vs best exact", "training FLOPs",
           "inception score", "Frechet distance", "published (matched)")


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _number(value, fmt: str) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _with_stderr(value, stderr) -> str:
    return "" if _number(value, ".2f") == "" else f"{value:.2f} ± {stderr:.2f}"


def _cells(row: pd.Series, samples: bytes) -> list[str]:
    published = "" if pd.isna(row.published_nll) else f"{row.published_nll:.2f} ({escape(row.published_source)})"
    return [
        f'<td class="model">{escape(row.model)}</td>',
        f'<td class="samples"><img alt="samples of {escape(row.model)}" src="{data_uri(samples)}"></td>',
        f"<td>{_with_stderr(row.test_nll, row.test_nll_stderr)}</td>",
        f"<td>{_number(row.test_bpd, '.4f')}</td>",
        f"<td>{_with_stderr(row.vs_best_exact, row.vs_best_exact_stderr)}</td>",
        f"<td>{_number(row.train_flops, '.2e')}</td>",
        f"<td>{_number(row.inception_score, '.2f')}</td>",
        f"<td>{_number(row.frechet_distance, '.1f')}</td>",
        f'<td class="published">{published}</td>',
    ]


def _inline_code(markdown: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(markdown))


def leaderboard(group: pd.DataFrame, samples: dict[str, bytes]) -> str:
    head = "".join(f'<th class="{"model" if c == "model" else ""}">{c}</th>' for c in COLUMNS)
    rows = "\n".join(f'<tr id="row-{escape(row.model)}">{"".join(_cells(row, samples[row.model]))}</tr>'
                     for row in group.itertuples())
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>"


def page(title: str, notes: list[str], table: pd.DataFrame, estimators: dict[str, str],
         samples: dict[str, bytes], figures: dict[str, Path]) -> str:
    """`table`: the report's rows, best first within each estimator; `samples`: each model's sample
    grid (PNG bytes); `figures`: caption -> PNG file, shown below the tables."""
    parts = [f"<h1>{escape(title)}</h1>", "<ul>" + "".join(f"<li>{_inline_code(n)}</li>" for n in notes) + "</ul>"]
    for estimator, text in estimators.items():
        group = table[table.estimator == estimator]
        if len(group):
            parts += [f"<h2>{escape(estimator)}: {escape(text)}</h2>", leaderboard(group, samples)]
    for caption, path in figures.items():
        parts.append(f'<figure><img alt="{escape(caption)}" src="{data_uri(path.read_bytes())}">'
                     f"<figcaption>{escape(caption)}</figcaption></figure>")
    body = "\n".join(parts)
    return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")
