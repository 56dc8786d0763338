"""score: how likely every trained model finds your images.

    python -m pipeline.score digit.png photo.jpg batch.npy

For each image, and each model with a checkpoint in results/, prints the NLL in nats, in bits per
dimension, and its percentile among the test set's per-image NLLs (results/<model>/test_nll.npy):
the share of test digits the model finds less likely, so 50 is a typical digit and 100 beyond
every one of them; a score above every test digit's is flagged with its ratio to the worst one's.

Images are brought to what the models were trained on:
- PNG / JPEG of any size, grey or colour: converted to grey; inverted when the border is light
  (MNIST digits are light on a dark background); the ink cropped and scaled to fit 20x20 pixels,
  then placed with its centre of mass at the centre of a 28x28 frame, as MNIST's digits were;
- .npy: one image (H, W) or a batch (N, H, W) or (N, 1, H, W), grey levels 0..255 or 0..1, taken
  as they are (already framed like MNIST), only resized if they are not 28x28;
then, for a model of binarized images, binarized by the pipeline's rule (params.yaml
`data.binarization`): threshold at 0.5, or Bernoulli draws from the grey levels with the data seed,
so a rerun gives the same bits; a model of grey levels (`data: grey`) scores the 256 levels themselves.

A file that cannot be read is reported on one line; the others are still scored, and the exit
status is 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from models.base import bits_per_dim
from models.checkpoint import load_checkpoint
from pipeline import params as P
from pipeline import stage
from pipeline.data import binarize_images
from pipeline.io import PipelineError
from pipeline.layout import IMAGE_SHAPE
from pipeline.progress import set_quiet
from pipeline.results import ModelResults

SIDE = IMAGE_SHAPE[-1]
DIGIT_BOX = 20  # MNIST fits each digit's ink into 20x20 pixels inside the 28x28 frame
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


class UnreadableImage(Exception):
    """A file that is not an image or batch this command reads; the message says why."""


def resize(grey: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image
    image = Image.fromarray(np.clip(grey * 255, 0, 255).astype(np.uint8))
    return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float64) / 255


def light_background(grey: np.ndarray) -> bool:
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return float(border.mean()) > 0.5


def frame_like_mnist(ink: np.ndarray) -> np.ndarray:
    """The ink's bounding box scaled to fit DIGIT_BOX, centred by mass in a SIDE x SIDE frame."""
    rows, cols = np.nonzero(ink > 0.1)
    if len(rows) == 0:  # a blank image stays blank
        return np.zeros((SIDE, SIDE))
    ink = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = DIGIT_BOX / max(ink.shape)
    ink = resize(ink, max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    frame = np.zeros((SIDE, SIDE))
    total = ink.sum() or 1.0
    centre = [(ink.sum(axis=1 - axis) * np.arange(ink.shape[axis])).sum() / total for axis in (0, 1)]
    top, left = (int(np.clip(round(SIDE / 2 - c), 0, SIDE - n)) for c, n in zip(centre, ink.shape))
    frame[top:top + ink.shape[0], left:left + ink.shape[1]] = ink
    return frame


def read_picture(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L"), dtype=np.float64) / 255
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UnreadableImage(f"not a readable PNG or JPEG ({stage.one_line(e)})") from None
    if light_background(grey):
        grey = 1 - grey
    return frame_like_mnist(grey)[None]


def read_batch(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UnreadableImage(f"not a readable .npy array ({stage.one_line(e)})") from None
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.size == 0 or not np.issubdtype(array.dtype, np.number):
        raise UnreadableImage(f"expected numbers of shape (H, W), (N, H, W) or (N, 1, H, W), got {array.dtype} "
                              f"{array.shape}")
    grey = array.astype(np.float64)
    if not np.isfinite(grey).all() or grey.min() < 0 or grey.max() > 255:
        raise UnreadableImage("grey levels must be finite numbers in 0..1 or 0..255")
    grey = grey / 255 if grey.max() > 1 else grey
    if grey.shape[1:] != (SIDE, SIDE):
        grey = np.stack([resize(image, SIDE, SIDE) for image in grey])
    return grey


def read_images(path: Path) -> np.ndarray:
    """Grey levels in [0, 1], shape (N, 28, 28)."""
    if not path.is_file():
        raise UnreadableImage("no such file")
    if path.suffix.lower() == ".npy":
        return read_batch(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return read_picture(path)
    raise UnreadableImage("expected a .png, .jpg, .jpeg or .npy file")


def model_input(grey: np.ndarray, pixel_levels: int, config: P.DataConfig) -> torch.Tensor:
    """(N, 1, 28, 28) pixel levels as a model of `pixel_levels` levels takes them: {0, 1} by the
    rule the binarize stage applied to the data, or the grey levels rounded to the model's levels."""
    levels = torch.from_numpy(np.round(grey * 255).astype(np.uint8))
    if pixel_levels > 2:
        return torch.round(levels.float() * ((pixel_levels - 1) / 255)).view(-1, *IMAGE_SHAPE)
    bits = binarize_images(levels, config.binarization, torch.Generator().manual_seed(config.seed))
    return bits.float().view(-1, *IMAGE_SHAPE)


def percentile(nll: float, test_nll: np.ndarray) -> float:
    """The share (in %) of test images with a lower NLL than `nll`."""
    return 100.0 * float(np.mean(test_nll < nll))


def beyond_the_test_set(nll: float, test_nll: np.ndarray) -> str:
    """A short note for an NLL above every test image's: its ratio to the worst one's ('' within the
    test set's range, where the percentile says enough)."""
    worst = float(np.max(test_nll))
    if nll <= worst or worst <= 0:
        return ""
    ratio = nll / worst
    if ratio < 10:
        return f"beyond every test image: {ratio:.2f}x the worst"
    return f"far beyond every test image: {ratio:,.0f}x the worst"


def trained_models(params: dict) -> list[str]:
    names = [n for n in P.model_names(params)
             if ModelResults(n).checkpoint.is_file() and ModelResults(n).per_image_nll.is_file()]
    if not names:
        raise PipelineError("no model is trained and evaluated yet: run `dvc repro` first")
    return names


def score(images: dict[str, np.ndarray], names: list[str], seed: int, config: P.DataConfig) -> list[dict]:
    """One row per (image, model): nll, bpd, percentile. `images`: grey levels in [0, 1], (N, 28, 28)."""
    rows = []
    for name in names:
        files = ModelResults(name)
        model, _ = load_checkpoint(files.checkpoint)
        test_nll = np.load(files.per_image_nll)
        torch.manual_seed(seed)  # importance-sampled and dequantized NLLs draw noise
        for label, grey in images.items():
            with torch.no_grad():
                nll = model.nll(model_input(grey, model.pixel_levels, config)).double()
            for i, value in enumerate(nll.tolist()):
                rows.append({"image": label if len(nll) == 1 else f"{label}[{i}]", "model": name,
                             "nll": value, "bpd": bits_per_dim(value, model.num_pixels),
                             "percentile": percentile(value, test_nll), "estimator": model.estimator,
                             "note": beyond_the_test_set(value, test_nll)})
    return rows


def print_table(rows: list[dict]) -> None:
    from tabulate import tabulate
    shown = [{"image": r["image"], "model": r["model"], "NLL (nats)": f"{r['nll']:.2f}",
              "bits/dim": f"{r['bpd']:.4f}", "percentile": f"{r['percentile']:.1f}", "estimator": r["estimator"],
              "note": r["note"]}
             for r in sorted(rows, key=lambda r: (r["image"], r["nll"]))]
    print(tabulate(shown, headers="keys", tablefmt="simple"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path, help="PNG or JPEG images, or .npy batches")
    parser.add_argument("--models", nargs="+", help="score with these models only (default: every trained one)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    set_quiet(args.quiet)
    params = P.load()
    names = args.models or trained_models(params)
    for name in names:
        files = ModelResults(name)
        files.require("evaluate", files.per_image_nll)
    config = P.data_config(params)
    images, failed = {}, False
    for path in args.images:
        try:
            images[str(path)] = read_images(path)
        except UnreadableImage as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            failed = True
    if images:
        print_table(score(images, names, P.evaluate_config(params).seed, config))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    stage.run(main)
