"""dvc.yaml declares every model's curves, sample grid and checkpoint: DVC has no globs there, so
pipeline/dvcfile.py writes those declarations from params.yaml, and these tests say when to run it."""
import shutil
import subprocess
import sys

import pytest
import yaml

from pipeline import dvcfile
from tests.drills.workspace import REPO


def declarations():
    return yaml.safe_load((REPO / "dvc.yaml").read_text()), list(yaml.safe_load((REPO / "params.yaml").read_text())["models"])


def models_on(data: str) -> list[str]:
    models = yaml.safe_load((REPO / "params.yaml").read_text())["models"]
    return [name for name, section in models.items() if section["data"] == data]


def top_level_plots(dvc_yaml) -> dict:
    return {next(iter(p)) if isinstance(p, dict) else p: (next(iter(p.values())) if isinstance(p, dict) else None)
            for p in dvc_yaml["plots"]}


def test_every_model_names_its_data_which_its_stages_depend_on():
    dvc_yaml, names = declarations()
    assert sorted(models_on("binarized") + models_on("grey")) == sorted(names)
    for stage in ("train", "evaluate"):
        assert "data/${item.data}" in dvc_yaml["stages"][stage]["do"]["deps"]


@pytest.mark.parametrize("data, prefix", [("binarized", ""), ("grey", "grey_")])
def test_every_models_validation_curve_is_in_its_tracks_overlaid_plots_by_epoch_and_by_compute(data, prefix):
    dvc_yaml, _ = declarations()
    for plot, x in (("validation_nll", "epoch"), ("nll_against_compute", "flops")):
        overlay = top_level_plots(dvc_yaml)[prefix + plot]
        assert overlay["y"] == {f"results/{n}/curves.csv": "val_nll" for n in models_on(data)}
        assert overlay["x"] == x


def test_every_models_sample_grid_is_an_image_plot():
    dvc_yaml, names = declarations()
    assert {f"results/{n}/figures/samples.png" for n in names} <= set(top_level_plots(dvc_yaml))


def test_every_checkpoint_is_a_model_artifact():
    dvc_yaml, names = declarations()
    assert {a["path"]: a["type"] for a in dvc_yaml["artifacts"].values()} == {
        f"results/{n}/model.pt": "model" for n in names}


def test_curves_are_cached_so_every_experiment_keeps_its_own():
    dvc_yaml, _ = declarations()
    curves = dvc_yaml["stages"]["train"]["do"]["plots"][0]["results/${key}/curves.csv"]
    assert curves.get("cache", True)


def test_every_stage_depends_on_the_generated_digest_of_its_own_code_and_lists_no_code_by_hand():
    from pipeline.digest import STAGES
    stages = declarations()[0]["stages"]
    modules = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        module = body["cmd"].split("python -m pipeline.")[1].split()[0]
        modules[name] = module
        if name == "digest":
            continue
        assert f"digests/stage-{module}.sha256" in body["deps"], name
        assert not [dep for dep in body["deps"] if dep.endswith(".py") or dep in ("pipeline", "models")], name
    assert set(modules.values()) - {"digest"} == set(STAGES)


def test_dvc_yaml_is_up_to_date_with_params_yaml(capsys):
    dvcfile.main(["--check", "--root", str(REPO)])
    assert capsys.readouterr().err == ""


def test_the_check_runs_from_the_command_line_in_the_repository():
    run = subprocess.run([sys.executable, "-m", "pipeline.dvcfile", "--check"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_models_added_to_params_yaml_alone_fail_the_check_until_the_generator_declares_them(tmp_path, capsys):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    hand_written = (tmp_path / "dvc.yaml").read_text().partition(dvcfile.MARKER)[0]
    with (tmp_path / "params.yaml").open("a") as params:
        params.write("  toy: {family: bernoulli, data: binarized}\n  toy_grey: {family: categorical, data: grey}\n")
    root = ["--root", str(tmp_path)]
    with pytest.raises(SystemExit) as failed:
        dvcfile.main(["--check", *root])
    assert failed.value.code == 1
    assert capsys.readouterr().err == "error: dvc.yaml is out of date with params.yaml: run python -m pipeline.dvcfile\n"

    dvcfile.main(root)
    dvcfile.main(["--check", *root])
    text = (tmp_path / "dvc.yaml").read_text()
    assert text.startswith(hand_written + dvcfile.MARKER)
    declared = yaml.safe_load(text)
    plots = top_level_plots(declared)
    for plot in ("validation_nll", "nll_against_compute"):
        assert plots[plot]["y"]["results/toy/curves.csv"] == "val_nll"
        assert plots["grey_" + plot]["y"]["results/toy_grey/curves.csv"] == "val_nll"
        assert "results/toy/curves.csv" not in plots["grey_" + plot]["y"]
        assert "results/toy_grey/curves.csv" not in plots[plot]["y"]
    assert {"results/toy/figures/samples.png", "results/toy_grey/figures/samples.png"} <= set(plots)
    assert declared["artifacts"]["toy"] == {"path": "results/toy/model.pt", "type": "model"}
    assert declared["artifacts"]["toy-grey"] == {"path": "results/toy_grey/model.pt", "type": "model"}
    assert declared["stages"] == yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert declared["plots"][:2] == ["reports/curves.png", "reports/compute.png"]


def test_the_first_run_moves_plots_and_artifacts_below_the_marker_and_keeps_the_rest(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    hand_written = (REPO / "dvc.yaml").read_text().partition(dvcfile.MARKER)[0]
    (tmp_path / "dvc.yaml").write_text(hand_written + "plots:\n  - reports/curves.png\nartifacts:\n  old:\n    path: x\n")
    dvcfile.main(["--root", str(tmp_path)])
    assert (tmp_path / "dvc.yaml").read_text() == (REPO / "dvc.yaml").read_text()


def test_the_generator_refuses_to_drop_a_section_that_follows_plots(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "dvc.yaml").write_text("stages: {}\nplots:\n  - a.png\nmetrics:\n  - m.json\n")
    with pytest.raises(SystemExit, match="top-level metrics: follows"):
        dvcfile.main(["--root", str(tmp_path)])
    assert (tmp_path / "dvc.yaml").read_text().endswith("metrics:\n  - m.json\n")
