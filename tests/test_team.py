"""Working as a team, for real, on one smoke pipeline run (one model):

- a shared tracking server: PostgreSQL, `mlflow server` serving the artifacts, then `dvc repro` and
  two queued experiments run by `dvc queue start -j 2` tracked to it: every run, metric and
  artifact is there exactly once, and the artifacts only on the server;
- a DVC remote (a local folder): `dvc push`, then a fresh clone pulls every trained model and the
  report, and `dvc repro` finds nothing to do.

The server tests are skipped where no PostgreSQL server can be started, except in CI (`in_ci`),
where that fails: .ci/run installs Debian's postgresql, and `make` the `server` extra (psycopg).
Without a server, the pipeline is tracked to the local store and the DVC remote is still tested."""
from __future__ import annotations

import importlib.util
import json
import re
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.progress import in_ci
from tests.drills.workspace import (
    GIT,
    copy_data,
    copy_repo,
    git_repo,
    real_data,
    record_data_stages,
    run,
    subprocess_env,
    write_params,
)
from tests.servers import mlflow_server, postgres_cluster, why_no_postgres

pytestmark = pytest.mark.e2e

MODELS = {"bernoulli": {"family": "bernoulli", "train": {"lr": 0.05}}}
LEARNING_RATES = (0.1, 0.02)  # one queued experiment each
QUEUE_TIMEOUT_S = 420
POLL_S = 3  # each `dvc queue status` is a process start: not too often on a 2-core machine


def postgres_problem() -> str | None:
    """Why the shared-server tests cannot run here (a failure in CI), or None."""
    problem = why_no_postgres()
    if problem is None and importlib.util.find_spec("psycopg") is None:
        problem = "the PostgreSQL driver is not installed: pip install '.[server]'"
    if problem is not None and in_ci():
        pytest.fail(f"CI must test the shared tracking server, but {problem}")
    return problem


@dataclass
class Team:
    root: Path
    env: dict
    url: str | None           # the tracking server, None where none could be started
    artifacts: Path           # the server's artifact store
    experiments: dict         # queued experiment name -> its learning rate
    no_server: str | None     # why there is no server


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """A committed repository after `dvc repro`, and with a server, two finished queued experiments."""
    base = tmp_path_factory.mktemp("team")
    problem = postgres_problem()
    with ExitStack() as servers:
        url = None
        if problem is None:
            url = servers.enter_context(mlflow_server(servers.enter_context(postgres_cluster()), base / "artifacts"))
        root = copy_repo(base / "repo")
        write_params(root, MODELS)
        copy_data(real_data(tmp_path_factory), root)
        env = subprocess_env(root, **({"MLFLOW_TRACKING_URI": url} if url else {}))
        git_repo(root, env)
        record_data_stages(root, env)
        run(["dvc", "repro"], root, env, timeout=600)
        run([*GIT, "add", "dvc.lock"], root, env)
        run([*GIT, "commit", "-qm", "lock"], root, env)
        experiments = queue_and_wait(root, env) if url else {}
        yield Team(root, env, url, base / "artifacts", experiments, problem)


@pytest.fixture
def server(team) -> Team:
    if team.url is None:
        pytest.skip(f"cannot start a PostgreSQL server here: {team.no_server}")
    return team


def queue_and_wait(root, env) -> dict[str, float]:
    """Queue one experiment per learning rate, run them two at a time; {experiment name: lr}."""
    names = {}
    for lr in LEARNING_RATES:
        log = run(["dvc", "exp", "run", "--queue", "-S", f"models.bernoulli.train.lr={lr}"], root, env).stdout
        names[log.split("Queued experiment '")[1].split("'")[0]] = lr
    run(["dvc", "queue", "start", "-j", "2"], root, env)
    deadline = time.monotonic() + QUEUE_TIMEOUT_S
    while True:
        time.sleep(POLL_S)
        status = run(["dvc", "queue", "status"], root, env).stdout
        if not any(word in status for word in ("Queued", "Running")):
            break
        assert time.monotonic() < deadline, f"the queued experiments did not finish:\n{status}"
    assert status.count("Success") == len(LEARNING_RATES), status
    return names


def all_runs(url: str) -> list:
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("binarized-mnist")
    return client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000)


def test_every_run_is_there_once_and_nothing_was_replaced(server):
    url, experiments = server.url, server.experiments
    runs = all_runs(url)
    assert all(r.info.lifecycle_stage == "active" and r.info.status == "FINISHED" for r in runs)
    keys = Counter((r.data.tags["name"], r.data.tags.get("dvc_experiment")) for r in runs)
    expected = {("bernoulli", None), ("report", None)}
    expected |= {(name, exp) for exp in experiments for name in ("bernoulli", "report")}
    assert keys == Counter(expected)
    current = Counter(r.data.tags["name"] for r in runs if r.data.tags["current"] == "true")
    assert current == {"bernoulli": 1, "report": 1}
    learning_rates = {r.data.tags["dvc_experiment"]: float(r.data.params["train.lr"])
                      for r in runs if r.data.tags["name"] == "bernoulli" and "dvc_experiment" in r.data.tags}
    assert learning_rates == experiments


def test_every_metric_is_logged_once_and_matches_the_dvc_outputs(server):
    from mlflow.tracking import MlflowClient
    url, root = server.url, server.root
    client = MlflowClient(url)
    for run_ in all_runs(url):
        if run_.data.tags["name"] == "report":
            continue
        for key in ("val_nll", "train_loss"):
            steps = [m.step for m in client.get_metric_history(run_.info.run_id, key)]
            assert steps == [1], f"{run_.data.tags['name']}: {key} logged at steps {steps}"
        assert {"test_nll", "test_bpd", "best_val_nll"} <= set(run_.data.metrics)
    for model in MODELS:
        metrics = json.loads((root / "results" / model / "metrics.json").read_text())
        (baseline,) = [r for r in all_runs(url) if r.data.tags["name"] == model and "dvc_experiment" not in r.data.tags]
        assert baseline.data.metrics["test_nll"] == metrics["test_nll"]


def listed(client, run_id: str, folder: str | None = None) -> list[str]:
    """Every artifact file of a run, as the server lists them."""
    files = []
    for item in client.list_artifacts(run_id, folder):
        files += listed(client, run_id, item.path) if item.is_dir else [item.path]
    return files


def test_artifacts_are_served_by_the_server_once_each(server, tmp_path):
    from mlflow.tracking import MlflowClient
    url, artifacts, root = server.url, server.artifacts, server.root
    client = MlflowClient(url)
    stored = Counter()  # artifacts/<experiment id>/<run id>/artifacts/<path>, on the server's side
    for path in artifacts.rglob("*"):
        parts = path.relative_to(artifacts).parts
        if path.is_file() and parts[1] != "models":  # models/: MLflow 3's logged models, not run artifacts
            stored[parts[1], "/".join(parts[3:])] += 1
    served = Counter()
    for run_ in all_runs(url):
        assert run_.info.artifact_uri.startswith("mlflow-artifacts:"), run_.info.artifact_uri
        files = listed(client, run_.info.run_id)
        assert files, f"{run_.data.tags['name']}: no artifacts"
        if run_.data.tags["name"] != "report":
            assert "figures/samples.png" in files
        served.update((run_.info.run_id, name) for name in files)
    assert served == stored
    for model in MODELS:  # the baseline's figures, fetched through the server, are the DVC outputs
        (baseline,) = [r for r in all_runs(url) if r.data.tags["name"] == model and "dvc_experiment" not in r.data.tags]
        fetched = client.download_artifacts(baseline.info.run_id, "figures/samples.png", str(tmp_path))
        assert open(fetched, "rb").read() == (root / "results" / model / "figures" / "samples.png").read_bytes()
    assert not (root / "mlruns").exists() and not (root / "mlflow.db").exists(), "something was tracked locally"


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_a_fresh_clone_pulls_every_output_from_the_remote_and_has_nothing_to_run(team, tmp_path):
    root, env = team.root, team.env
    run(["dvc", "remote", "add", "--default", "shared", str(tmp_path / "remote")], root, env)
    run([*GIT, "commit", "-qam", "a DVC remote"], root, env)
    run(["dvc", "push"], root, env)
    clone = tmp_path / "clone"
    run([*GIT, "clone", "-q", str(root), str(clone)], tmp_path, env)
    run(["dvc", "pull"], clone, env)
    outputs = [Path("reports") / name for name in ("results.md", "results.csv", "nll.png")]
    for model in MODELS:
        outputs += [Path("results") / model / name
                    for name in ("model.pt", "train.json", "metrics.json", "test_nll.npy", "figures/samples.png")]
    for path in outputs:
        assert (clone / path).read_bytes() == (root / path).read_bytes(), f"{path} differs or is missing"
    assert json.loads(run(["dvc", "status", "--json"], clone, env).stdout) == {}
    assert stages_run(run(["dvc", "repro"], clone, env).stdout) == set()
