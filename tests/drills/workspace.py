"""Throw-away copies of the repository for the failure drills, and ways to run stages in them:
in-process (fast: no interpreter start-up) or as real processes (exit codes, kills, DVC)."""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GIT = ["git", "-c", "user.name=drill", "-c", "user.email=drill@example.com"]
_cache: dict[str, Path] = {}
_MIRROR_AT_START = os.environ.get("MNIST_MIRROR")
_connections = itertools.count()


NO_MIRROR = "no MNIST: no local mirror (MNIST_MIRROR) and the official mirrors did not answer"


def mirror_dir() -> Path:
    """The local MNIST mirror: MNIST_MIRROR as the session started, else ../shared/data/mnist
    beside the checkout (drills point MNIST_MIRROR elsewhere on purpose), else the four files fetched
    once from the official mirrors and verified into the user's cache."""
    if "mirror" not in _cache:
        local = Path(_MIRROR_AT_START or REPO.parent / "shared" / "data" / "mnist").resolve()
        _cache["mirror"] = local if (local / "train-images-idx3-ubyte.gz").exists() else fetched_mirror()
    if _cache["mirror"] is None:
        pytest.skip(NO_MIRROR)
    return _cache["mirror"]


def fetched_mirror() -> Path | None:
    """~/.cache/genbench/mnist with the four verified .gz files, downloaded if missing; None offline."""
    import gzip

    from pipeline.io import PipelineError
    from pipeline.prepare import SHA256, fetch_verified, official_mirrors

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genbench" / "mnist"
    dead: set[str] = set()
    try:
        for name, sha in SHA256.items():
            if not (cache / f"{name}.gz").exists():
                data = gzip.compress(fetch_verified(name, sha, official_mirrors(), timeout=10, dead=dead), compresslevel=1)
                cache.mkdir(parents=True, exist_ok=True)
                partial = cache / f"{name}.gz.{os.getpid()}"
                partial.write_bytes(data)
                partial.replace(cache / f"{name}.gz")
    except PipelineError:
        return None
    return cache


def copy_repo(dest: Path) -> Path:
    """The repository's files (tracked, and new ones git does not ignore) copied to `dest`."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for name in files:
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def write_params(root: Path, models: dict[str, dict], train: dict | None = None, evaluate: dict | None = None) -> dict:
    """params.yaml on the smoke profile with only `models` (name -> section); `train` and
    `evaluate` update the smoke overlays."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profile"] = "smoke"
    params["models"] = {name: {"data": "binarized", **section} for name, section in models.items()}
    params["train"]["smoke"].update(train or {})
    params["evaluate"]["smoke"].update(evaluate or {})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def edit_params(root: Path, change) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    change(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def synthetic_data(root: Path, sizes=(("train", 400), ("val", 100), ("test", 100)), seed: int = 0) -> Path:
    """data/binarized made by the binarize stage's own writer from random grey images: for drills
    that need data of the right shape but not MNIST itself."""
    from pipeline.binarize import _write_splits
    from pipeline.params import DataConfig
    gen = torch.Generator().manual_seed(seed)
    splits = {name: (torch.randint(0, 256, (n, 28, 28), generator=gen, dtype=torch.uint8),
                     torch.randint(0, 10, (n,), generator=gen, dtype=torch.uint8)) for name, n in sizes}
    out = root / "data" / "binarized"
    out.mkdir(parents=True, exist_ok=True)
    _write_splits(splits, DataConfig(), out)
    return out


def code_digests(root: Path) -> None:
    """The code digests in `root`/digests, as the digest stage writes them: the train stage keys its
    resume state by those files, so a drill that runs it outside DVC writes them first (the settings
    files beside them, which only DVC reads, are left out: a drill writes params.yaml later)."""
    from pipeline import digest
    here = Path.cwd()
    os.chdir(root)
    try:
        digest.write_digests({})
    finally:
        os.chdir(here)


def real_data(tmp_path_factory) -> Path:
    """data/raw, data/binarized and data/grey from the local mirror, made once per session by the
    stages' own functions; copy it into a repository with `copy_data`."""
    if "data" not in _cache:
        mirror = mirror_dir()
        from pipeline.binarize import binarize
        from pipeline.grey import write_grey
        from pipeline.params import DataConfig
        from pipeline.prepare import SHA256, fetch_verified
        base = tmp_path_factory.mktemp("mnist") / "data"
        (base / "raw").mkdir(parents=True)
        for name, sha in SHA256.items():
            (base / "raw" / name).write_bytes(fetch_verified(name, sha, [str(mirror)]))
        binarize(DataConfig(), base / "raw", base / "binarized")
        write_grey(base / "raw", base / "grey")
        _cache["data"] = base
    return _cache["data"]


def copy_data(data: Path, root: Path) -> None:
    shutil.copytree(data, root / "data", dirs_exist_ok=True)


def subprocess_env(root: Path, **extra) -> dict:
    """The environment a stage gets from DVC: no MLflow settings of the caller, one torch thread
    (the drill models are tiny; on a busy 2-core machine more threads only wait for each other)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1", CI="true",
               PYTHONPATH=str(root), **{k: str(v) for k, v in extra.items()})
    return env


def smoke_repo(dest: Path, models: dict[str, dict], tmp_path_factory, **env_extra) -> tuple[Path, dict]:
    """A repository copy in `dest` on the smoke profile with only `models`, the session's MNIST data
    in place, and the environment its stages get."""
    root = copy_repo(dest)
    write_params(root, models)
    copy_data(real_data(tmp_path_factory), root)
    code_digests(root)
    return root, subprocess_env(root, **env_extra)


def run(args: list[str], cwd: Path, env: dict, check: bool = True, timeout: float = 300):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def git_repo(root: Path, env: dict) -> None:
    run([*GIT, "init", "-q"], root, env)
    run([*GIT, "add", "-A"], root, env)
    run([*GIT, "commit", "-qm", "drill"], root, env)


def record_data_stages(root: Path, env: dict) -> None:
    """Record the data copied into `root` as the outputs of its stages, so `dvc repro` does not make
    them again: the code digests first, which those stages depend on."""
    run(["dvc", "repro", "digest"], root, env)
    run(["dvc", "commit", "--force", "prepare", "binarize", "grey"], root, env)


def call_stage(module, *argv: str) -> str | None:
    """Run a stage's main() in this process as `python -m` would; the one-line error it exits with,
    or None when it succeeds."""
    from pipeline import stage
    try:
        stage.run(lambda: module.main(list(argv)))
    except SystemExit as e:
        return str(e.code)
    return None


def mlflow_runs(root: Path, name: str | None = None, include_deleted: bool = False) -> list:
    """Runs of the drill repository's default store (root/mlflow.db), newest first."""
    from mlflow.entities import ViewType
    client = store_client(root)
    experiment = client.get_experiment_by_name("binarized-mnist")
    if experiment is None:
        return []
    query = f"tags.name = '{name}'" if name else ""
    view = ViewType.ALL if include_deleted else ViewType.ACTIVE_ONLY
    return client.search_runs([experiment.experiment_id], query, run_view_type=view, order_by=["start_time DESC"])


def metric_steps(root: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in store_client(root).get_metric_history(run_id, key))


def store_client(root: Path):
    """A client of root/mlflow.db with a database connection of its own. MLflow keeps one engine
    per store URI for the life of the process, and drills delete the file underneath it: a URI
    that differs each time (by the SQLite busy timeout) always opens the file that is there now."""
    from mlflow.tracking import MlflowClient
    return MlflowClient(f"sqlite:///{root / 'mlflow.db'}?timeout={30 + next(_connections)}")


def file_tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def npy(path: Path) -> np.ndarray:
    return np.load(path)
