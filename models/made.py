"""MADE (Germain et al. 2015): an autoencoder made autoregressive by masking its weights."""
from __future__ import annotations

import math

import torch
from torch import nn

from models.base import AutoregressiveModel, Reference, uniform_noise
from models.layers import MaskedLinear


class MADE(AutoregressiveModel):
    """A masked MLP: output i is connected only to inputs earlier than i in the ordering.

    num_masks > 1 trains on several masks (connectivity-agnostic: fresh hidden-unit degrees each;
    with order_agnostic also a fresh input ordering), cycling to the next mask at every training
    step. At evaluation the model is the uniform mixture over the first `eval_masks` masks, whose
    likelihood is exact: -log mean_k p_k(x). Mask 0 always uses raster order, so completions given
    the top half are exact under it.
    """

    reference = Reference(88.40, "Germain et al. 2015 (MADE, 1 hidden layer, 1 mask)")

    def __init__(self, image_shape=(1, 28, 28), hidden_sizes: list[int] = (500,), num_masks: int = 1,
                 order_agnostic: bool = False, eval_masks: int = 1, mask_seed: int = 0):
        super().__init__(image_shape)
        if not hidden_sizes or min(hidden_sizes) < 1:
            raise ValueError("hidden_sizes must be a non-empty list of positive sizes")
        if num_masks < 1 or not 1 <= eval_masks <= num_masks:
            raise ValueError("need num_masks >= 1 and 1 <= eval_masks <= num_masks")
        d = self.num_pixels
        sizes = [d, *hidden_sizes, d]
        self.layers = nn.ModuleList(MaskedLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.num_masks, self.eval_masks = num_masks, eval_masks
        self.degrees = self._draw_degrees(list(hidden_sizes), num_masks, order_agnostic, mask_seed)
        self.mask_index = -1
        self.use_mask(0)

    def _draw_degrees(self, hidden_sizes, num_masks, order_agnostic, seed) -> list[list[torch.Tensor]]:
        """The degrees of every layer (see `made_degrees`) for each mask; mask 0 uses raster order."""
        d, gen = self.num_pixels, torch.Generator().manual_seed(seed)
        all_degrees = []
        for k in range(num_masks):
            order = torch.randperm(d, generator=gen) if (order_agnostic and k > 0) else torch.arange(d)
            all_degrees.append(made_degrees(order, hidden_sizes, gen))
        return all_degrees

    def use_mask(self, k: int) -> None:
        if k == self.mask_index:
            return
        for layer, mask in zip(self.layers, made_masks(self.degrees[k])):
            layer.set_mask(mask)
        self.mask_index = k

    def get_extra_state(self):  # the current mask travels with the weights (resume, checkpoints)
        return {"mask_index": self.mask_index}

    def set_extra_state(self, state) -> None:
        self.mask_index = -1
        self.use_mask(state["mask_index"])

    def ordering(self) -> torch.Tensor:
        return torch.argsort(self.degrees[self.mask_index][0])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for layer in self.layers[:-1]:
            h = torch.relu(layer(h))
        return self.layers[-1](h).view_as(x)

    def fill(self, x: torch.Tensor, observed: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Keeps the first layer's pre-activation and adds one input column per generated pixel,
        and computes only pixel i's output: far cheaper than a full pass per pixel."""
        x = x.clone()
        flat_x, flat_obs, flat_noise = x.view(len(x), -1), observed.view(len(x), -1), noise.view(len(x), -1)
        first, last = self.layers[0], self.layers[-1]
        first_weight, last_weight = first.weight * first.mask, last.weight * last.mask
        pre = first(flat_x)
        for i in self.ordering().tolist():
            h = torch.relu(pre)
            for layer in self.layers[1:-1]:
                h = torch.relu(layer(h))
            p = torch.sigmoid(h @ last_weight[i] + last.bias[i])
            new = torch.where(flat_obs[:, i], flat_x[:, i], (flat_noise[:, i] < p).to(x.dtype))
            pre += (new - flat_x[:, i])[:, None] * first_weight[:, i]
            flat_x[:, i] = new
        return x

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        self.use_mask((self.mask_index + 1) % self.num_masks)
        return super().nll(x).mean()

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        if self.eval_masks == 1:
            self.use_mask(0)
            return super().nll(x)
        per_mask = []
        for k in range(self.eval_masks):
            self.use_mask(k)
            per_mask.append(-super().nll(x))
        return -(torch.logsumexp(torch.stack(per_mask), dim=0) - math.log(self.eval_masks))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw each image's mask uniformly from the evaluation mixture, then sample under it."""
        which = torch.randint(self.eval_masks, (n,), generator=generator,
                              device=generator.device if generator is not None else "cpu").cpu()
        out = torch.zeros((n, *self.image_shape), device=self.device)
        for k in which.unique().tolist():
            self.use_mask(k)
            rows = (which == k).nonzero().squeeze(1).to(self.device)
            shape = (len(rows), *self.image_shape)
            blank = torch.zeros(shape, device=self.device)
            out[rows] = self.fill(blank, blank.bool(), uniform_noise(shape, generator, self.device))
        return out

    @torch.no_grad()
    def complete(self, x, observed, generator=None):
        self.use_mask(0)
        return super().complete(x, observed, generator)


def made_degrees(order: torch.Tensor, hidden_sizes: list[int], generator: torch.Generator) -> list[torch.Tensor]:
    """The degree of every unit of a MADE over D = len(order) inputs: input `order[j]` gets degree
    j + 1 (its position in the ordering), and each hidden layer's units get degrees drawn uniformly
    between the previous layer's minimum and D - 1 (a unit of degree k may see inputs of degree <= k)."""
    d = len(order)
    inputs = torch.empty(d, dtype=torch.long)
    inputs[order] = torch.arange(1, d + 1)
    degrees = [inputs]
    for size in hidden_sizes:
        low = min(int(degrees[-1].min()), d - 1)
        degrees.append(torch.randint(low, d, (size,), generator=generator))
    return degrees


def made_masks(degrees: list[torch.Tensor]) -> list[torch.Tensor]:
    """One (out, in) 0/1 mask per layer for `made_degrees`: hidden units see units of degree <= theirs,
    and output i sees only hidden units of degree < degree(input i), so it depends on earlier inputs only."""
    hidden = [nxt[:, None] >= prev[None, :] for prev, nxt in zip(degrees[:-1], degrees[1:])]
    return [*hidden, degrees[0][:, None] > degrees[-1][None, :]]
