"""MAF (Papamakarios et al. 2017): a stack of autoregressive affine layers, each conditioned by a masked
MLP (models/nn/masked_linear.py), with the order reversed between layers; trained on dequantized images,
binarized or grey (see models/nn/dequantized.py)."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from models.base import at_least_fp32, require_positive, require_sizes
from models.nn.dequantized import Dequantization, DequantizedFlow
from models.nn.masked_linear import IncrementalMADE, MaskedMLP, made_degrees, made_masks
from models.nn.transforms import ActNorm, Compose, Transform


class Flatten(Transform):
    """(N, *shape) -> (N, prod(shape)), for flows on vectors such as MAF."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.flatten(1), x.new_zeros(len(x), dtype=torch.float32)

    def inverse(self, y):
        return y.view(len(y), *self.shape), y.new_zeros(len(y), dtype=torch.float32)


class Permute(Transform):
    """Reorders the features of (N, D) vectors; reverse=True is the usual choice between MAF layers."""

    def __init__(self, permutation: torch.Tensor):
        super().__init__()
        self.register_buffer("permutation", permutation.clone())
        self.register_buffer("inverse_permutation", torch.argsort(permutation))

    @classmethod
    def reverse(cls, dim: int) -> Permute:
        return cls(torch.arange(dim - 1, -1, -1))

    def forward(self, x):
        return x[:, self.permutation], x.new_zeros(len(x), dtype=torch.float32)

    def inverse(self, y):
        return y[:, self.inverse_permutation], y.new_zeros(len(y), dtype=torch.float32)


MIN_SCALE = 1e-3  # the smallest scale of a sigmoid-parametrized layer (nflows' value)


class MaskedAffineAutoregressive(Transform):
    """One MAF layer on (N, D) vectors: y_i = x_i * exp(log_s_i) + t_i with (t_i, log_s_i) computed
    from x_<i by a masked MLP (MADE's masks, in the natural order 0..D-1), so the Jacobian is
    triangular. Density evaluation is one pass; inversion (sampling) is D sequential steps.

    How the network's raw output becomes the scale, in the density direction x -> y:
    - "sigmoid" (the default): exp(log_s) = sigmoid(raw + 2) + MIN_SCALE, the scale of nflows'
      MaskedAffineAutoregressiveTransform (Glow's affine coupling without the floor). A layer never
      expands (at most 1 + MIN_SCALE) and contracts at most 1 / MIN_SCALE-fold, so stacked layers
      cannot multiply up an expansion, and sampling's division by the scale stays bounded too;
    - "tanh": log_s = scale_bound * tanh(raw / scale_bound), each layer within exp(+-scale_bound).
      Its expansions multiply through the stack on images unlike the training data: a uniform-
      noise image's log-scales sit at +scale_bound in every layer, and the quick profile's MAF
      gave it 3e7 nats (3e4 with "sigmoid"). Kept for checkpoints trained with it.
    """

    def __init__(self, dim: int, hidden_sizes: list[int], generator: torch.Generator | None = None,
                 log_scale: Literal["sigmoid", "tanh"] = "sigmoid", scale_bound: float = 3.0):
        super().__init__()
        degrees = made_degrees(torch.arange(dim), list(hidden_sizes), generator)
        self.net = MaskedMLP([dim, *hidden_sizes, 2 * dim])
        self.net.set_masks(made_masks(degrees, outputs_per_input=2))  # output i's shift, then its raw scale
        nn.init.zeros_(self.net.layers[-1].weight)  # a constant shift and scale at initialisation
        nn.init.zeros_(self.net.layers[-1].bias)
        self.dim, self.log_scale, self.scale_bound = dim, log_scale, scale_bound

    def _bounded(self, raw: torch.Tensor) -> torch.Tensor:
        if self.log_scale == "tanh":
            return self.scale_bound * torch.tanh(raw / self.scale_bound)
        return torch.log(torch.sigmoid(raw + 2.0) + MIN_SCALE)

    def _shift_and_log_scale(self, x: torch.Tensor):
        shift, raw = self.net(x).to(x.dtype).chunk(2, dim=1)
        return shift, self._bounded(raw)

    def forward(self, x):
        x = at_least_fp32(x)
        shift, log_s = self._shift_and_log_scale(x)
        return x * log_s.exp() + shift, at_least_fp32(log_s.sum(1))

    def inverse(self, y):
        """Solves for x one feature at a time, with MADE's incremental pass (`IncrementalMADE`)."""
        y = at_least_fp32(y)
        steps = IncrementalMADE(self.net, self.net.layers[0](torch.zeros_like(y)))  # the first layer while x = 0
        x, log_s = torch.zeros_like(y), torch.zeros_like(y)
        for i in range(self.dim):
            shift, raw = steps.outputs(i).unbind(1)
            log_s[:, i] = self._bounded(raw)
            x[:, i] = (y[:, i] - shift) * torch.exp(-log_s[:, i])
            steps.input_changed(i, x[:, i])
        return x, -at_least_fp32(log_s.sum(1))


class MAF(DequantizedFlow):
    """`num_layers` MADE-conditioned affine layers on the flattened image, in raster order and reverse
    raster order alternately, each preceded by an actnorm when `actnorm` (in place of MAF's batch norm).
    `log_scale` (and `scale_bound`, for "tanh"): how each layer bounds its scales, see
    `MaskedAffineAutoregressive`."""

    def __init__(self, image_shape=(1, 28, 28), *, num_layers: int = 5, hidden_sizes: list[int] = (1024,),
                 actnorm: bool = True, log_scale: Literal["sigmoid", "tanh"] = "sigmoid", scale_bound: float = 3.0,
                 mask_seed: int = 0,
                 dequantization: Literal["uniform", "variational"] = "uniform", dequantizer_hidden: int = 32,
                 dequantizer_couplings: int = 2, logit_alpha: float = 1e-3, eval_samples: int = 1,
                 importance_weighted: bool = False, pixel_levels: int = 2,
                 preprocessing: Literal["logit", "scale"] = "logit"):
        super().__init__(image_shape, dequantization=Dequantization(
            dequantization=dequantization, dequantizer_hidden=dequantizer_hidden,
            dequantizer_couplings=dequantizer_couplings, logit_alpha=logit_alpha, eval_samples=eval_samples,
            importance_weighted=importance_weighted, pixel_levels=pixel_levels, preprocessing=preprocessing))
        require_positive(num_layers=num_layers)
        require_sizes(hidden_sizes=hidden_sizes)
        if log_scale not in ("sigmoid", "tanh"):
            raise ValueError(f"log_scale must be 'sigmoid' or 'tanh', got {log_scale!r}")
        if not scale_bound > 0:
            raise ValueError(f"scale_bound must be > 0, got {scale_bound}")
        d = self.num_pixels
        generator = torch.Generator().manual_seed(mask_seed)  # the MADEs' hidden-unit degrees
        steps = [Flatten(self.image_shape)]
        for k in range(num_layers):
            if k > 0:
                steps.append(Permute.reverse(d))
            if actnorm:
                steps.append(ActNorm(d))
            steps.append(MaskedAffineAutoregressive(d, list(hidden_sizes), generator, log_scale, scale_bound))
        self.flow = Compose(*steps)
        # The parametrization, saved with the weights: a state dict without it predates "sigmoid"
        # (and its kwargs name none), so its weights mean tanh scales.
        self.register_buffer("tanh_log_scales", torch.tensor(log_scale == "tanh"))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        tanh = bool(state_dict.setdefault(prefix + "tanh_log_scales", torch.tensor(True)))
        for step in self.flow.transforms:
            if isinstance(step, MaskedAffineAutoregressive):
                step.log_scale = "tanh" if tanh else "sigmoid"
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
