"""The report as one self-contained HTML page (`reports/index.html`): a compact leaderboard per
estimator with each model's samples beside its row, and the report's charts. The pictures are
inlined, so the file opens from disk with no server and no network."""
from __future__ import annotations

import base64
import re
from html import escape
from pathlib import Path

import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 90rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0 2rem; }
th, td { padding: 0.3rem 0.7rem; border-bottom: 1px solid #ddd; text-align: right; vertical-align: middle; }
td { white-space: nowrap; }
th { background: #f4f4f4; }
td.model, th:first-child { text-align: left; }
td:last-child, th:last-child { text-align: left; white-space: normal; min-width: 14rem; }
td.samples img { height: 140px; image-rendering: pixelated; cursor: zoom-in; }
td.samples img:focus { height: 420px; cursor: zoom-out; outline: none; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; }
li { margin: 0.3rem 0; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _inline_code(markdown: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(markdown))


def table_html(board: pd.DataFrame, samples: dict[str, bytes]) -> str:
    """A leaderboard as the report formats it (its first column the model), each model's samples
    in a column beside its name (a click enlarges them), each row with the id `row-<model>`."""
    head = "".join(f"<th>{escape(c)}</th>" for c in ["model", "samples", *board.columns[1:]])
    rows = []
    for model, *cells in board.itertuples(index=False):
        image = f'<img alt="samples of {escape(model)}" tabindex="0" src="{data_uri(samples[model])}">'
        rows.append(f'<tr id="row-{escape(model)}"><td class="model">{escape(model)}</td>'
                    f'<td class="samples">{image}</td>' + "".join(f"<td>{escape(str(c))}</td>" for c in cells)
                    + "</tr>")
    body = "\n".join(rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _bullets(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{_inline_code(item)}</li>" for item in items) + "</ul>"


def page(title: str, notes: list[str], boards: dict[str, pd.DataFrame], samples: dict[str, bytes],
         figures: dict[str, Path], sections: list[tuple[str, str]] = ()) -> str:
    """`boards`: heading -> leaderboard, as the report formats them; `samples`: each model's sample
    grid (PNG bytes); `figures`: caption -> PNG file, shown below the tables; `sections`: (heading,
    Markdown bullet list) after the tables."""
    parts = [f"<h1>{escape(title)}</h1>", _bullets(notes)]
    for heading, board in boards.items():
        parts += [f"<h2>{escape(heading)}</h2>", table_html(board, samples)]
    for heading, text in sections:
        parts += [f"<h2>{escape(heading)}</h2>", _bullets([line.removeprefix("- ") for line in text.splitlines()])]
    for caption, path in figures.items():
        parts.append(f'<figure><img alt="{escape(caption)}" src="{data_uri(path.read_bytes())}">'
                     f"<figcaption>{escape(caption)}</figcaption></figure>")
    body = "\n".join(parts)
    return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")
