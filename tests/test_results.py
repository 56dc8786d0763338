"""The contract for results/<model>/ (pipeline/results.py): the stages write exactly the declared keys,
and a file that breaks it is a one-line error naming the file and the key, not a KeyError in report."""
from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest

from pipeline import classifier, evaluate, report, train, trained
from pipeline.io import PipelineError
from pipeline.results import EvalTiming, Metrics, ModelResults, TrainSummary
from tests.drills.workspace import call_stage, code_digests, synthetic_data, write_params

REQUIRED_METRICS = {f.name for f in fields(Metrics) if f.default is not None}
ELBO_METRICS = {"test_neg_elbo", "test_neg_elbo_stderr"}
CONDITIONAL_METRICS = {"test_conditional_nll", "test_conditional_nll_stderr", "generative_accuracy",
                       "test_label_nll", "test_label_nll_stderr", "label_nll_estimator"}
MODELS = {  # name -> (its section of params.yaml, the optional metrics it has)
    "bernoulli": ({"family": "bernoulli"}, set()),
    "vae": ({"family": "vae", "hidden_sizes": [8], "latent_dim": 2, "eval_samples": 2, "val_samples": 1}, ELBO_METRICS),
    "made_conditional": ({"family": "made", "hidden_sizes": [8], "conditional": True}, CONDITIONAL_METRICS),
}


def keys(path) -> set[str]:
    return set(json.loads(path.read_text()))


@pytest.fixture(scope="module")
def stages_ran(tmp_path_factory):
    """A folder where train, evaluate and report ran on synthetic data for MODELS."""
    root = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("DVC_ROOT", str(root))
        synthetic_data(root)
        code_digests(root)
        write_params(root, {name: section for name, (section, _) in MODELS.items()},
                     train={"epochs": 1, "max_train": 400})
        assert call_stage(classifier) is None
        for name in MODELS:
            assert call_stage(train, name) is None
            assert call_stage(evaluate, name) is None
        assert call_stage(report) is None
    return root


def test_train_and_evaluate_write_exactly_the_declared_keys(stages_ran):
    for name, (_, optional) in MODELS.items():
        files = ModelResults(name, stages_ran)
        assert keys(files.train_summary) == {f.name for f in fields(TrainSummary)}, name
        assert keys(files.metrics) == REQUIRED_METRICS | optional, name
        assert keys(files.timing) == {f.name for f in fields(EvalTiming)}, name
        for path in (files.checkpoint, files.curves, files.per_image_nll, files.samples):
            assert path.is_file(), path


def test_the_report_table_takes_the_files_keys_under_their_own_names(stages_ran):
    table = pd.read_csv(stages_ran / "reports" / "results.csv")
    assert list(table.columns) == [*report.CSV_COLUMNS, "vs_best_exact", "vs_best_exact_stderr"]
    for name in MODELS:
        files = ModelResults(name, stages_ran)
        metrics, summary = json.loads(files.metrics.read_text()), json.loads(files.train_summary.read_text())
        shown = table.set_index("model").loc[name]
        assert shown.test_nll_stderr == pytest.approx(metrics["test_nll_stderr"])
        assert shown.epochs_run == summary["epochs_run"]
        assert shown.train_minutes == pytest.approx(summary["train_seconds"] / 60)


def test_load_finds_checkpoints_where_the_contract_puts_them(stages_ran):
    assert trained.trained_names(stages_ran) == sorted(MODELS)
    assert trained.checkpoint_path("made") == "results/made/model.pt"


def summary(name: str = "m") -> TrainSummary:
    return TrainSummary(model=name, family="bernoulli", profile="smoke", device="cpu", parameters=784, epochs_run=2,
                        best_epoch=1, best_val_nll=200.0, train_seconds=3.0, train_flops=9_408_000, flops_per_image=4704,
                        train_images=200, val_images=100,
                        binarization="fixed", settings={}, data_sha256="0" * 64, estimator="exact",
                        params={"family": "bernoulli"})


def write_results(name: str = "m") -> ModelResults:
    """results/<name>/ in the current folder, as train and evaluate write it, without the work."""
    files = ModelResults(name)
    files.folder.mkdir(parents=True)
    summary(name).write(files.train_summary)
    Metrics(estimator="exact", test_nll=190.0, test_nll_stderr=1.0, test_bpd=0.35, test_images=3,
            inception_score=2.0, frechet_distance=50.0, train_flops=9_408_000, flops_per_image=4704).write(files.metrics)
    np.save(files.per_image_nll, np.array([189.0, 190.0, 191.0]))
    return files


def drop_key(path, key: str) -> None:
    data = json.loads(path.read_text())
    del data[key]
    path.write_text(json.dumps(data))


def test_optional_metrics_are_written_only_when_they_have_a_value():
    metrics = Metrics(estimator="exact", test_nll=1.0, test_nll_stderr=0.1, test_bpd=0.1, test_images=3,
                      inception_score=2.0, frechet_distance=5.0, train_flops=1, flops_per_image=1)
    assert set(metrics.to_json()) == REQUIRED_METRICS


@pytest.mark.parametrize("file, key, stage", [("metrics", "test_bpd", "evaluate"), ("train_summary", "binarization", "train")])
def test_a_missing_key_is_one_line_naming_the_file_and_the_key(tmp_path, monkeypatch, file, key, stage):
    monkeypatch.chdir(tmp_path)
    files = write_results()
    drop_key(getattr(files, file), key)
    with pytest.raises(PipelineError) as error:
        report.collect(["m"], "smoke")
    assert str(error.value) == f"{getattr(files, file)} has no key {key!r}: run `dvc repro {stage}@m` to rewrite it"


def test_an_unknown_key_and_a_missing_file_are_one_line_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = write_results()
    files.per_image_nll.unlink()
    with pytest.raises(PipelineError, match=r"^results/m/test_nll.npy is missing: run `dvc repro evaluate@m` first$"):
        report.read_outputs("m")
    files.train_summary.write_text(json.dumps({**summary().to_json(), "epochs": 2}))
    with pytest.raises(PipelineError, match=r"^results/m/train.json has an unknown key 'epochs': run `dvc repro train@m`"):
        report.read_outputs("m")


def test_a_record_reads_back_what_was_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = write_results()
    assert files.read_train_summary() == summary()
    assert files.read_metrics().test_neg_elbo is None
