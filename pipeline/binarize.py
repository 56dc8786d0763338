"""binarize: the standard split (train = first 50,000 training images, val = last 10,000,
test = the 10,000 test images), binarized once with a fixed seed and stored bit-packed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline import params as P
from pipeline import stage
from pipeline.data import binarize_images, pack, read_raw, save_npy, write_manifest
from pipeline.io import atomic_dir
from pipeline.layout import BINARIZED_DIR, RAW_DIR, TRAIN_GREY_LEVELS_FILE


def binarize(config: P.DataConfig, raw_dir: Path = RAW_DIR, out_dir: Path = BINARIZED_DIR) -> dict:
    """Write every split and the manifest into a fresh folder that replaces `out_dir` at the end:
    a failure part-way (a full disk) leaves the previous data whole, never a mix of two runs."""
    splits = read_raw(raw_dir)
    with atomic_dir(out_dir) as tmp:
        return _write_splits(splits, config, tmp)


def _write_splits(splits: dict, config: P.DataConfig, out_dir: Path) -> dict:
    generator = torch.Generator().manual_seed(config.seed)
    files = {}
    for split, (images, labels) in splits.items():  # fixed order: the draws are reproducible
        bits = binarize_images(images, config.binarization, generator)
        save_npy(out_dir / f"{split}.npy", pack(bits))
        save_npy(out_dir / f"{split}_labels.npy", labels.numpy().astype(np.uint8))
        files[split] = {"images": len(bits), "mean_pixel": round(float(bits.float().mean()), 6)}
    save_npy(out_dir / TRAIN_GREY_LEVELS_FILE, splits["train"][0].numpy())
    return write_manifest(out_dir, {"binarization": config.binarization, "seed": config.seed}, files)


def main(argv=None) -> None:
    stage.parse_args(__doc__.splitlines()[0], argv)
    config = P.data_config(P.load())
    manifest = binarize(config)
    print(f"binarize: {config.binarization} (seed {config.seed}) -> {BINARIZED_DIR}/, sha256 {manifest['sha256'][:12]}")


if __name__ == "__main__":
    stage.run_as_script(main)
