"""Which device a process runs on, from the `train.device` setting; the one place that decides it.

- One process (`resolve_device`): `auto` is the GPU if there is one, else the CPU; `cpu`, `cuda` and
  `cuda:N` are what they say; `cuda:auto` is the first GPU that no other process on the machine holds
  (`claim_gpu`), so `dvc queue start -j N` on N GPUs puts each queued experiment on its own GPU.
- Several processes under torchrun (`train.processes`, `rank_device`): each takes the GPU of its
  local rank where CUDA is asked for, else the CPU.
- The stages call `device_for`, which turns a setting this machine cannot honour into a params error.

Imports only torch (and the pipeline's error class), like the training loop.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from pipeline.io import PipelineError
from pipeline.parallel import SINGLE, World

try:
    import fcntl
except ImportError:  # Windows: no GPU claiming there
    fcntl = None

GPU_LOCKS_ENV = "GENBENCH_GPU_LOCKS"
CLAIM_POLL_S = 2.0


def no_cuda(setting: str) -> RuntimeError:
    return RuntimeError(f"device {setting!r} was asked for but CUDA is not available; use device: auto or cpu")


def device_for(setting: str, world: World = SINGLE) -> torch.device:
    """The torch device for `train.device` in this process of `world`; a CUDA device asked for on a
    machine without one (or one GPU for several processes) is a params error, not a crash."""
    try:
        return rank_device(setting, world) if world.distributed else resolve_device(setting)
    except (ValueError, RuntimeError) as e:
        raise PipelineError(f"train.device: {e}") from None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise no_cuda(name)
    if name == "cuda:auto":
        return torch.device("cuda", claim_gpu(torch.cuda.device_count()))
    return torch.device(name)


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
        raise no_cuda(setting)
    return torch.device("cuda", world.local_rank)


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
        raise no_cuda("cuda:auto")
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
