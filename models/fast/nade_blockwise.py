"""NADE's logits block by block over the pixels, with a backward pass of its own: what `NADE.plain_logits`
(models/nade.py) computes, in memory for one block instead of all pixels.

Memory and speed: the pre-activations of all pixels form a (batch, pixels, hidden) tensor, 800 MB at
batch 512 and 500 hidden units, and elementwise passes over it are memory-bound. NADELogits walks the
pixels in blocks, carrying the running pre-activation from block to block, and recomputes each block in
backward instead of storing it, so memory is one block plus O(batch * hidden). On CPU a block is one
pixel, whose (batch, hidden) slab stays in cache, unless slabs are under SMALL_SLAB numbers: then
per-op overhead would dominate and a block takes up to CPU_BLOCK_NUMBERS (not always: torch's cumsum
within a block costs several times more per number than a pixel's own ops). GPUs are bound by kernel
launches instead, so their blocks are large.
"""
from __future__ import annotations

import torch

__all__ = ["nade_logits"]

SMALL_SLAB = 2 ** 14
CPU_BLOCK_NUMBERS = 2 ** 18
GPU_BLOCK_NUMBERS = 2 ** 24


def nade_logits(x: torch.Tensor, W: torch.Tensor, c: torch.Tensor, V: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """logit_i = b_i + V_i . sigmoid(c + sum_{j<i} x_j W_j) for x (B, D): (B, D)."""
    return NADELogits.apply(x, W, c, V, b)


class NADELogits(torch.autograd.Function):
    """(x (B, D), W, c, V, b) -> NADE's logits (B, D), block by block over the pixels.

    Pixel-major inside: a block's pre-activations are (K, B, H). h = sigmoid(a) directly, not through
    tanh(a / 2) = 2h - 1: a CPU's tanh costs several sigmoids per number, and it dominated the step
    (figures: docs/benchmarks.md)."""

    @staticmethod
    def forward(ctx, x, W, c, V, b):
        xt = x.t().contiguous()
        size = _block_size(*xt.shape, W.shape[1], xt.device)
        a = c.repeat(len(x), 1)  # a at the first pixel of the current block (a copy: it is updated in place)
        h = a.new_empty(size, *a.shape)  # reused for every block
        Vh = xt.new_empty(xt.shape)
        for x_k, W_k, V_k, Vh_k in _split(size, xt, W, V.unsqueeze(2), Vh.unsqueeze(2)):
            torch.bmm(_hidden(a, x_k, W_k, out=h[:len(x_k)]), V_k, out=Vh_k)
            a.addmm_(x_k.t(), W_k)
        ctx.save_for_backward(xt, W, V, a)
        return (Vh.t() + b).contiguous()

    @staticmethod
    def backward(ctx, grad):
        xt, W, V, a = ctx.saved_tensors
        a = a.clone()  # walked back to the first pixel; backward may run again (retain_graph)
        grad_t = grad.t().contiguous()  # dL/d(V_i . h_i), (D, B)
        size = _block_size(*xt.shape, W.shape[1], xt.device)
        grad_xt = torch.empty_like(xt)
        grad_W, grad_V = torch.empty_like(W), torch.empty_like(V)
        h = a.new_empty(size, *a.shape)
        later = torch.zeros_like(a)  # dL/da summed over the pixels after the current block
        blocks = _split(size, xt, W, V.unsqueeze(1), grad_t, grad_W.unsqueeze(1), grad_V.unsqueeze(1),
                        grad_xt.unsqueeze(2))
        for x_k, W_k, V_k, g_k, grad_W_k, grad_V_k, grad_x_k in reversed(blocks):
            a.addmm_(x_k.t(), W_k, alpha=-1)  # undo the forward's step
            hidden = _hidden(a, x_k, W_k, out=h[:len(x_k)])
            torch.bmm(g_k.unsqueeze(1), hidden, out=grad_V_k)
            # dL/da_i = g_i V_i h_i (1 - h_i), written over h
            grad_a = torch.ops.aten.sigmoid_backward.grad_input(V_k, hidden, grad_input=hidden).mul_(g_k.unsqueeze(2))
            after = _sums_after(later, grad_a)  # a_i contains x_j W_j for all j < i
            torch.bmm(x_k.unsqueeze(1), after, out=grad_W_k)
            if ctx.needs_input_grad[0]:
                torch.bmm(after, W_k.unsqueeze(2), out=grad_x_k)
            torch.add(after[0], grad_a[0], out=later)
        grad_x = grad_xt.t() if ctx.needs_input_grad[0] else None
        return grad_x, grad_W, later.sum(0), grad_V, grad.sum(0)


def _block_size(pixels: int, batch: int, hidden: int, device: torch.device) -> int:
    """Pixels per block (see the comment on SMALL_SLAB)."""
    slab = max(1, batch * hidden)
    if device.type != "cpu":
        return max(1, min(pixels, GPU_BLOCK_NUMBERS // slab))
    return 1 if slab >= SMALL_SLAB else min(pixels, CPU_BLOCK_NUMBERS // slab)


def _split(size: int, *tensors: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """Per block of `size` pixels, the tensors' slices along their first (pixel) dimension."""
    return list(zip(*(t.split(size) for t in tensors)))


def _hidden(a: torch.Tensor, xt: torch.Tensor, W: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out (K, B, H) = sigmoid(a + sum_{j<i} x_j W_j) for each pixel i of a block; a (B, H) is at its first."""
    if len(xt) == 1:
        return torch.sigmoid(a, out=out[0]).unsqueeze(0)
    out[0] = a
    torch.mul(xt[:-1].unsqueeze(2), W[:-1].unsqueeze(1), out=out[1:])
    return out.cumsum_(0).sigmoid_()


def _sums_after(later: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """(K, B, H): later + sum_{i>j} grad_i for each pixel j of a block, i within the block."""
    if len(grad) == 1:
        return later.unsqueeze(0)
    inclusive = grad.cumsum(0)
    total = later + inclusive[-1]
    return inclusive.neg_().add_(total)  # exactly zero where later and every grad_i after j are zero

