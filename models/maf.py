"""MAF (Papamakarios et al. 2017): a stack of autoregressive affine layers, each conditioned by a MADE
(the masks of models/made.py), with the order reversed between layers; trained on dequantized binary
images (see models/flows.py)."""
from __future__ import annotations

from typing import Literal

import torch

from models.flows import (ActNorm, Compose, DequantizedFlow, Flatten, MaskedAffineAutoregressive, Permute,
                          require_positive)


class MAF(DequantizedFlow):
    """`num_layers` MADE-conditioned affine layers on the flattened image, in raster order and reverse
    raster order alternately, each preceded by an actnorm when `actnorm` (in place of MAF's batch norm)."""

    def __init__(self, image_shape=(1, 28, 28), num_layers: int = 5, hidden_sizes: list[int] = (1024,),
                 actnorm: bool = True, scale_bound: float = 3.0, mask_seed: int = 0,
                 dequantization: Literal["uniform", "variational"] = "uniform", dequantizer_hidden: int = 32,
                 dequantizer_couplings: int = 2, logit_alpha: float = 1e-3, eval_samples: int = 1,
                 importance_weighted: bool = False):
        super().__init__(image_shape, dequantization, dequantizer_hidden, dequantizer_couplings,
                         logit_alpha, eval_samples, importance_weighted)
        require_positive(num_layers=num_layers)
        if not hidden_sizes or min(hidden_sizes) < 1:
            raise ValueError("hidden_sizes must be a non-empty list of positive sizes")
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
            steps.append(MaskedAffineAutoregressive(d, list(hidden_sizes), generator, scale_bound))
        self.flow = Compose(*steps)
