"""Training on more than one process or GPU, with nothing beyond torch.

- Data parallel: `train.processes: N` makes the train stage start itself again under torchrun with N
  processes (`launch_command`). Every process holds the whole model and takes a disjoint shard of
  each global batch (`World.shard`); DistributedDataParallel averages the gradients, and the sums
  the loop reports (training loss, validation NLL) are added up over all processes (`World.sum`).
- Which device each process takes (the GPU of its local rank, or one no other process holds with
  `device: cuda:auto`) is decided in pipeline/devices.py.

The set-up, in the order the train stage runs it (pipeline/train.py: `main`, then `train`):
`needs_launch` -> `launch_command` (torchrun starts the stage again with N processes) ->
`world_from_env` (this process's rank) -> devices.device_for -> `process_group` (NCCL or gloo).
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the processes torchrun started (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The one process that writes outputs, the resume state and the tracking run."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, items: torch.Tensor) -> torch.Tensor:
        """This process's contiguous part of `items` (sizes differ by at most one; may be empty)."""
        return items.tensor_split(self.size)[self.rank] if self.distributed else items

    def sum(self, *values: float, device: torch.device | None = None) -> list[float]:
        """Each value added up over all processes, in float64 (NCCL needs the tensor on the GPU)."""
        if not self.distributed:
            return [float(v) for v in values]
        total = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return total.tolist()

    def broadcast_state(self, module: torch.nn.Module) -> None:
        """Make every process hold rank 0's parameters and buffers."""
        if self.distributed:
            with torch.no_grad():
                for tensor in [*module.parameters(), *module.buffers()]:
                    dist.broadcast(tensor, src=0)


SINGLE = World()


def world_from_env() -> World:
    """The world torchrun describes in the environment; a single process otherwise."""
    if "WORLD_SIZE" not in os.environ:
        return SINGLE
    return World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))


def launch_command(processes: int, module_args: list[str]) -> list[str]:
    """torchrun with `processes` workers on this machine, each running `python -m <module_args>`."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", *module_args]


def die_with_parent() -> None:
    """Have Linux kill this process when its parent dies. torchrun starts its workers in sessions of
    their own, so killing a stage's process group (as a killed `dvc repro` does) would leave them
    training on, writing outputs that the re-run is also writing."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def needs_launch(processes: int) -> bool:
    """True when `processes` > 1 are asked for and this process was not started by torchrun."""
    return processes > 1 and "WORLD_SIZE" not in os.environ


@contextmanager
def process_group(world: World, device: torch.device):
    """The process group for the life of the block: NCCL between GPUs, gloo between CPU processes."""
    if not world.distributed:
        yield
        return
    die_with_parent()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size)
    try:
        yield
    finally:
        dist.destroy_process_group()


class LossOf(torch.nn.Module):
    """`model.loss` as a forward pass: DistributedDataParallel synchronises what runs through forward.
    Called as the training loop calls `model.loss`: with the batch's labels for a class-conditional model."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.loss(x) if labels is None else self.model.loss(x, labels)


def data_parallel(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(LossOf(model), device_ids=[device.index] if device.type == "cuda" else None)
