"""PixelCNN, Gated PixelCNN, raster RNN and transformer: what the shared tests in
test_exact_models.py (via tests/toys.py) do not cover: the blind spot, the fast samplers against
the generic one, autocast, and parameter errors."""
import pytest
import torch

from models import build_model
from models.base import AutoregressiveModel
from models.gated_pixelcnn import GatedPixelCNN
from models.pixelcnn import PixelCNN
from tests.helpers import randomize
from tests.toys import EXACT

OURS = ("pixelcnn", "gated_pixelcnn", "rnn_lstm", "rnn_gru", "transformer")
SHAPE = (1, 5, 7)  # not square, so rows and columns cannot be mixed up unnoticed


def influence(model, shape, images: int = 3) -> torch.Tensor:
    """(D, D): entry [i, j] is True when pixel j changes the logit of pixel i for some random image.
    One backward pass per image: copy k of the image carries the gradient of logit k."""
    d = shape[1] * shape[2]
    gen = torch.Generator().manual_seed(0)
    total = torch.zeros(d, d)
    for _ in range(images):
        copies = torch.bernoulli(torch.full(shape, 0.5), generator=gen).expand(d, *shape).clone().requires_grad_()
        model.pixel_params(copies).view(d, d).diagonal().sum().backward()
        total += copies.grad.view(d, d).abs()
    return total > 0


def window_before(shape, r: int, c: int, radius: int) -> list[int]:
    """Flat indices of the pixels before (r, c) in raster order within `radius` rows above and
    `radius` columns either side: the square a stack of convolutions with that radius covers."""
    width = shape[2]
    return [i * width + j for i in range(max(0, r - radius), r + 1)
            for j in range(max(0, c - radius), min(width, c + radius + 1)) if (i, j) < (r, c)]


def test_pixelcnn_has_a_blind_spot_above_right():
    shape = (1, 6, 6)
    model = randomize(PixelCNN(shape, channels=8, residual_blocks=1, first_kernel=3, kernel=3, head_channels=8))
    seen = influence(model, shape)
    r, c, width = 3, 2, shape[2]
    pixel = r * width + c
    blind = [j for j in window_before(shape, r, c, radius=2) if not seen[pixel, j]]
    assert blind == [(r - 1) * width + c + 2], "two 3x3 masked layers miss exactly the pixel at (r-1, c+2)"
    assert seen[pixel, (r - 2) * width + c + 2], "while the pixel one row higher is seen"


@pytest.mark.parametrize("fast", [True, False])
def test_gated_pixelcnn_sees_every_earlier_pixel_in_its_window(fast):
    shape = (1, 6, 6)
    model = randomize(GatedPixelCNN(shape, channels=6, layers=2, first_kernel=3, kernel=3, head_channels=8, fast=fast))
    seen = influence(model, shape)
    width = shape[2]
    for r in range(shape[1]):
        for c in range(width):
            missed = [j for j in window_before(shape, r, c, radius=2) if not seen[r * width + c, j]]
            assert not missed, f"pixel {(r, c)} does not see {[divmod(j, width) for j in missed]}"


def observed_masks(shape, batch: int) -> dict[str, torch.Tensor]:
    scattered = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(5)) < 0.3
    top_rows = torch.zeros(batch, *shape, dtype=torch.bool)
    top_rows[..., :2, :] = True
    top_rows[0, ..., 2, :3] = True  # one image observes a little more than the others
    return {"nothing": torch.zeros(batch, *shape, dtype=torch.bool), "scattered": scattered,
            "top_rows": top_rows, "top_rows_and_scattered": top_rows | scattered,
            "everything": torch.ones(batch, *shape, dtype=torch.bool)}


@pytest.mark.parametrize("name", OURS)
def test_fast_fill_equals_generic_fill_given_the_same_noise(name):
    model = randomize(EXACT[name](SHAPE), std=0.7).double().eval()
    batch, gen = 6, torch.Generator().manual_seed(2)
    x = torch.bernoulli(torch.full((batch, *SHAPE), 0.5, dtype=torch.float64), generator=gen)
    noise = torch.rand(x.shape, generator=gen, dtype=torch.float64)
    for what, observed in observed_masks(SHAPE, batch).items():
        start = x * observed
        fast = model.fill(start, observed, noise)
        generic = AutoregressiveModel.fill(model, start, observed, noise)
        assert torch.equal(fast, generic), f"observed {what}: the fast sampler differs from the generic one"
        assert torch.equal(fast[observed], x[observed])


@pytest.mark.parametrize("name", OURS)
def test_loss_under_bf16_autocast_is_finite_and_trainable(name):
    model = randomize(EXACT[name](SHAPE), std=0.3)
    x = torch.bernoulli(torch.full((4, *SHAPE), 0.5), generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss(x)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("family, kwargs, key", [
    ("pixelcnn", {"channels": 7}, "channels"),
    ("pixelcnn", {"first_kernel": 4}, "first_kernel"),
    ("gated_pixelcnn", {"kernel": 1}, "kernel"),
    ("rnn", {"input_window": 0}, "input_window"),
    ("transformer", {"dim": 10, "heads": 4}, "heads"),
])
def test_bad_params_are_one_line_errors_naming_the_key(family, kwargs, key):
    with pytest.raises(ValueError, match=key):
        build_model(family, (1, 4, 4), **kwargs)
