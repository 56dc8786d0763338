"""Model families, looked up by the `family` name used in params.yaml.

To add a family, write `models/<family>.py` and add one line to FAMILIES (docs/architecture.md).

This file imports no module of the package: importing `models.files` or `models.settings` (what the
pipeline's data stages use) runs it, and should run nothing else. The interface is in
`models/base.py`, checkpoints in `models/checkpoint.py`.
"""
from __future__ import annotations

import importlib
import inspect

# family name -> "module:Class". Modules are imported on demand so one stage loads one family.
FAMILIES = {
    "bernoulli": "models.bernoulli:IndependentBernoulli",
    "categorical": "models.categorical:IndependentCategorical",
    "fvsbn": "models.fvsbn:FVSBN",
    "markov": "models.markov:MarkovChain",
    "mixture": "models.mixture:BernoulliMixture",
    "nade": "models.nade:NADE",
    "made": "models.made:MADE",
    "vae": "models.vae:VAE",
    "realnvp": "models.realnvp:RealNVP",
    "glow": "models.glow:Glow",
    "maf": "models.maf:MAF",
    "pixelcnn": "models.pixelcnn:PixelCNN",
    "gated_pixelcnn": "models.gated_pixelcnn:GatedPixelCNN",
    "rnn": "models.rnn:PixelRNN",
    "transformer": "models.transformer:PixelTransformer",
}


def family_class(family: str) -> type:
    """The family's class, a `models.base.GenerativeModel`."""
    if family not in FAMILIES:
        raise KeyError(f"unknown model family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    module, cls = FAMILIES[family].split(":")
    return getattr(importlib.import_module(module), cls)


def build_model(family: str, image_shape, *, fast: bool = True, **kwargs):
    """A model of `family` built from its constructor arguments; `fast` (params.yaml's
    train.fast_paths) turns the fast paths of a family that has some on or off (models/fast/)."""
    cls = family_class(family)
    if "fast" in inspect.signature(cls).parameters:
        kwargs["fast"] = fast
    return cls(image_shape=tuple(image_shape), **kwargs)


__all__ = ["FAMILIES", "build_model", "family_class"]
