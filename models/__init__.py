"""Model families, looked up by the `family` name used in params.yaml."""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch

from models.base import AutoregressiveModel, GenerativeModel, Reference

# family name -> "module:Class". Modules are imported on demand so one stage loads one family.
FAMILIES = {
    "bernoulli": "models.bernoulli:IndependentBernoulli",
    "fvsbn": "models.fvsbn:FVSBN",
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


def family_class(family: str) -> type[GenerativeModel]:
    if family not in FAMILIES:
        raise KeyError(f"unknown model family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    module, cls = FAMILIES[family].split(":")
    return getattr(importlib.import_module(module), cls)


def build_model(family: str, image_shape, **kwargs) -> GenerativeModel:
    return family_class(family)(image_shape=tuple(image_shape), **kwargs)


def save_checkpoint(path: str | os.PathLike, model: GenerativeModel, family: str, kwargs: dict, **meta) -> None:
    """Write everything needed to rebuild `model`, atomically (temp file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in model.state_dict().items()}
    torch.save({"family": family, "kwargs": kwargs, "image_shape": model.image_shape,
                "state_dict": state, "meta": meta}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[GenerativeModel, dict]:
    ckpt = torch.load(path, map_location=device, weights_only=True)
    model = build_model(ckpt["family"], ckpt["image_shape"], **ckpt["kwargs"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


__all__ = ["FAMILIES", "AutoregressiveModel", "GenerativeModel", "Reference", "build_model",
           "family_class", "load_checkpoint", "save_checkpoint"]
