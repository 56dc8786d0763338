"""grey: the standard split (train = first 50,000 training images, val = last 10,000, test = the
10,000 test images) with every pixel kept as its grey level 0 .. 255 (uint8), for the grey-level track."""
from __future__ import annotations

from pathlib import Path

from pipeline import stage
from pipeline.data import read_raw, save_npy, write_manifest
from pipeline.io import atomic_dir
from pipeline.layout import DATASETS, RAW_DIR

GREY_DIR = DATASETS["grey"].folder


def write_grey(raw_dir: Path = RAW_DIR, out_dir: Path = GREY_DIR) -> dict:
    """Every split and the manifest, written into a fresh folder that replaces `out_dir` at the end."""
    splits = read_raw(raw_dir)
    with atomic_dir(out_dir) as tmp:
        counts = {}
        for split, (images, labels) in splits.items():
            save_npy(tmp / f"{split}.npy", images.numpy())
            save_npy(tmp / f"{split}_labels.npy", labels.numpy().astype("uint8"))
            counts[split] = {"images": len(images), "mean_level": round(float(images.float().mean()), 4)}
        return write_manifest(tmp, {"pixel_levels": 256}, counts)


def main(argv=None) -> None:
    stage.parse_args(__doc__.splitlines()[0], argv)
    manifest = write_grey()
    print(f"grey: 256 levels -> {GREY_DIR}/, sha256 {manifest['sha256'][:12]}")


if __name__ == "__main__":
    stage.run_as_script(main)
