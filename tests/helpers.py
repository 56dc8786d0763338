"""Shared test tools: exhaustive enumeration of tiny images (binary or grey) and model perturbation."""
from __future__ import annotations

import math

import torch


def all_binary_images(shape=(1, 4, 4)) -> torch.Tensor:
    """Every binary image of `shape`: 2^(C*H*W) of them."""
    d = math.prod(shape)
    bits = (torch.arange(2 ** d)[:, None] >> torch.arange(d - 1, -1, -1)) & 1
    return bits.float().view(-1, *shape)


def all_level_images(shape=(1, 2, 2), levels: int = 4) -> torch.Tensor:
    """Every image of `shape` whose pixels take the levels 0 .. levels-1: levels^(C*H*W) of them, float64."""
    d = math.prod(shape)
    digits = torch.arange(levels ** d)[:, None] // levels ** torch.arange(d - 1, -1, -1) % levels
    return digits.double().view(-1, *shape)


def randomize(model: torch.nn.Module, std: float = 0.5, seed: int = 0) -> torch.nn.Module:
    """Random, non-trivial parameters, so that tests do not pass because weights start at zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def total_probability(model, shape=(1, 4, 4), batch_size: int = 8192) -> float:
    model.eval()
    images = all_binary_images(shape)
    with torch.no_grad():
        nll = torch.cat([model.nll(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    return float(torch.exp(-nll.double()).sum())


def input_jacobian(fn, x: torch.Tensor) -> torch.Tensor:
    """d fn(x)_i / d x_j for one image x, as a (D, D) matrix over flattened pixels."""
    return torch.autograd.functional.jacobian(lambda flat: fn(flat.view(1, *x.shape)).flatten(), x.flatten())


def chi_square_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's goodness-of-fit p-value, pooling cells whose expected count is under 5."""
    from scipy.stats import chisquare
    n = counts.sum()
    expected = probs * n
    keep = expected >= 5
    obs = torch.cat([counts[keep], counts[~keep].sum(0, keepdim=True)])
    exp = torch.cat([expected[keep], expected[~keep].sum(0, keepdim=True)])
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    exp = exp * obs.sum() / exp.sum()
    return float(chisquare(obs.numpy(), exp.numpy()).pvalue)



def fast_and_generic_fill(model, **labels) -> tuple[torch.Tensor, torch.Tensor]:
    """A family's own `fill` and the generic one-full-pass-per-pixel fill on the same partly observed
    images and noise (given `labels=` for a class-conditional model)."""
    from models.base import AutoregressiveModel
    shape = model.image_shape
    gen = torch.Generator().manual_seed(5)
    x = torch.bernoulli(torch.full((6, *shape), 0.5), generator=gen)
    noise = torch.rand(x.shape, generator=gen)
    observed = torch.zeros_like(x, dtype=torch.bool)
    observed[:3, :, :2] = True
    with torch.no_grad():
        return (model.fill(x * observed, observed, noise, **labels),
                AutoregressiveModel.fill(model, x * observed, observed, noise, **labels))


def fit_encoder(model, x: torch.Tensor, steps: int):
    """A VAE's encoder fitted to images `x` by the ELBO, its decoder held fixed, so that q(z|x) is a
    proposal as training makes it; the model in eval mode."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.encoder.parameters(), lr=0.03)
    for _ in range(steps):
        optimizer.zero_grad()
        model.negative_elbo(x, samples=16).mean().backward()
        optimizer.step()
    return model.eval()
