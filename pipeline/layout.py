"""Where the stages keep their data: the folders, the split sizes, and the two datasets made from the
same verified MNIST files and the same 50,000 / 10,000 / 10,000 split: `binarized` ({0, 1} pixels,
bit-packed, the `binarize` stage) and `grey` (the 256 original levels, the `grey` stage). A model's
params name the one it is trained and evaluated on (`data:`).

Standard library only: a stage that only names a folder or a dataset (prepare, the report, track)
loads no torch for it; reading the data back is `pipeline.data`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RAW_DIR = Path("data/raw")
BINARIZED_DIR = Path("data/binarized")
IMAGE_SHAPE = (1, 28, 28)
TRAIN_SIZE = 50_000
TRAIN_GREY_LEVELS_FILE = "train_intensity.npy"  # in data/binarized/ (a DVC output), for dynamic binarization


@dataclass(frozen=True)
class Dataset:
    name: str            # what a model's `data:` says, and the folder under data/
    pixel_levels: int    # the values a pixel takes: 0 .. pixel_levels - 1
    stage: str           # the DVC stage that writes it

    @property
    def folder(self) -> Path:
        return Path("data") / self.name


DATASETS = {"binarized": Dataset("binarized", 2, "binarize"), "grey": Dataset("grey", 256, "grey")}
