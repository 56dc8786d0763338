"""MADE's masked linear layer computed block by block: only the parts of the weight that its mask
can let through are stored and multiplied.

A MADE mask is a function of degrees (`models/nn/masked_linear.py`: `made_degrees`, `made_masks`):
output unit o sees input unit i when degree(o) >= degree(i) (hidden layers) or degree(o) > degree(i)
(the output layer, and the direct input-to-output connections). Reorder the inputs and the outputs
of a layer by degree, a permutation that changes no function, and output row r sees a prefix of the
sorted inputs, of length L[r], with L non-decreasing: the mask is a staircase. Cut the rows into
groups; for a group of rows [r0, r1) the columns before L[r0] are all visible (a dense block), those
from L[r0] to L[r1 - 1] partly (a small diagonal block, masked), and the rest not at all (skipped).
For MADE's uniformly drawn degrees about half of every mask is zero, so with 16 groups about 47% of
the multiply-adds of the dense masked product are skipped (`BlockPlan.skipped`), and as much of the
weight is never stored, read, or updated by the optimizer (which also halves the optimizer's work).

    layer = BlockedMaskedLinear(in_degrees, out_degrees, strict=False)   # == MaskedLinear with
    y = layer(x)                                                          #    made_masks' mask

One layer serves one mask (fixed degrees): the skipped weights do not exist, so they cannot serve a
second mask. A MADE with `num_masks` > 1 (an ensemble sharing its weights) keeps `MaskedLinear`.

The state dict holds `weight` as the dense (out, in) masked weight in the caller's unit order (zeros
where the mask is 0) and `bias`, the keys and shapes of `MaskedLinear`: checkpoints move between the
two either way (loading a dense checkpoint drops the weights this mask zeroes, which it never used).

MADE (`models/made.py`) builds these layers, with its fast paths on, for one mask once a layer is large
(`pays_to_block`); the layers keep `layers`, `layer(h)`, `masked_weight()`, `.bias` and MaskedLinear's
state dict, so its pixel_params(), fill() and checkpoints work unchanged.

For grey levels with P outputs per pixel, `BlockedMaskedMLP(degrees, outputs_per_input=P)` gives the
output layer the degrees of `made_masks(degrees, P)` (P blocks of D outputs, each with its pixel's
degree); any repetition of the pixel degrees works, since only the degrees matter. The layers take
inputs and give outputs in the caller's unit order and permute internally (an index_select of the
activations, skipped when the degrees are already sorted); `BlockedMaskedMLP` keeps the activations
sorted between its layers, so only its input and output are permuted (`sort_hidden_units` relabels
the hidden units of a dense MADE the same way, for checkpoints of either order).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["BlockPlan", "BlockedMaskedLinear", "BlockedMaskedMLP", "default_blocks", "degree_order", "made_layer_degrees",
           "pays_to_block", "sort_hidden_units"]

MAX_BLOCKS = 16  # row groups per layer: 47% of a MADE layer skipped, against 50% for a perfect cut
# Fewer weights than this a group multiply too little at a time to pay for the extra products: at
# 784 -> 500 -> 784 one group per layer is fastest, at 784 -> 8000 -> 784 sixteen (bench.made_blocks)
MIN_GROUP_WEIGHTS = 2**18


# A network whose layers all have fewer weights gains nothing from the blocks: its dense masked product
# is as fast (bench.made_blocks)
BLOCKED_FROM_WEIGHTS = 2**20


def pays_to_block(layer_sizes: Sequence[int]) -> bool:
    """Whether a masked MLP of these sizes (inputs, hidden layers, outputs) runs faster blocked: once one
    of its layers has BLOCKED_FROM_WEIGHTS weights."""
    return max(a * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:])) >= BLOCKED_FROM_WEIGHTS


def default_blocks(in_features: int, out_features: int) -> int:
    """Row groups for a layer of this size: one per MIN_GROUP_WEIGHTS weights, 1 to MAX_BLOCKS."""
    return max(1, min(MAX_BLOCKS, in_features * out_features // MIN_GROUP_WEIGHTS))


def degree_order(degrees: torch.Tensor) -> torch.Tensor:
    """The permutation that sorts units by degree (stable: ties keep their order)."""
    return torch.argsort(degrees, stable=True)


def made_layer_degrees(degrees: Sequence[torch.Tensor], outputs_per_input: int = 1
                       ) -> list[tuple[torch.Tensor, torch.Tensor, bool]]:
    """(in_degrees, out_degrees, strict) of every layer of a MADE with `made_degrees` degrees: the
    masks of `made_masks(degrees, outputs_per_input)`, as degrees. Hidden layers see degrees <= theirs
    (strict False); the output layer has `outputs_per_input` blocks of D outputs, each with the degree
    of its input, and sees hidden degrees below it (strict True)."""
    hidden = [(prev, nxt, False) for prev, nxt in zip(degrees[:-1], degrees[1:])]
    return [*hidden, (degrees[-1], degrees[0].repeat(outputs_per_input), True)]


def sort_hidden_units(degrees: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """`made_degrees` degrees with every hidden layer's units sorted by degree, and for each hidden
    layer the permutation applied (sorted = degrees[l + 1][perm]). Relabelling hidden units changes no
    function: a layer's rows (weight and bias) and the next layer's columns move with their unit (a
    checkpoint of the old order loads after the same permutation of its dense weights' rows and columns)."""
    perms = [degree_order(d) for d in degrees[1:]]
    return [degrees[0], *(d[p] for d, p in zip(degrees[1:], perms))], perms


@dataclass(frozen=True)
class _Group:
    start: int   # rows [start, stop) of the sorted outputs
    stop: int
    full: int    # sorted inputs [0, full) are visible to every row of the group
    width: int   # sorted inputs [full, width) to some rows (the diagonal block), [width, in) to none
    offset: int  # where the group's (rows, width) block starts in the stored weight
    mask_offset: int  # where its (rows, width - full) diagonal mask starts in the mask buffer


class BlockPlan:
    """How one MADE mask, given by degrees, is cut into blocks (see the module docstring).

    in_order / out_order sort the inputs / outputs by degree (None when they already are); `prefix[r]`
    is how many sorted inputs sorted output r sees; `groups` are equal runs of rows."""

    def __init__(self, in_degrees: torch.Tensor, out_degrees: torch.Tensor, strict: bool,
                 blocks: int | None = None):
        blocks = default_blocks(len(in_degrees), len(out_degrees)) if blocks is None else blocks
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        in_degrees, out_degrees = in_degrees.cpu(), out_degrees.cpu()
        self.in_features, self.out_features, self.strict = len(in_degrees), len(out_degrees), strict
        in_order, out_order = degree_order(in_degrees), degree_order(out_degrees)
        identity = lambda order: bool((order == torch.arange(len(order))).all())
        self.in_order = None if identity(in_order) else in_order
        self.out_order = None if identity(out_order) else out_order
        self.out_inverse = None if self.out_order is None else torch.argsort(out_order)
        self.in_inverse = None if self.in_order is None else torch.argsort(in_order)
        # how many sorted inputs have degree <= (strict: <) each sorted output's degree
        self.prefix = torch.searchsorted(in_degrees[in_order].contiguous(), out_degrees[out_order].contiguous(),
                                         right=not strict)
        bounds = torch.linspace(0, self.out_features, min(blocks, max(1, self.out_features)) + 1).round().long()
        groups, offset, mask_offset = [], 0, 0
        for start, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            if stop == start:
                continue
            full, width = int(self.prefix[start]), int(self.prefix[stop - 1])
            groups.append(_Group(start, stop, full, width, offset, mask_offset))
            offset += (stop - start) * width
            mask_offset += (stop - start) * (width - full)
        self.groups, self.numel, self.mask_numel = tuple(groups), offset, mask_offset

    @property
    def dense_numel(self) -> int:
        return self.in_features * self.out_features

    @property
    def skipped(self) -> float:
        """The share of the dense product's multiply-adds (and weights) that the blocks skip."""
        return 1 - self.numel / max(1, self.dense_numel)

    @property
    def zeros(self) -> float:
        """The share of the mask that is zero: the most any cut could skip."""
        return 1 - int(self.prefix.sum()) / max(1, self.dense_numel)

    def diagonal_masks(self) -> torch.Tensor:
        """Every group's diagonal mask, rows x (width - full), 0/1, concatenated."""
        parts = [(torch.arange(g.full, g.width)[None, :] < self.prefix[g.start:g.stop, None]).flatten()
                 for g in self.groups]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)

    def mask(self) -> torch.Tensor:
        """The dense (out, in) bool mask in the caller's unit order (made_masks' mask)."""
        sorted_mask = torch.arange(self.in_features)[None, :] < self.prefix[:, None]
        return self.unsort(sorted_mask)

    def unsort(self, sorted_rows_cols: torch.Tensor) -> torch.Tensor:
        """A (out, in) matrix indexed by sorted outputs and inputs, in the caller's unit order."""
        out = sorted_rows_cols
        if self.out_inverse is not None:
            out = out.index_select(0, self.out_inverse.to(out.device))
        if self.in_order is not None:
            out = out.index_select(1, self.in_inverse.to(out.device))
        return out

    def sort(self, matrix: torch.Tensor) -> torch.Tensor:
        """A (out, in) matrix in the caller's unit order, indexed by sorted outputs and inputs."""
        out = matrix
        if self.out_order is not None:
            out = out.index_select(0, self.out_order.to(out.device))
        if self.in_order is not None:
            out = out.index_select(1, self.in_order.to(out.device))
        return out


def _compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    device = x.device.type
    if torch.is_autocast_enabled(device):  # as F.linear under autocast: the product in the autocast dtype
        return torch.get_autocast_dtype(device)
    return torch.promote_types(x.dtype, weight.dtype)


class _BlockedProduct(torch.autograd.Function):
    """y = x @ (W * M)^T + b over sorted units, W stored as the plan's blocks in one flat tensor.
    One custom function, so that backward writes every block's gradient into one flat buffer
    (slicing a parameter under autograd would allocate a full-size gradient per slice)."""

    @staticmethod
    def forward(ctx, x, flat, bias, masks, plan):
        dtype, x_dtype = _compute_dtype(x, flat), x.dtype
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(dtype)
            weight = flat.to(dtype)  # a copy only under autocast, as F.linear casts its weight
            masks = masks.to(dtype)
            b = None if bias is None else bias.to(dtype)
            y = x.new_zeros(len(x), plan.out_features) if b is None else b.expand(len(x), -1).clone()
            diagonals = []
            for g in plan.groups:
                w, mask = _block(weight, g), _diagonal_mask(masks, g)
                out = y[:, g.start:g.stop]
                # torch.addmm with out=, not Tensor.addmm_: torch's FLOP counter (pipeline/flops.py) sees it
                if g.full:
                    torch.addmm(out, x[:, :g.full], w[:, :g.full].t(), out=out)
                diagonal = None if mask is None else w[:, g.full:] * mask
                if diagonal is not None:
                    torch.addmm(out, x[:, g.full:g.width], diagonal.t(), out=out)
                diagonals.append(diagonal)
        ctx.save_for_backward(x, weight, masks)
        ctx.diagonals, ctx.plan = diagonals, plan
        ctx.dtypes = x_dtype, flat.dtype, None if bias is None else bias.dtype
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, masks = ctx.saved_tensors
        plan, (x_dtype, flat_dtype, bias_dtype) = ctx.plan, ctx.dtypes
        need_x, need_flat, need_bias = ctx.needs_input_grad[:3]
        with torch.autocast(x.device.type, enabled=False):
            grad_y = grad_y.to(x.dtype)
            grad_x = torch.zeros_like(x) if need_x else None
            grad_flat = weight.new_empty(plan.numel) if need_flat else None  # the groups cover it
            for g, diagonal in zip(plan.groups, ctx.diagonals):
                if g.width == 0:
                    continue
                gy, w = grad_y[:, g.start:g.stop], _block(weight, g)
                if need_x and g.full:
                    part = grad_x[:, :g.full]
                    torch.addmm(part, gy, w[:, :g.full], out=part)
                if need_x and diagonal is not None:
                    part = grad_x[:, g.full:g.width]
                    torch.addmm(part, gy, diagonal, out=part)
                if need_flat:
                    block = _block(grad_flat, g)
                    torch.mm(gy.t(), x[:, :g.width], out=block)
                    if diagonal is not None:
                        block[:, g.full:].mul_(_diagonal_mask(masks, g))
            grad_bias = grad_y.sum(0).to(bias_dtype) if need_bias else None
        return (None if grad_x is None else grad_x.to(x_dtype),
                None if grad_flat is None else grad_flat.to(flat_dtype), grad_bias, None, None)


def _block(flat: torch.Tensor, g: _Group) -> torch.Tensor:
    """Group g's stored (rows, width) block, a view of the flat weight (or of its gradient)."""
    rows = g.stop - g.start
    return flat[g.offset:g.offset + rows * g.width].view(rows, g.width)


def _diagonal_mask(masks: torch.Tensor, g: _Group) -> torch.Tensor | None:
    """Group g's (rows, width - full) diagonal mask, None when the group has no diagonal block."""
    if g.width == g.full:
        return None
    rows = g.stop - g.start
    return masks[g.mask_offset:g.mask_offset + rows * (g.width - g.full)].view(rows, -1)


class BlockedMaskedLinear(nn.Module):
    """y = x @ (W * M)^T + b for the MADE mask M of `in_degrees` -> `out_degrees` (output o sees
    input i when degree(o) >= degree(i), or > with `strict`), computing and storing only the blocks
    of `BlockPlan` (`blocks` row groups; by default `default_blocks`). Inputs and outputs are in the caller's unit order.

    Parameters: `weight_blocks`, the stored blocks (flat, sorted units), and `bias` (out,) in the
    caller's order. The state dict and `masked_weight()` give the dense weight (see the module)."""

    def __init__(self, in_degrees: torch.Tensor, out_degrees: torch.Tensor, strict: bool = False,
                 bias: bool = True, blocks: int | None = None):
        super().__init__()
        self.plan = BlockPlan(in_degrees, out_degrees, strict, blocks)
        self.in_features, self.out_features = self.plan.in_features, self.plan.out_features
        self.weight_blocks = nn.Parameter(torch.empty(self.plan.numel))
        self.bias = nn.Parameter(torch.empty(self.out_features)) if bias else None
        self.register_buffer("diagonal_masks", self.plan.diagonal_masks().float(), persistent=False)
        for name, index in (("in_order", self.plan.in_order), ("out_order", self.plan.out_order),
                            ("out_inverse", self.plan.out_inverse)):
            self.register_buffer(name, index, persistent=False)
        self.reset_parameters()
        self.register_state_dict_post_hook(self._dense_in_state_dict)
        self.register_load_state_dict_pre_hook(self._blocks_from_state_dict)

    def reset_parameters(self) -> None:
        """nn.Linear's initialization of the dense weight (uniform, bound 1/sqrt(in)), kept where the
        mask lets it through."""
        bound = 1 / self.in_features ** 0.5 if self.in_features else 0.0
        with torch.no_grad():
            self.weight_blocks.uniform_(-bound, bound)
            self.weight_blocks.copy_(self._blocks_of(self._sorted_dense_of_blocks(self.weight_blocks)))
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = self.unsort_outputs(self.forward_sorted(self.sort_inputs(x.reshape(-1, self.in_features))))
        return y.view(*shape[:-1], self.out_features)

    def sort_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in) in the caller's unit order -> sorted by degree."""
        return x if self.in_order is None else x.index_select(1, self.in_order)

    def unsort_outputs(self, y: torch.Tensor) -> torch.Tensor:
        """(B, out) sorted by degree -> the caller's unit order."""
        return y if self.out_inverse is None else y.index_select(1, self.out_inverse)

    def forward_sorted(self, x: torch.Tensor) -> torch.Tensor:
        """The product over sorted units: (B, in) sorted by degree -> (B, out) sorted by degree."""
        bias = self.bias
        if bias is not None and self.out_order is not None:
            bias = bias.index_select(0, self.out_order)
        return _BlockedProduct.apply(x, self.weight_blocks, bias, self.diagonal_masks, self.plan)

    def mask(self) -> torch.Tensor:
        """The dense (out, in) 0/1 mask (bool), in the caller's unit order."""
        return self.plan.mask().to(self.weight_blocks.device)

    def set_mask(self, mask: torch.Tensor, in_place: bool = True) -> None:
        """`MaskedLinear.set_mask`'s signature, for code that switches masks: the layer's own mask is
        fixed, so `mask` must equal it."""
        if mask.shape != (self.out_features, self.in_features) or not torch.equal(mask.bool(), self.mask()):
            raise ValueError("a BlockedMaskedLinear computes one fixed mask (its degrees'); build "
                             "another layer for another mask")

    def masked_weight(self) -> torch.Tensor:
        """The dense (out, in) weight W * M in the caller's unit order (differentiable), as
        `MaskedLinear.masked_weight`."""
        return self.plan.unsort(self._sorted_dense_of_blocks(self.weight_blocks))

    def _sorted_dense_of_blocks(self, flat: torch.Tensor) -> torch.Tensor:
        """The dense masked weight over sorted units, from stored blocks."""
        dense = flat.new_zeros(self.out_features, self.in_features)
        masks = self.diagonal_masks.to(flat.dtype)
        for g in self.plan.groups:
            block, mask = _block(flat, g), _diagonal_mask(masks, g)
            dense[g.start:g.stop, :g.full] = block[:, :g.full]
            if mask is not None:
                dense[g.start:g.stop, g.full:g.width] = block[:, g.full:] * mask
        return dense

    def _blocks_of(self, sorted_dense: torch.Tensor) -> torch.Tensor:
        """Stored blocks from a dense weight over sorted units (masked on the diagonal blocks)."""
        masks = self.diagonal_masks.to(sorted_dense.dtype)
        parts = []
        for g in self.plan.groups:
            block, mask = sorted_dense[g.start:g.stop, :g.width].clone(), _diagonal_mask(masks, g)
            if mask is not None:
                block[:, g.full:] *= mask
            parts.append(block.flatten())
        return torch.cat(parts) if parts else sorted_dense.new_zeros(0)

    @staticmethod
    def _dense_in_state_dict(module, state_dict, prefix, local_metadata) -> None:
        """state_dict post-hook: checkpoints hold the dense masked weight, as MaskedLinear's do."""
        blocks = state_dict.pop(prefix + "weight_blocks")
        weight = module.masked_weight()
        state_dict[prefix + "weight"] = weight if isinstance(blocks, nn.Parameter) else weight.detach()

    @staticmethod
    def _blocks_from_state_dict(module, state_dict, prefix, local_metadata, strict, missing_keys,
                                unexpected_keys, error_msgs) -> None:
        """load_state_dict pre-hook: a dense weight becomes the stored blocks."""
        if prefix + "weight" not in state_dict or prefix + "weight_blocks" in state_dict:
            return
        weight = state_dict.pop(prefix + "weight")
        if weight.shape != (module.out_features, module.in_features):
            error_msgs.append(f"size mismatch for {prefix}weight: copying a param with shape {tuple(weight.shape)}, "
                              f"the shape in current model is {(module.out_features, module.in_features)}.")
            state_dict[prefix + "weight_blocks"] = module.weight_blocks.detach()  # keeps what it has
            return
        with torch.no_grad():
            state_dict[prefix + "weight_blocks"] = module._blocks_of(module.plan.sort(weight))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, strict={self.plan.strict}, "
                f"blocks={len(self.plan.groups)}, skipped={self.plan.skipped:.1%}")


class BlockedMaskedMLP(nn.Module):
    """MADE's masked MLP (`MaskedMLP` with `made_masks(degrees, outputs_per_input)`), every layer a
    `BlockedMaskedLinear`, ReLU between them."""

    def __init__(self, degrees: Sequence[torch.Tensor], outputs_per_input: int = 1, blocks: int | None = None):
        super().__init__()
        self.layers = nn.ModuleList(BlockedMaskedLinear(i, o, strict, blocks=blocks)
                                    for i, o, strict in made_layer_degrees(degrees, outputs_per_input))

    def set_masks(self, masks: list[torch.Tensor], in_place: bool = True) -> None:
        """`MaskedMLP.set_masks`'s signature: the masks must be the MLP's own (see `set_mask`)."""
        for layer, mask in zip(self.layers, masks, strict=True):
            layer.set_mask(mask, in_place)

    def hidden(self, h: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations for inputs `h`."""
        return self._chain(h, self.layers[:-1], relu_last=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._chain(x, self.layers, relu_last=False)

    @staticmethod
    def _chain(x: torch.Tensor, layers, relu_last: bool) -> torch.Tensor:
        """The layers in turn with ReLU between, the activations kept sorted by degree in between:
        layer l's outputs and layer l + 1's inputs are the same units, sorted alike, so nothing is
        permuted there."""
        if not len(layers):
            return x
        h = layers[0].sort_inputs(x)
        for i, layer in enumerate(layers):
            h = layer.forward_sorted(h)
            if relu_last or i + 1 < len(layers):
                h = torch.relu(h)
        return layers[-1].unsort_outputs(h)

    @property
    def skipped(self) -> float:
        """The share of the dense masked MLP's multiply-adds that the blocks skip."""
        plans = [layer.plan for layer in self.layers]
        return 1 - sum(p.numel for p in plans) / sum(p.dense_numel for p in plans)

