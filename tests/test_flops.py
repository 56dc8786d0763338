"""Training FLOPs: counted by torch's counter where it sees the work, analytic where it does not."""
import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models.bernoulli import IndependentBernoulli
from models.fvsbn import FVSBN
from models.made import MADE
from models.nade import NADE
from pipeline.flops import training_flops_per_image
from tests.toys import DEQUANTIZED, EXACT, LATENT

SHAPE = (1, 4, 4)
D = 16


def test_fvsbn_counts_its_masked_dense_layer_forward_and_for_the_weight_gradient():
    assert training_flops_per_image(FVSBN(SHAPE)) == 2 * D * D + 2 * D * D


def test_made_with_one_mask_counts_both_layers_and_the_hidden_gradient():
    hidden = 24
    forward = 2 * D * hidden + 2 * hidden * D
    backward = 2 * D * hidden + 2 * (2 * hidden * D)  # no gradient for the input images
    assert training_flops_per_image(MADE(SHAPE, hidden_sizes=[hidden])) == forward + backward


def test_nades_own_count_is_what_the_counter_sees_in_the_plain_recurrence():
    nade = NADE(SHAPE, hidden=5)
    x = torch.rand(3, *SHAPE).round().flatten(1)
    counter = FlopCounterMode(display=False)
    with counter:
        a, logits = nade.c.expand(len(x), -1), []
        for i in range(D):
            logits.append(nade.b[i] + torch.sigmoid(a) @ nade.V[i:i + 1].t())
            if i < D - 1:
                a = a + x[:, i:i + 1] @ nade.W[i:i + 1]
        torch.cat(logits, 1).sum().backward()
    assert training_flops_per_image(nade) == counter.get_total_flops() // len(x)


def test_every_toy_model_has_a_positive_count_that_changes_neither_the_model_nor_the_random_stream():
    for name, build in {**EXACT, **LATENT, **DEQUANTIZED}.items():
        model = build(SHAPE)
        before = copy.deepcopy(model.state_dict())
        torch.manual_seed(1)
        expected = torch.rand(3)
        torch.manual_seed(1)
        flops = training_flops_per_image(model)
        assert torch.equal(torch.rand(3), expected), name
        assert flops > 0, name
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if torch.is_tensor(v)), name
        assert training_flops_per_image(model) == flops, name


def test_the_count_grows_with_the_model():
    assert training_flops_per_image(MADE(SHAPE, hidden_sizes=[48])) > training_flops_per_image(MADE(SHAPE, hidden_sizes=[24]))
    assert training_flops_per_image(IndependentBernoulli(SHAPE)) < training_flops_per_image(FVSBN(SHAPE))


def test_a_family_the_counter_cannot_see_must_count_itself():
    class Elementwise(IndependentBernoulli):
        training_flops_per_image = None  # not a CountsItsTrainingFlops

    with pytest.raises(ValueError, match="must count its FLOPs itself"):
        training_flops_per_image(Elementwise(SHAPE))
