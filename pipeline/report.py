"""report: every model's test NLL with its estimator, grouped by estimator, the paired difference to
the best exact model, its training compute, the sample-quality scores and the published number that
matches its setup (or the nearest ones, labelled with what differs), as Markdown, CSV and one
self-contained HTML page (reports/index.html); charts of NLL, of validation NLL against training
compute and of the training curves, and a montage of every model's samples."""
from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from models.base import bits_per_dim, mean_and_stderr
from pipeline import charts, reference, references, stage, webpage
from pipeline import params as P
from pipeline import search_table as search
from pipeline.io import PipelineError, write_text
from pipeline.layout import TRAIN_SIZE
from pipeline.model_params import ModelSpec, model_spec
from pipeline.results import REPORT, Metrics, ModelResults, ReportFiles, TrainSummary, read_ceiling

ESTIMATORS = {
    "exact": "exact log-likelihood",
    "importance_sampled": "importance-sampled upper bound on the NLL (in expectation; tighter with more samples)",
    "dequantized": "dequantization upper bound on the discrete NLL",
}
# results.csv: keys of train.json and metrics.json under their own names (pipeline/results.py), and
# what the report adds (k, train_minutes, the seed spread of the reference, the published numbers; then the
# paired differences)
CSV_COLUMNS = ["model", "data", "family", "estimator", "k", "test_nll", "test_nll_stderr", "test_nll_seed_sd",
               "seeds", "test_bpd", "test_neg_elbo",
               "test_neg_elbo_stderr", "test_images", "binarization", "inception_score", "frechet_distance",
               "test_conditional_nll", "test_conditional_nll_stderr", "generative_accuracy", "test_label_nll",
               "train_images", "epochs_run", "best_epoch", "train_flops", "flops_per_image", "parameters",
               "train_minutes", "device", "profile",
               "published_nll", "published_source", "nearest_nll", "nearest_source", "nearest_differs",
               "paper_nll", "paper_source", "verified_nll", "verified_stderr", "verified_configuration"]
REGIME = {"fixed": "fixed draw", "resampled": "resampled each epoch", "none": "grey levels"}
# The two tracks: their test sets differ, so their numbers are never ranked together.
TRACKS = {"binarized": "Binarized MNIST", "grey": "Grey-level MNIST (256 levels)"}


def paired_difference(nll: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """Mean per-image difference and its paired standard error: both models scored the same images,
    so the image-to-image spread they share cancels."""
    if nll.shape != baseline.shape:
        raise PipelineError(f"paired comparison needs the same test images: {len(nll)} vs {len(baseline)}")
    return mean_and_stderr(nll - baseline)


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


def converged(spec: ModelSpec, verified: list[references.Verified]) -> dict:
    """The numbers a quick run is not: the published one matched to the model's full-profile setup (the
    paper's), and this pipeline's verified full-profile runs of it (RESULTS.md), best first."""
    setup = references.Setup.of(spec.family, spec.kwargs, spec.binarization, spec.train.max_train or TRAIN_SIZE,
                                spec.data.name)
    paper = references.compare(setup).matched
    best = min(verified, key=lambda v: v.nll) if verified else None
    return {"paper_nll": paper.nll if paper else None, "paper_source": paper.source if paper else None,
            "verified_nll": best.nll if best else None, "verified_stderr": best.stderr if best else None,
            "verified_configuration": best.configuration if best else None}


def collect(names: list[str], profile: str, params: dict | None = None) -> pd.DataFrame:
    """One row per model, the binarized track first; within a track exact models first, then each
    bound, best first within a group. Given `params`, each row also has its converged numbers."""
    rows, per_image = [], {}
    results_md = Path(references.RESULTS_MD)
    verified = references.verified_runs(results_md.read_text()) if params and results_md.exists() else {}
    quick = reference.read() if params else None
    for name in names:
        metrics, train, per_image[name] = read_outputs(name)
        full = converged(model_spec({**params, "profile": "full"}, name), verified.get(name, [])) if params else {}
        rows.append({**dict.fromkeys(["paper_nll", "paper_source", "verified_nll", "verified_stderr",
                                      "verified_configuration"]), **row(metrics, train), **full,
                     **seed_spread(reference.entry_for(quick, params, name) if params else None)})
    table = pd.DataFrame(rows)[CSV_COLUMNS]
    stale = table[table["profile"] != profile]
    if len(stale):
        raise PipelineError(f"results of {', '.join(stale['model'])} come from another profile: run `dvc repro`")
    table["track"] = table.data.map(list(TRACKS).index)
    table["group"] = table.estimator.map(list(ESTIMATORS).index)
    table = table.sort_values(["track", "group", "test_nll"]).drop(columns=["track", "group"]).reset_index(drop=True)
    return add_paired_differences(table, per_image)


def seed_spread(entry: dict | None) -> dict:
    """The test NLL's standard deviation over the reference's training seeds of this configuration."""
    return {"test_nll_seed_sd": reference.seed_sd(entry), "seeds": len(entry["seed_test_nlls"]) if entry else 0}


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


def leaderboard(group: pd.DataFrame, found: search.SearchSummary | None = None) -> pd.DataFrame:
    """An estimator's main table in one track: eight columns at most, the rest is in results.csv and
    the tables below. The grey track leads with bits/dim and quotes published numbers in it, as its
    papers do. With the search's summary (a budgeted run), each row says how its configuration was
    found and where a converged number of its family stands."""
    grey = (group.data == "grey").all()
    nll = {"test NLL (nats)": with_stderr(group.test_nll, group.test_nll_stderr)}
    bpd = {"bits/dim": formatted(group.test_bpd, ".4f")}
    published = [published_cell(v, s, grey) for v, s in zip(group.published_nll, group.published_source)]
    board = {
        "model": group.model,
        **({**bpd, **nll} if grey else {**nll, **bpd}),
        "vs best exact": with_stderr(group.vs_best_exact, group.vs_best_exact_stderr),
        "training FLOPs": formatted(group.train_flops, ".2e"),
        "IS / FD": [f"{i:.2f} / {f:.1f}" for i, f in zip(group.inception_score, group.frechet_distance)],
    }
    if found is None:
        return pd.DataFrame({**board, "published": published})
    converged_cells = [converged_cell(r, grey) for r in group.itertuples()]
    search_cells = [search_cell(found.models.get(r.model), r.test_nll_seed_sd, r.seeds) for r in group.itertuples()]
    return pd.DataFrame({**board, "search at the budget": search_cells, "converged (not this run)": converged_cells})


def search_cell(found: search.ModelSearch | None, seed_sd: float, seeds: int) -> str:
    if found is None:
        return "not searched"
    spread = "" if math.isnan(seed_sd) else f"; {seeds} seeds ± {seed_sd:.2f}"
    baseline = "; the track's independent baseline" if found.is_baseline else (
        "" if found.beats_baseline else "; no point beat the independent baseline")
    return f"best of {found.points}{spread}{baseline}"


def converged_cell(row, grey: bool) -> str:
    """The verified full-profile number (RESULTS.md) and the published one of the paper's setup."""
    parts = []
    if not pd.isna(getattr(row, "verified_nll", None)):
        verified = (f"{bits_per_dim(row.verified_nll, references.PIXELS):.3f} bits/dim" if grey
                    else f"{row.verified_nll:.2f} ± {row.verified_stderr:.2f}")
        parts.append(f"verified {verified} ({row.verified_configuration})")
    if not pd.isna(getattr(row, "paper_nll", None)):
        parts.append(f"published {published_cell(row.paper_nll, row.paper_source, grey)}")
    return "; ".join(parts)


def published_cell(nll: float, source: str, grey: bool) -> str:
    if pd.isna(nll):
        return ""
    return f"{bits_per_dim(nll, references.PIXELS):.2f} bits/dim ({source})" if grey else f"{nll:.2f} ({source})"


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


def evaluated_models(names: list[str]) -> tuple[list[str], list[str]]:
    """(the models whose metrics.json exists, the others); none evaluated is a one-line error."""
    evaluated = [name for name in names if ModelResults(name).metrics.exists()]
    if not evaluated:
        raise PipelineError("no model has been evaluated yet: run `dvc repro` (or python -m pipeline.evaluate <model>)")
    return evaluated, [name for name in names if name not in evaluated]


def notes(table: pd.DataFrame, ceiling: dict | None, search_summary: search.SearchSummary | None = None) -> list[str]:
    images = int(table.test_images.iloc[0]) if table.test_images.nunique() == 1 else "varying numbers of"
    bests = {data: best_exact(track) for data, track in table.groupby("data", sort=False)}
    budget = [] if search_summary is None else [
        f"A comparison at equal training compute, {search_summary.budget:.0e} FLOPs per model: each model in the "
        f"configuration (size, batch size, learning rate) whose validation NLL was best at that budget among "
        f"those searched ({search.TABLE}, `python -m pipeline.search`). These are not converged NLLs and must "
        "not be cited as a family's result. `seeds ±` is the standard "
        f"deviation of the winner's test NLL over training seeds ({reference.REFERENCE}, shown while params.yaml "
        "has the settings it was measured with): a difference between two models smaller than about twice it "
        "may be training noise, whatever the paired standard error says."]
    found = [*budget,
        f"NLL in nats per image (mean ± standard error) and bits per dimension (the NLL / ({references.PIXELS} ln 2)) "
        f"on {images} test images. Each track has its own tables: binarized MNIST (this pipeline's binarization) and the 256 "
        "grey levels, whose numbers are discrete NLLs (or bounds on them) of 8-bit images, as the flow papers "
        "report them. Numbers of different estimators are not comparable as equals: an exact NLL and an upper "
        "bound are in separate tables.",
        "`training FLOPs`: the compute each model was trained with, forward and backward, counted the same way "
        "for every model and machine (matrix products, convolutions and attention; `FLOPs per image` below). "
        "With `train.budget_flops` every model gets the same budget; `reports/compute.png` shows the validation "
        "NLL against it.",
        "`published`: only a number whose setup matches this run's (architecture and size, masks, the "
        "estimator's k, training binarization and number of training images); the nearest others, with what "
        "differs, are listed at the end of results.md: a guide, not a like-for-like comparison." if not budget else
        "`converged`: the best verified full-profile run of the model in RESULTS.md (its configuration in "
        "brackets) and the published number matched to the full profile's setup, the paper's (architecture and "
        "size, masks, the estimator's k, training binarization and number of training images).",
    ]
    named = " and ".join(f"`{best}`" for best in bests.values() if best is not None)
    if named:
        found.insert(1, f"`vs best exact`: the mean per-image difference to the best exact model of the track "
                        f"({named}) with its paired standard error over the same test images; a difference within "
                        "about two standard errors of zero is not a real difference.")
    if ceiling is not None:
        found.append(quality_note(ceiling))
    if missing := table.attrs.get("not_evaluated"):
        found.insert(0, f"Not evaluated yet, so not in these tables: {', '.join(missing)}.")
    return found


def leaderboards(table: pd.DataFrame, found: search.SearchSummary | None = None) -> dict[str, pd.DataFrame]:
    """A leaderboard per track and estimator that some model has, under its heading (which says, for a
    budgeted run, that it compares each model's best at the budget, not converged numbers)."""
    budget = "" if found is None else f" (each model's best at {found.budget:.0e} training FLOPs, not converged)"
    return {f"{TRACKS[data]}, {estimator}: {text}{budget}": leaderboard(group, found)
            for data in TRACKS for estimator, text in ESTIMATORS.items()
            if not (group := table[(table.data == data) & (table.estimator == estimator)]).empty}


def title(profile: str, found: search.SearchSummary | None) -> str:
    budget = "" if found is None else f": each model at its best for {found.budget:.0e} training FLOPs, not converged"
    return f"MNIST: test-set results (profile {profile}{budget})"


def markdown(table: pd.DataFrame, profile: str, ceiling: dict | None = None,
             found: search.SearchSummary | None = None) -> str:
    sections = [f"## {heading}\n\n{markdown_table(board)}\n" for heading, board in leaderboards(table, found).items()]
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
    if found is not None:
        sections.append(f"## The compute frontier\n\n{frontier_text(found)}\n")
    return (f"# {title(profile, found)}\n\n"
            + "\n".join(f"- {n}" for n in notes(table, ceiling, found)) + "\n\n" + "\n".join(sections))


def frontier_text(found: search.SearchSummary) -> str:
    """Who leads each track's frontier from which compute on, and who never beats its baseline."""
    lines = []
    for data, changes in found.leaders.items():
        steps = ", then ".join(f"`{model}` from {flops:.1e} FLOPs" for flops, model in changes)
        lines.append(f"- {TRACKS[data]}: {steps} (the lowest validation NLL of any searched configuration "
                     "within that compute; class-conditional models are left out).")
    behind = [m for m, s in found.models.items() if not (s.beats_baseline or s.is_baseline)]
    if behind:
        lines.append(f"- No searched configuration of {', '.join(f'`{m}`' for m in sorted(behind))} beat its "
                     f"track's independent baseline at {found.budget:.0e} FLOPs: a finding at this budget, "
                     "not a property of the family (see the verified and published numbers).")
    return "\n".join(lines)



def quality_note(ceiling: dict) -> str:
    return (f"`IS`, the inception score (higher is better, at most 10), and `FD`, the Frechet distance (lower is "
            f"better), of "
            f"{ceiling['quality_samples']} samples per model, by a small digit classifier trained on the binarized "
            f"training images (test accuracy {ceiling['test_accuracy']:.2%}; a grey-level model's samples are "
            f"binarized the way the data was before they are scored); MNIST-specific, comparable within "
            f"this benchmark only. The ceiling, {ceiling['quality_samples']} real test images: inception score "
            f"{ceiling['real_inception_score']:.2f}, Frechet distance {ceiling['real_frechet_distance']:.1f}.")


def html_page(table: pd.DataFrame, profile: str, ceiling: dict | None, found: search.SearchSummary | None,
              files: ReportFiles = REPORT) -> str:
    samples = {model: ModelResults(model).samples.read_bytes() for model in table.model}
    figures = {"Validation NLL against training compute": files.compute,
               **({"The compute frontier: the best validation NLL of any searched configuration within each "
                   "FLOPs value (class-conditional models left out)": files.frontier} if found else {}),
               "Training loss and validation NLL": files.curves}
    extra = [] if found is None else [("The compute frontier", frontier_text(found))]
    return webpage.page(title(profile, found), notes(table, ceiling, found), leaderboards(table, found), samples,
                        figures, extra)


def search_summary(params: dict, profile: str) -> search.SearchSummary | None:
    """The search's findings for a run at the quick budget it searched (None for other runs, and for a
    budget no search has tried: `dvc exp run -S train.quick.budget_flops=...`)."""
    train = model_spec(params, P.model_names(params)[0]).train
    if profile != search.PROFILE or train.budget_flops is None or not search.TABLE.exists():
        return None
    rows = search.current(search.read_table(), train.budget_flops)
    if not rows:
        return None
    conditional = {name for name in P.model_names(params) if model_spec(params, name).kwargs.get("conditional")}
    return search.summarize(rows, train.budget_flops, train.budget_points, conditional)


def main(argv=None) -> None:
    stage.parse_args(__doc__.splitlines()[0], argv)
    params = P.load()
    profile = P.profile_of(params)
    for name in P.model_names(params):  # the report reads every model's section: check them all first
        model_spec(params, name)
    evaluated, missing = evaluated_models(P.model_names(params))
    if missing:  # only outside DVC, whose report stage runs after every evaluate stage
        print(f"report: not evaluated yet, left out: {', '.join(missing)} (python -m pipeline.evaluate <model>)")
    table = collect(evaluated, profile, params)
    table.attrs["not_evaluated"] = missing
    found = search_summary(params, profile)
    ceiling = read_ceiling()
    REPORT.folder.mkdir(exist_ok=True)
    write_text(REPORT.markdown, markdown(table, profile, ceiling, found))
    write_text(REPORT.table, table.to_csv(index=False))
    charts.bar_chart(table, REPORT.nll)
    charts.samples_montage(table, REPORT.samples)
    charts.learning_curves(table, REPORT.curves)
    charts.nll_against_compute(table, REPORT.compute)
    if found is not None:
        charts.compute_frontier(found.frontiers, found.flops, found.leaders, baselines(found), REPORT.frontier)
    else:
        REPORT.frontier.unlink(missing_ok=True)
    write_text(REPORT.page, html_page(table, profile, ceiling, found))
    print(f"report: {len(table)} models -> {REPORT.page} and {REPORT.markdown.name} (best: {table.model[0]}, "
          f"{table.test_nll[0]:.2f} nats)")


def baselines(found: search.SearchSummary) -> dict[str, str]:
    """Each track's independent baseline among the searched models."""
    return {data: model for data, models in found.frontiers.items() for model in models
            if model in found.models and found.models[model].is_baseline}


if __name__ == "__main__":
    stage.run_as_script(main)
