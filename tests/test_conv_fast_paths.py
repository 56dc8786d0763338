"""The convolutional models' fast paths (oneDNN's layout and a Gated PixelCNN layer's sums arranged for
it, models/fast/onednn_layout.py; PixelCNN's activations in place) equal their plain definitions, the
same layers with `fast=False`."""
import pytest
import torch

from models.gated_pixelcnn import GatedPixelCNN
from models.pixelcnn import PixelCNN


def fast_and_plain(cls, *args, **kwargs):
    torch.manual_seed(0)
    fast, plain = cls(*args, **kwargs), cls(*args, fast=False, **kwargs)
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def test_gated_layers_equal_their_definition_values_and_gradients():
    fast, plain = fast_and_plain(GatedPixelCNN, (1, 9, 7), channels=6, layers=3, first_kernel=5, kernel=3,
                                 head_channels=4)
    x = (torch.rand(3, 1, 9, 7) < 0.4).float()
    fast_v = fast_h = slow_v = slow_h = x
    for fast_layer, plain_layer in zip(fast.layers, plain.layers, strict=True):
        fast_v, fast_h = fast_layer(fast_v, fast_h)
        slow_v, slow_h = plain_layer(slow_v, slow_h)
        torch.testing.assert_close(fast_v, slow_v)
        torch.testing.assert_close(fast_h, slow_h)
    assert fast_h.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(torch.autograd.grad(fast_h.square().sum(), list(fast.layers.parameters())),
                    torch.autograd.grad(slow_h.square().sum(), list(plain.layers.parameters())), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("fast", [True, False])
def test_every_gated_pixelcnn_parameter_is_read(fast):
    torch.manual_seed(0)
    model = GatedPixelCNN((1, 6, 6), channels=4, layers=3, first_kernel=5, kernel=3, head_channels=4, fast=fast)
    model.loss((torch.rand(2, 1, 6, 6) < 0.5).float()).backward()
    unread = [name for name, p in model.layers.named_parameters() if p.grad is None or not p.grad.all()]
    assert not unread, f"weights that change nothing: {unread}"  # each one of them (the head's ReLUs may idle some)


def test_pixelcnn_channels_last_trunk_equals_the_default_layout():
    fast, plain = fast_and_plain(PixelCNN, (1, 8, 8), channels=6, residual_blocks=2, head_channels=4)
    x = (torch.rand(4, 1, 8, 8) < 0.4).float()
    trunk = fast.trunk(x)
    assert trunk.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(trunk, plain.trunk(x))


def test_pixelcnn_in_place_residual_blocks_equal_their_definition_values_and_gradients():
    fast, plain = fast_and_plain(PixelCNN, (1, 8, 8), channels=6, residual_blocks=1)
    x = torch.randn(3, 6, 8, 8, requires_grad=True)
    outputs = fast.blocks[0](x), plain.blocks[0](x)
    torch.testing.assert_close(*outputs)
    fast_grads, plain_grads = (torch.autograd.grad(out.square().sum(), [x, *model.blocks[0].parameters()])
                               for out, model in zip(outputs, (fast, plain)))
    for a, b in zip(fast_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_pixelcnn_residual_stream_keeps_fp32_under_bf16_autocast():
    """A conditional model's stream is fp32 (a bf16 feature plus its label's fp32 bias) while the
    block's convolutions give bf16: the sum must not be rounded into the bf16 output."""
    fast, plain = fast_and_plain(PixelCNN, (1, 8, 8), channels=6, residual_blocks=1)
    x = torch.randn(2, 6, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, slow = fast.blocks[0](x), plain.blocks[0](x)
    assert out.dtype == slow.dtype == torch.float32
    torch.testing.assert_close(out, slow)
