"""Checkpoints: everything needed to rebuild a trained model, in one file."""
from __future__ import annotations

import os

import torch

from models.base import GenerativeModel
from models.files import CheckpointMismatch, atomic_path


def save_checkpoint(path: str | os.PathLike, model: GenerativeModel, family: str, kwargs: dict, **meta) -> None:
    """Write the family, its constructor arguments and the weights, atomically and durably."""
    state = {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"family": family, "kwargs": kwargs, "image_shape": model.image_shape,
                    "state_dict": state, "meta": meta}, tmp)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[GenerativeModel, dict]:
    """The model (in eval mode, on `device`) and the checkpoint's contents. Raises CheckpointMismatch
    when the family's constructor or weights have changed since the checkpoint was written."""
    from models import build_model
    ckpt = torch.load(path, map_location=device, weights_only=True)
    family = ckpt["family"]
    try:
        model = build_model(family, ckpt["image_shape"], **ckpt["kwargs"])
    except (KeyError, TypeError, ValueError) as e:
        reason = e.args[0] if e.args else e
        raise CheckpointMismatch(f"{path}: today's {family} cannot be built from it ({reason}): retrain the model") from None
    try:
        model.load_state_dict(ckpt["state_dict"])  # a family may upgrade an earlier format as it loads
    except RuntimeError as e:
        problem = weights_problem(model.state_dict(), ckpt["state_dict"]) or str(e).splitlines()[0]
        raise CheckpointMismatch(f"{path}: its weights do not fit today's {family} ({problem}): retrain the model") from None
    return model.to(device).eval(), ckpt


def weights_problem(expected: dict, found: dict) -> str:
    """What keeps `found` from loading where `expected` is the model's state dict, or ''."""
    missing, unexpected = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & found.keys()
                      if getattr(expected[k], "shape", None) != getattr(found[k], "shape", None))
    problems = [f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                for what, keys in (("missing", missing), ("unknown", unexpected), ("other shapes", reshaped)) if keys]
    return "; ".join(problems)
