"""bench.versus: free parameters counted through masks, rows whose sizes differ marked not comparable,
and another checkout's models built beside ours without replacing them."""
import sys

import pytest
import torch
from torch import nn

import models
from bench.versus import COMPARABLE, checkout, free_parameters, step_flops, table
from models.fast.blocked_masked_linear import BlockedMaskedMLP
from models.gated_pixelcnn import GatedPixelCNN
from models.made import MADE
from models.nn.masked_conv import MaskedConv2d
from models.nn.masked_linear import MaskedLinear, made_masks


def test_masked_entries_are_not_counted():
    layer = MaskedLinear(5, 4)
    mask = torch.rand(4, 5, generator=torch.Generator().manual_seed(0)) < 0.5
    layer.set_mask(mask)
    assert free_parameters(layer) == int(mask.sum()) + 4
    conv = MaskedConv2d("A", 2, 3, 3)  # mask A: the 4 pixels before the centre of each 3 x 3 kernel
    assert free_parameters(conv) == 4 * 2 * 3 + 3
    gated = GatedPixelCNN((1, 5, 5), channels=4, layers=2, first_kernel=3, kernel=3, head_channels=4)
    assert free_parameters(gated) == sum(p.numel() for p in gated.parameters())  # its kernels hold no masked entry


def test_a_blocked_mlp_counts_what_its_mask_lets_through_as_the_dense_one_does():
    made = MADE((1, 4, 4), hidden_sizes=[12], num_masks=2, order_agnostic=True)
    blocked = BlockedMaskedMLP(made.degrees[1], blocks=3)
    masks = made_masks(made.degrees[1])
    assert free_parameters(blocked) == sum(int(m.sum()) for m in masks) + 12 + 16
    assert free_parameters(blocked) < sum(p.numel() for p in blocked.parameters())  # its diagonal blocks


def test_a_mask_that_does_not_fit_masks_nothing():
    module = nn.Linear(3, 2)
    module.register_buffer("mask", torch.ones(7))
    assert free_parameters(module) == 8


def test_rows_whose_sizes_differ_are_not_comparable():
    row = {"model": "made", "batch": 64, "reference params": 100, "reference img/s": 50.0,
           "reference GFLOP/s": 12.5, "eager params": 103, "eager img/s": 100.0, "eager GFLOP/s": 31.25,
           "eager / reference": 2.0, "as trained params": 140, "as trained img/s": 150.0,
           "as trained / reference": None}
    text = table([row])
    assert "2.00x" in text and "not comparable" in text and "1.50x" not in text
    assert "eager GFLOP/s" in text and "31.2" in text and "as trained GFLOP/s" not in text
    assert 0 < COMPARABLE <= 0.05


def test_a_rate_one_row_lacks_leaves_its_cell_without_a_number_and_the_columns_aligned():
    counted = {"model": "made", "batch": 64, "reference params": 100, "reference img/s": 50.0,
               "reference GFLOP/s": 12.5, "as trained params": 100, "as trained img/s": 100.0,
               "as trained GFLOP/s": 25.0, "as trained / reference": 2.0}
    compiled = {**counted, "model": "gated_pixelcnn"}
    del compiled["as trained GFLOP/s"]
    lines = table([compiled, counted]).splitlines()
    assert "as trained GFLOP/s" in lines[0]
    lacking, counted_cells = lines[1].split(), lines[2].split()
    assert len(lacking) == len(counted_cells) and counted_cells[-2] == "25"
    with pytest.raises(ValueError):
        float(lacking[-2])


def test_a_step_counts_the_products_of_its_forward_and_backward_passes():
    layer, x = nn.Linear(3, 2), torch.randn(5, 3)
    # forward and the weight's gradient, 2 FLOPs per multiply-add each (x needs no gradient)
    assert step_flops(lambda: layer(x).sum().backward()) == 2 * (2 * 5 * 3 * 2)


def test_another_checkout_builds_its_models_and_ours_come_back(tmp_path):
    package = tmp_path / "models"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import torch\n"
        "def build_model(family, image_shape, **kwargs):\n"
        "    module = torch.nn.Linear(1, 1)\n"
        "    module.built_by = 'other checkout'\n"
        "    return module\n")
    before = sys.modules["models"]
    with checkout(tmp_path):
        import models as theirs
        built = theirs.build_model("made", (1, 4, 4))
    assert built.built_by == "other checkout"
    assert sys.modules["models"] is before is models
    import models.made as made_module
    assert made_module.MADE is MADE
