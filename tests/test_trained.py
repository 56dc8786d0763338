"""`load` (pipeline/trained.py) on names it cannot load: a model params.yaml does not define is
reported as unknown, with the names it does define; a defined one not yet trained says how to train it."""
from __future__ import annotations

import pytest
import yaml

from pipeline.trained import load
from tests.drills.workspace import BIN, GIT, REPO, run, subprocess_env


def write_models(root, names: list[str]) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["models"] = {name: params["models"][name] for name in names}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def untrained_repo(tmp_path):
    """A checkout with dvc.yaml and params.yaml, and nothing trained."""
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    write_models(tmp_path, ["nade", "made"])
    return tmp_path


def test_an_unknown_name_lists_the_models_of_params_yaml(untrained_repo):
    with pytest.raises(LookupError) as error:
        load("nosuch", repo=untrained_repo)
    message = str(error.value)
    assert "unknown model 'nosuch'" in message and "nade, made" in message
    assert "dvc repro" not in message and "\n" not in message


def test_a_known_name_not_yet_trained_says_how_to_train_it(untrained_repo):
    with pytest.raises(FileNotFoundError, match=r"results/made/model.pt is missing: run `dvc repro train@made`"):
        load("made", repo=untrained_repo)


def test_an_unknown_name_at_a_revision_lists_the_models_of_that_revision(untrained_repo):
    env = subprocess_env(untrained_repo)
    run([*GIT, "init", "-q"], untrained_repo, env)
    run([str(BIN / "dvc"), "init", "-q"], untrained_repo, env)
    run([*GIT, "add", "-A"], untrained_repo, env)
    run([*GIT, "commit", "-qm", "two models"], untrained_repo, env)
    write_models(untrained_repo, ["bernoulli"])  # the working copy differs from the revision
    with pytest.raises(LookupError, match=r"unknown model 'bernoulli': params.yaml at 'HEAD' defines nade, made$"):
        load("bernoulli", rev="HEAD", repo=untrained_repo)
    with pytest.raises(FileNotFoundError, match="no-such-rev"):
        load("nade", rev="no-such-rev", repo=untrained_repo)
