import os
from pathlib import Path

import pytest

from tests.drills.workspace import REPO, mirror_dir  # noqa: F401 (REPO: for the tests that import it here)


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
