"""End to end: `dvc repro` on the smoke profile in a temporary copy of the repository."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import dvc
from tests.drills.workspace import edit_params

pytestmark = pytest.mark.e2e


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def pipeline_copy(smoke_pipeline):
    """The smoke-profile copy after one full `dvc repro` (tests/conftest.py)."""
    return smoke_pipeline


def test_every_stage_ran_and_wrote_its_outputs(pipeline_copy):
    repo, _, models, output = pipeline_copy
    expected = {"digest", "prepare", "binarize", "grey", "classifier", "report", "track"} | both_stages(*models)
    assert stages_run(output) == expected
    for model in models:
        for name in ("model.pt", "train.json", "curves.csv", "metrics.json", "figures/samples.png"):
            assert (repo / "results" / model / name).is_file(), f"{model}: {name} missing"
    for name in ("results.md", "results.csv", "nll.png", "samples.png", "compute.png", "index.html"):
        assert (repo / "reports" / name).is_file()


def test_metrics_are_declared_to_dvc(pipeline_copy):
    repo, env, models, _ = pipeline_copy
    shown = json.loads(dvc(["metrics", "show", "--json"], repo, env))
    metrics = next(iter(shown.values()))["data"]
    for model in models:
        values = metrics[f"results/{model}/metrics.json"]["data"]
        assert values["test_nll"] > 0 and values["estimator"]


def test_report_lists_every_model_with_its_estimator(pipeline_copy):
    import pandas as pd
    repo, _, models, _ = pipeline_copy
    table = pd.read_csv(repo / "reports" / "results.csv")
    assert sorted(table.model) == sorted(models)
    assert set(table.profile) == {"smoke"} and table.estimator.notna().all()
    text = (repo / "reports" / "results.md").read_text()
    assert "## Binarized MNIST, exact" in text and "## Grey-level MNIST (256 levels), exact" in text
    grey = table[table.data == "grey"]
    assert len(grey) and (grey.train_images.notna()).all() and set(grey.binarization) == {"none"}


def test_mlflow_has_one_current_run_per_model_with_test_metrics(pipeline_copy):
    from mlflow.tracking import MlflowClient
    repo, _, models, _ = pipeline_copy
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("binarized-mnist")
    runs = client.search_runs([experiment.experiment_id], "tags.current = 'true'")
    by_name = {run.data.tags["name"]: run for run in runs}
    assert len(runs) == len(by_name) == len(models) + 1  # + the report
    for model in models:
        run = by_name[model]
        assert {"test_nll", "test_bpd", "val_nll"} <= set(run.data.metrics)
        assert run.data.tags["profile"] == "smoke" and run.data.tags["estimator"]
        assert client.list_artifacts(run.info.run_id, "figures")


def test_second_repro_has_nothing_to_do_and_a_param_change_reruns_only_that_model(pipeline_copy):
    repo, env, _, _ = pipeline_copy
    assert stages_run(dvc(["repro"], repo, env)) == set()
    edit_params(repo, lambda p: p["models"]["made"]["smoke"].update(hidden_sizes=[12]))
    assert stages_run(dvc(["repro"], repo, env)) == {"digest", "train@made", "evaluate@made", "report", "track"}
    edit_params(repo, lambda p: p["train"]["full"].update(epochs=201))  # another profile's: no model re-runs
    assert stages_run(dvc(["repro"], repo, env)) == {"digest"}


def stale_after_editing(repo: Path, env: dict, code_file: str) -> set[str]:
    """The stages `dvc status` calls stale once a comment is added to `code_file` and the digests
    are brought up to date."""
    path = repo / code_file
    path.write_text(path.read_text() + "# an edit\n")
    dvc(["repro", "digest"], repo, env)
    return set(json.loads(dvc(["status", "--json"], repo, env)))


def stale_after_editing_and_undoing(repo: Path, env: dict, code_file: str) -> set[str]:
    """The stages an edit of `code_file` makes stale; the edit is undone afterwards, and with the
    digests brought back nothing is stale again."""
    original = (repo / code_file).read_text()
    try:
        return stale_after_editing(repo, env, code_file)
    finally:
        (repo / code_file).write_text(original)
        dvc(["repro", "digest"], repo, env)
        assert json.loads(dvc(["status", "--json"], repo, env)) == {}


def both_stages(*models: str) -> set[str]:
    return {f"{stage}@{model}" for stage in ("train", "evaluate") for model in models}


def test_editing_a_family_makes_only_its_own_stages_stale(pipeline_copy):
    repo, env, _, _ = pipeline_copy
    dvc(["repro"], repo, env)
    flows = ("glow", "realnvp", "maf", "glow_grey", "realnvp_grey", "maf_grey")
    assert stale_after_editing_and_undoing(repo, env, "models/nn/transforms.py") == both_stages(*flows)
    masked = ("maf", "maf_grey", "made", "made_conditional", "made_grey", "fvsbn")
    assert stale_after_editing_and_undoing(repo, env, "models/nn/masked_linear.py") == both_stages(*masked)
    vaes = ("vae", "iwae", "conv_vae", "vae_conditional", "vae_grey")
    assert stale_after_editing_and_undoing(repo, env, "models/vae.py") == both_stages(*vaes)
    # one edit kept and reproduced: `dvc repro` runs exactly what `dvc status` called stale
    assert stale_after_editing(repo, env, "models/glow.py") == both_stages("glow", "glow_grey")
    assert stages_run(dvc(["repro"], repo, env)) == both_stages("glow", "glow_grey") | {"report", "track"}


def test_editing_pipeline_code_makes_exactly_the_stages_that_import_it_stale(pipeline_copy):
    repo, env, models, _ = pipeline_copy
    dvc(["repro"], repo, env)
    assert stale_after_editing_and_undoing(repo, env, "pipeline/references.py") == {"report"}
    assert stale_after_editing_and_undoing(repo, env, "pipeline/report.py") == {"report"}
    readers_of_data = {"binarize", "grey", "classifier"} | both_stages(*models)
    assert stale_after_editing_and_undoing(repo, env, "pipeline/data.py") == readers_of_data
    names_of_data = readers_of_data | {"prepare", "report", "track"}   # the folders and datasets, no torch
    assert stale_after_editing_and_undoing(repo, env, "pipeline/layout.py") == names_of_data


def test_two_experiments_keep_their_curves_for_plots_diff(pipeline_copy):
    repo, env, _, _ = pipeline_copy
    experiments = {"made-narrow": 6, "made-wide": 24}
    for name, hidden in experiments.items():
        dvc(["exp", "run", "--name", name, "-S", f"models.made.smoke.hidden_sizes=[{hidden}]"], repo, env)
    shown = json.loads(dvc(["plots", "diff", *experiments, "--json"], repo, env))
    rows = shown["data"]["validation_nll"][0]["content"]["data"]["values"]
    made = {}
    for row in rows:
        if source_model(row) == "made":
            made.setdefault(row["rev"], []).append(float(row["val_nll"]))
    assert set(made) == set(experiments), f"made's curves found for {sorted(made)}"
    assert made["made-narrow"] != made["made-wide"]
    assert {source_model(row) for row in rows} >= {"nade", "made"}


def source_model(row: dict) -> str:
    """The model of a plot row's source file; dvc names it by the part of the path that tells the sources
    apart ('made/curves.csv'), not always by the whole path."""
    return Path(row.get("filename", "")).parent.name


def test_the_check_of_a_smoke_run_is_one_line_naming_the_profile(smoke_pipeline):
    """`make check` compares with the quick profile's reference: on a smoke run it says so in one line."""
    repo, env, _, _ = smoke_pipeline
    done = subprocess.run([sys.executable, "-m", "pipeline.check"], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "this workspace runs the smoke profile" in lines[0] or "no reference/quick.json" in lines[0]

