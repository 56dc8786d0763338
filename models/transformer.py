"""A small ImageGPT-style causal transformer over the raster-scanned pixels (Chen et al. 2020).

Position t reads an embedding of the pixels before it (a learned start token at t = 0) plus a
learned position embedding; pre-LayerNorm blocks of causal self-attention and an MLP follow, and
a linear head gives the parameters of x_t's conditional (its logit for binary pixels). Sampling
keeps a key/value cache: one position per step.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.base import AutoregressiveModel, flat_views, require_positive
from models.fast import FastPaths
from models.fast.batch_chunks import in_chunks
from models.fast.padded_attention import cpu_head_dim, padded_heads_attention
from models.nn.causal_embedding import CausalPixelEmbedding
from models.nn.pixel_distributions import pixel_distribution_for
from models.nn.sampling import first_position_to_fill, one_thread_on_cpu


class CausalSelfAttention(nn.Module):
    """fast: on a CPU, the whole sequence's heads padded to whole vectors where that pays at their size
    (models/fast/padded_attention.py)."""

    def __init__(self, dim: int, heads: int, dropout: float, fast: bool):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.cpu_head_dim = cpu_head_dim(dim // heads) if fast else dim // heads

    def forward(self, x: torch.Tensor, cache: tuple | None = None, t: int | None = None) -> torch.Tensor:
        """x: (B, T, dim). Without `t`, the whole sequence (storing keys and values in `cache` if
        given); with `t`, the single position t (T = 1), attending to the cache's positions <= t."""
        batch, length, dim = x.shape
        head_dim = dim // self.heads
        if cache is None and self.cpu_head_dim != head_dim:
            return padded_heads_attention(x, self.qkv, self.proj, self.heads, self.cpu_head_dim,
                                          self.dropout if self.training else 0.0)
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


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float, fast: bool):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout, fast)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, cache: tuple | None = None, t: int | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, t)
        return x + self.mlp(self.ln2(x))


class PixelTransformer(FastPaths, AutoregressiveModel):
    """`layers` blocks of width `dim` with `heads` attention heads over the D raster positions.

    pixel_levels (256 with `data: grey`): the head gives the parameters of `output` (see
    models/pixelcnn.py) and the embedding reads the levels scaled to [-1, 1].

    fast (params.yaml's train.fast_paths): on a CPU, a large batch in pieces
    (models/fast/batch_chunks.py) and the heads padded (`CausalSelfAttention`)."""

    def __init__(self, image_shape=(1, 28, 28), dim: int = 256, layers: int = 8, heads: int = 8,
                 mlp_ratio: int = 4, input_window: int = 1, dropout: float = 0.0, pixel_levels: int = 2,
                 output: Literal["logistic_mixture", "softmax"] = "logistic_mixture", components: int = 10,
                 fast: bool = True):
        super().__init__(image_shape, pixel_distribution_for(pixel_levels, output, components))
        require_positive(dim=dim, layers=layers, heads=heads, mlp_ratio=mlp_ratio)
        self.fast = fast
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.embed = CausalPixelEmbedding(input_window, dim)
        self.position = nn.Parameter(torch.zeros(self.num_pixels, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout, fast) for _ in range(layers))
        self.ln_out = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, self.params_per_pixel)
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

    @property
    def fast_paths(self) -> list[str]:
        if not self.fast:
            return []
        attn = self.blocks[0].attn
        head_dim = self.position.shape[1] // attn.heads
        padded = [f"heads padded {head_dim} -> {attn.cpu_head_dim} on a CPU"] if attn.cpu_head_dim != head_dim else []
        return ["batch in pieces on a CPU", *padded]

    def pixel_params(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fast:
            return self._pixel_params(x)
        # on a CPU, in pieces of the batch whose largest activation, the MLP's (D, mlp_ratio * dim),
        # stays under the allocator's mmap threshold (models/fast/batch_chunks.py)
        largest = self.num_pixels * self.blocks[0].mlp[0].out_features * 4
        return in_chunks(self._pixel_params, x, largest)

    def _pixel_params(self, x: torch.Tensor) -> torch.Tensor:
        out = self.out(self.features(self.network_input(x).flatten(1)))  # (B, D, P)
        return out.transpose(1, 2).reshape(len(x), -1, *self.image_shape)

    @torch.no_grad()
    @one_thread_on_cpu
    def fill(self, x: torch.Tensor, observed: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One position per step, attending to cached keys and values; the observed prefix is one pass."""
        x = x.clone()
        flat_x, flat_obs, flat_noise = flat_views(x, observed, noise)
        caches = [self._empty_cache(block, len(x), x) for block in self.blocks]
        start = first_position_to_fill(observed)
        if start > 0:
            self.features(self.network_input(flat_x[:, :start]), caches)
        sequence = self.embed.padded_sequence(self.network_input(flat_x))
        for t in self.progress(range(start, self.num_pixels)):
            h = (self.embed.step(sequence, t) + self.position[t])[:, None]
            for block, cache in zip(self.blocks, caches):
                h = block(h, cache, t)
            params = self.out(self.ln_out(h[:, 0]))
            flat_x[:, t] = self.draw(params, flat_obs[:, t], flat_x[:, t], flat_noise[:, t])
            sequence[:, 0, self.embed.window + t] = self.network_input(flat_x[:, t])
        return x

    def _empty_cache(self, block: Block, batch: int, like: torch.Tensor) -> tuple:
        heads, dim = block.attn.heads, self.position.shape[1]
        shape = (batch, heads, self.num_pixels, dim // heads)
        return like.new_zeros(shape), like.new_zeros(shape)
