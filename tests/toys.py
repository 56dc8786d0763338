"""Small instances of every family on tiny images, for exhaustive checks.

Add a family here and the shared tests (normalization, dependency, sampling) cover it.
"""
from __future__ import annotations

import torch

from models import build_model
from models.bernoulli import IndependentBernoulli
from models.categorical import IndependentCategorical
from models.fvsbn import FVSBN
from models.gated_pixelcnn import GatedPixelCNN
from models.made import MADE
from models.markov import MarkovChain
from models.mixture import BernoulliMixture
from models.nade import NADE
from models.pixelcnn import PixelCNN
from models.rnn import PixelRNN
from models.transformer import PixelTransformer
from models.vae import VAE


def with_label_prior(model):
    """A class-conditional model with an uneven p(y) (proportional to y + 1), as training labels set it."""
    model.set_label_prior(torch.arange(10).repeat_interleave(torch.arange(1, 11)))
    return model


# Class-conditional instances: `nll(x)` is the marginal -log sum_y p(x | y) p(y).
CONDITIONAL = {
    "made_conditional": lambda shape: with_label_prior(MADE(shape, hidden_sizes=[24], conditional=True)),
    "made_mask_ensemble_conditional": lambda shape: with_label_prior(
        MADE(shape, hidden_sizes=[16, 16], num_masks=3, order_agnostic=True, eval_masks=3, conditional=True,
             direct_connections=True)),
    "pixelcnn_conditional": lambda shape: with_label_prior(
        PixelCNN(shape, channels=8, residual_blocks=1, first_kernel=5, head_channels=8, conditional=True)),
}

# name -> constructor taking an image shape; every one has an exact likelihood.
EXACT = {
    "bernoulli": lambda shape: IndependentBernoulli(shape),
    "categorical": lambda shape: IndependentCategorical(shape),
    "fvsbn": lambda shape: FVSBN(shape),
    "markov": lambda shape: MarkovChain(shape),
    "mixture": lambda shape: BernoulliMixture(shape, components=3),
    "nade": lambda shape: NADE(shape, hidden=8),
    "made": lambda shape: MADE(shape, hidden_sizes=[24, 24]),
    "made_mask_ensemble": lambda shape: MADE(shape, hidden_sizes=[24], num_masks=4, order_agnostic=True,
                                             eval_masks=4),
    "made_direct_ensemble": lambda shape: MADE(shape, hidden_sizes=[12], num_masks=3, order_agnostic=True,
                                               eval_masks=3, direct_connections=True),
    "pixelcnn": lambda shape: PixelCNN(shape, channels=8, residual_blocks=2, first_kernel=5, head_channels=8),
    "gated_pixelcnn": lambda shape: GatedPixelCNN(shape, channels=6, layers=3, first_kernel=5, head_channels=8),
    "rnn_lstm": lambda shape: PixelRNN(shape, cell="lstm", hidden=8, embedding=4, input_window=3),
    "rnn_gru": lambda shape: PixelRNN(shape, cell="gru", hidden=8, embedding=4, position_embedding=False),
    "transformer": lambda shape: PixelTransformer(shape, dim=8, layers=2, heads=2, mlp_ratio=2, input_window=2),
    **CONDITIONAL,
}

# Autoregressive ones: `pixel_params(x)` must not depend on x_i or later pixels in `ordering()`.

# Latent-variable models: `nll` is an importance-sampled estimate, so they are tested on their own.
LATENT = {
    "vae": lambda shape: VAE(shape, latent_dim=2, hidden_sizes=[16], eval_samples=64),
    "conv_vae": lambda shape: VAE(shape, architecture="conv", latent_dim=2, channels=4, eval_samples=64),
    "iwae": lambda shape: VAE(shape, latent_dim=2, hidden_sizes=[16], objective="iwae", train_samples=5,
                              eval_samples=64),
}
# Flows on dequantized images: `nll` is an upper bound on the discrete NLL (estimator "dequantized").
DEQUANTIZED_KWARGS = {
    "realnvp": {"hidden_channels": 8, "num_blocks": 1, "scales": 1, "couplings": 2},
    "glow": {"hidden_channels": 8, "steps": 2, "levels": 1},
    "maf": {"num_layers": 3, "hidden_sizes": [16]},
}
DEQUANTIZED = {name: (lambda shape, name=name, **kw: build_model(name, shape, **DEQUANTIZED_KWARGS[name], **kw))
               for name in DEQUANTIZED_KWARGS}
AUTOREGRESSIVE = {name: EXACT[name] for name in ("fvsbn", "markov", "nade", "made", "made_mask_ensemble", "pixelcnn",
                                                 "gated_pixelcnn", "rnn_lstm", "rnn_gru", "transformer")}
