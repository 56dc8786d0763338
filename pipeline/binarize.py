"""binarize: the standard split (train = first 50,000 training images, val = last 10,000,
test = the 10,000 test images), binarized once with a fixed seed and stored bit-packed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.datasets.mnist import read_image_file, read_label_file

from pipeline import params as P
from pipeline import stage
from pipeline.data import BINARIZED_DIR, RAW_DIR, pack
from pipeline.io import PipelineError, atomic_dir, sha256_bytes, sha256_file, write_json

TRAIN_SIZE = 50_000


def read_raw(raw_dir: Path = RAW_DIR) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{'train'|'val'|'test': (uint8 images (N, 28, 28), labels (N,))} from the IDX files."""
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
    """uint8 grey levels -> {0,1}: Bernoulli(intensity) draws ('stochastic') or intensity > 0.5."""
    intensity = images.float() / 255
    if method == "stochastic":
        return (torch.rand(intensity.shape, generator=generator) < intensity).to(torch.uint8)
    return (intensity > 0.5).to(torch.uint8)


def save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)


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
    save_npy(out_dir / "train_intensity.npy", splits["train"][0].numpy())
    hashes = {p.name: sha256_file(p) for p in sorted(out_dir.glob("*.npy"))}
    manifest = {"binarization": config.binarization, "seed": config.seed, "splits": files, "files": hashes,
                "sha256": sha256_bytes("".join(f"{n}:{h}\n" for n, h in hashes.items()).encode())}
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def main(argv=None) -> None:
    stage.parse_args(__doc__.splitlines()[0], argv)
    config = P.data_config(P.load())
    manifest = binarize(config)
    print(f"binarize: {config.binarization} (seed {config.seed}) -> {BINARIZED_DIR}/, sha256 {manifest['sha256'][:12]}")


if __name__ == "__main__":
    stage.run(main)
