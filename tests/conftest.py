import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def mirror_dir() -> Path:
    """The local MNIST mirror: MNIST_MIRROR, else ../shared/data/mnist beside the checkout."""
    path = Path(os.environ.get("MNIST_MIRROR") or REPO.parent / "shared" / "data" / "mnist")
    if not (path / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"no local MNIST mirror at {path} (set MNIST_MIRROR)")
    return path


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
