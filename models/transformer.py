"""A small ImageGPT-style causal transformer over the raster-scanned pixels (Chen et al. 2020).

Position t reads an embedding of the pixels before it (a learned start token at t = 0) plus a
learned position embedding; pre-LayerNorm blocks of causal self-attention and an MLP follow, and
a linear head gives the logit of x_t. Sampling keeps a key/value cache: one position per step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.base import AutoregressiveModel, draw_or_keep, require_positive
from models.nn.batch_chunks import in_chunks
from models.nn.causal_embedding import CausalPixelEmbedding
from models.nn.sampling import first_position_to_fill, one_thread_on_cpu
from models.progress import pixels


def padded_head_dim(head_dim: int, device: torch.device) -> int:
    """The head size attention runs at: on a CPU, the next multiple of 16 (an AVX-512 vector of
    floats) where that adds at most an eighth, e.g. 30 -> 32 (the flash kernel is faster at a whole
    vector than at 30); elsewhere, and where padding would add more (28 -> 32 gained nothing), the
    head size itself. Figures: docs/benchmarks.md."""
    padded = head_dim + -head_dim % 16
    return padded if device.type == "cpu" and 8 * padded <= 9 * head_dim else head_dim


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cache: tuple | None = None, t: int | None = None) -> torch.Tensor:
        """x: (B, T, dim). Without `t`, the whole sequence (storing keys and values in `cache` if
        given); with `t`, the single position t (T = 1), attending to the cache's positions <= t."""
        batch, length, dim = x.shape
        head_dim = dim // self.heads
        padded = padded_head_dim(head_dim, x.device)
        if t is None and cache is None and padded != head_dim:
            return self._padded_heads(x, head_dim, padded)
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        if t is None:
            if cache is not None:
                cache[0][:, :, :length], cache[1][:, :, :length] = k, v
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.dropout if self.training else 0.0)
        else:
            cache[0][:, :, t:t + 1], cache[1][:, :, t:t + 1] = k, v
            y = F.scaled_dot_product_attention(q, cache[0][:, :, :t + 1], cache[1][:, :, :t + 1])
        return self.proj(y.transpose(1, 2).reshape(batch, length, dim))

    def _padded_heads(self, x: torch.Tensor, head_dim: int, padded: int) -> torch.Tensor:
        """The same attention with every head padded with zeros to `padded`: zero rows in the qkv
        weight give zero query, key and value columns, which change no dot product, and zero
        columns in the projection drop the padded output columns. Padding the small weights, not
        the activations, costs no copy of q, k, v or the output."""
        batch, length, dim = x.shape
        pad = padded - head_dim
        qkv_weight = F.pad(self.qkv.weight.view(3, self.heads, head_dim, dim), (0, 0, 0, pad))
        qkv_bias = F.pad(self.qkv.bias.view(3, self.heads, head_dim), (0, pad))
        qkv = F.linear(x, qkv_weight.reshape(-1, dim), qkv_bias.flatten())
        q, k, v = qkv.view(batch, length, 3, self.heads, padded).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0,
                                           scale=head_dim ** -0.5)
        proj_weight = F.pad(self.proj.weight.view(dim, self.heads, head_dim), (0, pad)).flatten(1)
        return F.linear(y.transpose(1, 2).reshape(batch, length, self.heads * padded), proj_weight, self.proj.bias)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, cache: tuple | None = None, t: int | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, t)
        return x + self.mlp(self.ln2(x))


class PixelTransformer(AutoregressiveModel):

    def __init__(self, image_shape=(1, 28, 28), dim: int = 256, layers: int = 8, heads: int = 8,
                 mlp_ratio: int = 4, input_window: int = 1, dropout: float = 0.0):
        super().__init__(image_shape)
        require_positive(dim=dim, layers=layers, heads=heads, mlp_ratio=mlp_ratio)
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.embed = CausalPixelEmbedding(input_window, dim)
        self.position = nn.Parameter(torch.zeros(self.num_pixels, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout) for _ in range(layers))
        self.ln_out = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, 1)
        self.apply(self._init_weights)
        nn.init.normal_(self.position, std=0.02)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def features(self, flat_x: torch.Tensor, caches: list | None = None) -> torch.Tensor:
        h = self.embed(flat_x) + self.position[:flat_x.shape[1]]
        for i, block in enumerate(self.blocks):
            h = block(h, None if caches is None else caches[i])
        return self.ln_out(h)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        # on a CPU, in pieces of the batch whose largest activation, the MLP's (D, mlp_ratio * dim),
        # stays under the allocator's mmap threshold (models/nn/batch_chunks.py)
        largest = self.num_pixels * self.blocks[0].mlp[0].out_features * 4
        return in_chunks(lambda x: self.out(self.features(x.flatten(1))).view_as(x), x, largest)

    @torch.no_grad()
    @one_thread_on_cpu
    def fill(self, x: torch.Tensor, observed: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One position per step, attending to cached keys and values; the observed prefix is one pass."""
        x = x.clone()
        flat_x, flat_obs, flat_noise = x.view(len(x), -1), observed.view(len(x), -1), noise.view(len(x), -1)
        caches = [self._empty_cache(block, len(x), x) for block in self.blocks]
        start = first_position_to_fill(observed)
        if start > 0:
            self.features(flat_x[:, :start], caches)
        sequence = self.embed.padded_sequence(flat_x)
        for t in pixels(range(start, self.num_pixels)):
            h = (self.embed.step(sequence, t) + self.position[t])[:, None]
            for block, cache in zip(self.blocks, caches):
                h = block(h, cache, t)
            p = torch.sigmoid(self.out(self.ln_out(h[:, 0])))[:, 0]
            flat_x[:, t] = draw_or_keep(flat_obs[:, t], flat_x[:, t], p, flat_noise[:, t])
            sequence[:, 0, self.embed.window + t] = flat_x[:, t]
        return x

    def _empty_cache(self, block: Block, batch: int, like: torch.Tensor) -> tuple:
        heads, dim = block.attn.heads, self.position.shape[1]
        shape = (batch, heads, self.num_pixels, dim // heads)
        return like.new_zeros(shape), like.new_zeros(shape)
