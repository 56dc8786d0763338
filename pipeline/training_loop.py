"""The training loop every family shares (the `train` stage, pipeline/train.py, runs it for one model):
`fit` reads top to bottom; `Rounds` says when it validates and stops, `BatchStream` which batches it
steps on, `Trainer` trains one round (`train_step` is one optimizer step), `Progress` shows it. Its
settings are a `TrainConfig` (pipeline/train_config.py), its optimizer and schedule come from
pipeline/optimizer.py, and what it saves after every validation to resume from is a `LoopState`
(pipeline/resume.py).
Imports only torch and tqdm, so it also runs where DVC and MLflow are not installed (e.g. a bare GPU
machine)."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from models.base import (
    ClassConditional,
    FitsWithoutGradients,
    GenerativeModel,
    HasValidationNLL,
    mean_nll_over_batches,
)
from pipeline.budget import batch_sizes, round_ends, steps_to
from pipeline.flops import training_flops_per_image
from pipeline.optimizer import make_optimizer, make_schedule
from pipeline.parallel import SINGLE, World, data_parallel
from pipeline.progress import bars_enabled
from pipeline.resume import LoopState
from pipeline.train_config import TrainConfig


class TrainingDiverged(RuntimeError):
    """A non-finite training loss or validation NLL; the message names the epoch and step.
    `best_epoch` and `best_weights` are those of the best epoch before it (None if none finished)."""

    def __init__(self, message: str, best_epoch: int | None = None, best_weights: dict | None = None):
        super().__init__(message)
        self.best_epoch, self.best_weights = best_epoch, best_weights


def mean_nll(model: GenerativeModel, data: torch.Tensor, batch_size: int, labels: torch.Tensor | None = None) -> float:
    """Mean per-image NLL in nats, in fp32 and eval mode (given `labels`, the class-conditional
    -log p(x | y)). Models whose `nll` is costly (importance sampling with many samples) may offer
    a cheaper `validation_nll` for model selection."""
    model.eval()
    estimate = model.validation_nll if isinstance(model, HasValidationNLL) else model.nll
    return mean_nll_over_batches(estimate, data, batch_size, labels)


def compiled(loss_fn: Callable, cfg: TrainConfig, device: torch.device, distributed: bool = False) -> Callable:
    """`loss_fn` through torch.compile in `cfg.compile_mode` where `cfg` compiles on `device`, else
    itself. `distributed`: a plain compile, no CUDA graphs around DistributedDataParallel's hooks."""
    if not cfg.compiles(device):
        return loss_fn
    return torch.compile(loss_fn, mode="default" if distributed else cfg.compile_mode)


class TrainingData:
    """The training images on the training device; with dynamic binarization, redrawn each epoch.
    `labels` (the digits, for class-conditional models) stay fixed."""

    def __init__(self, images: torch.Tensor, grey_levels: torch.Tensor | None, device, dynamic: bool,
                 labels: torch.Tensor | None = None):
        if dynamic and grey_levels is None:
            raise ValueError("dynamic binarization needs the training images' grey levels")
        self.dynamic = dynamic
        self.labels = None if labels is None else labels.to(device, torch.long)
        self.images = images.to(device, torch.float32)
        self.probabilities = grey_levels.to(device, torch.float32) / 255 if dynamic else None

    def __len__(self):
        return len(self.images)

    def for_epoch(self, generator: torch.Generator) -> torch.Tensor:
        if self.dynamic:
            noise = torch.rand(self.probabilities.shape, generator=generator).to(self.probabilities.device)
            self.images = (noise < self.probabilities).float()
        return self.images


def train_step(model: GenerativeModel, loss_fn: Callable, optimizer: torch.optim.Optimizer, batch: torch.Tensor,
               bf16: bool = False, grad_clip: float | None = None, labels: torch.Tensor | None = None,
               weight: float = 1.0) -> torch.Tensor:
    """One optimizer step on `batch` (and its `labels` for a class-conditional model; bf16 autocast
    around the loss when asked), the gradient taken of `weight` x the loss; returns the loss,
    detached: reading its value would make a GPU wait, so the caller decides when."""
    with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = loss_fn(batch) if labels is None else loss_fn(batch, labels)
    optimizer.zero_grad(set_to_none=True)
    (loss * weight if weight != 1.0 else loss).backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


@dataclass(frozen=True)
class FitResult:
    history: list[dict]   # one record per epoch (or budget point): epoch, images, flops, train_loss, val_nll, lr, seconds
    best_epoch: int
    best_val_nll: float
    flops_per_image: int  # the training FLOPs of one image (pipeline/flops.py)


class BatchStream:
    """The training images in the order the loop steps on them: epoch after epoch, each a new
    permutation (and, with dynamic binarization, a new draw) from the `shuffle` generator. A run
    resumed after `images_seen` images redraws its epoch from the generator's state at that epoch's
    start, so it walks exactly the batches an uninterrupted run walks."""

    def __init__(self, train: TrainingData, shuffle: torch.Generator, device: torch.device, images_seen: int = 0):
        self.train, self.shuffle, self.device = train, shuffle, device
        self.seen, self.epoch_start = images_seen, shuffle.get_state()
        if self.position:
            self._draw_epoch()

    @property
    def position(self) -> int:
        return self.seen % len(self.train)

    def _draw_epoch(self) -> None:
        self.epoch_start = self.shuffle.get_state()
        self.images = self.train.for_epoch(self.shuffle)
        self.order = torch.randperm(len(self.images), generator=self.shuffle).to(self.device)

    def next_rows(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(this epoch's images, the rows of the next `count`), never across the end of an epoch."""
        if self.position == 0:
            self._draw_epoch()
        rows = self.order[self.position:self.position + count]
        self.seen += count
        return self.images, rows

    def next_epoch(self) -> torch.Tensor:
        """A whole epoch's images, for a model that fits an epoch at once."""
        self._draw_epoch()
        self.seen += len(self.images)
        return self.images

    def resume_rng(self) -> torch.Generator:
        """The shuffle generator as a resumed run must find it: at the start of the current epoch."""
        state = self.shuffle.get_state() if self.position == 0 else self.epoch_start
        return torch.Generator().set_state(state)


@dataclass(frozen=True)
class Rounds:
    """When the loop validates and stops (pipeline/budget.py): after `ends[k]` training images,
    `steps` optimizer steps in all."""
    ends: list[int]
    steps: int
    flops_per_image: int  # the training FLOPs of one image (pipeline/flops.py)
    whole_epochs: bool    # the model fits an epoch at once (`FitsWithoutGradients`)

    @classmethod
    def plan(cls, model: GenerativeModel, epoch_images: int, cfg: TrainConfig) -> Rounds:
        per_image = training_flops_per_image(model)
        whole_epochs = isinstance(model, FitsWithoutGradients) and model.fits_without_gradients
        ends = round_ends(epoch_images, cfg.epochs, cfg.budget_images(per_image), cfg.budget_points, whole_epochs)
        return cls(ends, steps_to(ends, epoch_images, cfg.batch_size), per_image, whole_epochs)

    def left(self, state: LoopState, patience: int | None):
        """(epoch, end) of the rounds still to run: none if the saved run had stopped early."""
        return enumerate([] if state.patience_spent(patience) else self.ends[state.epoch:], start=state.epoch + 1)


def fit(model: GenerativeModel, train: TrainingData, val: torch.Tensor, cfg: TrainConfig, *,
        state_path: str | Path | None = None, on_epoch: Callable[[dict, bool], None] | None = None, quiet: bool = False,
        val_labels: torch.Tensor | None = None, world: World = SINGLE) -> FitResult:
    """Train `model` (already on its device); it ends holding the weights of its best epoch.

    Validates after every epoch or, with `cfg.budget_flops`, after log-spaced fractions of the
    budget (pipeline/budget.py), and stops at the budget, after `epochs`, or after `patience`
    validations without a better NLL, whichever comes first. Selects on the validation NLL (for a
    class-conditional model, -log p(x | y) given `val_labels` and trained on `train.labels`). A model
    that `FitsWithoutGradients` runs its own `fit_epoch` in place of each epoch's steps. Given
    `state_path`, saves a `LoopState` after every validation and resumes from it if it exists:
    killed at any point and re-run, it ends with the same numbers as an uninterrupted run.
    `on_epoch(record, improved)` is called after every validation.

    In a `world` of several processes (data parallel), every process runs this with the same
    arguments: each takes its shard of every batch and of the validation set, and only rank 0
    writes the state (pass `on_epoch` there only).
    """
    labels, val_labels = _labels(model, train, val_labels, world)
    val = world.shard(val).to(model.device, torch.float32)
    rounds = Rounds.plan(model, len(train), cfg)
    optimizer = make_optimizer(model, cfg)
    schedule = make_schedule(optimizer, cfg, rounds.steps)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    trainer = Trainer(model, optimizer, schedule, cfg, world, labels)
    state = _resumed(state_path, model, optimizer, schedule, shuffle)
    stream = BatchStream(train, shuffle, model.device, state.images_seen)
    progress = Progress(rounds, cfg.batch_size, len(train), stream.seen, quiet or not world.is_main)
    start = time.perf_counter() - state.seconds
    for epoch, end in rounds.left(state, cfg.patience):
        first = stream.seen
        loss_sum = trainer.train_round(stream, end, rounds.whole_epochs, epoch, state, progress)
        val_nll = _validation_nll(model, val, cfg.eval_batch_size, world, val_labels, epoch, state)
        record = {"epoch": epoch, "images": stream.seen, "flops": stream.seen * rounds.flops_per_image,
                  "train_loss": loss_sum / (stream.seen - first), "val_nll": val_nll,
                  "lr": schedule.get_last_lr()[0], "seconds": time.perf_counter() - start}
        improved = state.finish_epoch(record, model)
        if state_path is not None and world.is_main:
            state.save(state_path, model, optimizer, schedule, stream.resume_rng())
        progress.validated(record)
        if on_epoch is not None:
            on_epoch(record, improved)
        if state.patience_spent(cfg.patience):
            progress.stopped_early(cfg.patience)
            break
    progress.close()
    if state.best_weights is not None:
        model.load_state_dict(state.best_weights)
    return FitResult(state.history, state.best_epoch, state.best_nll, rounds.flops_per_image)


def _labels(model: GenerativeModel, train: TrainingData, val_labels: torch.Tensor | None,
            world: World) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(training labels, this process's validation labels) of a class-conditional model; else (None, None)."""
    labels = train.labels if isinstance(model, ClassConditional) else None
    if labels is None:
        return None, None
    if val_labels is None:
        raise ValueError("a class-conditional model needs training and validation labels")
    return labels, world.shard(val_labels).to(model.device)


def _resumed(state_path: str | Path | None, model, optimizer, schedule, shuffle: torch.Generator) -> LoopState:
    """The state saved at `state_path`, restored into the model, optimizer, schedule and generators;
    a fresh state if there is none (or it cannot be read)."""
    if state_path is not None and Path(state_path).exists():
        return LoopState.load(state_path, model, optimizer, schedule, shuffle) or LoopState()
    return LoopState()


class Trainer:
    """Trains `model` one round at a time: optimizer steps on the stream's batches, or whole-epoch
    fits for a model that fits without gradients."""

    def __init__(self, model: GenerativeModel, optimizer: torch.optim.Optimizer, schedule, cfg: TrainConfig,
                 world: World, labels: torch.Tensor | None):
        device = model.device
        self.model, self.optimizer, self.schedule, self.world, self.labels = model, optimizer, schedule, world, labels
        self.batch_size, self.grad_clip, self.bf16 = cfg.batch_size, cfg.grad_clip, cfg.autocast_bf16(device)
        self.loss_fn = compiled(data_parallel(model, device) if world.distributed else model.loss, cfg, device,
                                world.distributed)
        self.check_every = 1 if device.type == "cpu" else 50  # reading a loss on a GPU waits for it: not every step

    def train_round(self, stream: BatchStream, end: int, whole_epochs: bool, epoch: int, state: LoopState,
                    progress: Progress) -> float:
        """Train from the stream's position to `end` images; the sum of the per-image losses."""
        self.model.train()
        if whole_epochs:
            return self._fit_epochs(stream, end, epoch, state, progress)
        return self._steps(stream, end, epoch, state, progress)

    def _fit_epochs(self, stream: BatchStream, end: int, epoch: int, state: LoopState, progress: Progress) -> float:
        total = 0.0
        while stream.seen < end:
            images = stream.next_epoch()
            total += _checked_sum([torch.tensor(self.model.fit_epoch(images))], epoch, 1, state) * len(images)
            progress.advance(math.ceil(len(images) / self.batch_size))
        return total

    def _steps(self, stream: BatchStream, end: int, epoch: int, state: LoopState, progress: Progress) -> float:
        first = stream.seen
        total, pending, sizes = 0.0, [], batch_sizes(stream.seen, end, len(stream.train), self.batch_size)
        for step, size in enumerate(sizes):
            images, rows = stream.next_rows(size)
            rows, count, weight = _local_rows(rows, self.world)
            loss = train_step(self.model, self.loss_fn, self.optimizer, images[rows], self.bf16, self.grad_clip,
                              None if self.labels is None else self.labels[rows], weight)
            if self.world.distributed and first == 0 and step == 0:
                self.world.broadcast_state(self.model)  # data-dependent initialisations (ActNorm) saw different shards
            self.schedule.step()
            pending.append(loss * count)
            if len(pending) == self.check_every or step == len(sizes) - 1:
                total += _checked_sum(pending, epoch, step + 1, state)
                pending = []
            progress.advance()
        (total,) = self.world.sum(total, device=self.model.device)
        return total


class Progress:
    """The step bar (where someone watches) and, unless quiet, one line per validation."""

    def __init__(self, rounds: Rounds, batch_size: int, epoch_images: int, images_seen: int, quiet: bool):
        self.quiet, self.rounds = quiet, len(rounds.ends)
        done = rounds.steps - steps_to(rounds.ends, epoch_images, batch_size, images_seen)
        self.bar = tqdm(total=rounds.steps, initial=done, disable=quiet or not bars_enabled(), unit="step",
                        dynamic_ncols=True, leave=False)

    def advance(self, steps: int = 1) -> None:
        self.bar.update(steps)

    def validated(self, record: dict) -> None:
        self.bar.set_postfix(epoch=record["epoch"], val_nll=f"{record['val_nll']:.2f}")
        if not self.quiet:
            tqdm.write(f"epoch {record['epoch']}/{self.rounds}  {record['flops']:.2e} FLOPs  "
                       f"train {record['train_loss']:.2f}  val {record['val_nll']:.2f} nats  ({record['seconds']:.0f}s)")

    def stopped_early(self, patience: int) -> None:
        if not self.quiet:
            tqdm.write(f"early stop: no better validation NLL for {patience} epochs")

    def close(self) -> None:
        self.bar.close()


def _local_rows(indices: torch.Tensor, world: World) -> tuple[torch.Tensor, int, float]:
    """(this process's rows of a global batch, how many, the weight of its loss). Each process's
    loss is a mean over its shard, and DistributedDataParallel averages the gradients over the
    processes: weighting each by its share of the batch (x the number of processes) makes the
    result the gradient of the mean over the whole batch also when the shards differ in size. A
    process left without rows (a last batch smaller than the world) runs on one with weight 0."""
    if not world.distributed:
        return indices, len(indices), 1.0
    mine = world.shard(indices)
    weight = len(mine) * world.size / len(indices)
    return (mine if len(mine) else indices[:1]), len(mine), weight


def _validation_nll(model: GenerativeModel, val: torch.Tensor, batch_size: int, world: World,
                    labels: torch.Tensor | None, epoch: int, state: LoopState) -> float:
    """The mean validation NLL over the whole split (each process's shard, added up over the world);
    raises TrainingDiverged if it is not finite."""
    if world.distributed:
        local = mean_nll(model, val, batch_size, labels) if len(val) else 0.0
        total, count = world.sum(local * len(val), len(val), device=model.device)
        val_nll = total / count
    else:
        val_nll = mean_nll(model, val, batch_size, labels)
    if not math.isfinite(val_nll):
        raise _diverged(f"validation NLL became {val_nll} after epoch {epoch}", state)
    return val_nll


def _checked_sum(losses: list[torch.Tensor], epoch: int, last_step: int, state: LoopState) -> float:
    """The sum of recent per-step losses; raises TrainingDiverged naming the first non-finite step."""
    values = torch.stack(losses).float().cpu()
    bad = (~torch.isfinite(values)).nonzero()
    if len(bad):
        step = last_step - len(values) + 1 + int(bad[0])
        raise _diverged(f"training loss became {float(values[bad[0]])} at epoch {epoch}, step {step}", state)
    return float(values.sum())


def _diverged(what: str, state: LoopState) -> TrainingDiverged:
    return TrainingDiverged(f"{what}; the last good checkpoint is kept (try a lower lr or grad_clip)",
                            state.best_epoch, state.best_weights)
