"""params.yaml: profile overlays, and one-line errors that name the bad key."""
import subprocess
import sys

import pytest
import torch
import yaml

from pipeline import params as P
from pipeline.fit_model import build
from pipeline.io import PipelineError
from pipeline.model_params import model_spec
from tests.conftest import REPO


def write(tmp_path, params: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


BASE = {
    "profile": "quick",
    "train": {"lr": 1e-3, "epochs": 3, "quick": {"epochs": 5, "batch_size": 20}},
    "evaluate": {"samples": 16},
    "models": {"made": {"family": "made", "hidden_sizes": [50], "train": {"lr": 3e-3},
                        "quick": {"hidden_sizes": [20], "train": {"batch_size": 10}}}},
}


def test_the_repository_params_are_valid_for_every_profile():
    params = P.load(REPO / "params.yaml")
    for profile in P.PROFILES:
        params["profile"] = profile
        P.evaluate_config(params)
        P.data_config(params)
        for name in P.model_names(params):
            model_spec(params, name)


def test_a_model_names_its_data_and_grey_data_sets_its_pixel_levels(tmp_path):
    params = P.load(write(tmp_path, BASE))
    binarized = model_spec(params, "made")
    assert binarized.data.name == "binarized" and "pixel_levels" not in binarized.kwargs  # the default
    params["models"]["made"]["data"] = "grey"
    grey = model_spec(params, "made")
    assert grey.data.name == "grey" and grey.data.folder.as_posix() == "data/grey"
    assert grey.kwargs == {"hidden_sizes": [20], "pixel_levels": 256}


def test_more_specific_settings_win(tmp_path):
    spec = model_spec(P.load(write(tmp_path, BASE)), "made")
    assert spec.kwargs == {"hidden_sizes": [20]}
    assert (spec.train.epochs, spec.train.lr, spec.train.batch_size) == (5, 3e-3, 10)


@pytest.mark.parametrize("change, message", [
    (lambda p: p.update(profile="fast"), "profile: 'fast' is not one of smoke, quick, full"),
    (lambda p: p.update(extra=1), "unknown key 'extra'"),
    (lambda p: p["train"].update(lrr=1), "train.*unknown key 'lrr'; allowed: epochs"),
    (lambda p: p["train"].update(lr="fast"), "train.*lr: .*number"),
    (lambda p: p["train"].update(lr=-1), "lr must be > 0"),
    (lambda p: p["train"]["quick"].update(epochs=0), "epochs must be >= 1"),
    (lambda p: p["train"].update(optimizer="adagrad"), "optimizer: Input should be 'adam', 'adamw' or 'sgd'"),
    (lambda p: p["train"].update(compile="gpu"), r"train: compile: Input should be False, True or 'cuda' \(got 'gpu'\)"),
    (lambda p: p["train"].update(compile_mode="fast"), "compile_mode: Input should be 'default', 'reduce-overhead'"),
    (lambda p: p["models"]["made"].update(family="gan"), "models.made.family: 'gan' is not one of"),
    (lambda p: p["models"]["made"].update(hidden=3), "models.made: unknown key 'hidden'; allowed: hidden_sizes"),
    (lambda p: p["models"]["made"].update(num_masks="many"), "models.made: num_masks: .*integer"),
    (lambda p: p.update(data={"binarization": "threshold"}) or p["train"].update(dynamic_binarization=True),
     "models.made: train.dynamic_binarization .* data.binarization: threshold"),
    (lambda p: p["models"]["made"].update(data="colour"), "models.made.data: 'colour' is not one of binarized, grey"),
    (lambda p: p["models"]["made"].update(family="nade", hidden=8, data="grey"),
     "models.made: family nade models binarized images only, not data: grey; families for 256 levels: .*pixelcnn"),
    (lambda p: p["models"]["made"].update(pixel_levels=4), "models.made: unknown key 'pixel_levels'"),
    (lambda p: p["models"]["made"].update(fast=False),
     r"models.made.fast: set train.fast_paths instead \(for this model alone: models.made.train.fast_paths\)"),
    (lambda p: p["train"].update(fast_paths="no"), "train: fast_paths: Input should be a valid boolean"),
    (lambda p: p["models"]["made"].update(data="grey") or p["train"].update(dynamic_binarization=True),
     "models.made: train.dynamic_binarization redraws binarized training images, but this model is trained on data: grey"),
])
def test_bad_params_name_the_key(tmp_path, change, message):
    params = yaml.safe_load(yaml.safe_dump(BASE))
    change(params)
    with pytest.raises(PipelineError, match=message):
        loaded = P.load(write(tmp_path, params))
        model_spec(loaded, "made")


@pytest.mark.parametrize("change, expected", [
    (lambda p: None, True),
    (lambda p: p["train"].update(fast_paths=False), False),
    (lambda p: p["models"]["made"]["train"].update(fast_paths=False), False),
])
def test_train_fast_paths_reaches_the_model_as_it_is_built(tmp_path, change, expected):
    params = yaml.safe_load(yaml.safe_dump(BASE))
    change(params)
    spec = model_spec(P.load(write(tmp_path, params)), "made")
    assert spec.train.fast_paths is expected and "fast" not in spec.kwargs
    assert build(spec, torch.device("cpu")).fast is expected


def test_unknown_model_name(tmp_path):
    with pytest.raises(PipelineError, match="models.gan: no such model in params.yaml; defined: made"):
        model_spec(P.load(write(tmp_path, BASE)), "gan")


def test_evaluate_samples_must_make_a_square_grid(tmp_path):
    params = P.load(write(tmp_path, {**BASE, "evaluate": {"samples": 10}}))
    with pytest.raises(PipelineError, match="evaluate: samples must be a positive square"):
        P.evaluate_config(params)


def test_stage_exits_non_zero_with_one_line(tmp_path):
    params = yaml.safe_load(yaml.safe_dump(BASE))
    params["train"]["lr"] = "fast"
    write(tmp_path, params)
    (tmp_path / "pipeline").symlink_to(REPO / "pipeline")
    (tmp_path / "models").symlink_to(REPO / "models")
    result = subprocess.run([sys.executable, "-m", "pipeline.train", "made"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: train")


def test_anchors_are_refused_because_dvc_exp_set_param_drops_their_overrides(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(BASE) + "anchored:\n  a: &shared {epochs: 3}\n  b: *shared\n")
    with pytest.raises(PipelineError, match="YAML anchor or alias 'shared'"):
        P.load(path)
