"""The fast paths and their switch (models/fast/__init__.py): `fast=False` turns every one of them off,
the model then computes its plain definition, and the fast paths equal it (values, gradients, samples).
The family's own tests compare each fast path in detail, through the same switch."""
import inspect

import pytest
import torch

from models import FAMILIES, build_model, family_class
from models.base import ClassConditional
from models.fast import FastPaths, batch_chunks, blocked_masked_linear
from models.gated_pixelcnn import GatedPixelCNN
from models.made import MADE
from models.nade import NADE
from models.pixelcnn import PixelCNN
from models.transformer import PixelTransformer
from pipeline import train as train_stage
from tests.drills.workspace import call_stage, code_digests, synthetic_data, write_params
from tests.helpers import input_jacobian, randomize, total_probability

SHAPE = (1, 4, 4)

# Small instances of every family with fast paths, each of its fast paths running (with the thresholds
# lowered by `every_fast_path`): name -> (class, constructor arguments).
TOYS = {
    "made_blocked": (MADE, {"hidden_sizes": [12, 10], "direct_connections": True}),
    "made_blocked_grey_conditional": (MADE, {"hidden_sizes": [12], "pixel_levels": 4, "components": 2,
                                             "conditional": True, "direct_connections": True}),
    "made_ensemble": (MADE, {"hidden_sizes": [12], "num_masks": 3, "order_agnostic": True, "eval_masks": 3,
                             "direct_connections": True}),
    "made_ensemble_conditional": (MADE, {"hidden_sizes": [12], "num_masks": 3, "order_agnostic": True,
                                         "eval_masks": 3, "conditional": True}),
    "nade": (NADE, {"hidden": 8}),
    "pixelcnn": (PixelCNN, {"channels": 8, "residual_blocks": 2, "first_kernel": 5, "head_channels": 8}),
    "pixelcnn_grey_conditional": (PixelCNN, {"channels": 6, "residual_blocks": 1, "head_channels": 4,
                                             "pixel_levels": 4, "components": 2, "conditional": True}),
    "gated_pixelcnn": (GatedPixelCNN, {"channels": 6, "layers": 3, "first_kernel": 5, "head_channels": 8}),
    "gated_pixelcnn_grey": (GatedPixelCNN, {"channels": 4, "layers": 2, "head_channels": 4, "pixel_levels": 4,
                                            "output": "softmax"}),
    "transformer_padded_heads": (PixelTransformer, {"dim": 60, "layers": 2, "heads": 2, "mlp_ratio": 2,
                                                    "input_window": 2}),
}


@pytest.fixture
def every_fast_path(monkeypatch):
    """Thresholds down, so that the fast paths for large layers and batches run on toys."""
    monkeypatch.setattr(blocked_masked_linear, "BLOCKED_FROM_WEIGHTS", 0)
    monkeypatch.setattr(batch_chunks, "MMAP_THRESHOLD_BYTES", 1)


def fast_and_plain(name: str):
    """The toy with its fast paths and the same weights without them, in float64."""
    cls, kwargs = TOYS[name]
    fast = randomize(cls(SHAPE, **kwargs), std=0.5).double()
    plain = cls(SHAPE, fast=False, **kwargs).double()
    plain.load_state_dict(fast.state_dict())
    if isinstance(fast, ClassConditional):  # an uneven p(y), as training labels set it
        for model in (fast, plain):
            model.set_label_prior(torch.arange(10).repeat_interleave(torch.arange(1, 11)))
    return fast, plain


def images(model, batch: int, seed: int) -> torch.Tensor:
    return torch.randint(model.pixel_levels, (batch, *SHAPE), generator=torch.Generator().manual_seed(seed)).double()


@pytest.mark.parametrize("name", TOYS)
def test_the_fast_paths_equal_the_plain_definition_values_gradients_and_samples(name, every_fast_path):
    fast, plain = fast_and_plain(name)
    assert fast.fast_paths and not plain.fast_paths
    assert ("blocked masked layers" in fast.fast_paths) == ("blocked" in name)
    x = images(fast, 6, seed=0).requires_grad_()
    grads = {}
    for which, model in (("fast", fast), ("plain", plain)):
        nll = model.nll(x)
        named = dict(model.named_parameters())
        grads[which] = dict(zip(["x", *named], torch.autograd.grad(nll.sum(), [x, *named.values()])))
        grads[which]["nll"] = nll
    for key, grad in grads["fast"].items():
        dense_key = key.replace("weight_blocks", "weight")
        want = grads["plain"].pop(dense_key)
        if key != dense_key:  # a blocked layer stores the blocks of its dense weight: their part of its gradient
            layer = fast.get_submodule(key.rsplit(".", 1)[0])
            want, = torch.autograd.grad(layer.masked_weight(), layer.weight_blocks, want)
        torch.testing.assert_close(grad, want, msg=lambda m, key=key: f"{key}: {m}")
    assert not grads["plain"], "the plain model has parameters the fast one lacks"

    noise = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    observed = torch.zeros(4, *SHAPE, dtype=torch.bool)
    observed[:2, :, 0] = True
    start = images(fast, 4, seed=2) * observed
    labels = {"labels": torch.arange(4)} if isinstance(fast, ClassConditional) else {}
    with torch.no_grad():
        assert torch.equal(fast.fill(start, observed, noise, **labels), plain.fill(start, observed, noise, **labels))


# unconditional binary toys (tests/test_conditional.py normalizes the conditional families)
BINARY = [name for name, (_, kwargs) in TOYS.items() if "pixel_levels" not in kwargs and not kwargs.get("conditional")]


@pytest.mark.parametrize("name", BINARY)
def test_the_plain_definition_is_normalized_and_autoregressive(name):
    cls, kwargs = TOYS[name]
    model = randomize(cls(SHAPE, fast=False, **kwargs))
    assert total_probability(model, SHAPE) == pytest.approx(1.0, abs=1e-4)
    x = images(model, 1, seed=3)[0].float()
    for k in range(getattr(model, "num_masks", 1)):
        if isinstance(model, MADE):
            model.use_mask(k)
        position = torch.empty(model.num_pixels, dtype=torch.long)
        position[model.ordering()] = torch.arange(model.num_pixels)
        sees = input_jacobian(model.pixel_params, x) != 0  # [i, j]: pixel i's logit depends on pixel j
        assert not (sees & (position[None, :] >= position[:, None])).any(), f"mask {k}: a pixel sees a later one"
        assert sees.any(), f"mask {k}: no pixel depends on anything"


def test_every_family_with_fast_paths_takes_the_switch_and_build_model_passes_it():
    with_switch = {family for family in FAMILIES if "fast" in inspect.signature(family_class(family)).parameters}
    declared = {family for family in FAMILIES if issubclass(family_class(family), FastPaths)}
    assert with_switch == declared == {"made", "nade", "pixelcnn", "gated_pixelcnn", "transformer"}
    for family in sorted(declared):
        assert not build_model(family, (1, 8, 8), fast=False).fast
        assert build_model(family, (1, 8, 8)).fast  # on unless turned off
    assert not hasattr(build_model("bernoulli", (1, 8, 8), fast=False), "fast")  # nothing to turn off


def test_the_repr_names_the_fast_paths_in_use_at_the_model_s_sizes():
    assert "fast paths: blocked masked layers" in repr(MADE((1, 28, 28), hidden_sizes=[1400]))
    assert "fast paths: masks cached per device" in repr(MADE((1, 28, 28), hidden_sizes=[14]))
    assert "fast paths: masks cached per device" in repr(MADE((1, 28, 28), hidden_sizes=[1400], num_masks=2))
    assert "fast paths: off" in repr(MADE((1, 28, 28), hidden_sizes=[1400], fast=False))
    padded = PixelTransformer(SHAPE, dim=60, heads=2, layers=1)
    assert "heads padded 30 -> 32 on a CPU" in repr(padded)
    assert "heads padded" not in repr(PixelTransformer(SHAPE, dim=64, heads=2, layers=1))  # 32: nothing to pad
    assert repr(NADE(SHAPE, hidden=3, fast=False)).startswith("NADE(fast paths: off)")


def test_made_keeps_its_masks_per_device_only_with_the_fast_paths():
    for fast in (True, False):
        model = MADE(SHAPE, hidden_sizes=[12, 10], num_masks=3, order_agnostic=True, eval_masks=3, fast=fast)
        plain = MADE(SHAPE, hidden_sizes=[12, 10], num_masks=3, order_agnostic=True, eval_masks=3, fast=False)
        for k in [0, 1, 2, 1, 0]:
            model.use_mask(k)
            plain.use_mask(k)
            for layer, plain_layer in zip(model.mlp.layers, plain.mlp.layers, strict=True):
                assert torch.equal(layer.mask, plain_layer.mask)
        assert len(model._device_masks) == (3 if fast else 0)


def test_a_conditional_made_ensemble_switches_to_each_mask_once_for_all_classes(monkeypatch):
    fast, plain = fast_and_plain("made_ensemble_conditional")
    assert "all classes in one batch" in fast.fast_paths
    x = images(fast, 5, seed=4)
    switches, joints = {}, {}
    for which, model in (("fast", fast), ("plain", plain)):
        calls = []
        monkeypatch.setattr(model, "use_mask", lambda k, in_place=True, model=model, calls=calls:
                            (calls.append(k), MADE.use_mask(model, k, in_place)))
        with torch.no_grad():
            joints[which] = model.class_log_joint(x)
        switches[which] = len(calls)
    torch.testing.assert_close(joints["fast"], joints["plain"])
    assert switches == {"fast": 3, "plain": 3 * 10}


def test_made_masks_are_not_saved_and_come_back_with_the_constructor():
    model = MADE(SHAPE, hidden_sizes=[8], num_masks=2, order_agnostic=True, eval_masks=2)
    model.use_mask(1)
    state = model.state_dict()
    assert not any(key.endswith("mask") for key in state)
    again = MADE(SHAPE, hidden_sizes=[8], num_masks=2, order_agnostic=True, eval_masks=2)
    again.load_state_dict(state)
    assert again.mask_index == 1
    for a, b in zip(model.mlp.layers, again.mlp.layers):
        assert torch.equal(a.mask, b.mask)


@pytest.mark.parametrize("fast_paths, line", [(True, "train@made: fast paths: masks cached per device (train.fast_paths: true)"),
                                              (False, "train@made: fast paths: off (train.fast_paths: false)")])
def test_the_train_stage_names_the_fast_paths_in_its_log(tmp_path, monkeypatch, capsys, fast_paths, line):
    monkeypatch.chdir(tmp_path)
    synthetic_data(tmp_path)
    code_digests(tmp_path)
    write_params(tmp_path, {"made": {"family": "made", "hidden_sizes": [8]}},
                 train={"epochs": 1, "max_train": 100, "fast_paths": fast_paths})
    assert call_stage(train_stage, "made", "--quiet") is None
    assert line in capsys.readouterr().out.splitlines()
