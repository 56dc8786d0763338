"""The reproducibility check (pipeline/check.py): a workspace's results against the committed reference."""
import copy
import json
import re

import pytest

from pipeline import check, reference
from pipeline import params as P
from pipeline.io import PipelineError
from pipeline.results import Metrics, ModelResults, TrainSummary
from tests.drills.workspace import REPO

MODELS = {"made": {"family": "made", "data": "binarized", "hidden_sizes": [8]},
          "maf_grey": {"family": "maf", "data": "grey", "num_layers": 1, "hidden_sizes": [8]}}


def quick_params() -> dict:
    params = P.load(REPO / "params.yaml")
    params["profile"], params["models"] = "quick", copy.deepcopy(MODELS)
    return params


def workspace(root, nlls: dict, val_offset: float = 1.0, code: str = "v1"):
    """results/<model>/ with a test NLL each, and a validation NLL `val_offset` above it; digests/ as
    `dvc repro` leaves it, the families' code in version `code`."""
    (root / "digests").mkdir(parents=True, exist_ok=True)
    for family in ("made", "maf"):
        (root / "digests" / f"family-{family}.sha256").write_text(f"{family} {code}\n")
    for name, nll in nlls.items():
        files = ModelResults(name)
        (root / files.folder).mkdir(parents=True, exist_ok=True)
        Metrics(estimator="exact", test_nll=nll, test_nll_stderr=0.1, test_bpd=nll / 543.4, test_images=10,
                inception_score=1.0, frechet_distance=1.0, train_flops=1, flops_per_image=1).write(root / files.metrics)
        TrainSummary(model=name, family="made", profile="quick", device="cpu", parameters=1, epochs_run=1, best_epoch=1,
                     best_val_nll=nll + val_offset, train_seconds=1.0, train_flops=1, flops_per_image=1, train_images=1,
                     val_images=1, binarization="fixed", settings={}, data_sha256="", estimator="exact",
                     params={}).write(root / files.train_summary)
    return root


def test_tolerances_come_from_the_runs_spread_and_a_result_inside_passes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = quick_params()
    runs = [workspace(tmp_path / "a", {"made": 100.0, "maf_grey": 1000.0}),
            workspace(tmp_path / "b", {"made": 100.2, "maf_grey": 1000.0})]
    written = check.write_reference(runs, params, tmp_path / "quick.json")
    assert written["models"]["made"]["tolerance"] == pytest.approx(0.4)          # 2 x the spread
    assert written["models"]["maf_grey"]["tolerance"] == pytest.approx(1.0)      # the floor: 0.1% of the NLL
    assert json.loads((tmp_path / "quick.json").read_text()) == written
    workspace(tmp_path, {"made": 100.3, "maf_grey": 1000.9})
    lines, passed = check.check(params, written, tmp_path)
    assert passed and [line.split()[-1] for line in lines[1:]] == ["pass", "pass"]
    workspace(tmp_path, {"made": 100.5})
    lines, passed = check.check(params, written, tmp_path)
    assert not passed and lines[1].split()[-1] == "FAIL" and lines[2].endswith("pass")


def test_a_model_that_varies_more_than_one_percent_is_refused_a_reference(tmp_path):
    runs = [workspace(tmp_path / "a", {"made": 100.0, "maf_grey": 1000.0}),
            workspace(tmp_path / "b", {"made": 100.0, "maf_grey": 1010.0})]
    with pytest.raises(PipelineError, match=r"more than 1% .*maf_grey \(test 1000.00, 1010.00; validation"):
        check.write_reference(runs, quick_params(), tmp_path / "quick.json")


def test_an_earlier_machines_runs_widen_the_tolerance_where_configuration_and_code_are_the_same(tmp_path):
    params = quick_params()
    earlier = check.write_reference([workspace(tmp_path / run, {"made": nll, "maf_grey": 1000.0}) for run, nll
                                     in (("x", 100.3), ("y", 100.3))], params, tmp_path / "earlier.json")
    earlier["machine"] = "another CPU"
    runs = [workspace(tmp_path / run, {"made": 100.0, "maf_grey": 1000.0}) for run in ("a", "b")]
    written = check.write_reference(runs, params, tmp_path / "quick.json", elsewhere=[earlier])
    assert written["models"]["made"]["tolerance"] == pytest.approx(0.6)       # 2 x (100.3 - 100.0)
    assert written["models"]["made"]["elsewhere"] == ["another CPU"]
    for run in runs:
        (run / "digests" / "family-made.sha256").write_text("made v2\n")    # MADE's code changed since
    written = check.write_reference(runs, params, tmp_path / "quick.json", elsewhere=[earlier])
    assert written["models"]["made"]["tolerance"] == pytest.approx(0.1) and written["models"]["made"]["elsewhere"] == []
    assert written["models"]["maf_grey"]["elsewhere"] == ["another CPU"]


def test_a_reference_is_written_from_workspaces_after_dvc_repro(tmp_path):
    runs = [workspace(tmp_path / run, {"made": 100.0, "maf_grey": 1000.0}) for run in ("a", "b")]
    (runs[0] / "digests" / "family-maf.sha256").unlink()
    with pytest.raises(PipelineError, match=r"a\b: no digests/family-maf.sha256: a reference is written from workspaces"):
        check.write_reference(runs, quick_params(), tmp_path / "quick.json")


def test_a_reference_needs_two_runs_to_measure_a_tolerance(tmp_path):
    with pytest.raises(PipelineError, match="a reference needs two runs"):
        check.write_reference([workspace(tmp_path / "a", {"made": 100.0, "maf_grey": 1000.0})], quick_params(),
                              tmp_path / "quick.json")


def test_a_missing_result_other_settings_or_another_profile_is_one_line(tmp_path):
    params = quick_params()
    runs = [workspace(tmp_path / run, {"made": 100.0, "maf_grey": 1000.0}) for run in ("a", "b")]
    written = check.write_reference(runs, params, tmp_path / "quick.json")
    workspace(tmp_path, {"made": 100.0})
    changed = copy.deepcopy(params)
    changed["models"]["made"]["hidden_sizes"] = [16]
    lines, passed = check.check(changed, written, tmp_path)
    assert not passed
    assert "FAIL: params.yaml's settings differ" in lines[1]
    assert "FAIL: no results/maf_grey/metrics.json: run `dvc repro`" in lines[2]
    workspace(tmp_path, {"made": 100.0, "maf_grey": 1000.0}, code="edited")
    lines, passed = check.check(params, written, tmp_path)
    assert not passed and "FAIL: the made family's code differs from the reference's" in lines[1]
    assert "FAIL: the maf family's code differs from the reference's" in lines[2]
    budget = re.escape(f"{reference.budget(params):.1e}")
    with pytest.raises(PipelineError, match=f"is of the quick profile at {budget} FLOPs; this workspace runs the smoke"):
        check.check({**params, "profile": "smoke"}, written, tmp_path)


def test_evaluation_batch_sizes_and_devices_leave_the_configuration_and_what_shapes_the_numbers_changes_it():
    params = P.load(REPO / "params.yaml")
    params["profile"] = "quick"
    before = reference.configuration(params, "made")
    for where, key, value in [("train", "eval_batch_size", 7), ("evaluate", "batch_size", 7), ("train", "device", "cuda"),
                              ("train", "weight_decay", 0.5), ("evaluate", "seed", 7), ("train", "max_val", 7)]:
        changed = copy.deepcopy(params)
        changed[where][key] = value
        changed[where].get("quick", {}).pop(key, None)  # the profile's own value would win
        same = reference.configuration(changed, "made") == before
        assert same == (key in ("eval_batch_size", "batch_size", "device")), f"{where}.{key}"


def test_the_committed_reference_is_of_this_params_quick_profile_and_within_one_percent():
    reference_path = REPO / reference.REFERENCE
    if not reference_path.exists():
        pytest.skip("no committed reference yet")
    committed = json.loads(reference_path.read_text())
    params = P.load(REPO / "params.yaml")
    params["profile"] = "quick"
    assert set(committed["models"]) == set(P.model_names(params))
    for name, ref in committed["models"].items():
        assert ref["configuration"] == reference.configuration(params, name), f"{name}: params.yaml changed since"
        assert ref["tolerance"] <= check.MAX_TOLERANCE * ref["test_nll"]
        assert len(ref["code"]) == 16, f"{name}: the family code the reference was measured with"
        assert len(set(ref["seeds"])) == len(ref["seeds"]) == len(ref["seed_test_nlls"]), name



def seed_workspace(root, params: dict, seed: int, nlls: dict):
    """A workspace of `params` with another train.seed: its params.yaml and results."""
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(json.dumps({**params, "train": {**params["train"], "seed": seed}}))
    return workspace(root, nlls)


def test_the_reference_keeps_the_test_nll_of_each_seed_and_refuses_other_settings(tmp_path):
    params = quick_params()
    runs = [workspace(tmp_path / run, {"made": 100.0, "maf_grey": 1000.0}) for run in ("a", "b")]
    seeds = [seed_workspace(tmp_path / "s1", params, 1, {"made": 101.0, "maf_grey": 1004.0}),
             seed_workspace(tmp_path / "s2", params, 2, {"made": 102.0, "maf_grey": 1002.0})]
    written = check.write_reference(runs, params, tmp_path / "quick.json", seed_runs=seeds)
    made = written["models"]["made"]
    assert made["seeds"] == [0, 1, 2] and made["seed_test_nlls"] == [100.0, 101.0, 102.0]
    assert reference.seed_sd(reference.entry_for(written, params, "made")) == pytest.approx(1.0)
    changed = copy.deepcopy(params)
    changed["models"]["made"]["hidden_sizes"] = [16]
    assert reference.entry_for(written, changed, "made") is None      # the spread of other settings is not shown
    other = seed_workspace(tmp_path / "s3", changed, 3, {"made": 101.0, "maf_grey": 1004.0})
    with pytest.raises(PipelineError, match="s3: models.made is not this configuration with another train.seed"):
        check.write_reference(runs, params, tmp_path / "quick.json", seed_runs=[other])
    same_seed = seed_workspace(tmp_path / "s0", params, 0, {"made": 101.0, "maf_grey": 1004.0})
    with pytest.raises(PipelineError, match="not this configuration with another train.seed"):
        check.write_reference(runs, params, tmp_path / "quick.json", seed_runs=[same_seed])
