"""docs/operations.md's 'Running without DVC or MLflow', run as written on the smoke profile. A module of
its own, so that under pytest-xdist it runs beside the smoke pipeline rather than after it."""
import os
import re

import pytest

from tests.drills.workspace import BIN, REPO, copy_repo, edit_params, run

pytestmark = pytest.mark.e2e


def test_the_stages_run_without_dvc_as_the_docs_say_and_the_report_names_the_models_left_out(tmp_path, mnist_mirror):
    """docs/operations.md's 'Running without DVC or MLflow' block, line by line, in a smoke-profile copy:
    one model trained and evaluated, then the report of it alone."""
    text = (REPO / "docs" / "operations.md").read_text()
    section = text.split("## Running without DVC or MLflow", 1)[1]
    lines = re.search(r"^```bash\n(.*?)^```", section, re.S | re.M).group(1).splitlines()
    repo = copy_repo(tmp_path / "repo")
    edit_params(repo, lambda p: p.update(profile="smoke"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(MNIST_MIRROR=str(mnist_mirror), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", CI="true", OMP_NUM_THREADS="1")
    outputs = [run(["bash", "-c", line], repo, env, timeout=900).stdout for line in lines]
    assert "python -m pipeline.report" in lines[-1]
    assert "not evaluated yet, left out: bernoulli, fvsbn" in outputs[-1]
    rows = (repo / "reports" / "results.csv").read_text().splitlines()
    assert len(rows) == 2 and "made" in rows[1]
    assert "Not evaluated yet, so not in these tables: bernoulli" in (repo / "reports" / "results.md").read_text()
