"""The helpers that models/ and pipeline/ share, each defined once: the atomic writer, bits per
dimension, the mean NLL over batches, the mean and its standard error, noise from a generator and
flat views."""
import math
import os

import numpy as np
import pytest
import torch

from models.base import (
    bits_per_dim,
    flat_views,
    mean_and_stderr,
    mean_nll_over_batches,
    normal_noise,
    uniform_noise,
)
from models.bernoulli import IndependentBernoulli
from models.checkpoint import load_checkpoint, save_checkpoint
from models.files import atomic_dir, atomic_path


@pytest.fixture
def synced(monkeypatch) -> list[str]:
    """The paths fsync'ed, in order."""
    paths = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (paths.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    return paths


def test_an_atomic_write_flushes_the_file_then_its_folder(tmp_path, synced):
    target = tmp_path / "out" / "a.json"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and os.listdir(target.parent) == ["a.json"]
    assert synced[-1] == str(target.parent) and synced[-2].startswith(str(target.parent / ".a.json.tmp"))


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.json"]


def test_an_atomic_folder_replaces_the_whole_folder_or_nothing(tmp_path, synced):
    target = tmp_path / "figures"
    target.mkdir()
    (target / "stale.png").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half.png").write_text("half")
        raise RuntimeError("killed")
    assert os.listdir(target) == ["stale.png"]
    with atomic_dir(target) as tmp:
        (tmp / "new.png").write_text("new")
    assert os.listdir(target) == ["new.png"] and os.listdir(tmp_path) == ["figures"]
    assert any(path.endswith("new.png") for path in synced) and synced[-1] == str(tmp_path)


def test_a_checkpoint_is_written_durably_and_a_failed_save_keeps_the_old_one(tmp_path, monkeypatch, synced):
    path = tmp_path / "model.pt"
    model = IndependentBernoulli((1, 2, 2))
    save_checkpoint(path, model, "bernoulli", {})
    assert str(path.parent) in synced
    before = path.read_bytes()

    def torn(obj, f):
        open(f, "wb").write(b"torn")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", torn)
    with pytest.raises(OSError):
        save_checkpoint(path, model, "bernoulli", {})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.pt"]
    assert load_checkpoint(path)[0].image_shape == (1, 2, 2)


@pytest.mark.parametrize("shape", [(1, 2, 2), (1, 28, 28), (3, 4, 4)])
def test_bits_per_dim_divides_by_the_models_own_pixel_count(shape):
    model = IndependentBernoulli(shape)
    with torch.no_grad():
        model.logits.zero_()  # p = 1/2 for every pixel: exactly one bit each
        nll = model.nll(torch.zeros(3, *shape))
    assert bits_per_dim(nll, model.num_pixels).tolist() == pytest.approx([1.0] * 3)
    assert bits_per_dim(float(nll[0]), model.num_pixels) == pytest.approx(1.0)


def test_the_mean_nll_over_batches_does_not_depend_on_the_batch_size_and_pairs_each_batch_with_its_labels():
    images = torch.arange(10.0)
    labels = torch.arange(10) % 3
    estimate = lambda x, labels=None: x * 2 + (0 if labels is None else labels)
    expected = float((images * 2 + labels).mean())
    for batch_size in (1, 3, 10, 64):
        assert mean_nll_over_batches(estimate, images, batch_size, labels) == pytest.approx(expected)
    assert mean_nll_over_batches(estimate, images, 4) == pytest.approx(9.0)


def test_the_mean_nll_over_batches_sums_each_batch_in_its_precision_or_in_float64_when_asked():
    values = torch.rand(1000, generator=torch.Generator().manual_seed(0)) * 1000
    estimate = lambda x: x
    assert mean_nll_over_batches(estimate, values, 1000) == float(values.sum()) / 1000
    assert mean_nll_over_batches(estimate, values, 1000, float64=True) == float(values.double().sum()) / 1000
    assert mean_nll_over_batches(estimate, values, 300) == sum(float(values[i:i + 300].sum()) for i in range(0, 1000, 300)) / 1000


def test_the_mean_and_its_standard_error_agree_for_tensors_and_arrays():
    values = [1.0, 2.0, 3.0, 4.0]
    expected = (2.5, math.sqrt(5 / 3) / 2)  # sample variance 5/3, four values
    assert mean_and_stderr(torch.tensor(values, dtype=torch.float64)) == pytest.approx(expected)
    assert mean_and_stderr(np.array(values)) == pytest.approx(expected)
    assert mean_and_stderr(np.array([7.0])) == (7.0, 0.0)


def test_noise_comes_from_the_generator_or_the_global_generator():
    shape = (2, 1, 3, 3)
    first = uniform_noise(shape, torch.Generator().manual_seed(0), "cpu")
    assert torch.equal(first, uniform_noise(shape, torch.Generator().manual_seed(0), "cpu"))
    assert torch.equal(first, torch.rand(shape, generator=torch.Generator().manual_seed(0)))
    assert first.min() >= 0 and first.max() < 1
    normal = normal_noise(shape, torch.Generator().manual_seed(0), "cpu")
    assert torch.equal(normal, torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(1)
    unseeded = normal_noise(shape, None, "cpu")
    torch.manual_seed(1)
    assert torch.equal(unseeded, torch.randn(shape))


def test_flat_views_are_one_row_per_image_and_write_through():
    x, observed = torch.zeros(2, 1, 2, 3), torch.ones(2, 1, 2, 3, dtype=torch.bool)
    flat_x, flat_observed = flat_views(x, observed)
    assert flat_x.shape == flat_observed.shape == (2, 6)
    flat_x[1, 4] = 5.0
    assert x[1, 0, 1, 1] == 5.0
