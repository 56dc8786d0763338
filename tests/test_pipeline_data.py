"""prepare and binarize: verified downloads, no partial files, deterministic binarization."""
import gzip
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline import prepare as prep
from pipeline.binarize import binarize
from pipeline.data import load_split, pack, unpack
from pipeline.io import PipelineError, sha256_file
from pipeline.params import DataConfig
from tests.conftest import REPO


def test_prepare_writes_the_four_verified_files(raw_mnist):
    assert sorted(p.name for p in raw_mnist.iterdir()) == sorted(prep.SHA256)
    for name, expected in prep.SHA256.items():
        assert sha256_file(raw_mnist / name) == expected


@pytest.fixture
def mirror_copy(tmp_path, mnist_mirror):
    copy = tmp_path / "mirror"
    shutil.copytree(mnist_mirror, copy)
    return copy


def corrupt(path):
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[1000] ^= 0xFF
    path.write_bytes(gzip.compress(bytes(data)))


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", [corrupt, truncate], ids=["corrupted", "truncated"])
def test_prepare_rejects_a_damaged_file_and_writes_nothing(tmp_path, mirror_copy, monkeypatch, damage):
    damage(mirror_copy / "t10k-images-idx3-ubyte.gz")
    monkeypatch.setenv("MNIST_MIRROR", str(mirror_copy))
    out = tmp_path / "raw"
    with pytest.raises(PipelineError, match="t10k-images-idx3-ubyte"):
        prep.prepare(out)
    assert not out.exists() or not any(out.iterdir())


def test_unreachable_mirrors_suggest_the_offline_mirror(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_MIRROR", raising=False)
    monkeypatch.setattr(prep, "official_mirrors", lambda: ["http://127.0.0.1:9/"])
    with pytest.raises(PipelineError, match="MNIST_MIRROR"):
        prep.prepare(tmp_path / "raw")


def test_prepare_failure_is_one_line_on_stderr(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipeline.prepare"], cwd=tmp_path, capture_output=True,
                            text=True, env={"MNIST_MIRROR": str(tmp_path / "nowhere"), "PYTHONPATH": str(REPO)})
    assert result.returncode != 0
    assert result.stderr.startswith("error: could not get a verified") and result.stderr.count("\n") == 1
    assert not (tmp_path / "data").exists()


def test_pack_roundtrip():
    bits = np.random.default_rng(0).integers(0, 2, size=(5, 28, 28))
    packed = pack(torch.from_numpy(bits))
    assert packed.shape == (5, 98) and packed.dtype == np.uint8
    assert np.array_equal(unpack(packed).squeeze(1).numpy(), bits)


@pytest.fixture(scope="module")
def binarized(raw_mnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("binarized")
    return out, binarize(DataConfig("stochastic", seed=0), raw_mnist, out)


def test_binarize_standard_split(binarized):
    out, manifest = binarized
    assert {k: v["images"] for k, v in manifest["splits"].items()} == {"train": 50000, "val": 10000, "test": 10000}
    val = load_split("val", root=out)
    assert val.shape == (10000, 1, 28, 28) and set(val.unique().tolist()) == {0.0, 1.0}
    # a pixel drawn 1 with probability level / 255 keeps the mean grey level: MNIST's is 0.1307
    assert abs(manifest["splits"]["train"]["mean_pixel"] - 0.1307) < 0.002


def test_binarize_is_deterministic(binarized, raw_mnist, tmp_path):
    _, first = binarized
    again = binarize(DataConfig("stochastic", seed=0), raw_mnist, tmp_path / "again")
    other_seed = binarize(DataConfig("stochastic", seed=1), raw_mnist, tmp_path / "other")
    assert again["sha256"] == first["sha256"]
    assert other_seed["sha256"] != first["sha256"]


def test_threshold_binarization(raw_mnist, tmp_path):
    manifest = binarize(DataConfig("threshold"), raw_mnist, tmp_path)
    from torchvision.datasets.mnist import read_image_file
    expected = (read_image_file(str(raw_mnist / "t10k-images-idx3-ubyte")).float() / 255 > 0.5).float()
    assert np.array_equal(load_split("test", root=tmp_path).squeeze(1).numpy(), expected.numpy())
    assert manifest["binarization"] == "threshold"


def test_the_grey_split_keeps_every_level_of_the_same_images(raw_mnist, binarized, tmp_path):
    from torchvision.datasets.mnist import read_image_file

    from pipeline.data import load_labels
    from pipeline.grey import write_grey
    manifest = write_grey(raw_mnist, tmp_path)
    assert {k: v["images"] for k, v in manifest["splits"].items()} == {"train": 50000, "val": 10000, "test": 10000}
    assert manifest["pixel_levels"] == 256 and set(manifest["files"]) == {
        f"{split}{part}.npy" for split in ("train", "val", "test") for part in ("", "_labels")}
    assert all(sha256_file(tmp_path / name) == digest for name, digest in manifest["files"].items())
    val = load_split("val", root=tmp_path)
    training_images = read_image_file(str(raw_mnist / "train-images-idx3-ubyte"))
    assert val.shape == (10000, 1, 28, 28) and val.dtype == torch.float32
    assert torch.equal(val.squeeze(1), training_images[50_000:].float())  # the same split as binarize's
    assert torch.equal(load_labels("val", root=tmp_path), load_labels("val", root=binarized[0]))
    assert write_grey(raw_mnist, tmp_path / "again")["sha256"] == manifest["sha256"]


def test_a_model_given_the_other_datasets_images_is_a_one_line_error():
    from models import build_model
    from pipeline.data import check_model_fits
    from pipeline.layout import DATASETS
    binarized, grey = build_model("bernoulli", (1, 28, 28)), build_model("categorical", (1, 28, 28), pixel_levels=256)
    with pytest.raises(PipelineError, match=r"^binarized.pt models 2 pixel levels, but data: grey images have 256: "):
        check_model_fits(binarized, DATASETS["grey"], "binarized.pt")
    with pytest.raises(PipelineError, match=r"^grey.pt models 256 pixel levels, but data: binarized images have 2: "):
        check_model_fits(grey, DATASETS["binarized"], "grey.pt")
    check_model_fits(grey, DATASETS["grey"], "grey.pt")  # its own data: no error
