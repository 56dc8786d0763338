"""The report's pictures: test NLL per model, the training curves, validation NLL against training
compute, and every model's samples in one montage. Each is written atomically as a PNG."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from pipeline.io import atomic_path
from pipeline.results import ModelResults

ESTIMATOR_LINES = {"exact": "-", "importance_sampled": "--", "dequantized": ":"}
FAMILY_MARKERS = ("o", "s", "^", "D")


def save(fig, path: Path, dpi: int) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)


def family_colours(families) -> dict[str, tuple]:
    names = sorted(set(families))
    palette = plt.get_cmap("tab20")
    return {family: palette(i % 20) for i, family in enumerate(names)}


def nll_against_compute(table: pd.DataFrame, path: Path) -> None:
    """Every model's validation NLL against its cumulative training FLOPs (log scales): one line per
    model, coloured by family (a marker of its own within the family), its style by estimator (solid
    exact, dashed importance-sampled, dotted dequantized)."""
    fig, ax = plt.subplots(figsize=(12, 6))
    colours, in_family = family_colours(table.family), {}
    for model, family, estimator in zip(table.model, table.family, table.estimator):
        curves = pd.read_csv(ModelResults(model).curves)
        in_family[family] = in_family.get(family, -1) + 1
        marker = FAMILY_MARKERS[in_family[family] % len(FAMILY_MARKERS)]
        ax.plot(curves.flops, curves.val_nll, ESTIMATOR_LINES.get(estimator, "-"), marker=marker,
                markersize=4, color=colours[family], label=f"{model} ({estimator})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute (FLOPs, forward and backward)")
    ax.set_ylabel("validation NLL (nats per image)")
    ax.set_title("Validation NLL against training compute")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    save(fig, path, 110)


def bar_chart(table: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(table) + 1.5))
    for (estimator, group), colour in zip(table.groupby("estimator", sort=False), ("tab:blue", "tab:orange", "tab:green")):
        ax.barh(group.model, group.test_nll, xerr=group.test_nll_stderr, color=colour, label=estimator)
    published = table.dropna(subset=["published_nll"])  # matched numbers only
    ax.scatter(published.published_nll, published.model, marker="|", s=300, color="black",
               label="published (matched setup)")
    ax.invert_yaxis()
    ax.set_xlabel("test NLL (nats per image, lower is better)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    save(fig, path, 120)


def learning_curves(table: pd.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for model in table.model:
        curves = pd.read_csv(ModelResults(model).curves)
        for ax, column in zip(axes, ("train_loss", "val_nll")):
            ax.plot(curves.images, curves[column], marker=".", label=model)
    for ax, title in zip(axes, ("training loss (nats)", "validation NLL (nats)")):
        ax.set_title(title)
        ax.set_xlabel("training images seen")
        ax.set_xscale("log")
        ax.set_yscale("log")
    axes[1].legend(fontsize=8, ncol=2)
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
