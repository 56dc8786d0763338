"""Checkpoints: everything needed to rebuild a trained model, in one file."""
from __future__ import annotations

import os

import torch

from models.base import GenerativeModel
from models.files import atomic_path


def save_checkpoint(path: str | os.PathLike, model: GenerativeModel, family: str, kwargs: dict, **meta) -> None:
    """Write the family, its constructor arguments and the weights, atomically and durably."""
    state = {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"family": family, "kwargs": kwargs, "image_shape": model.image_shape,
                    "state_dict": state, "meta": meta}, tmp)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[GenerativeModel, dict]:
    """The model (in eval mode, on `device`) and the checkpoint's contents."""
    from models import build_model
    ckpt = torch.load(path, map_location=device, weights_only=True)
    model = build_model(ckpt["family"], ckpt["image_shape"], **ckpt["kwargs"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt
