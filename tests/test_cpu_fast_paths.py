"""The CPU fast paths of the Gated PixelCNN and the transformer equal their plain definitions, the same
model with `fast=False`: a batch run in pieces (models/fast/batch_chunks.py), the gate's tanh through a
sigmoid, and attention heads padded with zeros."""
import pytest
import torch

from models.fast import batch_chunks
from models.fast.batch_chunks import in_chunks
from models.fast.cpu_gate import fast_gate
from models.fast.padded_attention import cpu_head_dim
from models.gated_pixelcnn import GatedPixelCNN, gate
from models.transformer import PixelTransformer
from tests.helpers import randomize

SHAPE = (1, 5, 7)


def fast_and_plain(make) -> tuple[torch.nn.Module, torch.nn.Module]:
    fast = randomize(make(fast=True), std=0.3).double()
    plain = make(fast=False).double()
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def values_and_gradients(model, x: torch.Tensor) -> list[torch.Tensor]:
    out = model.pixel_params(x)
    return [out, *torch.autograd.grad(out.square().sum(), list(model.parameters()))]


@pytest.mark.parametrize("bytes_per_image", [1, batch_chunks.MMAP_THRESHOLD_BYTES // 10 + 1,
                                             10 * batch_chunks.MMAP_THRESHOLD_BYTES])
def test_a_batch_in_pieces_gives_the_whole_batchs_result_with_every_piece_under_the_threshold(bytes_per_image):
    pieces = []
    x = torch.arange(20.0)[:, None]
    out = in_chunks(lambda piece: pieces.append(len(piece)) or 2 * piece, x, bytes_per_image)
    assert torch.equal(out, 2 * x)  # every image, in order
    assert all(n == 1 or n * bytes_per_image <= batch_chunks.MMAP_THRESHOLD_BYTES for n in pieces)
    assert len(pieces) == 1 or 20 * bytes_per_image > batch_chunks.MMAP_THRESHOLD_BYTES  # whole when it fits


@pytest.mark.parametrize("make", [
    lambda fast: GatedPixelCNN(SHAPE, channels=6, layers=3, first_kernel=5, kernel=3, head_channels=4, fast=fast),
    lambda fast: PixelTransformer(SHAPE, dim=8, layers=2, heads=2, fast=fast),
])
def test_a_batch_in_pieces_gives_the_whole_batch_values_and_gradients(make, monkeypatch):
    fast, plain = fast_and_plain(make)
    x = (torch.rand(7, *SHAPE, generator=torch.Generator().manual_seed(0)) < 0.4).double()
    seen = []
    network = "trunk" if isinstance(fast, GatedPixelCNN) else "features"
    inner = getattr(fast, network)
    monkeypatch.setattr(fast, network, lambda h, *args: seen.append(len(h)) or inner(h, *args))
    monkeypatch.setattr(batch_chunks, "MMAP_THRESHOLD_BYTES", 1)  # every image over the threshold
    pieces = values_and_gradients(fast, x)
    assert len(seen) > 1 and sum(seen) == len(x)  # it did run in pieces, each image once
    for a, b in zip(pieces, values_and_gradients(plain, x), strict=True):
        torch.testing.assert_close(a, b)


def test_padded_attention_heads_equal_the_plain_ones_values_and_gradients():
    assert cpu_head_dim(30) == 32 and cpu_head_dim(28) == 28
    fast, plain = fast_and_plain(lambda fast: PixelTransformer(SHAPE, dim=60, layers=2, heads=2, fast=fast))
    assert fast.blocks[0].attn.cpu_head_dim == 32 and plain.blocks[0].attn.cpu_head_dim == 30  # heads of 30 -> 32
    x = (torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(1)) < 0.4).double()
    for a, b in zip(values_and_gradients(fast, x), values_and_gradients(plain, x), strict=True):
        torch.testing.assert_close(a, b)


def test_the_gate_through_a_sigmoid_equals_tanh_times_sigmoid_values_and_gradients():
    torch.manual_seed(0)
    pre = (4 * torch.randn(3, 8, 5, 7, dtype=torch.float64)).requires_grad_()
    fast, slow = fast_gate(pre), gate(pre)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)
    weights = torch.randn_like(fast)
    (fast_grad,), (slow_grad,) = (torch.autograd.grad((out * weights).sum(), pre) for out in (fast, slow))
    torch.testing.assert_close(fast_grad, slow_grad, rtol=0, atol=1e-12)
