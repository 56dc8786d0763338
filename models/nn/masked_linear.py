"""Masked linear layers and the masked MLP of MADE (Germain et al. 2015), shared by FVSBN, MADE and MAF.

A MADE gives every unit a degree: input `order[j]` gets j + 1, and a hidden unit of degree k may
see units of degree <= k. An output for input i may see only hidden units of degree < degree(i),
so it depends on the inputs before i in the ordering and on nothing else.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a 0/1 mask of shape (out, in), bool or in the
    weight's dtype. The mask is not saved with the weights: the family's constructor builds it
    again from its own arguments."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.register_buffer("mask", torch.ones(out_features, in_features), persistent=False)

    def set_mask(self, mask: torch.Tensor, in_place: bool = True) -> None:
        """Use `mask` from now on. On a GPU a bool mask stays bool (a float times a bool is one kernel
        there, reading a quarter of the bytes). Otherwise the mask becomes the weight's dtype, written
        into the layer's own buffer: on a CPU a float times a bool is twice as slow, and a fresh float
        tensor per switch (every training step of a multi-mask MADE) costs four times the copy. Pass
        `in_place=False` while a graph still to be differentiated may hold the current mask."""
        if mask.dtype == torch.bool and self.weight.is_cuda:
            self.mask = mask.to(self.weight.device)
        elif in_place and (self.mask.shape, self.mask.dtype, self.mask.device) == (
                mask.shape, self.weight.dtype, self.weight.device):
            self.mask.copy_(mask)
        else:
            self.mask = mask.to(self.weight.device, self.weight.dtype, copy=True)

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


class MaskedMLP(nn.Module):
    """Masked linear layers of `sizes` = [inputs, *hidden, outputs] with ReLU between them."""

    def __init__(self, sizes: list[int]):
        super().__init__()
        self.layers = nn.ModuleList(MaskedLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def set_masks(self, masks: list[torch.Tensor], in_place: bool = True) -> None:
        for layer, mask in zip(self.layers, masks, strict=True):
            layer.set_mask(mask, in_place)

    def hidden(self, h: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations for inputs `h`."""
        for layer in self.layers[:-1]:
            h = torch.relu(layer(h))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[-1](self.hidden(x))


def made_degrees(order: torch.Tensor, hidden_sizes: list[int], generator: torch.Generator) -> list[torch.Tensor]:
    """The degree of every unit of a MADE over D = len(order) inputs: input `order[j]` gets degree
    j + 1, and each hidden layer's units get degrees drawn uniformly between the previous layer's
    minimum and D - 1."""
    d = len(order)
    inputs = torch.empty(d, dtype=torch.long)
    inputs[order] = torch.arange(1, d + 1)
    degrees = [inputs]
    for size in hidden_sizes:
        low = min(int(degrees[-1].min()), d - 1)
        degrees.append(torch.randint(low, d, (size,), generator=generator))
    return degrees


def made_masks(degrees: list[torch.Tensor], outputs_per_input: int = 1) -> list[torch.Tensor]:
    """One (out, in) 0/1 mask per layer for `made_degrees`: hidden units see units of degree <= theirs,
    and output i sees only hidden units of degree < degree(input i). With `outputs_per_input` = k
    the output layer has k blocks of D outputs (e.g. MAF's shift and scale), each masked alike."""
    hidden = [nxt[:, None] >= prev[None, :] for prev, nxt in zip(degrees[:-1], degrees[1:])]
    output = degrees[0][:, None] > degrees[-1][None, :]
    return [*hidden, output.repeat(outputs_per_input, 1)]


class IncrementalMADE:
    """A MADE's outputs for one input at a time while its inputs are being filled in, in its ordering
    (sampling MADE, inverting MAF): the first layer's pre-activations are kept and updated by one
    weight column per input that changes (a rank-one update), and the last layer computes only the
    current input's outputs, so a step of a one-hidden-layer MADE costs O(hidden), not a full pass.

    `mlp`: a MaskedMLP (or a layer stack with the same `layers`, `layer(h)`, `masked_weight()` and
    `bias`); `first_pre`: its first layer's pre-activations for the inputs as they stand, (B, hidden),
    updated in place."""

    def __init__(self, mlp: nn.Module, first_pre: torch.Tensor):
        first, *self.middle, last = mlp.layers
        self.first_columns = first.masked_weight().T.contiguous()  # row i: how input i enters the first layer
        self.last_weight, self.last_bias = last.masked_weight(), last.bias
        self.pre = first_pre
        self.inputs = len(self.first_columns)

    def outputs(self, i: int) -> torch.Tensor:
        """Input i's outputs, one from each block of D outputs (e.g. MAF's shift and raw scale): (B, blocks)."""
        h = torch.relu(self.pre)
        for layer in self.middle:
            h = torch.relu(layer(h))
        rows = slice(i, None, self.inputs)
        return h @ self.last_weight[rows].T + self.last_bias[rows]

    def input_changed(self, i: int, change: torch.Tensor) -> None:
        """Input i changed by `change` (B,)."""
        self.pre += change[:, None] * self.first_columns[i]
