"""Failure drills for hand-edited params: every stage checks what it reads before it reads data or
writes anything, and a bad value is one line naming the key and what is allowed, exit status 1.

Each case runs a stage in an empty folder holding only params.yaml: getting the params error
(rather than "data missing") proves the check comes first."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pipeline import binarize, evaluate, report, train
from tests.drills.workspace import REPO, call_stage, edit_params, subprocess_env, write_params

STAGES = {"binarize": (binarize, ()), "train": (train, ("made",)), "evaluate": (evaluate, ("made",)),
          "report": (report, ())}


def set_key(path: str, value):
    """A change to params: set the dotted `path` (creating mappings on the way) to `value`."""
    def change(params):
        *parents, last = path.split(".")
        node = params
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return change


def drop_profile_overlays(params):
    for section in [params["train"], params["evaluate"], *params["models"].values()]:
        for profile in ("smoke", "quick", "full"):
            section.pop(profile, None)


# (stage, change to params, text the one-line error must contain)
CASES = [
    ("binarize", set_key("data.binarization", "otsu"),
     "data: binarization: Input should be 'stochastic' or 'threshold'"),
    ("binarize", set_key("data.seed", "zero"), "data: seed: Input should be a valid integer (got 'zero')"),
    ("binarize", set_key("data.sed", 1), "data: unknown key 'sed'; allowed: binarization, seed"),
    ("binarize", set_key("data", [1, 2]), "data: expected a mapping, got list"),
    ("binarize", set_key("extra", 1), "params.yaml: unknown key 'extra'; allowed: profile, data"),
    ("binarize", set_key("profile", "fast"), "profile: 'fast' is not one of smoke, quick, full"),
    ("train", set_key("train.epochs", 0), "train: epochs must be >= 1, got 0"),
    ("train", set_key("train.epochs", True), "train: epochs: Input should be a valid integer (got True)"),
    ("train", set_key("train.epochs", "5"), "train: epochs: Input should be a valid integer (got '5')"),
    ("train", set_key("train.lr", float("inf")), "train: lr must be > 0 and finite, got inf"),
    ("train", set_key("train.optimizer", "adamx"), "train: optimizer: Input should be 'adam', 'adamw' or 'sgd'"),
    ("train", set_key("train.bf16", "yes please"), "train: bf16: Input should be False, True or 'always'"),
    ("train", set_key("models.made.train", {"lrr": 1}), "train (with models.made.train): unknown key 'lrr'"),
    ("train", set_key("models.made.train", [1]), "models.made.train: expected a mapping, got list"),
    ("train", set_key("models.made.hidden_sizes", 500), "models.made: hidden_sizes: Input should be a list (got 500)"),
    ("train", set_key("models.made.hidden_sizes", [16, "x"]),
     "models.made: hidden_sizes.1: Input should be a valid integer"),
    ("train", set_key("models.made.num_masks", 0), "models.made: need num_masks >= 1"),  # the constructor's check
    ("train", set_key("models.made.hiden", 3), "models.made: unknown key 'hiden'; allowed: hidden_sizes"),
    ("train", set_key("models.made.family", "mode"), "models.made.family: 'mode' is not one of"),
    ("train", set_key("models", {}), "models: define at least one model"),
    ("evaluate", set_key("evaluate.samples", 3), "evaluate: samples must be a positive square number"),
    ("evaluate", set_key("evaluate.max_test", 0), "evaluate: max_test must be >= 1, got 0"),
    ("evaluate", set_key("evaluate.bogus", 1), "evaluate: unknown key 'bogus'"),
    ("evaluate", set_key("train.patience", -1), "train: patience must be >= 1, got -1"),
    ("report", set_key("models.made.hiden", 3), "models.made: unknown key 'hiden'"),
    ("report", set_key("models.made.family", None), "models.made.family: None is not one of"),
]


@pytest.fixture
def empty_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    write_params(tmp_path, {"made": {"family": "made", "hidden_sizes": [16]}})
    edit_params(tmp_path, drop_profile_overlays)
    return tmp_path


@pytest.mark.parametrize("stage,change,expected", CASES, ids=[f"{c[0]}-{c[2][:40]}" for c in CASES])
def test_bad_params_are_one_line_errors_before_any_work(empty_repo, stage, change, expected):
    edit_params(empty_repo, change)
    module, argv = STAGES[stage]
    error = call_stage(module, *argv)
    assert error is not None, "the stage accepted bad params"
    assert error.startswith("error: ") and "\n" not in error
    assert expected in error
    assert sorted(p.name for p in empty_repo.iterdir()) == ["params.yaml"], "the stage did work before failing"


def test_unknown_model_name_lists_the_defined_ones(empty_repo):
    assert call_stage(train, "mdae") == "error: models.mdae: no such model in params.yaml; defined: made"


def test_yaml_exponent_without_a_dot_is_a_number(empty_repo):
    (empty_repo / "params.yaml").write_text((empty_repo / "params.yaml").read_text() + "\n")
    edit_params(empty_repo, set_key("train.lr", "PLACEHOLDER"))
    text = (empty_repo / "params.yaml").read_text().replace("PLACEHOLDER", "3e-4")
    (empty_repo / "params.yaml").write_text(text)  # `lr: 3e-4`: a string to PyYAML, a number to DVC
    from pipeline import params as P
    from pipeline.model_params import model_spec
    assert model_spec(P.load(), "made").train.lr == 3e-4


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_one_is_a_params_error(empty_repo):
    edit_params(empty_repo, set_key("train.device", "cuda"))
    error = call_stage(train, "made")
    assert error.startswith("error: train.device: device 'cuda' was asked for but CUDA is not available")


def test_a_real_process_exits_1_with_exactly_one_line_on_stderr(empty_repo):
    edit_params(empty_repo, set_key("train.optimizer", "adamx"))
    result = subprocess.run([sys.executable, "-m", "pipeline.train", "made"], cwd=empty_repo,
                            env=subprocess_env(REPO), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: train: optimizer: Input should be 'adam', 'adamw' or 'sgd' (got 'adamx')"]
