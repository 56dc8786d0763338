"""The report's pictures: test NLL per model, the training curves, validation NLL against training
compute, and every model's samples in one montage. Each is written atomically as a PNG. The two
tracks (binarized and grey-level MNIST) get a panel each: nats per image on the binarized one, bits
per dimension, the field's unit, on the grey one."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from models.base import bits_per_dim
from pipeline.io import atomic_path
from pipeline.layout import IMAGE_SHAPE
from pipeline.results import ModelResults

ESTIMATOR_LINES = {"exact": "-", "importance_sampled": "--", "dequantized": ":"}
FAMILY_MARKERS = ("o", "s", "^", "D")
TRACK_TITLES = {"binarized": "binarized MNIST", "grey": "grey-level MNIST"}


def tracks(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(data, its rows) for each track the table has, binarized first."""
    return [(data, table[table.data == data]) for data in TRACK_TITLES if (table.data == data).any()]


def in_track_unit(nll, data: str):
    """Nats per image on the binarized track, bits per dimension on the grey one."""
    return bits_per_dim(nll, math.prod(IMAGE_SHAPE)) if data == "grey" else nll


def unit_label(data: str) -> str:
    return "bits per dimension" if data == "grey" else "nats per image"


def save(fig, path: Path, dpi: int) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)


def family_colours(families) -> dict[str, tuple]:
    names = sorted(set(families))
    palette = plt.get_cmap("tab20")
    return {family: palette(i % 20) for i, family in enumerate(names)}


def label_compute_axes(ax, ylabel: str, title: str) -> None:
    """Log-log axes of NLL against training FLOPs, with the legend outside the plot."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute (FLOPs, forward and backward)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))


def nll_against_compute(table: pd.DataFrame, path: Path) -> None:
    """Every model's validation NLL against its cumulative training FLOPs (log scales): one line per
    model, coloured by family (a marker of its own within the family), its style by estimator (solid
    exact, dashed importance-sampled, dotted dequantized)."""
    panels = tracks(table)
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 6 * len(panels)), squeeze=False)
    colours = family_colours(table.family)
    for ax, (data, rows) in zip(axes[:, 0], panels):
        in_family = {}
        for model, family, estimator in zip(rows.model, rows.family, rows.estimator):
            curves = pd.read_csv(ModelResults(model).curves)
            in_family[family] = in_family.get(family, -1) + 1
            marker = FAMILY_MARKERS[in_family[family] % len(FAMILY_MARKERS)]
            ax.plot(curves.flops, in_track_unit(curves.val_nll, data), ESTIMATOR_LINES.get(estimator, "-"),
                    marker=marker, markersize=4, color=colours[family], label=f"{model} ({estimator})")
        label_compute_axes(ax, f"validation NLL ({unit_label(data)})",
                           f"Validation NLL against training compute: {TRACK_TITLES[data]}")
    fig.tight_layout()
    save(fig, path, 110)


def bar_chart(table: pd.DataFrame, path: Path) -> None:
    panels = tracks(table)
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 0.45 * len(table) + 1.5 * len(panels)), squeeze=False,
                             height_ratios=[len(rows) + 3 for _, rows in panels])
    colours = dict(zip(ESTIMATOR_LINES, ("tab:blue", "tab:orange", "tab:green")))
    for ax, (data, rows) in zip(axes[:, 0], panels):
        for estimator, group in rows.groupby("estimator", sort=False):
            ax.barh(group.model, in_track_unit(group.test_nll, data), xerr=in_track_unit(group.test_nll_stderr, data),
                    color=colours.get(estimator), label=estimator)
        published = rows.dropna(subset=["published_nll"])  # matched numbers only
        ax.scatter(in_track_unit(published.published_nll, data), published.model, marker="|", s=300, color="black",
                   label="published (matched setup)")
        ax.invert_yaxis()
        ax.set_xlabel(f"test NLL ({unit_label(data)}, lower is better): {TRACK_TITLES[data]}")
        ax.legend(loc="lower right")
    fig.tight_layout()
    save(fig, path, 120)


def learning_curves(table: pd.DataFrame, path: Path) -> None:
    panels = tracks(table)
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 4 * len(panels)), squeeze=False)
    for row, (data, rows) in zip(axes, panels):
        for model in rows.model:
            curves = pd.read_csv(ModelResults(model).curves)
            for ax, column in zip(row, ("train_loss", "val_nll")):
                ax.plot(curves.images, in_track_unit(curves[column], data), marker=".", label=model)
        for ax, title in zip(row, ("training loss", "validation NLL")):
            ax.set_title(f"{title} ({unit_label(data)}): {TRACK_TITLES[data]}")
            ax.set_xlabel("training images seen")
            ax.set_xscale("log")
            ax.set_yscale("log")
        row[1].legend(fontsize=8, ncol=2)
    fig.tight_layout()
    save(fig, path, 110)


def samples_montage(table: pd.DataFrame, path: Path) -> None:
    cols = min(4, len(table))
    rows = math.ceil(len(table) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, model in zip(axes.flat, table.model):
        ax.imshow(plt.imread(ModelResults(model).samples))
        ax.set_title(model, fontsize=10)
    fig.tight_layout()
    save(fig, path, 100)


def compute_frontier(frontiers: dict[str, dict[str, list[float]]], flops: list[float],
                     leaders: dict[str, list[tuple[float, str]]], baselines: dict[str, str], path: Path) -> None:
    """Per track, each model's frontier from the search (the best validation NLL of any searched
    configuration within each FLOPs value) against training FLOPs; the track's independent baseline
    in black, and the FLOPs where a model takes the lead marked on the axis."""
    panels = [data for data in TRACK_TITLES if frontiers.get(data)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 6 * len(panels)), squeeze=False)
    for ax, data in zip(axes[:, 0], panels):
        colours = family_colours(frontiers[data])
        for model, values in frontiers[data].items():
            baseline = model == baselines.get(data)
            ax.plot(flops, [in_track_unit(v, data) for v in values], "--" if baseline else "-", marker="o",
                    markersize=4, color="black" if baseline else colours[model],
                    label=f"{model} (independent baseline)" if baseline else model)
        for f, model in leaders.get(data, []):
            ax.axvline(f, color="grey", alpha=0.3)
            ax.annotate(f"{model} leads", (f, 1), xycoords=("data", "axes fraction"), rotation=90, va="top",
                        ha="right", fontsize=8, color="dimgrey")
        label_compute_axes(ax, f"best validation NLL ({unit_label(data)})",
                           f"Compute frontier of each model's searched configurations: {TRACK_TITLES[data]}")
    fig.tight_layout()
    save(fig, path, 110)
