"""Where the stages keep their data, and how they read it back."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.io import PipelineError, read_json

RAW_DIR = Path("data/raw")
BINARIZED_DIR = Path("data/binarized")
SPLITS = ("train", "val", "test")
IMAGE_SHAPE = (1, 28, 28)


def pack(bits: torch.Tensor) -> np.ndarray:
    """(N, H, W) {0,1} -> (N, ceil(H*W/8)) uint8, eight pixels a byte."""
    return np.packbits(bits.reshape(len(bits), -1).numpy().astype(np.uint8), axis=1)


def unpack(packed: np.ndarray, shape=IMAGE_SHAPE) -> torch.Tensor:
    pixels = int(np.prod(shape))
    bits = np.unpackbits(packed, axis=1, count=pixels)
    return torch.from_numpy(bits).float().view(len(packed), *shape)


def load_split(split: str, limit: int | None = None, root: Path = BINARIZED_DIR) -> torch.Tensor:
    """A binarized split as a float tensor (N, 1, 28, 28) of 0s and 1s."""
    path = Path(root) / f"{split}.npy"
    if not path.exists():
        raise PipelineError(f"{path} is missing: run `dvc repro binarize` first")
    packed = np.load(path, mmap_mode="r")[:limit]
    return unpack(np.ascontiguousarray(packed))


def load_labels(split: str, limit: int | None = None, root: Path = BINARIZED_DIR) -> torch.Tensor:
    return torch.from_numpy(np.load(Path(root) / f"{split}_labels.npy")[:limit].astype(np.int64))


def load_train_intensity(limit: int | None = None, root: Path = BINARIZED_DIR) -> torch.Tensor:
    """Grey levels 0..255 of the training images, for dynamic binarization."""
    return torch.from_numpy(np.load(Path(root) / "train_intensity.npy")[:limit]).view(-1, *IMAGE_SHAPE)


def data_checksum(root: Path = BINARIZED_DIR) -> str:
    path = Path(root) / "manifest.json"
    if not path.exists():
        raise PipelineError(f"{path} is missing: run `dvc repro binarize` first")
    return read_json(path)["sha256"]

