"""What the benchmarks share: a timer that waits for the GPU, random binary images (and digits for
class-conditional models) of MNIST's size, and one training step as the training loop runs it."""
from __future__ import annotations

import time

import torch

from models.base import ClassConditional, uniform_noise
from pipeline.optimizer import make_optimizer
from pipeline.training_loop import compiled, train_step

IMAGE_SHAPE = (1, 28, 28)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def seconds_per_step(step, n: int, device: torch.device) -> float:
    """The mean time of `n` calls of `step`, timed together."""
    return timed(lambda: [step() for _ in range(n)], device) / n


def random_images(n: int, device, generator: torch.Generator) -> torch.Tensor:
    # about as many ink pixels as binarized MNIST (13%)
    return (uniform_noise((n, *IMAGE_SHAPE), generator, device) < 0.13).float()


def random_labels(model, n: int, device, generator: torch.Generator) -> torch.Tensor | None:
    """Digits for a class-conditional model (None for others), which trains and validates on
    -log p(x | y) given the labels."""
    return torch.randint(10, (n,), generator=generator).to(device) if isinstance(model, ClassConditional) else None


def training_step(model, cfg, device, generator):
    """One optimizer step on a fixed random batch, as the training loop runs it: the profile's batch
    size, optimizer, bf16 autocast where it is native, labels for a class-conditional model, and
    torch.compile where the profile asks for it (the first calls take the compilation)."""
    optimizer = make_optimizer(model, cfg)
    batch = random_images(cfg.batch_size, device, generator)
    labels = random_labels(model, cfg.batch_size, device, generator)
    use_bf16 = cfg.autocast_bf16(device)
    loss = compiled(model.loss, cfg, device)
    model.train()
    return lambda: train_step(model, loss, optimizer, batch, use_bf16, cfg.grad_clip, labels)
