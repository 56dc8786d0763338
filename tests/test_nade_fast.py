"""NADE's blockwise forward/backward (models/fast/nade_blockwise.py) against its plain definition, the
loop over pixels of `NADE.plain_logits`, through the switch (`fast=False`)."""
import pytest
import torch
import torch.nn.functional as F

from models.fast import nade_blockwise
from models.nade import NADE
from tests.helpers import randomize


def fast_and_plain(shape, hidden: int, std: float) -> tuple[NADE, NADE]:
    fast = randomize(NADE(shape, hidden=hidden).double(), std=std)
    plain = NADE(shape, hidden=hidden, fast=False).double()
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def bce_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def values_and_gradients(model: NADE, x: torch.Tensor) -> list[torch.Tensor]:
    """Logits, NLL and the gradients of NLL plus a random projection of the logits w.r.t. x and every parameter."""
    x = x.detach().requires_grad_()
    logits = model.pixel_params(x)[:, 0]
    nll = bce_nll(logits, x)
    projection = torch.randn(logits.shape, generator=torch.Generator().manual_seed(7), dtype=logits.dtype)
    loss = nll.sum() + (logits * projection).sum()
    grads = torch.autograd.grad(loss, [x, model.W, model.c, model.V, model.b])
    return [logits.detach(), nll.detach(), *grads]


BLOCKINGS = {  # (SMALL_SLAB, CPU_BLOCK_NUMBERS) -> pixels per block, given batch * hidden numbers per pixel
    "one_pixel": lambda slab: (1, 2 ** 18),
    "three_pixels": lambda slab: (slab + 1, 3 * slab),
    "seven_pixels": lambda slab: (slab + 1, 7 * slab),
    "whole_image": lambda slab: (slab + 1, 10 ** 9),
}


@pytest.mark.parametrize("blocking", BLOCKINGS)
@pytest.mark.parametrize("shape, hidden, batch", [((1, 4, 4), 8, 5), ((1, 5, 7), 13, 1), ((1, 6, 6), 1, 11),
                                                  ((2, 3, 3), 20, 9)])
def test_blockwise_equals_pixel_loop(monkeypatch, blocking, shape, hidden, batch):
    small_slab, block_numbers = BLOCKINGS[blocking](batch * hidden)
    monkeypatch.setattr(nade_blockwise, "SMALL_SLAB", small_slab)
    monkeypatch.setattr(nade_blockwise, "CPU_BLOCK_NUMBERS", block_numbers)
    fast_model, plain_model = fast_and_plain(shape, hidden, std=0.7)
    x = torch.bernoulli(torch.full((batch, *shape), 0.4, dtype=torch.float64),
                        generator=torch.Generator().manual_seed(3))
    fast, slow = values_and_gradients(fast_model, x), values_and_gradients(plain_model, x)
    for name, f, s in zip(["logits", "nll", "x", "W", "c", "V", "b"], fast, slow):
        torch.testing.assert_close(f, s, rtol=0, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    torch.testing.assert_close(fast_model.nll(x), slow[1], rtol=0, atol=1e-5)


def test_saturated_hidden_units_match_the_loop():
    """Large weights push the hidden units to 0 and 1, where sigmoid(a) saturates and its gradient vanishes."""
    fast_model, plain_model = fast_and_plain((1, 5, 5), hidden=6, std=8.0)
    x = torch.bernoulli(torch.full((4, 1, 5, 5), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(4))
    fast, slow = values_and_gradients(fast_model, x), values_and_gradients(plain_model, x)
    for f, s in zip(fast, slow):
        torch.testing.assert_close(f, s, rtol=1e-9, atol=1e-5)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("batch, hidden", [(512, 500), (50, 8), (1, 1), (10 ** 5, 10 ** 3)])
def test_a_block_holds_at_least_one_pixel_and_no_more_numbers_than_its_device_budget(device, batch, hidden):
    budget = nade_blockwise.CPU_BLOCK_NUMBERS if device == "cpu" else nade_blockwise.GPU_BLOCK_NUMBERS
    pixels = nade_blockwise._block_size(784, batch, hidden, torch.device(device))
    assert 1 <= pixels <= 784 and (pixels == 1 or pixels * batch * hidden <= budget)


@pytest.mark.parametrize("fast", [True, False])
def test_bf16_autocast_runs_in_float32_and_matches(fast):
    model = randomize(NADE((1, 4, 4), hidden=8, fast=fast))
    x = torch.bernoulli(torch.full((6, 1, 4, 4), 0.5), generator=torch.Generator().manual_seed(5))
    expected = model.nll(x)
    expected_grads = torch.autograd.grad(expected.sum(), list(model.parameters()))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # backward inside too: its matmuls must stay fp32
        nll = model.nll(x)
        grads = torch.autograd.grad(nll.sum(), list(model.parameters()))
    assert nll.dtype == torch.float32
    torch.testing.assert_close(nll, expected)
    torch.testing.assert_close(grads, expected_grads)
