"""Training on more than one process or GPU, with nothing beyond torch.

- Data parallel: `train.processes: N` makes the train stage start itself again under torchrun with N
  processes (`launch_command`). Every process holds the whole model and takes a disjoint shard of
  each global batch (`World.shard`); DistributedDataParallel averages the gradients, and the sums
  the loop reports (training loss, validation NLL) are added up over all processes (`World.sum`).
- One experiment per GPU: `device: cuda:auto` gives each process the first GPU that no other
  process on the machine holds (`claim_gpu`), so `dvc queue start -j N` on N GPUs puts each queued
  experiment on its own GPU.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

try:
    import fcntl
except ImportError:  # Windows: no GPU claiming there
    fcntl = None

GPU_LOCKS_ENV = "GENBENCH_GPU_LOCKS"
CLAIM_POLL_S = 2.0


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


def rank_device(setting: str, world: World) -> torch.device:
    """Each process's device: the GPU of its local rank where CUDA is asked for (auto with CUDA,
    cuda, cuda:auto), else the CPU. A fixed cuda:N would put every process on one GPU."""
    wants_cuda = setting in ("cuda", "cuda:auto") or (setting == "auto" and torch.cuda.is_available())
    if setting.startswith("cuda:") and setting != "cuda:auto":
        raise ValueError(f"device {setting!r} names one GPU, but each of the {world.size} processes needs its own: "
                         "use auto or cuda")
    if not wants_cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device {setting!r} was asked for but CUDA is not available; use device: auto or cpu")
    return torch.device("cuda", world.local_rank)


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


_claimed: list = []  # the open lock file of the GPU this process holds, kept open for its whole life


def gpu_lock_dir() -> Path:
    return Path(os.environ.get(GPU_LOCKS_ENV) or Path(tempfile.gettempdir()) / "genbench-gpus")


def claim_gpu(count: int, lock_dir: Path | None = None, poll_s: float = CLAIM_POLL_S) -> int:
    """The index of a GPU no other process on this machine holds; waits while all `count` are held.
    The claim is an flock on lock_dir/gpu<i>.lock, which ends when the process does, killed or not."""
    if _claimed:
        return _claimed[0][0]
    if fcntl is None:
        raise RuntimeError("device cuda:auto needs file locks (fcntl), which this system lacks; use cuda:N")
    if count < 1:
        raise RuntimeError("device 'cuda:auto' was asked for but CUDA is not available; use device: auto or cpu")
    lock_dir = lock_dir or gpu_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    waiting = False
    while True:
        for index in range(count):
            handle = open(lock_dir / f"gpu{index}.lock", "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            _claimed.append((index, handle))
            return index
        if not waiting:
            print(f"all {count} GPUs are held by other processes ({lock_dir}); waiting for one", file=sys.stderr)
            waiting = True
        time.sleep(poll_s)


def release_gpu() -> None:
    """Give back the GPU this process claimed (tests; a process's claim otherwise ends with it)."""
    while _claimed:
        _claimed.pop()[1].close()
