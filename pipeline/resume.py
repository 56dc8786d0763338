"""The resume state of the training loop: what `fit` carries from epoch to epoch, saved after every
epoch (with the optimizer, the schedule and every random generator) so that a killed run, re-run,
ends with the same numbers as an uninterrupted one. Imports only torch."""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from models.base import GenerativeModel
from models.files import atomic_path


@dataclass
class LoopState:
    """What `fit` carries from epoch to epoch, and saves after each one so that a killed run resumes."""

    epoch: int = 0                      # the last finished epoch (with a compute budget: validation round)
    history: list[dict] = field(default_factory=list)
    best_nll: float = math.inf
    best_epoch: int | None = None
    best_weights: dict | None = None    # the model's state_dict at best_epoch
    bad_epochs: int = 0                 # epochs since the best one

    def finish_epoch(self, record: dict, model: GenerativeModel) -> bool:
        """Append `record`; True if its validation NLL is the best so far (its weights are kept)."""
        self.history.append(record)
        self.epoch = record["epoch"]
        if record["val_nll"] < self.best_nll:
            self.best_nll, self.best_epoch, self.bad_epochs = record["val_nll"], record["epoch"], 0
            self.best_weights = copy.deepcopy(model.state_dict())
            return True
        self.bad_epochs += 1
        return False

    @property
    def images_seen(self) -> int:
        """Training images stepped on so far, over all epochs (the last record's count)."""
        return self.history[-1]["images"] if self.history else 0

    @property
    def seconds(self) -> float:
        """Training time spent so far, over all runs (the last record's)."""
        return self.history[-1]["seconds"] if self.history else 0.0

    def patience_spent(self, patience: int | None) -> bool:
        return patience is not None and self.bad_epochs >= patience

    def save(self, path: str | Path, model, optimizer, schedule, shuffle: torch.Generator) -> None:
        """Write the state with everything else a resume needs, atomically and durably: a kill or a
        power cut leaves the previous epoch's state or this one, never a torn file."""
        own = {f.name: getattr(self, f.name) for f in fields(self)}
        with atomic_path(path) as tmp:
            torch.save({**own, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(), "shuffle_rng": shuffle.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}, tmp)

    @classmethod
    def load(cls, path: str | Path, model, optimizer, schedule, shuffle: torch.Generator) -> LoopState | None:
        """Restore the model, optimizer, schedule and random generators from `path` and return the
        state; None (with a warning) if the file cannot be read."""
        try:
            saved = torch.load(path, map_location=model.device, weights_only=True)
        except Exception as e:  # written atomically, so only damage from outside gets here
            warnings.warn(f"cannot read the resume state {path} ({type(e).__name__}: {e}); training from scratch",
                          stacklevel=2)
            return None
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        shuffle.set_state(saved["shuffle_rng"].cpu())
        torch.set_rng_state(saved["torch_rng"].cpu())
        if saved["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        return cls(**{f.name: saved[f.name] for f in fields(cls)})


def resume_point(path: str | Path | None) -> int:
    """The last finished epoch of a resume state; 0 if there is none to read."""
    if path is None or not Path(path).exists():
        return 0
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: fit() reports it and starts over
        return 0
    return int(saved["epoch"])
