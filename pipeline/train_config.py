"""The training settings (`train:` in params.yaml, merged per model and profile by
pipeline/model_params.py), checked when they are made, and what they mean on a device (bf16 autocast
where bf16 is native, torch.compile). Imports only torch."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from models.settings import require_positive


def bf16_native(device: torch.device) -> bool:
    """Whether bf16 matrix products run natively: on CUDA, and on CPUs with AMX tiles, where bf16
    autocast trains the convolutional and attention models faster than fp32 (docs/performance.md)."""
    if device.type == "cuda":
        return True
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # a private helper: absent, assume no AMX
    return device.type == "cpu" and amx is not None and amx()


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = 0.0
    adam_eps: float = 1e-8                # Adam's epsilon (Burda et al. 2016 use 1e-4)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = 0
    grad_clip: float | None = None        # max gradient norm; None: no clipping
    patience: int | None = 10             # epochs without a better validation NLL before stopping
    max_train: int | None = None          # use only the first N training images (None: all)
    max_val: int | None = None            # use only the first N validation images (None: all)
    dynamic_binarization: bool = False    # resample the training set from its grey levels every epoch
    device: str = "auto"                  # auto | cpu | cuda | cuda:N | cuda:auto (a GPU no other process holds)
    processes: int = 1                    # data-parallel processes on this machine (torchrun); batch_size stays global
    seed: int = 0
    bf16: Literal[False, True, "always"] = False  # bf16 autocast for training steps where bf16 matmuls are native
                                          # (CUDA, AMX CPUs); always: on any CPU too (slow, to measure it); evaluation is fp32
    compile: Literal[False, True, "cuda"] = False  # torch.compile the training loss (cuda: only on a GPU)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"  # reduce-overhead: CUDA graphs on a GPU
    deterministic: bool = False           # CUDA: only deterministic kernels (slower; an op without one is an error)
    fast_paths: bool = True               # the models' fast paths (models/fast/); false: every family's plain definition
    eval_batch_size: int = 1000
    budget_flops: float | None = None     # stop once training has cost this many FLOPs (pipeline/flops.py); None: `epochs` alone
    budget_points: int = 7                # with a budget, validate after 1/2^(points-1), ..., 1/2, 1 of it

    def budget_images(self, flops_per_image: int) -> int | None:
        """How many training images the budget buys a model of this cost; None without a budget."""
        return None if self.budget_flops is None else max(1, math.floor(self.budget_flops / flops_per_image))

    def __post_init__(self):
        require_positive(**{name: getattr(self, name) for name in
                            ("epochs", "batch_size", "patience", "max_train", "max_val", "eval_batch_size",
                             "processes", "budget_points")})
        if self.budget_flops is not None and not 0 < self.budget_flops < math.inf:
            raise ValueError(f"budget_flops must be > 0 and finite, or null; got {self.budget_flops}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be > 0 and finite, got {self.lr}")
        if not 0 < self.adam_eps < 1:
            raise ValueError(f"adam_eps must be in (0, 1), got {self.adam_eps}")
        if not (0 <= self.weight_decay < math.inf and self.warmup_steps >= 0):
            raise ValueError("weight_decay (finite) and warmup_steps must be >= 0")
        if self.grad_clip is not None and not 0 < self.grad_clip < math.inf:
            raise ValueError(f"grad_clip must be > 0 and finite, or null; got {self.grad_clip}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or cuda:auto, got {self.device!r}")

    def autocast_bf16(self, device: torch.device) -> bool:
        """Whether training steps on `device` run under bf16 autocast."""
        return self.bf16 == "always" or (self.bf16 is True and bf16_native(device))

    def compiles(self, device: torch.device) -> bool:
        """Whether the training loss on `device` goes through torch.compile."""
        return self.compile is True or (self.compile == "cuda" and device.type == "cuda")
