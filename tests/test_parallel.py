"""Data-parallel training (train.processes: 2 under torchrun, gloo on the CPU) against one process
with the same global batch, a killed data-parallel run resumed, and claiming GPUs for parallel
experiments (cuda:auto)."""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading

import pytest
import torch

from pipeline import devices
from pipeline.parallel import World
from pipeline.train_config import TrainConfig
from pipeline.training_loop import _local_rows
from tests.drills.workspace import edit_params, run, smoke_repo

# A model without randomness in its loss, so one process and two differ only by rounding (see
# docs/operations.md); epochs long enough (200 steps) to be killed in the middle of one. In
# fp32: under bf16 autocast (on a CPU with AMX) half batches round differently by far more.
MADE = {"family": "made", "hidden_sizes": [16], "num_masks": 2, "order_agnostic": True, "eval_masks": 2,
        "train": {"epochs": 3, "max_train": 10_000, "max_val": 500, "bf16": False}}
# The same MADE given the digit: each process's shard of the labels must reach the loss. One short
# epoch is enough to compare.
MODELS = {"made": MADE,
          "made_conditional": {**copy.deepcopy(MADE), "conditional": True,  # no shared lists: YAML would anchor them
                               "train": {**MADE["train"], "epochs": 1, "max_train": 2_000}}}
# Summing the gradient of two half batches, then averaging over two processes, rounds differently
# from one pass over the whole batch; measured: relative differences of 1e-7 in the curves.
RELATIVE_TOLERANCE = 1e-5


def train(root, env, processes: int, name: str = "made", **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    edit_params(root, lambda p: p["train"]["smoke"].update(processes=processes))
    args = [sys.executable, "-m", "pipeline.train", name]
    if popen:
        return subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    return run(args, root, env)


def outputs(root, name: str = "made") -> dict:
    out = root / "results" / name
    curves = [line.split(",") for line in (out / "curves.csv").read_text().splitlines()]
    assert curves[0] == ["epoch", "images", "flops", "train_loss", "val_nll", "lr", "seconds"]
    return {"curves": [[float(v) for v in row[:5]] for row in curves[1:]],  # the clock column differs
            "train": json.loads((out / "train.json").read_text()),
            "weights": torch.load(out / "model.pt", weights_only=True)["state_dict"]}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A repository copy with the models above, and the environment its stages get."""
    return smoke_repo(tmp_path_factory.mktemp("parallel") / "repo", MODELS, tmp_path_factory)


@pytest.fixture(scope="module")
def trained(repo):
    """name -> the outputs of training that model in one process and in two, and the log of the
    two; each model is trained when a test first asks for it."""
    root, env = repo
    done = {}

    def outputs_of(name: str) -> tuple[dict, dict, str]:
        if name not in done:
            train(root, env, 1, name)
            single = outputs(root, name)
            log = train(root, env, 2, name).stdout
            done[name] = single, outputs(root, name), log
        return done[name]
    return outputs_of


@pytest.fixture(scope="module")
def runs(repo, trained):
    """A repository copy, and the outputs of training MADE in one process and in two."""
    return (*repo, *trained("made"))


@pytest.mark.parametrize("name", MODELS)
def test_two_processes_match_one_process_with_the_same_global_batch(trained, name):
    single, ddp, log = trained(name)
    train_cfg = MODELS[name]["train"]
    assert "data parallel on 2 processes" in log
    assert ddp["train"]["device"] == "cpu x 2 processes" and single["train"]["device"] == "cpu"
    assert ddp["train"]["train_images"] == single["train"]["train_images"] == train_cfg["max_train"]
    assert ddp["train"]["val_images"] == train_cfg["max_val"]
    assert [row[0] for row in ddp["curves"]] == list(range(1, train_cfg["epochs"] + 1))
    for one, two in zip(single["curves"], ddp["curves"]):
        assert two[1:] == pytest.approx(one[1:], rel=RELATIVE_TOLERANCE)
    for key, weight in single["weights"].items():
        if torch.is_tensor(weight) and weight.is_floating_point():
            torch.testing.assert_close(ddp["weights"][key], weight, rtol=1e-4, atol=1e-5, msg=key)


def test_no_resume_state_outlives_a_data_parallel_run(runs):
    root = runs[0]
    assert not list((root / "results" / "made").glob(".resume-*")), "a resume state outlived the run"


def test_killed_data_parallel_run_resumes_to_the_same_numbers(runs):
    root, env, _, uninterrupted, _ = runs
    out = root / "results" / "made"
    killed = train(root, env, 2, start_new_session=True)
    try:
        deadline = 120
        while not list(out.glob(".resume-*.pt")) and killed.poll() is None and deadline > 0:
            threading.Event().wait(0.01)
            deadline -= 0.01
    finally:
        os.killpg(killed.pid, signal.SIGKILL)  # the launcher, torchrun and both workers
        killed.wait()
    assert list(out.glob(".resume-*.pt")), "no epoch finished before the kill"
    state_epoch = torch.load(next(out.glob(".resume-*.pt")), weights_only=True)["epoch"]
    assert state_epoch < 3, "training finished before the kill: make the epochs longer"
    log = train(root, env, 2).stdout
    assert f"resuming after epoch {state_epoch}" in log
    resumed = outputs(root)
    assert resumed["curves"] == uninterrupted["curves"]
    for name, weight in uninterrupted["weights"].items():
        assert torch.equal(resumed["weights"][name], weight) if torch.is_tensor(weight) else True, name


@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shards_cover_each_batch_once_and_their_weights_give_the_global_mean(size):
    """DDP averages the processes' gradients: sum(weight * shard mean) / size must be the batch mean."""
    values = torch.tensor([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0])
    indices = torch.arange(len(values))
    seen, averaged = [], 0.0
    for rank in range(size):
        rows, count, weight = _local_rows(indices, World(rank, size, rank))
        batch = values[rows]
        assert len(batch) >= 1  # a process without images still takes part, with weight 0
        seen += batch.tolist()[:count]
        averaged += weight * float(batch.mean()) / size
    assert sorted(seen) == sorted(values.tolist())
    assert averaged == pytest.approx(float(values.mean()))


def test_processes_are_validated():
    with pytest.raises(ValueError, match="processes"):
        TrainConfig(processes=0)
    with pytest.raises(ValueError, match="names one GPU"):
        devices.rank_device("cuda:1", World(0, 2, 0))
    assert devices.rank_device("cpu", World(1, 2, 1)) == torch.device("cpu")


HOLD = """
import sys, time
from pathlib import Path
from pipeline.devices import claim_gpu
print(claim_gpu(int(sys.argv[1]), Path(sys.argv[2])), flush=True)
time.sleep(60)
"""


def test_each_process_claims_a_gpu_no_other_holds_and_waits_when_all_are_held(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, "2", str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout.readline().strip() == "0"
        assert devices.claim_gpu(2, tmp_path) == 1
        assert devices.claim_gpu(2, tmp_path) == 1, "a second call in the same process changed GPU"
        devices.release_gpu()
        got = []
        waiting = threading.Thread(target=lambda: got.append(devices.claim_gpu(1, tmp_path, poll_s=0.05)),
                                   daemon=True)
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive() and not got, "claimed a GPU another process holds"
        holder.kill()  # its lock ends with it, as when a queued experiment is killed
        waiting.join(10)
        assert got == [0]
    finally:
        holder.kill()
        holder.wait()
        devices.release_gpu()
