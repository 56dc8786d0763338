"""A recurrent network (LSTM or GRU) over the raster-scanned pixels, one step per pixel.

The published anchor is the Diagonal BiLSTM PixelRNN (van den Oord et al. 2016), a stronger
two-dimensional recurrent model than this one-dimensional raster scan.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from models.base import AutoregressiveModel, flat_views, fp32, require_positive
from models.nn.causal_embedding import CausalPixelEmbedding
from models.nn.pixel_distributions import pixel_distribution_for
from models.nn.sampling import first_position_to_fill, one_thread_on_cpu


class PixelRNN(AutoregressiveModel):
    """Step t reads an embedding of the `input_window` pixels before t (plus, optionally, a learned
    embedding of position t), updates a `layers`-deep LSTM/GRU state, and outputs the parameters of
    x_t's conditional: its logit for binary pixels; for pixel_levels (256 with `data: grey`), those of
    `output` (see models/pixelcnn.py), the embedding then reading the levels scaled to [-1, 1]."""

    def __init__(self, image_shape=(1, 28, 28), cell: Literal["lstm", "gru"] = "lstm", hidden: int = 256,
                 layers: int = 2, embedding: int = 64, input_window: int = 1, position_embedding: bool = True,
                 pixel_levels: int = 2, output: Literal["logistic_mixture", "softmax"] = "logistic_mixture",
                 components: int = 10):
        super().__init__(image_shape, pixel_distribution_for(pixel_levels, output, components))
        require_positive(hidden=hidden, layers=layers, embedding=embedding)
        self.embed = CausalPixelEmbedding(input_window, embedding)
        self.position = nn.Parameter(torch.randn(self.num_pixels, embedding) * 0.02) if position_embedding else None
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(embedding, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, self.params_per_pixel)

    def inputs(self, flat_x: torch.Tensor) -> torch.Tensor:
        e = self.embed(flat_x)
        return e if self.position is None else e + self.position

    def run(self, inputs: torch.Tensor, state=None):
        # In fp32 even under bf16 autocast: rounding compounds over 784 recurrent steps, and cuDNN's
        # RNN kernels do not take bf16 everywhere.
        with fp32(inputs.device.type):
            return self.rnn(inputs.to(self.out.weight.dtype), state)

    def pixel_params(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.run(self.inputs(self.network_input(x).flatten(1)))
        return self.out(h).transpose(1, 2).reshape(len(x), -1, *self.image_shape)

    @torch.no_grad()
    @one_thread_on_cpu
    def fill(self, x: torch.Tensor, observed: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One recurrent step per pixel, carrying the hidden state; the observed prefix is one call."""
        x = x.clone()
        flat_x, flat_obs, flat_noise = flat_views(x, observed, noise)
        start = first_position_to_fill(observed)
        state = None
        if start > 0:
            _, state = self.run(self.inputs(self.network_input(flat_x))[:, :start])
        sequence = self.embed.padded_sequence(self.network_input(flat_x))
        for t in self.progress(range(start, self.num_pixels)):
            e = self.embed.step(sequence, t)
            if self.position is not None:
                e = e + self.position[t]
            h, state = self.run(e[:, None], state)
            flat_x[:, t] = self.draw(self.out(h[:, 0]), flat_obs[:, t], flat_x[:, t], flat_noise[:, t])
            sequence[:, 0, self.embed.window + t] = self.network_input(flat_x[:, t])
        return x
