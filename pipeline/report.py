"""report: every model's test NLL with its estimator, grouped by estimator, the paired difference to
the best exact model, its training compute, the sample-quality scores and the published number that
matches its setup (or the nearest ones, labelled with what differs), as Markdown, CSV and one
self-contained HTML page (reports/index.html); charts of NLL, of validation NLL against training
compute and of the training curves, and a montage of every model's samples."""
from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pandas as pd

from pipeline import charts, references, stage, webpage
from pipeline import params as P
from pipeline.io import PipelineError, write_text
from pipeline.results import REPORT_DIR, REPORT_FILES, Metrics, ModelResults, TrainSummary, read_ceiling

ESTIMATORS = {
    "exact": "exact log-likelihood",
    "importance_sampled": "importance-sampled upper bound on the NLL (in expectation; tighter with more samples)",
    "dequantized": "dequantization upper bound on the discrete NLL",
}
# results.csv: keys of train.json and metrics.json under their own names (pipeline/results.py), and
# what the report adds (k, train_minutes, the published numbers; then the paired differences)
CSV_COLUMNS = ["model", "data", "family", "estimator", "k", "test_nll", "test_nll_stderr", "test_bpd", "test_neg_elbo",
               "test_neg_elbo_stderr", "test_images", "binarization", "inception_score", "frechet_distance",
               "test_conditional_nll", "test_conditional_nll_stderr", "generative_accuracy", "test_label_nll",
               "train_images", "epochs_run", "best_epoch", "train_flops", "flops_per_image", "parameters",
               "train_minutes", "device", "profile",
               "published_nll", "published_source", "nearest_nll", "nearest_source", "nearest_differs"]
REGIME = {"fixed": "fixed draw", "resampled": "resampled each epoch", "none": "grey levels"}
# The two tracks: their test sets differ, so their numbers are never ranked together.
TRACKS = {"binarized": "Binarized MNIST", "grey": "Grey-level MNIST (256 levels)"}


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
    setup = references.Setup.of(train.family, train.settings, train.binarization, train.train_images, train.data)
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
    """One row per model, the binarized track first; within a track exact models first, then each
    bound, best first within a group."""
    rows, per_image = [], {}
    for name in names:
        metrics, train, per_image[name] = read_outputs(name)
        rows.append(row(metrics, train))
    table = pd.DataFrame(rows)[CSV_COLUMNS]
    stale = table[table["profile"] != profile]
    if len(stale):
        raise PipelineError(f"results of {', '.join(stale['model'])} come from another profile: run `dvc repro`")
    table["track"] = table.data.map(list(TRACKS).index)
    table["group"] = table.estimator.map(list(ESTIMATORS).index)
    table = table.sort_values(["track", "group", "test_nll"]).drop(columns=["track", "group"]).reset_index(drop=True)
    return add_paired_differences(table, per_image)


def add_paired_differences(table: pd.DataFrame, per_image: dict[str, np.ndarray]) -> pd.DataFrame:
    """Each model against the best exact model of its own track (the same test images)."""
    table = table.assign(vs_best_exact=np.nan, vs_best_exact_stderr=np.nan)
    for _, track in table.groupby("data"):
        exact = track[track.estimator == "exact"]
        if exact.empty:
            continue
        best = exact.sort_values("test_nll").model.iloc[0]
        for index, model in zip(track.index, track.model):
            table.loc[index, ["vs_best_exact", "vs_best_exact_stderr"]] = paired_difference(per_image[model], per_image[best])
    return table


def best_exact(track: pd.DataFrame) -> str | None:
    exact = track[track.estimator == "exact"]
    return exact.sort_values("test_nll").model.iloc[0] if not exact.empty else None


def with_stderr(values, errors) -> list[str]:
    return ["" if pd.isna(v) else f"{v:.2f} ± {e:.2f}" for v, e in zip(values, errors)]


def formatted(values, fmt: str) -> list[str]:
    return ["" if pd.isna(v) else format(v, fmt) for v in values]


def markdown_table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True)


def leaderboard(group: pd.DataFrame) -> pd.DataFrame:
    """An estimator's main table in one track: eight columns, the rest is in results.csv and the
    tables below. The grey track leads with bits/dim and quotes published numbers in it, as its papers do."""
    grey = (group.data == "grey").all()
    nll = {"test NLL (nats)": with_stderr(group.test_nll, group.test_nll_stderr)}
    bpd = {"bits/dim": formatted(group.test_bpd, ".4f")}
    published = [published_cell(v, s, grey) for v, s in zip(group.published_nll, group.published_source)]
    return pd.DataFrame({
        "model": group.model,
        **({**bpd, **nll} if grey else {**nll, **bpd}),
        "vs best exact": with_stderr(group.vs_best_exact, group.vs_best_exact_stderr),
        "training FLOPs": formatted(group.train_flops, ".2e"),
        "IS": formatted(group.inception_score, ".2f"),
        "FD": formatted(group.frechet_distance, ".1f"),
        "published": published,
    })


def published_cell(nll: float, source: str, grey: bool) -> str:
    if pd.isna(nll):
        return ""
    return f"{references.bits_per_dim(nll):.2f} bits/dim ({source})" if grey else f"{nll:.2f} ({source})"


def training_table(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "model": table.model,
        "training images": [f"{n:,}, {REGIME.get(b, b)}" for n, b in zip(table.train_images, table.binarization)],
        "kept": [f"{e} of {r}" for e, r in zip(table.best_epoch, table.epochs_run)],
        "FLOPs per image": formatted(table.flops_per_image, ".3g"),
        "parameters": table.parameters.map("{:,}".format),
        "minutes": table.train_minutes.map("{:.1f}".format),
        "device": table.device,
    })


def conditional_table(table: pd.DataFrame) -> pd.DataFrame:
    rows = table[table.test_conditional_nll.notna()]
    return pd.DataFrame({
        "model": rows.model,
        "test NLL given the digit": with_stderr(rows.test_conditional_nll, rows.test_conditional_nll_stderr),
        "generative accuracy": formatted(rows.generative_accuracy, ".2%"),
        "label NLL (nats)": formatted(rows.test_label_nll, ".3f"),
    })


def elbo_table(table: pd.DataFrame) -> pd.DataFrame:
    rows = table[table.test_neg_elbo.notna()]
    return pd.DataFrame({"model": rows.model, "importance-sampled bound": with_stderr(rows.test_nll, rows.test_nll_stderr),
                         "k": rows.k.map(lambda v: f"{int(v)}"),
                         "negative ELBO": with_stderr(rows.test_neg_elbo, rows.test_neg_elbo_stderr)})


def nearest_published(table: pd.DataFrame) -> list[str]:
    unmatched = table[table.published_nll.isna() & table.nearest_nll.notna()]
    return [f"`{m}`: {published_cell(v, s, data == 'grey')}; differs: {d}" for m, v, s, d, data in
            zip(unmatched.model, unmatched.nearest_nll, unmatched.nearest_source, unmatched.nearest_differs,
                unmatched.data)]


def notes(table: pd.DataFrame, ceiling: dict | None) -> list[str]:
    images = int(table.test_images.iloc[0]) if table.test_images.nunique() == 1 else "varying numbers of"
    bests = {data: best_exact(track) for data, track in table.groupby("data", sort=False)}
    found = [
        f"NLL in nats per image (mean ± standard error) and bits per dimension (the NLL / (784 ln 2)) on {images} "
        "test images. Each track has its own tables: binarized MNIST (this pipeline's binarization) and the 256 "
        "grey levels, whose numbers are discrete NLLs (or bounds on them) of 8-bit images, as the flow papers "
        "report them. Numbers of different estimators are not comparable as equals: an exact NLL and an upper "
        "bound are in separate tables.",
        "`training FLOPs`: the compute each model was trained with, forward and backward, counted the same way "
        "for every model and machine (matrix products, convolutions and attention; `FLOPs per image` below). "
        "With `train.budget_flops` every model gets the same budget; `reports/compute.png` shows the validation "
        "NLL against it.",
        "`published`: only a number whose setup matches this run's (architecture and size, masks, the "
        "estimator's k, training binarization and number of training images); the nearest others, with what "
        "differs, are listed at the end of results.md: a guide, not a like-for-like comparison.",
    ]
    named = " and ".join(f"`{best}`" for best in bests.values() if best is not None)
    if named:
        found.insert(1, f"`vs best exact`: the mean per-image difference to the best exact model of the track "
                        f"({named}) with its paired standard error over the same test images; a difference within "
                        "about two standard errors of zero is not a real difference.")
    if ceiling is not None:
        found.append(quality_note(ceiling))
    return found


def leaderboards(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A leaderboard per track and estimator that some model has, under its heading."""
    return {f"{TRACKS[data]}, {estimator}: {text}": leaderboard(group)
            for data in TRACKS for estimator, text in ESTIMATORS.items()
            if not (group := table[(table.data == data) & (table.estimator == estimator)]).empty}


def markdown(table: pd.DataFrame, profile: str, ceiling: dict | None = None) -> str:
    sections = [f"## {heading}\n\n{markdown_table(board)}\n" for heading, board in leaderboards(table).items()]
    sections.append("## Training\n\n`kept`: the validation (epoch, or point of the budget) whose weights were kept, "
                    f"of those run.\n\n{markdown_table(training_table(table))}\n")
    if table.test_conditional_nll.notna().any():
        sections.append("## Class-conditional models\n\n`test NLL` above is the marginal -log sum_y p(x|y) p(y), "
                        "p(y) the training label frequencies; here -log p(x|y) given the true digit, and the "
                        "generative classifier argmax_y p(x|y) p(y) (its label NLL -log p(y|x) from the model's own "
                        f"estimator).\n\n{markdown_table(conditional_table(table))}\n")
    if table.test_neg_elbo.notna().any():
        sections.append("## Latent-variable models: the negative ELBO\n\nA looser upper bound than the "
                        f"importance-sampled one (k samples).\n\n{markdown_table(elbo_table(table))}\n")
    if nearest := nearest_published(table):
        sections.append("## Nearest published numbers (setups differ)\n\n" + "\n".join(f"- {n}" for n in nearest) + "\n")
    return (f"# MNIST: test-set results (profile `{profile}`)\n\n"
            + "\n".join(f"- {n}" for n in notes(table, ceiling)) + "\n\n" + "\n".join(sections))


def quality_note(ceiling: dict) -> str:
    return (f"`IS`, the inception score (higher is better, at most 10), and `FD`, the Frechet distance (lower is "
            f"better), of "
            f"{ceiling['quality_samples']} samples per model, by a small digit classifier trained on the binarized "
            f"training images (test accuracy {ceiling['test_accuracy']:.2%}; a grey-level model's samples are "
            f"binarized the way the data was before they are scored); MNIST-specific, comparable within "
            f"this benchmark only. The ceiling, {ceiling['quality_samples']} real test images: inception score "
            f"{ceiling['real_inception_score']:.2f}, Frechet distance {ceiling['real_frechet_distance']:.1f}.")


def html_page(table: pd.DataFrame, profile: str, ceiling: dict | None) -> str:
    samples = {model: ModelResults(model).samples.read_bytes() for model in table.model}
    figures = {"Validation NLL against training compute": REPORT_DIR / "compute.png",
               "Training loss and validation NLL": REPORT_DIR / "curves.png"}
    return webpage.page(f"MNIST: test-set results (profile {profile})", notes(table, ceiling),
                        leaderboards(table), samples, figures)


def main(argv=None) -> None:
    stage.parse_args(__doc__.splitlines()[0], argv)
    params = P.load()
    profile = P.profile_of(params)
    for name in P.model_names(params):  # the report reads every model's section: check them all first
        P.model_spec(params, name)
    table = collect(P.model_names(params), profile)
    REPORT_DIR.mkdir(exist_ok=True)
    files = [REPORT_DIR / name for name in REPORT_FILES]
    ceiling = read_ceiling()
    write_text(files[0], markdown(table, profile, ceiling))
    write_text(files[1], table.to_csv(index=False))
    charts.bar_chart(table, files[2])
    charts.samples_montage(table, files[3])
    charts.learning_curves(table, files[4])
    charts.nll_against_compute(table, files[5])
    write_text(files[6], html_page(table, profile, ceiling))
    print(f"report: {len(table)} models -> {REPORT_DIR}/index.html and results.md (best: {table.model[0]}, "
          f"{table.test_nll[0]:.2f} nats)")


if __name__ == "__main__":
    stage.run(main)
