"""Checkpoints written before issue 35's pixel distributions still load and score as they did; one
that today's code of its family cannot load fails with one line that says to retrain."""
import json
from pathlib import Path

import pytest
import torch

from models import build_model
from models.checkpoint import load_checkpoint, save_checkpoint
from models.files import CheckpointMismatch
from pipeline.stage import run

# written at 0fed4af by tests/data/write_old_checkpoints.py, as text
OLD = json.loads((Path(__file__).parent / "data" / "checkpoints-0fed4af.json").read_text())


def as_tensor(value):
    if isinstance(value, dict) and value.keys() == {"dtype", "shape", "values"}:
        return torch.tensor(value["values"], dtype=getattr(torch, value["dtype"])).reshape(value["shape"])
    return value


@pytest.mark.parametrize("name", sorted(OLD))
def test_a_checkpoint_of_the_earlier_format_loads_and_gives_the_nll_it_gave_then(name, tmp_path):
    old = OLD[name]["checkpoint"]
    ckpt = {**old, "state_dict": {key: as_tensor(value) for key, value in old["state_dict"].items()}}
    path = tmp_path / f"{name}.pt"
    torch.save(ckpt, path)
    model, _ = load_checkpoint(path)
    torch.manual_seed(0)  # the VAE's importance samples
    with torch.no_grad():
        nll = model.nll(as_tensor(OLD[name]["images"]))
    torch.testing.assert_close(nll, as_tensor(OLD[name]["nll"]), rtol=1e-6, atol=1e-6)


def mismatched(tmp_path, change) -> Path:
    path = tmp_path / "model.pt"
    save_checkpoint(path, build_model("made", (1, 2, 2), hidden_sizes=[6]), "made", {"hidden_sizes": [6]})
    ckpt = torch.load(path, weights_only=True)
    change(ckpt)
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("change, problem", [
    (lambda c: c["state_dict"].pop("mlp.layers.0.weight"), "missing: mlp.layers.0.weight"),
    (lambda c: c["state_dict"].update(extra=torch.zeros(1)), "unknown: extra"),
    (lambda c: c["kwargs"].update(hidden_sizes=[7]), "other shapes: mlp.layers.0.bias, mlp.layers.0.weight"),
    (lambda c: c["kwargs"].update(width=3), "unexpected keyword argument 'width'"),
    (lambda c: c.update(family="nade2"), "unknown model family 'nade2'"),
])
def test_a_checkpoint_the_code_no_longer_fits_fails_in_one_line_that_says_to_retrain(tmp_path, change, problem):
    with pytest.raises(CheckpointMismatch) as caught:
        load_checkpoint(mismatched(tmp_path, change))
    message = str(caught.value)
    assert problem in message and message.endswith("retrain the model") and "\n" not in message


def test_a_stage_reports_a_mismatched_checkpoint_as_one_line(tmp_path):
    def stage():
        load_checkpoint(mismatched(tmp_path, lambda c: c["state_dict"].pop("mlp.layers.0.weight")))
    with pytest.raises(SystemExit) as exited:
        run(stage)
    assert str(exited.value).startswith(f"error: {tmp_path / 'model.pt'}: its weights do not fit today's made")
