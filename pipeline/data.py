"""How the stages read their data back (the folders and datasets are `pipeline.layout`'s), and the
rule that binarizes grey levels (`binarize_images`: the binarize stage's, which evaluate and score
apply to new images too)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.io import PipelineError, read_json, sha256_bytes, sha256_file, write_json
from pipeline.layout import BINARIZED_DIR, IMAGE_SHAPE, RAW_DIR, TRAIN_GREY_LEVELS_FILE, TRAIN_SIZE, Dataset


def check_model_fits(model, data: Dataset, where: str) -> None:
    """A model scores images with the number of levels it was built for: a binarized model given grey
    images (or the reverse) would compute a meaningless number, so say so instead."""
    if model.pixel_levels != data.pixel_levels:
        raise PipelineError(f"{where} models {model.pixel_levels} pixel levels, but data: {data.name} images have "
                            f"{data.pixel_levels}: train it on this data (`dvc repro`) or give it its own")


def read_raw(raw_dir: Path = RAW_DIR) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{'train'|'val'|'test': (uint8 images (N, 28, 28), labels (N,))} from the IDX files: the first
    50,000 training images train, the last 10,000 validate, the 10,000 test images test."""
    from torchvision.datasets.mnist import read_image_file, read_label_file  # 1.4 s to import: only the data stages need it
    try:
        images, labels = (read_image_file(str(raw_dir / "train-images-idx3-ubyte")),
                          read_label_file(str(raw_dir / "train-labels-idx1-ubyte")))
        test = (read_image_file(str(raw_dir / "t10k-images-idx3-ubyte")),
                read_label_file(str(raw_dir / "t10k-labels-idx1-ubyte")))
    except (OSError, RuntimeError, AssertionError) as e:
        raise PipelineError(f"cannot read the MNIST files in {raw_dir}/ ({e}): run `dvc repro prepare`") from None
    return {"train": (images[:TRAIN_SIZE], labels[:TRAIN_SIZE]),
            "val": (images[TRAIN_SIZE:], labels[TRAIN_SIZE:]), "test": test}


def binarize_images(images: torch.Tensor, method: str, generator: torch.Generator) -> torch.Tensor:
    """uint8 grey levels -> {0,1}: a pixel is 1 with probability level / 255 ('stochastic') or if
    level / 255 > 0.5."""
    probability = images.float() / 255
    if method == "stochastic":
        return (torch.rand(probability.shape, generator=generator) < probability).to(torch.uint8)
    return (probability > 0.5).to(torch.uint8)


def save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)


def write_manifest(out_dir: Path, settings: dict, splits: dict) -> dict:
    """manifest.json: how the data was made, each split's size, every file's SHA-256 and one digest of them all."""
    hashes = {p.name: sha256_file(p) for p in sorted(out_dir.glob("*.npy"))}
    manifest = {**settings, "splits": splits, "files": hashes,
                "sha256": sha256_bytes("".join(f"{n}:{h}\n" for n, h in hashes.items()).encode())}
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def pack(bits: torch.Tensor) -> np.ndarray:
    """(N, H, W) {0,1} -> (N, ceil(H*W/8)) uint8, eight pixels a byte."""
    return np.packbits(bits.reshape(len(bits), -1).numpy().astype(np.uint8), axis=1)


def unpack(packed: np.ndarray, shape=IMAGE_SHAPE) -> torch.Tensor:
    pixels = int(np.prod(shape))
    bits = np.unpackbits(packed, axis=1, count=pixels)
    return torch.from_numpy(bits).float().view(len(packed), *shape)


def load_split(split: str, limit: int | None = None, root: Path = BINARIZED_DIR) -> torch.Tensor:
    """A split as a float tensor (N, 1, 28, 28) of pixel levels: 0s and 1s from the bit-packed
    binarized files (N, 98), 0 .. 255 from the grey ones (N, 28, 28)."""
    path = Path(root) / f"{split}.npy"
    if not path.exists():
        raise PipelineError(f"{path} is missing: run `dvc repro` first (the stage that writes {root}/)")
    stored = np.load(path, mmap_mode="r")[:limit]
    if stored.ndim == 2:
        return unpack(np.ascontiguousarray(stored))
    return torch.from_numpy(np.array(stored)).float().view(len(stored), *IMAGE_SHAPE)


def load_labels(split: str, limit: int | None = None, root: Path = BINARIZED_DIR) -> torch.Tensor:
    return torch.from_numpy(np.load(Path(root) / f"{split}_labels.npy")[:limit].astype(np.int64))


def load_train_grey_levels(limit: int | None = None, root: Path = BINARIZED_DIR) -> torch.Tensor:
    """Grey levels 0..255 of the training images, for dynamic binarization."""
    return torch.from_numpy(np.load(Path(root) / TRAIN_GREY_LEVELS_FILE)[:limit]).view(-1, *IMAGE_SHAPE)


def data_checksum(root: Path = BINARIZED_DIR) -> str:
    path = Path(root) / "manifest.json"
    if not path.exists():
        raise PipelineError(f"{path} is missing: run `dvc repro` first (the stage that writes {root}/)")
    return read_json(path)["sha256"]

