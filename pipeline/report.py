"""report: one table of every model (test NLL, bpd, estimator, negative ELBO where the model has one,
size, time, device, published number),
as Markdown and CSV, a bar chart of NLL and a montage of every model's samples."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline import params as P, stage  # noqa: E402
from pipeline.data import results_dir  # noqa: E402
from pipeline.io import PipelineError, atomic_path, params_hash, read_json, write_text  # noqa: E402

REPORT_DIR = Path("reports")
ESTIMATORS = {
    "exact": "exact log-likelihood",
    "importance_sampled": "importance-sampled upper bound on the NLL (in expectation; tighter with more samples)",
    "dequantized": "dequantization upper bound on the discrete NLL",
}


def collect(names: list[str], profile: str) -> pd.DataFrame:
    rows = []
    for name in names:
        out = results_dir(name)
        try:
            metrics, train = read_json(out / "metrics.json"), read_json(out / "train.json")
        except FileNotFoundError as e:
            raise PipelineError(f"{e.filename} is missing: run `dvc repro evaluate@{name}` first") from None
        rows.append({
            "model": name, "family": train["family"], "test_nll": metrics["test_nll"],
            "stderr": metrics["test_nll_stderr"], "test_bpd": metrics["test_bpd"],
            "estimator": metrics["estimator"], "test_neg_elbo": metrics.get("test_neg_elbo"),
            "neg_elbo_stderr": metrics.get("test_neg_elbo_stderr"), "test_images": metrics["test_images"],
            "parameters": train["parameters"], "train_minutes": train["train_seconds"] / 60,
            "epochs": train["epochs_run"], "device": train["device"], "profile": train["profile"],
            "published_nll": metrics.get("reference_nll"), "published_source": metrics.get("reference_source"),
        })
    table = pd.DataFrame(rows).sort_values("test_nll").reset_index(drop=True)
    stale = table[table["profile"] != profile]
    if len(stale):
        raise PipelineError(f"results of {', '.join(stale['model'])} come from another profile: run `dvc repro`")
    return table


def markdown(table: pd.DataFrame, profile: str) -> str:
    shown = table.assign(
        test_nll=[f"{m:.2f} ± {s:.2f}" for m, s in zip(table.test_nll, table.stderr)],
        test_bpd=table.test_bpd.map("{:.4f}".format),
        test_neg_elbo=["" if pd.isna(m) else f"{m:.2f} ± {s:.2f}"
                       for m, s in zip(table.test_neg_elbo, table.neg_elbo_stderr)],
        parameters=table.parameters.map("{:,}".format),
        train_minutes=table.train_minutes.map("{:.1f}".format),
        published_nll=table.published_nll.map(lambda v: "" if pd.isna(v) else f"{v:.2f}"),
        published_source=table.published_source.fillna(""),
    ).drop(columns=["stderr", "neg_elbo_stderr", "profile"])
    legend = "\n".join(f"- `{key}`: {text}" for key, text in ESTIMATORS.items() if key in set(table.estimator))
    if table.test_neg_elbo.notna().any():
        legend += ("\n- `test_neg_elbo` column: the negative ELBO of latent-variable models, a looser upper "
                   "bound on the NLL than their importance-sampled `test_nll` (empty for other models)")
    images = int(table.test_images.iloc[0]) if table.test_images.nunique() == 1 else "varying numbers of"
    return (f"# Binarized MNIST: test-set results (profile `{profile}`)\n\n"
            f"NLL in nats per image (mean ± standard error) and bits per dimension on {images} test images "
            "of this pipeline's static binarization. Published numbers are on other binarizations and "
            "training budgets: a guide, not a like-for-like comparison.\n\n"
            f"{shown.to_markdown(index=False, disable_numparse=True)}\n\nEstimators:\n{legend}\n")


def bar_chart(table: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(table) + 1.5))
    ax.barh(table.model, table.test_nll, xerr=table.stderr, color="tab:blue", label="this pipeline")
    published = table.dropna(subset=["published_nll"])
    ax.scatter(published.published_nll, published.model, marker="|", s=300, color="black", label="published")
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
        curves = pd.read_csv(results_dir(model) / "curves.csv")
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
        ax.imshow(plt.imread(results_dir(model) / "figures" / "samples.png"))
        ax.set_title(model, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def log_to_mlflow(table: pd.DataFrame, profile: str, files: list[Path]) -> None:
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
    write_text(files[0], markdown(table, profile))
    write_text(files[1], table.to_csv(index=False))
    bar_chart(table, files[2])
    samples_montage(table, files[3])
    learning_curves(table, files[4])
    log_to_mlflow(table, profile, files)
    print(f"report: {len(table)} models -> {REPORT_DIR}/results.md (best: {table.model[0]}, "
          f"{table.test_nll[0]:.2f} nats)")


if __name__ == "__main__":
    stage.run(main)
