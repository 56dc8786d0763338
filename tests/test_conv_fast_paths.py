"""The convolutional models' training forward passes take a faster route on CPU (channels_last, a
reordered link); they must equal the layers' plain definitions."""
import torch
import torch.nn.functional as F

from models.gated_pixelcnn import GatedPixelCNN, gate, shift_down
from models.pixelcnn import PixelCNN


def gated_layer_by_definition(layer, v, h):
    """Vertical conv over rows r-p..r (input padded on top only), horizontal masked conv, and the
    link from the vertical pre-activation of the row above."""
    v_pre = F.conv2d(F.pad(v, (layer.pad, layer.pad, layer.pad, 0)), layer.vertical.weight, layer.vertical.bias)
    h_pre = F.conv2d(h, layer.horizontal.weight * layer.horizontal_mask, layer.horizontal.bias,
                     padding=(0, layer.pad))
    return gate(v_pre), layer.horizontal_output(h, h_pre + layer.link(shift_down(v_pre)))


def test_gated_layers_equal_their_definition_values_and_gradients():
    torch.manual_seed(0)
    model = GatedPixelCNN((1, 9, 7), channels=6, layers=3, first_kernel=5, kernel=3, head_channels=4)
    x = (torch.rand(3, 1, 9, 7) < 0.4).float()
    fast_v = fast_h = slow_v = slow_h = x
    for layer in model.layers:
        fast_v, fast_h = layer(fast_v, fast_h)
        slow_v, slow_h = gated_layer_by_definition(layer, slow_v, slow_h)
        torch.testing.assert_close(fast_v, slow_v)
        torch.testing.assert_close(fast_h, slow_h)
    fast = torch.autograd.grad(fast_h.square().sum(), list(model.layers.parameters()))
    slow = torch.autograd.grad(slow_h.square().sum(), list(model.layers.parameters()))
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b)


def test_pixelcnn_channels_last_trunk_equals_the_default_layout():
    torch.manual_seed(0)
    model = PixelCNN((1, 8, 8), channels=6, residual_blocks=2, head_channels=4)
    x = (torch.rand(4, 1, 8, 8) < 0.4).float()
    h = model.input_conv(x)
    for block in model.blocks:
        h = block(h)
    fast = model.trunk(x)
    assert fast.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, h)


def residual_block_by_definition(block, x):
    inner = torch.relu(block.conv(torch.relu(block.reduce(torch.relu(x)))))
    return x + block.expand(inner)


def test_pixelcnn_in_place_residual_blocks_equal_their_definition_values_and_gradients():
    torch.manual_seed(0)
    block = PixelCNN((1, 8, 8), channels=6, residual_blocks=1).blocks[0]
    x = torch.randn(3, 6, 8, 8, requires_grad=True)
    inputs = [x, *block.parameters()]
    fast, slow = block(x), residual_block_by_definition(block, x)
    torch.testing.assert_close(fast, slow)
    for a, b in zip(torch.autograd.grad(fast.square().sum(), inputs),
                    torch.autograd.grad(slow.square().sum(), inputs)):
        torch.testing.assert_close(a, b)


def test_pixelcnn_residual_stream_keeps_fp32_under_bf16_autocast():
    """A conditional model's stream is fp32 (a bf16 feature plus its label's fp32 bias) while the
    block's convolutions give bf16: the sum must not be rounded into the bf16 output."""
    torch.manual_seed(0)
    block = PixelCNN((1, 8, 8), channels=6, residual_blocks=1).blocks[0]
    x = torch.randn(2, 6, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast, slow = block(x), residual_block_by_definition(block, x)
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast, slow)
