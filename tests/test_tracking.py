"""What the stages log to MLflow beside their metrics: the binarized splits as datasets."""
from __future__ import annotations

import json
import warnings

import pytest

from tests.drills.workspace import store_client, synthetic_data

pytest.importorskip("mlflow")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository folder with synthetic binarized data; its MLflow store is repo/mlflow.db."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_OPTIONAL"):
        monkeypatch.delenv(key, raising=False)
    synthetic_data(tmp_path)
    return tmp_path


def test_logged_splits_name_their_local_files_without_an_ambiguous_source_warning(repo):
    from pipeline.tracking import Run
    run = Run.start("bernoulli", {"model.family": "bernoulli"}, {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.log_splits({"train": "training", "val": "validation"})
    assert not [w for w in caught if "can be interpreted in multiple ways" in str(w.message)]
    inputs = store_client(repo).get_run(run.id).inputs.dataset_inputs
    sources = {i.dataset.name: (i.dataset.source_type, json.loads(i.dataset.source)) for i in inputs}
    for split in ("train", "val"):
        file = (repo / "data" / "binarized" / f"{split}.npy").resolve()
        assert sources[f"binarized-mnist-{split}"] == ("local", {"uri": file.as_uri()})
