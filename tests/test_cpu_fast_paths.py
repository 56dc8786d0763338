"""The CPU fast paths of the Gated PixelCNN and the transformer equal their plain definitions: a batch
run in pieces (models/fast/batch_chunks.py), the gate's tanh through a sigmoid, and attention heads
padded with zeros."""
import pytest
import torch
import torch.nn.functional as F

from models.fast import batch_chunks
from models.fast.batch_chunks import in_chunks
from models.fast.padded_attention import padded_head_dim
from models.gated_pixelcnn import GatedPixelCNN, gate
from models.transformer import PixelTransformer
from tests.helpers import randomize

SHAPE = (1, 5, 7)


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
    lambda: GatedPixelCNN(SHAPE, channels=6, layers=3, first_kernel=5, kernel=3, head_channels=4),
    lambda: PixelTransformer(SHAPE, dim=8, layers=2, heads=2),
])
def test_a_batch_in_pieces_gives_the_whole_batch_values_and_gradients(make, monkeypatch):
    model = randomize(make(), std=0.3).double()
    x = (torch.rand(7, *SHAPE, generator=torch.Generator().manual_seed(0)) < 0.4).double()
    whole = model.pixel_params(x)
    whole_grads = torch.autograd.grad(whole.square().sum(), list(model.parameters()))
    seen = []
    network = "trunk" if isinstance(model, GatedPixelCNN) else "features"
    inner = getattr(model, network)
    monkeypatch.setattr(model, network, lambda h, *args: seen.append(len(h)) or inner(h, *args))
    monkeypatch.setattr(batch_chunks, "MMAP_THRESHOLD_BYTES", 1)  # every image over the threshold
    pieces = model.pixel_params(x)
    assert len(seen) > 1 and sum(seen) == len(x)  # it did run in pieces, each image once
    torch.testing.assert_close(pieces, whole)
    for a, b in zip(torch.autograd.grad(pieces.square().sum(), list(model.parameters())), whole_grads):
        torch.testing.assert_close(a, b)


def test_padded_attention_heads_equal_the_plain_ones_values_and_gradients():
    assert padded_head_dim(30, torch.device("cpu")) == 32 and padded_head_dim(28, torch.device("cpu")) == 28
    model = randomize(PixelTransformer(SHAPE, dim=60, layers=2, heads=2), std=0.2).double()  # heads of 30 -> 32
    x = (torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(1)) < 0.4).double()
    fast = model.pixel_params(x)

    def plain(attn, h):  # the attention by its definition
        batch, length, dim = h.shape
        q, k, v = attn.qkv(h).view(batch, length, 3, attn.heads, dim // attn.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return attn.proj(y.transpose(1, 2).reshape(batch, length, dim))
    for block in model.blocks:
        block.attn.forward = lambda h, cache=None, t=None, attn=block.attn: plain(attn, h)
    slow = model.pixel_params(x)
    torch.testing.assert_close(fast, slow)
    params = list(model.parameters())
    for block in model.blocks:
        del block.attn.forward
    fast_grads = torch.autograd.grad(model.pixel_params(x).square().sum(), params)
    for block in model.blocks:
        block.attn.forward = lambda h, cache=None, t=None, attn=block.attn: plain(attn, h)
    for a, b in zip(fast_grads, torch.autograd.grad(model.pixel_params(x).square().sum(), params)):
        torch.testing.assert_close(a, b)


def test_the_gate_through_a_sigmoid_equals_tanh_times_sigmoid_values_and_gradients():
    torch.manual_seed(0)
    pre = (4 * torch.randn(3, 8, 5, 7, dtype=torch.float64)).requires_grad_()
    a, b = pre.chunk(2, 1)
    fast, slow = gate(pre), torch.tanh(a) * torch.sigmoid(b)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)
    weights = torch.randn_like(fast)
    (fast_grad,), (slow_grad,) = (torch.autograd.grad((out * weights).sum(), pre) for out in (fast, slow))
    torch.testing.assert_close(fast_grad, slow_grad, rtol=0, atol=1e-12)
