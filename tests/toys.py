"""Small instances of every family on tiny images, for exhaustive checks.

Add a family here and the shared tests (normalization, dependency, sampling) cover it.
"""
from __future__ import annotations

from models.bernoulli import IndependentBernoulli
from models.fvsbn import FVSBN
from models.made import MADE
from models.nade import NADE

# name -> constructor taking an image shape; every one has an exact likelihood.
EXACT = {
    "bernoulli": lambda shape: IndependentBernoulli(shape),
    "fvsbn": lambda shape: FVSBN(shape),
    "nade": lambda shape: NADE(shape, hidden=8),
    "made": lambda shape: MADE(shape, hidden_sizes=[24, 24]),
    "made_mask_ensemble": lambda shape: MADE(shape, hidden_sizes=[24], num_masks=4, order_agnostic=True,
                                             eval_masks=4),
}

# Autoregressive ones: `logits(x)` must not depend on x_i or later pixels in `ordering()`.
AUTOREGRESSIVE = {name: EXACT[name] for name in ("fvsbn", "nade", "made", "made_mask_ensemble")}
