"""train: fit one model from params.yaml's `models` section, keeping the best validation checkpoint."""
from __future__ import annotations

import csv
import hashlib
import io
import os
import subprocess
from pathlib import Path

import torch

from models.checkpoint import save_checkpoint
from models.fast import FastPaths
from pipeline import devices, parallel, resume, stage
from pipeline import params as P
from pipeline.data import data_checksum
from pipeline.fit_model import build, fit_model
from pipeline.io import PipelineError, params_hash, write_text
from pipeline.model_params import ModelSpec, model_spec
from pipeline.results import ModelResults, TrainSummary
from pipeline.training_loop import TrainingDiverged


def device_name(device: torch.device, processes: int = 1) -> str:
    name = f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"
    return f"{name} x {processes} processes" if processes > 1 else name


def logged_params(spec: ModelSpec, profile: str) -> dict:
    return {"family": spec.family, "profile": profile,
            **P.flatten(spec.kwargs, "model."), **P.flatten(vars(spec.train), "train.")}


def code_digest(family: str) -> str:
    """A digest of the code a resume state depends on: the checksums of the stage's code and the
    family's, the files that the digest stage writes and dvc.yaml makes this stage depend on.
    Resuming across an edit could load weights into another architecture or mix two versions."""
    files = [Path("digests/stage-train.sha256"), Path(f"digests/family-{family}.sha256")]
    if missing := [str(path) for path in files if not path.is_file()]:
        raise PipelineError(f"{' and '.join(missing)} missing: `python -m pipeline.digest` writes the code "
                            "checksums that key the resume state (`dvc repro` runs it first)")
    return hashlib.sha256(b"".join(path.read_bytes() for path in files)).hexdigest()


def resume_state_path(spec: ModelSpec, checksum: str) -> Path:
    """Where `fit` keeps its resume state: keyed by everything that shapes the run, so a re-run with
    other params, data or code starts over instead of resuming a different run."""
    key = P.flatten({"family": spec.family, "kwargs": spec.kwargs, "train": vars(spec.train), "data": checksum,
                     "code": code_digest(spec.family)})
    return ModelResults(spec.name).resume_state(params_hash(key))


def curves_csv(history: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()


def use_deterministic_kernels() -> None:
    """Make CUDA training repeatable bit for bit on the same GPU, driver and torch version: no
    kernel that adds in a racing order (atomics), no cuDNN autotuning, a fixed cuBLAS workspace.
    CPU kernels are deterministic already, so on CPU this changes nothing."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts: set it first
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def train(spec: ModelSpec, profile: str, quiet: bool = False) -> TrainSummary:
    """Fit one model, resuming from its resume state if a previous attempt was killed. Under
    torchrun, every process trains its shard of each batch and rank 0 alone writes and tracks."""
    # The multi-process set-up (main() has already restarted the stage under torchrun if asked): this
    # process's rank from torchrun's environment, its device, then the process group (NCCL or gloo).
    world = parallel.world_from_env()
    device = devices.device_for(spec.train.device, world)
    with parallel.process_group(world, device):
        return _train(spec, profile, device, world, quiet)


def _train(spec: ModelSpec, profile: str, device: torch.device, world: parallel.World, quiet: bool) -> TrainSummary:
    cfg = spec.train
    if cfg.deterministic:
        use_deterministic_kernels()
    model = build(spec, device)  # params are checked before anything is read or written
    checksum = data_checksum(spec.data.folder)
    files = ModelResults(spec.name)
    state_path = resume_state_path(spec, checksum)
    resumed_epoch = resume.resume_point(state_path)
    if isinstance(model, FastPaths) and world.is_main:
        print(f"train@{spec.name}: {model.describe_fast_paths()} (train.fast_paths: {str(cfg.fast_paths).lower()})")
    if resumed_epoch and world.is_main:
        print(f"train@{spec.name}: resuming after epoch {resumed_epoch} from {state_path}")
    files.folder.mkdir(parents=True, exist_ok=True)
    num_params = sum(p.numel() for p in model.parameters())

    def save(epoch: int) -> None:
        save_checkpoint(files.checkpoint, model, spec.family, spec.kwargs, epoch=epoch, name=spec.name)

    try:
        fitted = fit_model(spec, device, model=model, quiet=quiet, state_path=state_path, world=world)
    except TrainingDiverged as e:
        kept = "no epoch finished, so there is no checkpoint"
        if e.best_weights is not None and world.is_main:
            model.load_state_dict(e.best_weights)
            save(e.best_epoch)
            kept = f"{files.checkpoint} holds the best epoch so far ({e.best_epoch})"
        raise PipelineError(f"models.{spec.name}: {e}; {kept}") from None
    except RuntimeError as e:  # an op with no deterministic CUDA kernel names itself
        if not (cfg.deterministic and "deterministic" in str(e)):
            raise
        raise PipelineError(f"models.{spec.name}: train.deterministic is set, but {stage.one_line(e)}") from None
    result, history = fitted.result, fitted.result.history
    summary = TrainSummary(model=spec.name, family=spec.family, profile=profile, device=device_name(device, world.size),
                           parameters=num_params, epochs_run=len(history), best_epoch=result.best_epoch,
                           best_val_nll=result.best_val_nll, train_seconds=round(history[-1]["seconds"], 2),
                           train_flops=history[-1]["flops"], flops_per_image=result.flops_per_image,
                           train_images=fitted.train_images, val_images=fitted.val_images, binarization=spec.binarization,
                           settings=spec.kwargs, data_sha256=checksum, estimator=model.estimator,
                           params=logged_params(spec, profile), data=spec.data.name)
    if not world.is_main:
        return summary
    save(result.best_epoch)
    write_text(files.curves, curves_csv(history))
    summary.write(files.train_summary)
    for state in files.resume_states():  # this run's, and those of abandoned runs with other params
        state.unlink(missing_ok=True)
    return summary


def launch(spec: ModelSpec, quiet: bool) -> None:
    """Run this stage again under torchrun with `train.processes` processes, and wait for it."""
    processes = spec.train.processes
    command = parallel.launch_command(processes, ["pipeline.train", spec.name, *(["--quiet"] if quiet else [])])
    print(f"train@{spec.name}: data parallel on {processes} processes: {' '.join(command[1:])}", flush=True)
    code = subprocess.run(command, preexec_fn=parallel.die_with_parent).returncode
    if code != 0:
        raise PipelineError(f"models.{spec.name}: training on {processes} processes failed (exit status {code}); "
                            "the first process's error is above")


def main(argv=None) -> None:
    args = stage.parse_args(__doc__.splitlines()[0], argv, with_model=True)
    params = P.load()
    spec = model_spec(params, args.model)
    if parallel.needs_launch(spec.train.processes):
        return launch(spec, args.quiet)
    summary = train(spec, P.profile_of(params), quiet=args.quiet)
    if not parallel.world_from_env().is_main:
        return
    print(f"train@{spec.name}: best val NLL {summary.best_val_nll:.2f} nats at epoch {summary.best_epoch}, "
          f"{summary.train_flops:.2e} training FLOPs, {summary.train_seconds:.0f}s on {summary.device}")


if __name__ == "__main__":
    stage.run_as_script(main)
