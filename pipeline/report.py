"""report: every model's test NLL with its estimator and training regime, grouped by estimator, the
paired difference to the best exact model, and the published number that matches its setup (or the
nearest one, labelled with what differs), and the sample-quality scores beside the real test
images' ceiling, as Markdown and CSV; a bar chart of NLL and a montage of
every model's samples."""
from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline import params as P, references, stage  # noqa: E402
from pipeline.classifier import METRICS_FILE as CLASSIFIER_METRICS  # noqa: E402
from pipeline.io import PipelineError, atomic_path, params_hash, read_json, write_text  # noqa: E402
from pipeline.results import Metrics, ModelResults, TrainSummary  # noqa: E402

REPORT_DIR = Path("reports")
ESTIMATORS = {
    "exact": "exact log-likelihood",
    "importance_sampled": "importance-sampled upper bound on the NLL (in expectation; tighter with more samples)",
    "dequantized": "dequantization upper bound on the discrete NLL",
}
OPTIONAL_COLUMNS = ("test_neg_elbo", "test_conditional_nll", "generative_accuracy", "test_label_nll")
# results.csv: keys of train.json and metrics.json under their own names (pipeline/results.py), and
# what the report adds (k, train_minutes, the published numbers; then the paired differences)
CSV_COLUMNS = ["model", "family", "estimator", "k", "test_nll", "test_nll_stderr", "test_bpd", "test_neg_elbo",
               "test_neg_elbo_stderr", "test_images", "binarization", "inception_score", "frechet_distance",
               "test_conditional_nll", "test_conditional_nll_stderr", "generative_accuracy", "test_label_nll",
               "train_images", "epochs_run", "best_epoch", "parameters", "train_minutes", "device", "profile",
               "published_nll", "published_source", "nearest_nll", "nearest_source", "nearest_differs"]
REGIME = {"fixed": "fixed draw", "resampled": "resampled each epoch"}


def paired_difference(nll: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """Mean per-image difference and its paired standard error: both models scored the same images,
    so the image-to-image spread they share cancels."""
    if nll.shape != baseline.shape:
        raise PipelineError(f"paired comparison needs the same test images: {len(nll)} vs {len(baseline)}")
    diff = nll - baseline
    return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0


def estimator_k(estimator: str, settings: dict) -> int | None:
    """The number of samples behind a bound (importance samples, dequantization draws); None for exact."""
    return None if estimator == "exact" else settings.get("eval_samples")


def read_outputs(name: str) -> tuple[Metrics, TrainSummary, np.ndarray]:
    files = ModelResults(name)
    metrics, train = files.read_metrics(), files.read_train_summary()
    files.require("evaluate", files.per_image_nll)
    return metrics, train, np.load(files.per_image_nll)


def row(metrics: Metrics, train: TrainSummary) -> dict:
    """Every key of train.json and metrics.json, and the published numbers to compare with."""
    setup = references.Setup.of(train.family, train.settings, train.binarization, train.train_images)
    comparison = references.compare(setup)
    matched, nearest = comparison.matched, comparison.nearest
    return {
        **asdict(train), **asdict(metrics),
        "k": estimator_k(metrics.estimator, setup.settings), "train_minutes": train.train_seconds / 60,
        "published_nll": matched.nll if matched else None, "published_source": matched.source if matched else None,
        "nearest_nll": nearest.nll if nearest else None, "nearest_source": nearest.source if nearest else None,
        "nearest_differs": "; ".join(comparison.differences) or None,
    }


def collect(names: list[str], profile: str) -> pd.DataFrame:
    """One row per model, exact models first, then each bound, best first within a group."""
    rows, per_image = [], {}
    for name in names:
        metrics, train, per_image[name] = read_outputs(name)
        rows.append(row(metrics, train))
    table = pd.DataFrame(rows)[CSV_COLUMNS]
    stale = table[table["profile"] != profile]
    if len(stale):
        raise PipelineError(f"results of {', '.join(stale['model'])} come from another profile: run `dvc repro`")
    table["group"] = table.estimator.map(list(ESTIMATORS).index)
    table = table.sort_values(["group", "test_nll"]).drop(columns="group").reset_index(drop=True)
    return add_paired_differences(table, per_image)


def add_paired_differences(table: pd.DataFrame, per_image: dict[str, np.ndarray]) -> pd.DataFrame:
    exact = table[table.estimator == "exact"]
    if exact.empty:
        return table.assign(vs_best_exact=None, vs_best_exact_stderr=None)
    best = exact.sort_values("test_nll").model.iloc[0]
    pairs = [paired_difference(per_image[m], per_image[best]) for m in table.model]
    return table.assign(vs_best_exact=[d for d, _ in pairs], vs_best_exact_stderr=[s for _, s in pairs])


def with_stderr(values, errors) -> list[str]:
    return ["" if pd.isna(v) else f"{v:.2f} ± {e:.2f}" for v, e in zip(values, errors)]


def markdown(table: pd.DataFrame, profile: str, ceiling: dict | None = None) -> str:
    shown = table.assign(
        test_nll=with_stderr(table.test_nll, table.test_nll_stderr),
        vs_best_exact=with_stderr(table.vs_best_exact, table.vs_best_exact_stderr),
        test_bpd=table.test_bpd.map("{:.4f}".format),
        test_neg_elbo=with_stderr(table.test_neg_elbo, table.test_neg_elbo_stderr),
        k=table.k.map(lambda v: "" if pd.isna(v) else f"{int(v)}"),
        training=[f"{REGIME.get(b, b)}, {n:,} images, best epoch {e} of {r}" for b, n, e, r in
                  zip(table.binarization, table.train_images, table.best_epoch, table.epochs_run)],
        parameters=table.parameters.map("{:,}".format),
        inception_score=table.inception_score.map(lambda v: "" if pd.isna(v) else f"{v:.2f}"),
        frechet_distance=table.frechet_distance.map(lambda v: "" if pd.isna(v) else f"{v:.1f}"),
        test_conditional_nll=with_stderr(table.test_conditional_nll, table.test_conditional_nll_stderr),
        generative_accuracy=table.generative_accuracy.map(lambda v: "" if pd.isna(v) else f"{v:.2%}"),
        test_label_nll=table.test_label_nll.map(lambda v: "" if pd.isna(v) else f"{v:.3f}"),
        train_minutes=table.train_minutes.map("{:.1f}".format),
        published=[f"{v:.2f} ({s})" if not pd.isna(v) else "no matched published number"
                   for v, s in zip(table.published_nll, table.published_source)],
        nearest_published=[f"{v:.2f} ({s}; differs: {d})" if not pd.isna(v) and pd.isna(p) else ""
                           for v, s, d, p in zip(table.nearest_nll, table.nearest_source,
                                                 table.nearest_differs, table.published_nll)],
    )
    columns = ["model", "test_nll", "vs_best_exact", "test_bpd", "test_neg_elbo", "test_conditional_nll",
               "generative_accuracy", "test_label_nll", "k", "inception_score", "frechet_distance", "training",
               "parameters",
               "train_minutes", "device", "published", "nearest_published"]
    sections = []
    for estimator, text in ESTIMATORS.items():
        group = shown[shown.estimator == estimator]
        if group.empty:
            continue
        kept = [c for c in columns if c not in OPTIONAL_COLUMNS or (group[c] != "").any()]
        sections.append(f"## {estimator}: {text}\n\n{group[kept].to_markdown(index=False, disable_numparse=True)}\n")
    images = int(table.test_images.iloc[0]) if table.test_images.nunique() == 1 else "varying numbers of"
    best = table[table.estimator == "exact"].model.iloc[0] if (table.estimator == "exact").any() else None
    notes = [
        f"NLL in nats per image (mean ± standard error) and bits per dimension on {images} test images of this "
        "pipeline's binarization. Numbers of different estimators are not comparable as equals: an exact NLL "
        "and an upper bound are in separate tables.",
        "`training`: how the training images were binarized (one fixed draw, or resampled from the grey levels "
        "every epoch), how many there were, and the epoch kept (best validation NLL) of those run.",
        "`published`: only a number whose setup matches this run's (architecture and size, masks, the "
        "estimator's k, training binarization and number of training images); otherwise the nearest one, "
        "with what differs, is in `nearest_published`, a guide and not a like-for-like comparison.",
    ]
    if best is not None:
        notes.insert(1, f"`vs_best_exact`: the mean per-image difference to `{best}` (the best exact model) "
                        "with its paired standard error over the same test images; a difference within about "
                        "two standard errors of zero is not a real difference.")
    if ceiling is not None:
        notes.append(quality_note(ceiling))
    if table.test_conditional_nll.notna().any():
        notes.append("Class-conditional models: `test_nll` is the marginal -log sum_y p(x|y) p(y) with p(y) the "
                     "training label frequencies, comparable with the other models; `test_conditional_nll` is "
                     "-log p(x|y) given the true digit; `generative_accuracy` and `test_label_nll` (-log p(y|x), "
                     "nats) are those of the generative classifier argmax_y p(x|y) p(y), from the same estimator as "
                     "the model's NLL (importance-sampled for a VAE).")
    if table.test_neg_elbo.notna().any():
        notes.append("`test_neg_elbo`: the negative ELBO, a looser upper bound than the importance-sampled "
                     "`test_nll`.")
    return (f"# Binarized MNIST: test-set results (profile `{profile}`)\n\n" + "\n".join(f"- {n}" for n in notes)
            + "\n\n" + "\n".join(sections))


def read_ceiling() -> dict | None:
    """The classifier stage's metrics: its test accuracy and the real test images' scores."""
    return read_json(CLASSIFIER_METRICS) if CLASSIFIER_METRICS.exists() else None


def quality_note(ceiling: dict) -> str:
    return (f"`inception_score` (higher is better, at most 10) and `frechet_distance` (lower is better) of "
            f"{ceiling['quality_samples']} samples per model, by a small digit classifier trained on the binarized "
            f"training images (test accuracy {ceiling['test_accuracy']:.2%}); MNIST-specific, comparable within "
            f"this benchmark only. The ceiling, {ceiling['quality_samples']} real test images: inception score "
            f"{ceiling['real_inception_score']:.2f}, Frechet distance {ceiling['real_frechet_distance']:.1f}.")


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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def learning_curves(table: pd.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for model in table.model:
        curves = pd.read_csv(ModelResults(model).curves)
        for ax, column in zip(axes, ("train_loss", "val_nll")):
            ax.plot(curves.epoch, curves[column], marker=".", label=model)
    for ax, title in zip(axes, ("training loss (nats)", "validation NLL (nats)")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
    axes[1].legend(fontsize=8, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def log_to_mlflow(table: pd.DataFrame, profile: str, files: list[Path], ceiling: dict | None = None) -> None:
    """The report's run; also used by pipeline.relog."""
    from pipeline.tracking import Run
    # the results' digest in the params: reports of other results (another queued experiment)
    # stay in MLflow as earlier runs instead of replacing each other
    logged = {"profile": profile, "models": ",".join(table.model),
              "results_digest": params_hash(dict(zip(table.model, table.test_nll)))}
    run = Run.start("report", logged, {"profile": profile})
    if run is None:
        return
    run.log_metrics({f"test_nll.{m}": v for m, v in zip(table.model, table.test_nll)})
    if ceiling is not None:
        run.log_metrics({f"classifier.{k}": v for k, v in ceiling.items()})
    for path in files:
        run.log_artifact(path)
    run.finish()


def main(argv=None) -> None:
    stage.parse_args(__doc__.splitlines()[0], argv)
    params = P.load()
    profile = P.profile_of(params)
    for name in P.model_names(params):  # the report reads every model's section: check them all first
        P.model_spec(params, name)
    table = collect(P.model_names(params), profile)
    REPORT_DIR.mkdir(exist_ok=True)
    files = [REPORT_DIR / name for name in ("results.md", "results.csv", "nll.png", "samples.png", "curves.png")]
    ceiling = read_ceiling()
    write_text(files[0], markdown(table, profile, ceiling))
    write_text(files[1], table.to_csv(index=False))
    bar_chart(table, files[2])
    samples_montage(table, files[3])
    learning_curves(table, files[4])
    log_to_mlflow(table, profile, files, ceiling)
    print(f"report: {len(table)} models -> {REPORT_DIR}/results.md (best: {table.model[0]}, "
          f"{table.test_nll[0]:.2f} nats)")


if __name__ == "__main__":
    stage.run(main)
