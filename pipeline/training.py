"""One training loop for every family. Imports only torch, so it also runs where DVC and MLflow
are not installed (e.g. a bare GPU machine)."""
from __future__ import annotations

import copy
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch
from tqdm.auto import tqdm

from models.base import GenerativeModel


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = 0.0
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = 0
    grad_clip: float | None = None        # max gradient norm; None: no clipping
    patience: int | None = 10             # epochs without a better validation NLL before stopping
    max_train: int | None = None          # use only the first N training images (None: all)
    max_val: int | None = None            # use only the first N validation images (None: all)
    dynamic_binarization: bool = False    # resample the training set from intensities every epoch
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    seed: int = 0
    bf16: bool = True                     # bf16 autocast for training steps on CUDA (evaluation stays fp32)
    compile: bool = False                 # torch.compile the training loss
    deterministic: bool = False           # CUDA: only deterministic kernels (slower; an op without one is an error)
    eval_batch_size: int = 1000

    def __post_init__(self):
        for name in ("epochs", "batch_size", "patience", "max_train", "max_val", "eval_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be > 0 and finite, got {self.lr}")
        if not (0 <= self.weight_decay < math.inf and self.warmup_steps >= 0):
            raise ValueError("weight_decay (finite) and warmup_steps must be >= 0")
        if self.grad_clip is not None and not 0 < self.grad_clip < math.inf:
            raise ValueError(f"grad_clip must be > 0 and finite, or null; got {self.grad_clip}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


class TrainingDiverged(RuntimeError):
    """A non-finite training loss or validation NLL; the message names the epoch and step."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but CUDA is not available; use device: auto or cpu")
    return torch.device(name)


@torch.no_grad()
def mean_nll(model: GenerativeModel, data: torch.Tensor, batch_size: int) -> float:
    """Mean per-image NLL in nats, in fp32 and eval mode. Models whose `nll` is costly (importance
    sampling with many samples) may offer a cheaper `validation_nll` for model selection."""
    model.eval()
    estimate = getattr(model, "validation_nll", model.nll)
    total = sum(float(estimate(data[i:i + batch_size]).sum()) for i in range(0, len(data), batch_size))
    return total / len(data)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_schedule(optimizer, cfg: TrainConfig, total_steps: int):
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class TrainingData:
    """The training images on the training device; with dynamic binarization, redrawn each epoch."""

    def __init__(self, binary: torch.Tensor, intensity: torch.Tensor | None, device, dynamic: bool):
        if dynamic and intensity is None:
            raise ValueError("dynamic binarization needs the training intensities")
        self.dynamic = dynamic
        self.images = binary.to(device, torch.float32)
        self.probabilities = intensity.to(device, torch.float32) / 255 if dynamic else None

    def __len__(self):
        return len(self.images)

    def for_epoch(self, generator: torch.Generator) -> torch.Tensor:
        if self.dynamic:
            noise = torch.rand(self.probabilities.shape, generator=generator).to(self.probabilities.device)
            self.images = (noise < self.probabilities).float()
        return self.images


def fit(model: GenerativeModel, train: TrainingData, val: torch.Tensor, cfg: TrainConfig, *,
        best_checkpoint: Callable[[GenerativeModel, int], None] | None = None,
        state_path: str | Path | None = None,
        state_meta: dict | None = None,
        on_epoch: Callable[[dict], None] | None = None,
        quiet: bool = False) -> list[dict]:
    """Train `model` (already on its device) and return one record per epoch.

    Keeps the weights with the best validation NLL (and calls `best_checkpoint` when they improve),
    stops after `patience` epochs without improvement, and, given `state_path`, saves everything
    needed to resume after every epoch and resumes from it if it exists: killed at any point and
    re-run, it ends with the same numbers as an uninterrupted run. `state_meta` (plain data, e.g.
    a tracking run id) is saved with the state; `resume_point` reads it back.
    """
    device = model.device
    val = val.to(device, torch.float32)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    optimizer = make_optimizer(model, cfg)
    schedule = make_schedule(optimizer, cfg, cfg.epochs * steps_per_epoch)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    loss_fn = torch.compile(model.loss) if cfg.compile else model.loss
    use_bf16 = cfg.bf16 and device.type == "cuda"
    check_every = 1 if device.type == "cpu" else 50  # reading a loss on a GPU waits for it: not every step

    state = {"epoch": 0, "history": [], "best_nll": math.inf, "best_state": None, "bad_epochs": 0}
    if state_path is not None and Path(state_path).exists():
        state = _load_state(state_path, model, optimizer, schedule, shuffle) or state
    state["meta"] = dict(state_meta or {})
    if state["best_state"] is not None and best_checkpoint is not None:
        _rewrite_best_checkpoint(model, state, best_checkpoint)
    last_epoch = state["epoch"] if _patience_spent(state, cfg) else cfg.epochs  # resumed after an early stop

    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=state["epoch"] * steps_per_epoch,
               disable=quiet, unit="step", dynamic_ncols=True, leave=False)
    start = time.perf_counter() - (state["history"][-1]["seconds"] if state["history"] else 0.0)
    for epoch in range(state["epoch"] + 1, last_epoch + 1):
        model.train()
        images = train.for_epoch(shuffle)
        order = torch.randperm(len(images), generator=shuffle).to(device)
        total, pending = 0.0, []
        for step in range(steps_per_epoch):
            batch = images[order[step * cfg.batch_size:(step + 1) * cfg.batch_size]]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = loss_fn(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            schedule.step()
            pending.append(loss.detach() * len(batch))
            if len(pending) == check_every or step == steps_per_epoch - 1:
                total += _checked_sum(pending, epoch, step + 1)
                pending = []
            bar.update()
        val_nll = mean_nll(model, val, cfg.eval_batch_size)
        if not math.isfinite(val_nll):
            raise TrainingDiverged(f"validation NLL became {val_nll} after epoch {epoch} (step {steps_per_epoch}); "
                                   "the last good checkpoint is kept (try a lower lr or grad_clip)")
        record = {"epoch": epoch, "train_loss": total / len(images), "val_nll": val_nll,
                  "lr": schedule.get_last_lr()[0], "seconds": time.perf_counter() - start}
        state["history"].append(record)
        if val_nll < state["best_nll"]:
            state.update(best_nll=val_nll, best_epoch=epoch, bad_epochs=0,
                         best_state=copy.deepcopy(model.state_dict()))
            if best_checkpoint is not None:
                best_checkpoint(model, epoch)
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        if state_path is not None:
            _save_state(state_path, state, model, optimizer, schedule, shuffle)
        bar.set_postfix(epoch=epoch, val_nll=f"{val_nll:.2f}")
        if on_epoch is not None:
            on_epoch(record)
        if not quiet:
            tqdm.write(f"epoch {epoch}/{cfg.epochs}  train {record['train_loss']:.2f}  val {val_nll:.2f} nats  "
                       f"({record['seconds']:.0f}s)")
        if _patience_spent(state, cfg):
            if not quiet:
                tqdm.write(f"early stop: no better validation NLL for {cfg.patience} epochs")
            break
    bar.close()
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    return state["history"]


def _checked_sum(losses: list[torch.Tensor], epoch: int, last_step: int) -> float:
    """The sum of recent per-step losses; raises TrainingDiverged naming the first non-finite step."""
    values = torch.stack(losses).float().cpu()
    bad = (~torch.isfinite(values)).nonzero()
    if len(bad):
        step = last_step - len(values) + 1 + int(bad[0])
        raise TrainingDiverged(f"training loss became {float(values[bad[0]])} at epoch {epoch}, step {step}; "
                               "the last good checkpoint is kept (try a lower lr or grad_clip)")
    return float(values.sum())


def _rewrite_best_checkpoint(model, state: dict, best_checkpoint) -> None:
    """On resume, write the best checkpoint again: DVC deletes a stage's outputs before re-running it."""
    current = copy.deepcopy(model.state_dict())
    model.load_state_dict(state["best_state"])
    best_checkpoint(model, state["best_epoch"])
    model.load_state_dict(current)


def _patience_spent(state: dict, cfg: TrainConfig) -> bool:
    return cfg.patience is not None and state["bad_epochs"] >= cfg.patience


def _save_state(path, state, model, optimizer, schedule, shuffle) -> None:
    """Write the resume state atomically and durably: a kill or a power cut leaves the previous
    epoch's state or this one, never a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save({**state, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "shuffle_rng": shuffle.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def resume_point(path: str | Path | None) -> tuple[int, dict]:
    """(the last finished epoch, the `state_meta`) of a resume state; (0, {}) if there is none to read."""
    if path is None or not Path(path).exists():
        return 0, {}
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: fit() reports it and starts over
        return 0, {}
    return int(saved["epoch"]), dict(saved.get("meta") or {})


def _load_state(path, model, optimizer, schedule, shuffle) -> dict | None:
    try:
        saved = torch.load(path, map_location=model.device, weights_only=True)
    except Exception as e:  # written atomically, so only damage from outside gets here
        warnings.warn(f"cannot read the resume state {path} ({type(e).__name__}: {e}); training from scratch")
        return None
    model.load_state_dict(saved.pop("model"))
    optimizer.load_state_dict(saved.pop("optimizer"))
    schedule.load_state_dict(saved.pop("schedule"))
    shuffle.set_state(saved.pop("shuffle_rng").cpu())
    torch.set_rng_state(saved.pop("torch_rng").cpu())
    cuda_rng = saved.pop("cuda_rng")
    if cuda_rng is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_rng)
    return saved
