"""Fast paths equal their simple definitions."""
import torch

from models.made import MADE
from models.nn.masked_linear import made_masks
from tests.helpers import randomize

SHAPE = (1, 4, 4)


def fresh_masks(model: MADE, k: int) -> list[torch.Tensor]:
    return [mask.float() for mask in made_masks(model.degrees[k])]


def test_made_uses_cached_masks_equal_to_freshly_built_ones_for_every_mask():
    model = randomize(MADE(SHAPE, hidden_sizes=[12, 10], num_masks=3, order_agnostic=True, eval_masks=3))
    x = (torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    params = {}
    for k in [0, 1, 2, 1, 0]:
        model.use_mask(k)
        for layer, mask in zip(model.mlp.layers, fresh_masks(model, k)):
            assert torch.equal(layer.mask, mask)
        with torch.no_grad():
            params.setdefault(k, model.pixel_params(x))
            assert torch.equal(model.pixel_params(x), params[k])  # back to a mask, back to its function
    assert not torch.equal(params[0], params[1])


def test_made_mask_ensemble_nll_equals_the_mixture_over_freshly_masked_copies():
    model = randomize(MADE(SHAPE, hidden_sizes=[12], num_masks=4, order_agnostic=True, eval_masks=4)).double()
    x = (torch.rand(7, *SHAPE, generator=torch.Generator().manual_seed(1)) < 0.5).double()
    per_mask = []
    for k in range(4):
        h = x.flatten(1)
        masks = fresh_masks(model, k)
        for i, (layer, mask) in enumerate(zip(model.mlp.layers, masks)):
            h = torch.nn.functional.linear(h, layer.weight * mask.double(), layer.bias)
            h = torch.relu(h) if i < len(masks) - 1 else h
        per_mask.append(-torch.nn.functional.binary_cross_entropy_with_logits(h, x.flatten(1), reduction="none").sum(1))
    expected = -(torch.logsumexp(torch.stack(per_mask), 0) - torch.log(torch.tensor(4.0, dtype=torch.float64)))
    expected_grads = torch.autograd.grad(expected.sum(), list(model.parameters()), allow_unused=True)
    nll = model.nll(x)  # under autograd: every mask's graph keeps its own mask
    torch.testing.assert_close(nll, expected)
    grads = torch.autograd.grad(nll.sum(), list(model.parameters()), allow_unused=True)
    for got, want in zip(grads, expected_grads):
        if want is not None:
            torch.testing.assert_close(got, want)


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
