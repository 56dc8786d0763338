"""Causal self-attention with every head padded with zeros to a multiple of 16 numbers: the same
values as `CausalSelfAttention` (models/transformer.py) computes, faster on a CPU, where the fused
attention kernel runs whole AVX-512 vectors of floats fastest (figures: docs/benchmarks.md).

Zero rows in the qkv weight give zero query, key and value columns, which change no dot product,
and zero columns in the projection drop the padded output columns. Padding the small weights, not
the activations, costs no copy of q, k, v or the output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["cpu_head_dim", "padded_heads_attention"]


def cpu_head_dim(head_dim: int) -> int:
    """The head size attention runs at on a CPU: the next multiple of 16 where that adds at most an
    eighth (30 -> 32); where padding would add more (28 -> 32 gained nothing), the head size itself."""
    padded = head_dim + -head_dim % 16
    return padded if 8 * padded <= 9 * head_dim else head_dim


def padded_heads_attention(x: torch.Tensor, qkv: nn.Linear, proj: nn.Linear, heads: int, padded: int,
                           dropout: float) -> torch.Tensor:
    """proj(causal attention of the `heads` heads of qkv(x)) for x (B, T, dim), each head run at
    `padded` numbers on a CPU; elsewhere at its own size, where padding has not been measured to pay."""
    batch, length, dim = x.shape
    head_dim = dim // heads
    pad = padded - head_dim if x.device.type == "cpu" else 0
    qkv_weight = F.pad(qkv.weight.view(3, heads, head_dim, dim), (0, 0, 0, pad))
    qkv_bias = F.pad(qkv.bias.view(3, heads, head_dim), (0, pad))
    out = F.linear(x, qkv_weight.reshape(-1, dim), qkv_bias.flatten())
    q, k, v = out.view(batch, length, 3, heads, head_dim + pad).permute(2, 0, 3, 1, 4)
    scale = head_dim ** -0.5 if pad else None  # None: the kernel's own 1 / sqrt(head_dim), as unpadded
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout, scale=scale)
    proj_weight = F.pad(proj.weight.view(dim, heads, head_dim), (0, pad)).flatten(1)
    return F.linear(y.transpose(1, 2).reshape(batch, length, heads * (head_dim + pad)), proj_weight, proj.bias)
