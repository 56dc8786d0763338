"""Failure drills for the data stages: a mirror with a truncated, corrupted, wrong or missing file,
a mirror that hangs, refuses or cuts a download short, and a disk that fills up while writing.
Each must be a clear one-line error that leaves no partial output (the previous data, if any,
stays whole), and the same command must succeed once the fault is gone."""
from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import binarize, prepare
from pipeline.io import sha256_file
from tests.drills import faults
from tests.drills.workspace import call_stage, edit_params, file_tree, mirror_dir, real_data, write_params

FILES = list(prepare.SHA256)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    write_params(repo, {"bernoulli": {"family": "bernoulli"}})
    return repo


def broken_mirror(root: Path, name: str, damage) -> Path:
    """A copy of the local mirror where `name`.gz is replaced by damage(original bytes), or removed
    when damage returns None."""
    mirror = root / "mirror"
    mirror.mkdir()
    for gz in mirror_dir().glob("*.gz"):
        (mirror / gz.name).symlink_to(gz)
    original = (mirror_dir() / f"{name}.gz").read_bytes()
    (mirror / f"{name}.gz").unlink()
    damaged = damage(original)
    if damaged is not None:
        (mirror / f"{name}.gz").write_bytes(damaged)
    return mirror


def flip_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:]


def no_leftovers(repo: Path):
    data = repo / "data"
    return [] if not data.exists() else [p.name for p in data.iterdir() if p.name.startswith(".")]


MIRROR_FAULTS = {
    "truncated": (FILES[1], lambda d: d[:len(d) // 2], "EOFError"),
    "corrupted": (FILES[2], flip_middle, "BadGzipFile|zlib|CRC|SHA-256 mismatch"),
    "wrong file": (FILES[3], lambda d: (mirror_dir() / f"{FILES[1]}.gz").read_bytes(), "SHA-256 mismatch"),
    "not gzip": (FILES[0], lambda d: gzip.decompress(d)[:1000], "BadGzipFile|Not a gzipped file"),
    "missing": (FILES[3], lambda d: None, "No such file"),
}


@pytest.mark.parametrize("fault", list(MIRROR_FAULTS))
def test_bad_file_in_mirror_is_refused_and_nothing_is_written(fault, workdir, tmp_path, monkeypatch):
    name, damage, reason = MIRROR_FAULTS[fault]
    monkeypatch.setenv("MNIST_MIRROR", str(broken_mirror(tmp_path, name, damage)))
    error = call_stage(prepare)
    assert error.startswith(f"error: could not get a verified {name}.gz") and "\n" not in error
    import re
    assert re.search(reason, error), error
    assert not (workdir / "data" / "raw").exists() and no_leftovers(workdir) == []

    monkeypatch.setenv("MNIST_MIRROR", str(mirror_dir()))  # the fault is fixed
    assert call_stage(prepare) is None
    assert {p.name: sha256_file(p) for p in (workdir / "data" / "raw").iterdir()} == prepare.SHA256


def test_mirror_that_never_answers_times_out_after_mnist_timeout(workdir, monkeypatch):
    monkeypatch.setenv("MNIST_TIMEOUT", "0.5")
    with faults.silent_server() as url:
        monkeypatch.setenv("MNIST_MIRROR", url)
        started = time.monotonic()
        error = call_stage(prepare)
        elapsed = time.monotonic() - started
    assert elapsed < 5, f"took {elapsed:.1f}s"
    assert f"{url}: no answer within 0.5s (MNIST_TIMEOUT)" in error
    assert not (workdir / "data").exists()


def test_mirror_that_is_down_is_reported(workdir, monkeypatch):
    url = faults.closed_port_url()
    monkeypatch.setenv("MNIST_MIRROR", url)
    error = call_stage(prepare)
    assert error.startswith(f"error: could not get a verified {FILES[0]}.gz: {url}: no answer")
    assert not (workdir / "data").exists()


def test_download_cut_short_is_reported(workdir, monkeypatch):
    with faults.http_server(faults.TruncatingHandler) as url:
        monkeypatch.setenv("MNIST_MIRROR", url)
        error = call_stage(prepare)
    assert "IncompleteRead" in error and not (workdir / "data").exists()


def test_bad_mnist_timeout_is_a_one_line_error(workdir, monkeypatch):
    monkeypatch.setenv("MNIST_TIMEOUT", "soon")
    assert call_stage(prepare) == "error: MNIST_TIMEOUT: expected a number of seconds > 0, got 'soon'"


def test_disk_full_while_prepare_writes_keeps_the_old_files(workdir, monkeypatch, tmp_path_factory):
    shutil.copytree(real_data(tmp_path_factory) / "raw", workdir / "data" / "raw")
    (workdir / "data" / "raw" / FILES[3]).write_bytes(b"an old, different file")
    before = file_tree(workdir / "data" / "raw")
    monkeypatch.setenv("MNIST_MIRROR", str(mirror_dir()))
    monkeypatch.setattr(Path, "write_bytes", faults.disk_full_after(2, Path.write_bytes))
    error = call_stage(prepare)
    assert error.startswith("error: no space left on device (") and "free some space and re-run" in error
    assert file_tree(workdir / "data" / "raw") == before and no_leftovers(workdir) == []

    monkeypatch.undo()  # space freed
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("MNIST_MIRROR", str(mirror_dir()))
    assert call_stage(prepare) is None
    assert {p.name: sha256_file(p) for p in (workdir / "data" / "raw").iterdir()} == prepare.SHA256


def test_disk_full_while_binarize_writes_keeps_the_previous_split(workdir, monkeypatch, tmp_path_factory):
    shutil.copytree(real_data(tmp_path_factory), workdir / "data")
    before = file_tree(workdir / "data" / "binarized")
    edit_params(workdir, lambda p: p["data"].update(binarization="threshold"))
    real_save, calls = binarize.save_npy, []

    def save_until_full(path, array):
        calls.append(path)
        if len(calls) == 3:
            real_save(path, array[: len(array) // 2])
            raise OSError(28, "No space left on device", str(path))
        real_save(path, array)

    monkeypatch.setattr(binarize, "save_npy", save_until_full)
    error = call_stage(binarize)
    assert error.startswith("error: no space left on device (")
    assert file_tree(workdir / "data" / "binarized") == before, "a mix of the old and new split was left"
    assert no_leftovers(workdir) == []

    monkeypatch.setattr(binarize, "save_npy", real_save)
    assert call_stage(binarize) is None
    manifest = (workdir / "data" / "binarized" / "manifest.json").read_text()
    assert '"binarization": "threshold"' in manifest
    assert np.load(workdir / "data" / "binarized" / "val.npy").shape == (10_000, 98)


def test_without_a_local_mirror_the_tests_fetch_mnist_once_verified_or_skip(tmp_path, monkeypatch):
    """tests/drills/workspace.py: with no MNIST_MIRROR and no ../shared, the suite downloads the four
    files once into the user's cache (verified); offline it gets None, and the tests skip with one reason."""
    from tests.drills.workspace import fetched_mirror
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(prepare, "official_mirrors", lambda: [str(mirror_dir())])   # stands in for the internet
    cache = fetched_mirror()
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{name}.gz" for name in FILES)
    monkeypatch.setattr(prepare, "official_mirrors", lambda: ["http://127.0.0.1:9/"])  # offline from now on
    assert fetched_mirror() == cache                                                 # nothing fetched again
    (cache / "t10k-labels-idx1-ubyte.gz").unlink()
    assert fetched_mirror() is None
