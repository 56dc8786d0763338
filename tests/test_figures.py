"""The image grids (pipeline/figures.py) are torchvision's `save_image` grids, without its import cost."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.utils import make_grid

from pipeline.figures import save_grid


@pytest.mark.parametrize("count, nrow", [(7, 3), (4, 10), (1, 1)])
def test_a_grid_is_torchvisions_grid_of_the_same_images(tmp_path, count, nrow):
    images = torch.rand(count, 1, 5, 4, generator=torch.Generator().manual_seed(count))
    save_grid(images, tmp_path / "grid.png", nrow)
    expected = make_grid(images, nrow=nrow, padding=2, pad_value=0.5).mul(255).add(0.5).clamp(0, 255).byte()[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "grid.png")), expected.numpy())


def test_grey_levels_are_drawn_at_their_brightness(tmp_path):
    levels = torch.tensor([0.0, 85.0, 170.0, 255.0]).view(4, 1, 1, 1)
    save_grid(levels, tmp_path / "grid.png", nrow=4, levels=256)
    drawn = np.asarray(Image.open(tmp_path / "grid.png"))
    assert [int(drawn[2, 2 + 3 * k]) for k in range(4)] == [0, 85, 170, 255]
