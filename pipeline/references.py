"""Published test NLLs on binarized MNIST and on its 256 grey levels, each with the setup it was
measured in, and the choice of the one that matches a run of this pipeline.

A published number is *matched* when everything that changes what the number means is the same:
the dataset, the family and its architecture settings (sizes, masks, objective, the estimator's k,
dequantization and preprocessing), how the training images were binarized (one fixed draw, or
resampled from the grey levels every epoch) and how many there were. Anything else is at most the
*nearest* number of the same dataset, shown apart and labelled with what differs. Grey-level papers
report bits per dimension; they are stored here in nats per image like every other number.
"""
from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass, field
from typing import Literal

from models import family_class
from pipeline.layout import IMAGE_SHAPE

Binarization = Literal["fixed", "resampled", "none"]  # none: grey levels
STANDARD_TRAIN_IMAGES = 50_000  # the 50,000 / 10,000 / 10,000 split that the fixed-binarization papers use
PIXELS = math.prod(IMAGE_SHAPE)  # every published number is on MNIST's images


def nats_per_image(bpd: float) -> float:
    return bpd * PIXELS * math.log(2)


@dataclass(frozen=True)
class Published:
    nll: float
    source: str
    family: str
    settings: dict                    # model settings that must be equal (others do not change the number's meaning)
    binarization: Binarization = "fixed"
    train_images: int = STANDARD_TRAIN_IMAGES
    data: str = "binarized"           # or "grey"


@dataclass(frozen=True)
class Setup:
    """What a run was: its family, every model setting (defaults included) and its training data."""
    family: str
    settings: dict
    binarization: Binarization
    train_images: int
    data: str = "binarized"

    @classmethod
    def of(cls, family: str, kwargs: dict, binarization: Binarization, train_images: int,
           data: str = "binarized") -> Setup:
        return cls(family, {**model_defaults(family), **kwargs}, binarization, train_images, data)


@dataclass(frozen=True)
class Comparison:
    matched: Published | None
    nearest: Published | None = None
    differences: list[str] = field(default_factory=list)  # how the nearest differs from the run


def model_defaults(family: str) -> dict:
    parameters = inspect.signature(family_class(family).__init__).parameters.values()
    return {p.name: p.default for p in parameters
            if p.default is not inspect.Parameter.empty and p.name != "image_shape"}


LAROCHELLE_2011 = "Larochelle & Murray 2011, Table 2"
MADE_2015 = "Germain et al. 2015, Table 6"
BURDA_MAIN = "Burda et al. 2016, Table 1 (resampled binarization, 60,000 training images)"
BURDA_FIXED = "Burda et al. 2016, Appendix D, Table 3 (fixed binarization, 50,000 training images)"
BURDA_NETWORK = {"architecture": "mlp", "hidden_sizes": [200, 200], "latent_dim": 50, "activation": "tanh",
                 "eval_samples": 5000}


def burda(objective: str, k: int, nll: float, fixed: bool) -> Published:
    return Published(nll, f"{BURDA_FIXED if fixed else BURDA_MAIN}: {objective.upper()}, k={k}, one stochastic layer",
                     "vae", {**BURDA_NETWORK, "objective": objective, "train_samples": k},
                     "fixed" if fixed else "resampled", STANDARD_TRAIN_IMAGES if fixed else 60_000)


def made(hidden: list[int], masks: int, nll: float, source: str = MADE_2015) -> Published:
    """Germain et al.'s MNIST models have direct input-to-output connections (their experiment grid
    sets `direct_input_connect` to "Output")."""
    return Published(nll, f"{source}: {len(hidden)} x {hidden[0]} hidden, {masks} mask{'s' * (masks > 1)}", "made",
                     {"hidden_sizes": hidden, "num_masks": masks, "eval_masks": masks, "direct_connections": True})


MAF_2017 = ("Papamakarios et al. 2017, MAF, bits/pixel on MNIST (their Table 2's logit-space log-likelihoods "
            "converted by the authors' code, gpapamak/maf; checked on the test set)")
FFJORD_2019 = "Grathwohl et al. 2019, FFJORD, Table 2 (MNIST, all 60,000 training images; architecture not given)"


def grey(bpd: float, source: str, family: str, settings: dict, train_images: int = STANDARD_TRAIN_IMAGES) -> Published:
    """A number on the 256 grey levels, published in bits per dimension: uniform dequantization unless
    `settings` says otherwise."""
    return Published(nats_per_image(bpd), f"{source}: {bpd} bits/dim", family,
                     {"dequantization": "uniform", **settings}, "none", train_images, "grey")


def maf(layers: int, bpd: float) -> Published:
    """MAF (k): k autoregressive layers, each a MADE of 2 x 1024 ReLU hidden units, on (x + u) / 256 with
    the logit of lambda + (1 - 2 lambda) v, lambda = 1e-6; 50,000 / 10,000 / 10,000 split."""
    return grey(bpd, f"{MAF_2017}: MAF ({layers})", "maf",
                {"num_layers": layers, "hidden_sizes": [1024, 1024], "logit_alpha": 1e-6, "preprocessing": "logit"})


PUBLISHED = [
    Published(97.45, f"{LAROCHELLE_2011}: FVSBN", "fvsbn", {}),
    Published(88.86, f"{LAROCHELLE_2011}: NADE, 500 hidden units, fixed order", "nade", {"hidden": 500}),
    made([500], 1, 94.5, "Germain et al. 2015, Figure 2 (read off the plot, about 94.5)"),
    made([8000], 1, 88.40),
    made([8000], 32, 86.64),
    made([8000, 8000], 1, 89.59),
    made([8000, 8000], 32, 86.41),
    *(burda(objective, k, nll, fixed=False) for (objective, k), nll in {
        ("elbo", 1): 86.76, ("elbo", 5): 86.47, ("elbo", 50): 86.35,
        ("iwae", 1): 86.76, ("iwae", 5): 85.54, ("iwae", 50): 84.78}.items()),
    *(burda(objective, k, nll, fixed=True) for (objective, k), nll in {
        ("elbo", 1): 88.71, ("elbo", 5): 88.83, ("elbo", 50): 89.05,
        ("iwae", 1): 88.71, ("iwae", 5): 87.63, ("iwae", 50): 87.10}.items()),
    Published(81.30, "van den Oord et al. 2016 (Pixel RNN), Table 4: PixelCNN", "pixelcnn", {"residual_blocks": 15}),
    Published(79.20, "van den Oord et al. 2016 (Pixel RNN), Table 4: Diagonal BiLSTM, 7 layers", "rnn",
              {"cell": "diagonal_bilstm"}),
    # grey levels (bits per dimension, uniform dequantization)
    maf(5, 1.89),
    maf(10, 1.91),
    grey(1.06, f"{FFJORD_2019}: Real NVP, multi-scale", "realnvp", {}, 60_000),
    grey(1.05, f"{FFJORD_2019}: Glow, multi-scale", "glow", {}, 60_000),
]


def differences(entry: Published, setup: Setup) -> list[str]:
    """How `entry`'s setup differs from the run's, one phrase each (empty: a match)."""
    found = [f"{name} {value} (this run: {setup.settings.get(name, 'n/a')})"
             for name, value in entry.settings.items() if setup.settings.get(name) != value]
    if entry.binarization != setup.binarization:
        found.append(f"{entry.binarization} binarization (this run: {setup.binarization})")
    if entry.train_images != setup.train_images:
        found.append(f"{entry.train_images:,} training images (this run: {setup.train_images:,})")
    return found


def compare(setup: Setup) -> Comparison:
    """The matched published number, else the nearest one of the same family with what differs."""
    candidates = sorted(((differences(e, setup), e) for e in PUBLISHED
                         if e.family == setup.family and e.data == setup.data),
                        key=lambda pair: len(pair[0]))
    if not candidates:
        return Comparison(None)
    found, entry = candidates[0]
    return Comparison(entry) if not found else Comparison(None, entry, found)


# ---- the verified runs of this pipeline (RESULTS.md), shown beside the quick numbers -----------------------

RESULTS_MD = "RESULTS.md"


@dataclass(frozen=True)
class Verified:
    """One row of RESULTS.md: a full-profile run of a model of params.yaml, checked against its paper."""
    model: str
    configuration: str
    nll: float
    stderr: float


def verified_runs(text: str) -> dict[str, list[Verified]]:
    """The rows of RESULTS.md's table (its first column the model's name in params.yaml), by model."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    if not lines:
        return {}
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    runs: dict[str, list[Verified]] = {}
    for line in lines[1:]:
        cells = dict(zip(header, (cell.strip() for cell in line.strip("|").split("|"))))
        number = re.search(r"([\d.]+) ± ([\d.]+)", cells.get("test NLL", ""))
        if number:
            run = Verified(cells["model"], cells["configuration"], float(number[1]), float(number[2]))
            runs.setdefault(run.model, []).append(run)
    return runs
