"""MADE's layers computed block by block (models/fast/blocked_masked_linear.py) against the masked dense
product they replace: values and gradients for every mask MADE builds, the FLOPs they skip, the MADE
properties (normalized, autoregressive), checkpoints in both directions, and a resumed training run. A
whole MADE equals its plain self (`fast=False`): tests/test_fast_paths.py."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from models.fast import blocked_masked_linear
from models.fast.blocked_masked_linear import BlockedMaskedLinear, BlockedMaskedMLP, made_layer_degrees, sort_hidden_units
from models.made import MADE
from models.nn.masked_linear import MaskedMLP, made_degrees, made_masks
from tests.helpers import all_binary_images, input_jacobian, randomize
from tests.test_drills_resume import Killed, assert_same_weights, run_fit, without_time

SHAPE = (1, 4, 4)
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def ensemble(direct: bool) -> MADE:
    """A small order-agnostic ensemble built by MADE itself (its degrees and masks are the cases)."""
    return MADE(SHAPE, hidden_sizes=[12, 10], num_masks=4, order_agnostic=True, eval_masks=4, mask_seed=3,
                direct_connections=direct)


def layer_cases(model: MADE, k: int, outputs_per_input: int = 1):
    """(in_degrees, out_degrees, strict, MADE's dense mask) for every masked layer of mask k."""
    degrees = model.degrees[k]
    masks = made_masks(degrees, outputs_per_input)
    if model.direct is not None:  # as MADE.device_masks builds the direct connections' mask
        masks.append(degrees[0][:, None] > degrees[0][None, :])
        return [*made_layer_degrees(degrees, outputs_per_input), (degrees[0], degrees[0], True)], masks
    return made_layer_degrees(degrees, outputs_per_input), masks


@pytest.mark.parametrize("direct", [False, True])
@pytest.mark.parametrize("outputs_per_input", [1, 3])
def test_blocked_layers_equal_the_masked_dense_product_for_every_mask_of_an_ensemble(direct, outputs_per_input):
    model, gen = ensemble(direct), torch.Generator().manual_seed(0)
    for k in range(model.num_masks):
        cases, masks = layer_cases(model, k, outputs_per_input)
        if outputs_per_input == 1:  # the cases are the masks MADE itself uses
            assert all(torch.equal(a.bool(), b) for a, b in zip(masks, model.device_masks(k), strict=True))
        for (ins, outs, strict), mask in zip(cases, masks, strict=True):
            mask = mask.double()
            for blocks in (1, 3, 16):
                layer = BlockedMaskedLinear(ins, outs, strict, blocks=blocks).double()
                assert torch.equal(layer.mask(), mask.bool()), f"mask {k}, {blocks} blocks"
                weight = torch.randn(mask.shape, generator=gen, dtype=torch.float64, requires_grad=True)
                bias = torch.randn(mask.shape[0], generator=gen, dtype=torch.float64, requires_grad=True)
                layer.load_state_dict({"weight": weight.detach(), "bias": bias.detach()})  # dense, as in a checkpoint
                x = torch.randn(5, mask.shape[1], generator=gen, dtype=torch.float64, requires_grad=True)
                dense, blocked = F.linear(x, weight * mask, bias), layer(x)
                torch.testing.assert_close(blocked, dense, **TOLERANCE)

                upstream = torch.randn(dense.shape, generator=gen, dtype=torch.float64)
                dx, dw, db = torch.autograd.grad(dense, (x, weight, bias), upstream)
                bx, bblocks, bb = torch.autograd.grad(blocked, (x, layer.weight_blocks, layer.bias), upstream)
                torch.testing.assert_close(bx, dx, **TOLERANCE)
                torch.testing.assert_close(bb, db, **TOLERANCE)
                # the blocks' gradient is the dense masked one, read at the entries the blocks store
                at_blocks, = torch.autograd.grad(layer.masked_weight(), layer.weight_blocks, dw)
                torch.testing.assert_close(bblocks, at_blocks, **TOLERANCE)
                torch.testing.assert_close(layer.masked_weight(), weight.detach() * mask, rtol=0, atol=0)


def test_the_blocked_mlp_equals_the_masked_mlp_with_the_same_weights_for_every_mask():
    model, gen = ensemble(direct=False), torch.Generator().manual_seed(1)
    for k in range(model.num_masks):
        dense = MaskedMLP([16, 12, 10, 16]).double()
        randomize(dense)
        dense.set_masks(made_masks(model.degrees[k]))
        blocked = BlockedMaskedMLP(model.degrees[k], blocks=4).double()
        blocked.load_state_dict(dense.state_dict())
        x = torch.randn(7, 16, generator=gen, dtype=torch.float64, requires_grad=True)
        torch.testing.assert_close(blocked(x), dense(x), **TOLERANCE)
        torch.testing.assert_close(blocked.hidden(x), dense.hidden(x), **TOLERANCE)
        upstream = torch.randn(7, 16, generator=gen, dtype=torch.float64)
        dense_grads = torch.autograd.grad(dense(x), [x, *dense.parameters()], upstream)
        blocked_grads = torch.autograd.grad(blocked(x), [x, *blocked.parameters()], upstream)
        torch.testing.assert_close(blocked_grads[0], dense_grads[0], **TOLERANCE)
        for layer, (dw, db), (bw, bb) in zip(blocked.layers, zip(dense_grads[1::2], dense_grads[2::2]),
                                             zip(blocked_grads[1::2], blocked_grads[2::2])):
            torch.testing.assert_close(bb, db, **TOLERANCE)
            at_blocks, = torch.autograd.grad(layer.masked_weight(), layer.weight_blocks, dw)
            torch.testing.assert_close(bw, at_blocks, **TOLERANCE)


def test_the_blocks_skip_about_half_of_the_multiply_adds_and_store_as_little():
    degrees = made_degrees(torch.randperm(64, generator=torch.Generator().manual_seed(0)), [256],
                           torch.Generator().manual_seed(0))
    dense = MaskedMLP([64, 256, 64])
    dense.set_masks(made_masks(degrees))
    blocked = BlockedMaskedMLP(degrees, blocks=16)
    blocked.load_state_dict(dense.state_dict())
    plans = [layer.plan for layer in blocked.layers]
    assert all(0.4 < p.skipped <= p.zeros for p in plans)
    assert sum(p.numel() for p in blocked.parameters()) == sum(p.numel + p.out_features for p in plans)
    x = torch.rand(8, 64)

    def flops(mlp):
        with FlopCounterMode(display=False) as counter:
            mlp(x).square().sum().backward()
        return counter.get_total_flops()
    assert flops(blocked) / flops(dense) == pytest.approx(1 - blocked.skipped, abs=0.02)


@pytest.fixture
def blocked_at_any_size(monkeypatch):
    """A one-mask MADE blocks its layers however small they are."""
    monkeypatch.setattr(blocked_masked_linear, "BLOCKED_FROM_WEIGHTS", 0)


def dense_made(**kwargs) -> MADE:
    """The same one-mask MADE without its fast paths: the dense masked layers the blocked ones must equal."""
    return MADE(SHAPE, fast=False, **kwargs)


def test_made_blocks_its_layers_for_one_mask_once_a_layer_is_large():
    assert not MADE(SHAPE, hidden_sizes=[12]).blocked  # small: the dense product is as fast
    assert MADE((1, 28, 28), hidden_sizes=[1400]).blocked  # 784 x 1400 >= 2^20 weights
    assert not MADE((1, 28, 28), hidden_sizes=[1400], num_masks=2).blocked
    grey = MADE((1, 28, 28), hidden_sizes=[500], pixel_levels=256, components=5)  # its output layer is large
    assert isinstance(grey.mlp, BlockedMaskedMLP)
    assert not MADE((1, 28, 28), hidden_sizes=[1400], fast=False).blocked  # the switch turns it off


def test_a_blocked_made_is_normalized_and_autoregressive_in_any_order(blocked_at_any_size):
    model = randomize(MADE(SHAPE, hidden_sizes=[24, 24], direct_connections=True)).double().eval()
    assert model.blocked
    with torch.no_grad():
        assert float(model.nll(all_binary_images().double()).neg().exp().sum()) == pytest.approx(1.0, abs=1e-9)
    x = all_binary_images()[12345].double()
    jac = input_jacobian(model.pixel_params, x)
    assert torch.equal(jac != 0, jac.tril(-1) != 0) and (jac.tril(-1) != 0).float().mean() > 0.3  # raster order

    # an order-agnostic mask: the same through the blocked MLP alone (the inputs are permuted inside)
    degrees = made_degrees(torch.randperm(16, generator=torch.Generator().manual_seed(2)), [20, 20],
                           torch.Generator().manual_seed(2))
    mlp = randomize(BlockedMaskedMLP(degrees, blocks=5)).double()
    images = all_binary_images().double().flatten(1)
    logits = mlp(images)
    log_p = -F.binary_cross_entropy_with_logits(logits, images, reduction="none").sum(1)
    assert float(log_p.detach().exp().sum()) == pytest.approx(1.0, abs=1e-9)
    jac = input_jacobian(lambda flat: mlp(flat.flatten(1)), images[777].view(SHAPE))
    may_see = degrees[0][:, None] > degrees[0][None, :]
    assert not jac[~may_see].any() and (jac[may_see] != 0).float().mean() > 0.5


def test_checkpoints_move_between_the_dense_and_the_blocked_made(blocked_at_any_size):
    dense = randomize(dense_made(hidden_sizes=[12], direct_connections=True), seed=4)
    blocked = MADE(SHAPE, hidden_sizes=[12], direct_connections=True)
    blocked.load_state_dict(dense.state_dict())  # a checkpoint of the dense MADE
    x = all_binary_images()[::97]
    torch.testing.assert_close(blocked.nll(x), dense.nll(x))
    state = blocked.state_dict()
    assert {k: v.shape for k, v in state.items() if torch.is_tensor(v)} == {
        k: v.shape for k, v in dense.state_dict().items() if torch.is_tensor(v)}
    again = dense_made(hidden_sizes=[12], direct_connections=True)
    again.load_state_dict(state)  # and back
    torch.testing.assert_close(again.nll(x), dense.nll(x))
    with pytest.raises(RuntimeError, match="size mismatch for mlp.layers.0.weight"):
        blocked.load_state_dict(dense_made(hidden_sizes=[13], direct_connections=True).state_dict())


def test_a_blocked_layer_refuses_another_mask():
    model = ensemble(direct=False)
    layer = BlockedMaskedLinear(model.degrees[0][0], model.degrees[0][1])
    layer.set_mask(made_masks(model.degrees[0])[0])
    with pytest.raises(ValueError, match="one fixed mask"):
        layer.set_mask(made_masks(model.degrees[1])[0])


def test_sorting_hidden_units_changes_no_function_and_leaves_nothing_to_permute():
    model = ensemble(direct=False)
    degrees, perms = sort_hidden_units(model.degrees[2])
    dense = randomize(MaskedMLP([16, 12, 10, 16]))
    dense.set_masks(made_masks(model.degrees[2]))
    relabelled = MaskedMLP([16, 12, 10, 16])
    with torch.no_grad():
        for i, layer in enumerate(relabelled.layers):
            w, b = dense.layers[i].weight, dense.layers[i].bias
            rows = perms[i] if i < len(perms) else torch.arange(len(b))
            cols = perms[i - 1] if i > 0 else torch.arange(w.shape[1])
            layer.weight.copy_(w[rows][:, cols])
            layer.bias.copy_(b[rows])
    relabelled.set_masks(made_masks(degrees))
    x = torch.rand(4, 16)
    torch.testing.assert_close(relabelled(x), dense(x))
    blocked = BlockedMaskedMLP(degrees)
    assert all(layer.out_order is None for layer in blocked.layers[:-1])
    assert all(layer.in_order is None for layer in blocked.layers[1:])


def test_bf16_autocast_computes_in_bf16_and_keeps_fp32_gradients():
    model = ensemble(direct=False)
    dense = randomize(MaskedMLP([16, 12, 10, 16]), std=0.3)
    dense.set_masks(made_masks(model.degrees[1]))
    blocked = BlockedMaskedMLP(model.degrees[1])
    blocked.load_state_dict(dense.state_dict())
    x = torch.rand(6, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, reference = blocked(x), dense(x)
    assert out.dtype == reference.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference.float(), rtol=0.05, atol=0.05)
    out.float().sum().backward()
    assert all(p.grad.dtype == torch.float32 and p.grad.abs().sum() > 0 for p in blocked.parameters())


def test_a_blocked_made_killed_and_resumed_trains_to_the_same_numbers(tmp_path, blocked_at_any_size):
    make = lambda shape: MADE(shape, hidden_sizes=[12, 8], direct_connections=True)
    reference, reference_model = run_fit(make, tmp_path / "reference.pt")
    with pytest.raises(Killed):
        run_fit(make, tmp_path / "killed.pt", kill_after=1)
    history, model = run_fit(make, tmp_path / "killed.pt")
    assert without_time(history) == without_time(reference)
    assert_same_weights(model, reference_model)
