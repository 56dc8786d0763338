"""MADE (Germain et al. 2015): an autoencoder made autoregressive by masking its weights."""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from models.base import (
    DIGIT_CLASSES,
    AutoregressiveModel,
    ClassConditional,
    LabelConditioning,
    flat_views,
    generator_device,
    labels_kwarg,
    require_sizes,
    uniform_noise,
)
from models.fast import FastPaths
from models.fast.blocked_masked_linear import BlockedMaskedLinear, BlockedMaskedMLP, pays_to_block
from models.nn.masked_linear import IncrementalMADE, MaskedLinear, MaskedMLP, made_degrees, made_masks
from models.nn.pixel_distributions import pixel_distribution_for


class MADE(FastPaths, AutoregressiveModel, LabelConditioning):
    """A masked MLP: output i is connected only to inputs earlier than i in the ordering.

    num_masks > 1 trains on several masks (connectivity-agnostic: fresh hidden-unit degrees each;
    with order_agnostic also a fresh input ordering), cycling to the next mask at every training
    step. At evaluation the model is the uniform mixture over the first `eval_masks` masks, whose
    likelihood is exact: -log mean_k p_k(x). Mask 0 always uses raster order, so completions given
    the top half are exact under it.

    fast (params.yaml's train.fast_paths): with one mask and a large layer (`pays_to_block`), layers
    that compute only the blocks of the weights the mask lets through (models/fast/blocked_masked_linear.py:
    about half the multiply-adds, the same function and checkpoints); otherwise (an ensemble shares
    dense masked weights between its masks) masks cached on the device (`device_masks`). fast=False:
    the dense masked layers, their masks built afresh at every switch.

    direct_connections: a masked linear map from the inputs straight to the output logits (as in
    Germain et al.'s experiments): the model then contains an FVSBN, and the hidden layers add to it.

    conditional: p(x | y) for a digit y, which adds a per-class bias to the first hidden layer and
    to the output logits (every pixel may depend on the label: the first pixel only through the
    output bias, since no hidden unit reaches it).

    pixel_levels (256 with `data: grey`): each pixel gets P = `params_per_pixel` outputs, all with its
    degree (a block of D outputs per parameter), the parameters of its `pixel_distribution`: Bernoulli
    (one logit) for binary pixels, else `output`, a discretized mixture of `components` logistics or a
    softmax over the levels (see models/pixelcnn.py), the network reading the levels scaled to [-1, 1].
    `output` and `components` are for grey levels only.
    """

    def __init__(self, image_shape=(1, 28, 28), hidden_sizes: list[int] = (500,), num_masks: int = 1,
                 order_agnostic: bool = False, eval_masks: int = 1, mask_seed: int = 0, conditional: bool = False,
                 direct_connections: bool = False, pixel_levels: int = 2,
                 output: Literal["logistic_mixture", "softmax"] = "logistic_mixture", components: int = 10,
                 fast: bool = True):
        super().__init__(image_shape, pixel_distribution_for(pixel_levels, output, components))
        require_sizes(hidden_sizes=hidden_sizes)
        if num_masks < 1 or not 1 <= eval_masks <= num_masks:
            raise ValueError("need num_masks >= 1 and 1 <= eval_masks <= num_masks")
        self.num_masks, self.eval_masks = num_masks, eval_masks
        self.degrees = self._draw_degrees(list(hidden_sizes), num_masks, order_agnostic, mask_seed)
        self._device_masks: dict[int, list[torch.Tensor]] = {}
        self.mask_index = -1
        self.fast = fast
        layer_sizes = [self.num_pixels, *hidden_sizes, self.num_pixels * self.params_per_pixel]
        self.blocked = fast and num_masks == 1 and pays_to_block(layer_sizes)
        self.mlp, self.direct = self._layers(hidden_sizes, direct_connections)
        if self.direct is not None:
            nn.init.zeros_(next(self.direct.parameters()))  # it starts as the plain MADE
        self.use_mask(0)
        if conditional:
            self.init_labels(DIGIT_CLASSES)
            self.label_hidden = nn.Embedding(self.num_classes, hidden_sizes[0])
            self.label_logits = nn.Embedding(self.num_classes, self.num_pixels * self.params_per_pixel)
            nn.init.zeros_(self.label_hidden.weight)  # it starts as the unconditional model
            nn.init.zeros_(self.label_logits.weight)

    @property
    def fast_paths(self) -> list[str]:
        if not self.fast:
            return []
        paths = ["blocked masked layers"] if self.blocked else ["masks cached per device"]
        if isinstance(self, ClassConditional):
            paths.append("all classes in one batch")
        return paths

    def _layers(self, hidden_sizes, direct_connections: bool) -> tuple[nn.Module, nn.Module | None]:
        """The masked MLP and the direct connections, blocked or dense."""
        d, per_pixel = self.num_pixels, self.params_per_pixel
        if self.blocked:
            inputs = self.degrees[0][0]
            mlp = BlockedMaskedMLP(self.degrees[0], per_pixel)
            make_direct = lambda: BlockedMaskedLinear(inputs, inputs.repeat(per_pixel), strict=True, bias=False)
        else:
            mlp = MaskedMLP([d, *hidden_sizes, d * per_pixel])
            make_direct = lambda: MaskedLinear(d, d * per_pixel, bias=False)
        return mlp, make_direct() if direct_connections else None

    def _draw_degrees(self, hidden_sizes, num_masks, order_agnostic, seed) -> list[list[torch.Tensor]]:
        """The degrees of every layer (see `made_degrees`) for each mask; mask 0 uses raster order."""
        d, gen = self.num_pixels, torch.Generator().manual_seed(seed)
        all_degrees = []
        for k in range(num_masks):
            order = torch.randperm(d, generator=gen) if (order_agnostic and k > 0) else torch.arange(d)
            all_degrees.append(made_degrees(order, hidden_sizes, gen))
        return all_degrees

    def use_mask(self, k: int, in_place: bool = True) -> None:
        """Switch to mask k (`in_place`: see `MaskedLinear.set_mask`)."""
        if k == self.mask_index:
            return
        if self.blocked:  # the blocked layers compute their one mask
            self.mask_index = k
            return
        masks = self.device_masks(k)
        self.mlp.set_masks(masks[:len(self.mlp.layers)], in_place)
        if self.direct is not None:
            self.direct.set_mask(masks[-1], in_place)
        self.mask_index = k

    def device_masks(self, k: int) -> list[torch.Tensor]:
        """Mask k's layer masks on the model's device, as bool. fast: built once per device, so that
        switching masks (every training step with num_masks > 1, every mask of the ensemble at
        evaluation) costs no host work and no copy on a GPU, where a float times a bool mask is one
        kernel. Bool keeps the cache small: at 2 x 8000 hidden units a mask set takes 77 MB (32 masks:
        2.4 GB; in float they would take 9.8 GB). On a CPU the mask in use is copied into each layer's
        float buffer (`MaskedLinear.set_mask`). fast=False: built afresh at every switch."""
        if k in self._device_masks:
            return self._device_masks[k]
        masks = made_masks(self.degrees[k], self.params_per_pixel)
        if self.direct is not None:  # input j reaches output i when j comes before i in the ordering
            inputs = self.degrees[k][0]
            masks.append((inputs[:, None] > inputs[None, :]).repeat(self.params_per_pixel, 1))
        masks = [mask.to(self.device, torch.bool) for mask in masks]
        if self.fast:
            self._device_masks[k] = masks
        return masks

    def _apply(self, fn, *args, **kwargs):  # .to(device) and friends: masks are rebuilt on the new device
        self._device_masks.clear()
        return super()._apply(fn, *args, **kwargs)

    def get_extra_state(self):  # the current mask travels with the weights (resume, checkpoints)
        return {"mask_index": self.mask_index}

    def set_extra_state(self, state) -> None:
        self.mask_index = -1
        self.use_mask(state["mask_index"])

    def ordering(self) -> torch.Tensor:
        return torch.argsort(self.degrees[self.mask_index][0])

    def pixel_params(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        self.check_labels(labels)
        flat = self.network_input(x).flatten(1)
        first, *middle, last = self.mlp.layers
        h = first(flat)
        if labels is not None:
            h = h + self.label_hidden(labels)
        h = torch.relu(h)
        for layer in middle:
            h = torch.relu(layer(h))
        out = last(h)
        if labels is not None:
            out = out + self.label_logits(labels)
        if self.direct is not None:
            out = out + self.direct(flat)
        return out.view(len(x), -1, *self.image_shape)

    def fill(self, x: torch.Tensor, observed: torch.Tensor, noise: torch.Tensor,
             labels: torch.Tensor | None = None) -> torch.Tensor:
        """MADE's incremental pass (`IncrementalMADE`): far cheaper than a full pass per pixel."""
        x = x.clone()
        flat_x, flat_obs, flat_noise = flat_views(x, observed, noise)
        flat_in = self.network_input(flat_x).clone()  # what the network reads, kept up to date
        first = self.mlp.layers[0]
        direct_weight = None if self.direct is None else self.direct.masked_weight()
        self.check_labels(labels)
        steps = IncrementalMADE(self.mlp, first(flat_in) if labels is None else
                                first(flat_in) + self.label_hidden(labels))
        label_logits = None if labels is None else self.label_logits(labels)
        d = self.num_pixels
        for i in self.progress(self.ordering().tolist()):
            params = steps.outputs(i)
            rows = slice(i, None, d)  # pixel i's outputs: one in each block of D
            if direct_weight is not None:  # its rows see only pixels already drawn (or observed)
                params = params + flat_in @ direct_weight[rows].T
            if label_logits is not None:
                params = params + label_logits[:, rows]
            flat_x[:, i] = self.draw(params, flat_obs[:, i], flat_x[:, i], flat_noise[:, i])
            new = self.network_input(flat_x[:, i])
            steps.input_changed(i, new - flat_in[:, i])
            flat_in[:, i] = new
        return x

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        self.use_mask((self.mask_index + 1) % self.num_masks)
        return super().nll(x, labels).mean()

    def nll(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """-log p(x | y), or without labels on a conditional MADE the marginal (through
        `class_log_joint`), under the mixture of the `eval_masks` masks."""
        if labels is None and isinstance(self, ClassConditional):
            return self.marginal_nll(x)
        return -self._mask_mixture(lambda: -super(MADE, self).nll(x, labels))

    def class_log_joint(self, x: torch.Tensor, nll=None) -> torch.Tensor:
        """fast, with the model's own NLL: every class in one batch, so that each of the `eval_masks`
        masks is switched to and multiplied into the weights once, not once per class (at the full
        profile's 2 x 8000 units that product dominated the pass); the same sums per class."""
        if nll is not None or not self.fast:
            return super().class_log_joint(x, nll)
        classes = self.num_classes
        every_class = torch.arange(classes, device=x.device).repeat_interleave(len(x))
        log_likelihood = self._mask_mixture(lambda: -super(MADE, self).nll(x.repeat(classes, *[1] * (x.dim() - 1)),
                                                                            every_class))
        return log_likelihood.view(classes, len(x)).T + self.label_log_prior.to(log_likelihood.dtype)

    def _mask_mixture(self, log_likelihood) -> torch.Tensor:
        """log of the mean over the `eval_masks` masks of exp(log_likelihood()) under each mask."""
        if self.eval_masks == 1:
            self.use_mask(0)
            return log_likelihood()
        per_mask = []
        for k in range(self.eval_masks):
            self.use_mask(k, in_place=not torch.is_grad_enabled())  # under autograd each mask's graph keeps its mask
            per_mask.append(log_likelihood())
        return torch.logsumexp(torch.stack(per_mask), dim=0) - math.log(self.eval_masks)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """Draw each image's mask uniformly from the evaluation mixture, then sample under it (given
        `labels`, or labels drawn from p(y), when conditional)."""
        if self.conditional:
            labels = self.labels_or_prior(labels, n, generator)
        which = torch.randint(self.eval_masks, (n,), generator=generator, device=generator_device(generator)).cpu()
        out = torch.zeros((n, *self.image_shape), device=self.device)
        for k in which.unique().tolist():
            self.use_mask(k)
            rows = (which == k).nonzero().squeeze(1).to(self.device)
            shape = (len(rows), *self.image_shape)
            blank = torch.zeros(shape, device=self.device)
            row_labels = labels_kwarg(None if labels is None else labels[rows])
            out[rows] = self.fill(blank, blank.bool(), uniform_noise(shape, generator, self.device), **row_labels)
        return out

    @torch.no_grad()
    def complete(self, x, observed, generator=None, labels=None):
        self.use_mask(0)
        return super().complete(x, observed, generator, **labels_kwarg(labels))

