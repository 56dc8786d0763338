import os
from pathlib import Path

import pytest
import yaml

from tests.drills.workspace import BIN, REPO, copy_repo, edit_params, git_repo, mirror_dir, run  # noqa: F401

GIT_IDENTITY = {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER")
                for what, value in (("NAME", "e2e"), ("EMAIL", "e2e@example.com"))}


@pytest.fixture
def torch_seeded():
    """torch's global generator seeded alike for each test that uses it, whatever ran before (what a
    model draws from it when built, such as Glow's rotations, is then the same in every run)."""
    import torch
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def mnist_mirror() -> Path:
    return mirror_dir()


@pytest.fixture(scope="session")
def raw_mnist(tmp_path_factory, mnist_mirror) -> Path:
    """The four verified IDX files, prepared once per test session."""
    from pipeline.prepare import prepare
    out = tmp_path_factory.mktemp("raw")
    os.environ.setdefault("MNIST_MIRROR", str(mnist_mirror))
    prepare(out)
    return out


def dvc(args: list[str], repo: Path, env: dict) -> str:
    result = run([str(BIN / "dvc"), *args], repo, env, timeout=1800)
    return result.stdout + result.stderr


# Test modules whose tests share an expensive fixture: under pytest-xdist (`make test` runs two
# workers) each group runs on one worker, so its fixture is built once.
SHARED_FIXTURES = {"test_e2e.py": "smoke_pipeline", "test_use_trained.py": "smoke_pipeline", "test_team.py": "team",
                   "test_drills_dvc.py": "dvc_drills", "test_parallel.py": "parallel"}


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup` with the groups above. xdist's own groups (`xdist_group` marks) name a
    test's group in a suffix of its node id, which pytest 9.2 no longer takes: every test was
    scheduled on its own, and the smoke pipeline built on both workers."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return SHARED_FIXTURES.get(nodeid.split("::")[0].rsplit("/", 1)[-1], nodeid)
    return SharedFixtureScheduling(config, log)


def pytest_terminal_summary(terminalreporter):
    """One line per reason for the skipped tests, so that a run without MNIST or a browser says so at its end."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2].removeprefix("Skipped: ") if isinstance(report.longrepr, tuple) else "skipped"
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{count} skipped: {reason}")


@pytest.fixture(scope="session")
def smoke_pipeline(tmp_path_factory, mnist_mirror):
    """A smoke-profile copy of the repository after one full `dvc repro`, shared by every test that
    needs trained models: (repo, env, model names, the output of `dvc repro`). The end-to-end tests
    change it and bring it back to a reproduced state; the others only read it."""
    repo = copy_repo(tmp_path_factory.mktemp("e2e") / "repo")
    edit_params(repo, lambda p: p.update(profile="smoke"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MNIST_MIRROR=str(mnist_mirror), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", CI="true",
               **GIT_IDENTITY)
    git_repo(repo, env)
    output = dvc(["repro"], repo, env)
    models = list(yaml.safe_load((repo / "params.yaml").read_text())["models"])
    return repo, env, models, output
