"""The causal pixel embedding of the autoregressive sequence models (RNN, transformer): position t of
a raster-scanned image embedded from the pixels before it only."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.base import require_positive


class CausalPixelEmbedding(nn.Module):
    """Embeds position t of a raster-scanned image from the `window` pixels before it, x_{t-window..t-1}.

    Positions before the image starts hold a learned start token (an indicator channel), so with
    window=1 this is the usual "previous pixel, or a start token at t=0" input of an autoregressive
    sequence model; a wider window hands the model the local context (e.g. the row above) directly.
    The embedding is linear in x, so gradients w.r.t. the pixels exist (the dependency tests use them).
    """

    def __init__(self, window: int, dim: int):
        super().__init__()
        require_positive(input_window=window)
        self.window = window
        self.conv = nn.Conv1d(2, dim, window)  # channels: pixel value, "before the image" indicator

    def padded_sequence(self, flat_x: torch.Tensor) -> torch.Tensor:
        """(B, D) pixels -> (B, 2, window + D): `window` start positions, then the image."""
        values = F.pad(flat_x, (self.window, 0))
        before_image = torch.zeros_like(values)
        before_image[:, :self.window] = 1
        return torch.stack([values, before_image], 1)

    def forward(self, flat_x: torch.Tensor) -> torch.Tensor:
        """(B, D) pixels -> (B, D, dim); output t depends only on pixels before t."""
        return self.conv(self.padded_sequence(flat_x)[..., :-1]).transpose(1, 2)

    def step(self, sequence: torch.Tensor, t: int) -> torch.Tensor:
        """The embedding of position t alone, from a `padded_sequence` whose pixels before t are set."""
        window = sequence[..., t:t + self.window].flatten(1)
        return F.linear(window, self.conv.weight.flatten(1), self.conv.bias)
