"""The dequantized flows (RealNVP, Glow, MAF) on grey levels: pixels take the values 0 .. L-1 with
L = pixel_levels > 2, each level owning the bin [k, k + 1) of the dequantized pixel v = x + u.
(With the default L = 2 they are the binary flows that tests/test_flows.py checks.)"""
import math

import numpy as np
import pytest
import torch

from models import build_model
from models.checkpoint import load_checkpoint, save_checkpoint
from models.nn.transforms import standard_normal_log_prob
from tests.helpers import randomize
from tests.toys import DEQUANTIZED, DEQUANTIZED_KWARGS

SHAPE = (1, 4, 4)
LEVELS = 4
PREPROCESSINGS = ("logit", "scale")


pytestmark = pytest.mark.usefixtures("torch_seeded")  # Glow's rotations come from torch's global generator


def grey_images(n, levels=LEVELS, shape=SHAPE, seed=0):
    return torch.randint(0, levels, (n, *shape), generator=torch.Generator().manual_seed(seed)).float()


def grey_model(name, levels=LEVELS, seed=0, **kwargs):
    """A small flow of family `name` in float64 with random, non-trivial parameters (zero-initialised
    output layers would make every coupling the identity)."""
    model = DEQUANTIZED[name](SHAPE, pixel_levels=levels, **kwargs)
    return randomize(model, std=0.25, seed=seed).double().eval()


def dequantized_pixels(n, levels, seed=0):
    """Points of the open box (0, levels)^D, away from its faces."""
    u = torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return 0.01 + (levels - 0.02) * u


# --- the preprocessing and the flow: inverse and log-determinant ------------------------------------------

@pytest.mark.parametrize("levels", [LEVELS, 256])
@pytest.mark.parametrize("preprocessing", PREPROCESSINGS)
@pytest.mark.parametrize("name", DEQUANTIZED)
def test_preprocessing_and_flow_invert_and_their_log_det_matches_autograd(name, preprocessing, levels):
    model = grey_model(name, levels, preprocessing=preprocessing)

    def to_latent(v):
        w, preprocess_log_det = model.preprocess(v)
        z, flow_log_det = model.flow(w)
        return z, preprocess_log_det + flow_log_det

    v = dequantized_pixels(3, levels)
    with torch.no_grad():
        z, log_det = to_latent(v)
        w_back, flow_inverse_log_det = model.flow.inverse(z)
        v_back, preprocess_inverse_log_det = model.preprocess.inverse(w_back)
    torch.testing.assert_close(v_back, v, atol=1e-6 * levels, rtol=0)
    torch.testing.assert_close(flow_inverse_log_det + preprocess_inverse_log_det, -log_det, atol=1e-6, rtol=0)
    for b in range(len(v)):
        jacobian = torch.autograd.functional.jacobian(lambda flat: to_latent(flat.view(1, *SHAPE))[0].flatten(),
                                                      v[b].flatten())
        sign, expected = torch.linalg.slogdet(jacobian)
        assert sign != 0
        assert float(log_det[b]) == pytest.approx(float(expected), abs=1e-6)


@pytest.mark.parametrize("levels", [LEVELS, 256])
@pytest.mark.parametrize("dequantization", ["uniform", "variational"])
@pytest.mark.parametrize("name", DEQUANTIZED)
def test_dequantized_images_decode_to_their_levels(name, dequantization, levels):
    model = grey_model(name, levels, dequantization=dequantization)
    x = grey_images(8, levels).double()
    x[0], x[1] = 0, levels - 1  # both edge bins
    with torch.no_grad():
        v, _ = model.dequantizer(x, torch.Generator().manual_seed(1))
        w, _ = model.preprocess(v)
        z, _ = model.flow(w)
    assert torch.all((x <= v) & (v < x + 1)), "the noise left the pixel's bin"
    assert torch.equal(model.decode(z), x.float())
    assert torch.equal(model.decode(model.encode(x)), x.float())


def test_the_variational_dequantizer_sees_grey_levels_in_minus_one_to_one_and_its_log_det_matches_autograd():
    levels = 256
    model = grey_model("realnvp", levels, dequantization="variational", dequantizer_hidden=8)
    dequantizer = model.dequantizer
    x = grey_images(2, levels).double()
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0, levels - 1
    seen = []
    dequantizer.features[0].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    eps = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        u, log_det = dequantizer.transform(eps, x)
    assert (float(seen[0].min()), float(seen[0].max())) == (-1.0, 1.0)
    assert torch.all((u > 0) & (u < 1))
    for b in range(len(x)):
        jacobian = torch.autograd.functional.jacobian(
            lambda e: dequantizer.transform(e.view(1, *SHAPE), x[b:b + 1])[0].flatten(), eps[b].flatten())
        assert float(log_det[b]) == pytest.approx(float(torch.linalg.slogdet(jacobian)[1]), abs=1e-6)


# --- the dequantization bound against exact discrete probabilities on toys with 2 and 4 pixels ------------

def bin_quadrature(edges: torch.Tensor, nodes_per_bin: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre nodes and weights, `nodes_per_bin` in each interval [edges[k], edges[k + 1]],
    bin by bin."""
    t, weights = (torch.tensor(a) for a in np.polynomial.legendre.leggauss(nodes_per_bin))
    low, half = edges[:-1, None], (edges[1:, None] - edges[:-1, None]) / 2
    return (low + half * (1 + t)).flatten(), (half * weights).flatten()


def exact_probabilities_and_uniform_bounds(model, nodes_per_bin: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each image x of the toy (all L^D of them, in base-L order): P(x), the mass of the flow's
    density p(w) over the image of x's bin, integrated in w-space from the flow and the base density
    alone (no preprocessing Jacobian); and the uniform-dequantization bound E_{u ~ U[0,1)^D}[-log p(x + u)]
    integrated in v-space from the model's `log_density`."""
    levels, shape = model.pixel_levels, model.image_shape
    d = math.prod(shape)
    v_edges = torch.arange(levels + 1, dtype=torch.float64)
    with torch.no_grad():  # where the preprocessing sends each bin edge: the same map for every pixel
        w_edges = model.preprocess(v_edges.view(-1, 1, 1, 1).expand(-1, *shape))[0].flatten(1)[:, 0]
    level_of_node = torch.arange(levels).repeat_interleave(nodes_per_bin)
    image = (torch.cartesian_prod(*[level_of_node] * d) * levels ** torch.arange(d - 1, -1, -1)).sum(1)

    def integral_per_image(edges, integrand):
        nodes, weights = bin_quadrature(edges, nodes_per_bin)
        grid = torch.cartesian_prod(*[nodes] * d).view(-1, *shape)
        weight = torch.cartesian_prod(*[weights] * d).prod(1)
        with torch.no_grad():
            values = integrand(grid)
        return torch.zeros(levels ** d, dtype=torch.float64).index_add_(0, image, weight * values)

    def flow_density(w):
        z, log_det = model.flow(w)
        return torch.exp(standard_normal_log_prob(z) + log_det)

    return integral_per_image(w_edges, flow_density), integral_per_image(v_edges, lambda v: -model.log_density(v))


def all_images(levels: int, shape) -> torch.Tensor:
    """Every image of `shape` with `levels` levels, in base-L order (the first pixel most significant)."""
    d = math.prod(shape)
    digits = torch.arange(levels ** d)[:, None] // levels ** torch.arange(d - 1, -1, -1) % levels
    return digits.double().view(-1, *shape)


def monte_carlo_bound(model, draws: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's own nll (one dequantization draw per call), averaged over `draws` draws per image,
    with its standard error."""
    images = all_images(model.pixel_levels, model.image_shape)
    torch.manual_seed(0)
    with torch.no_grad():
        bounds = model.nll(images.repeat_interleave(draws, 0)).view(len(images), draws)
    return bounds.mean(1), bounds.std(1) / math.sqrt(draws)


def glow_with_its_mass_in_the_box(**kwargs):
    """Glow with the paper's preprocessing (v / L - 0.5) on 2x2 images with 3 levels. Its first actnorm
    scales the box [-0.5, 0.5)^4 up sixfold (a trained one does so from the data), so that most of the
    flow's mass falls inside it and the bins' masses add up to nearly 1."""
    model = randomize(build_model("glow", (1, 2, 2), pixel_levels=3, preprocessing="scale", hidden_channels=4,
                                  steps=1, levels=1, **kwargs), std=0.2, seed=4).double().eval()
    first_actnorm = model.flow.levels[0].transforms[1]
    with torch.no_grad():
        first_actnorm.bias.zero_()
        first_actnorm.log_scale.fill_(math.log(6))
    return model


# The papers' preprocessing: RealNVP's and MAF's logit, Glow's scaling. Two pixels (1x2 images) with 4
# levels where the architecture allows it; Glow's squeeze needs 2x2, so 4 pixels with 3 levels.
BOUND_TOYS = {
    "realnvp": (lambda **kw: randomize(build_model("realnvp", (1, 1, 2), pixel_levels=4, logit_alpha=0.05,
                                                   hidden_channels=4, num_blocks=0, scales=0, couplings=2, **kw),
                                       std=0.2, seed=4).double().eval(), 24),
    "maf": (lambda **kw: randomize(build_model("maf", (1, 1, 2), pixel_levels=4, logit_alpha=0.05, num_layers=2,
                                               hidden_sizes=[8], **kw), std=0.2, seed=4).double().eval(), 24),
    "glow": (glow_with_its_mass_in_the_box, 5),
}
# nats; doubling the nodes per bin (24 -> 48, and 5 -> 8 for Glow) moves no value by more than 0.001
QUADRATURE_ERROR = 0.002


@pytest.mark.parametrize("name", BOUND_TOYS)
def test_uniform_bound_is_its_integral_and_never_undercuts_the_exact_nll(name):
    make, nodes_per_bin = BOUND_TOYS[name]
    model = make()
    probability, uniform_bound = exact_probabilities_and_uniform_bounds(model, nodes_per_bin)
    # the bins tile the box [0, L)^D, so their masses add up to the flow's mass inside it
    assert 0.9 < float(probability.sum()) < 1 + QUADRATURE_ERROR
    exact_nll = -torch.log(probability)
    assert torch.all(uniform_bound >= exact_nll - QUADRATURE_ERROR), f"bound - NLL: {uniform_bound - exact_nll}"
    assert float((uniform_bound - exact_nll).mean()) > 0.05, "too easy a toy to tell a bound from the NLL"
    bound, stderr = monte_carlo_bound(model, draws=400)
    assert torch.all(bound >= exact_nll - 4 * stderr - QUADRATURE_ERROR)
    assert torch.all((bound - uniform_bound).abs() < 4 * stderr + QUADRATURE_ERROR), "nll is not this bound"


@pytest.mark.parametrize("name", BOUND_TOYS)
def test_variational_bound_never_undercuts_the_exact_nll(name):
    make, nodes_per_bin = BOUND_TOYS[name]
    model = make(dequantization="variational", dequantizer_hidden=8, dequantizer_couplings=2)
    probability, _ = exact_probabilities_and_uniform_bounds(model, nodes_per_bin)
    exact_nll = -torch.log(probability)
    bound, stderr = monte_carlo_bound(model, draws=400)
    assert torch.all(bound >= exact_nll - 4 * stderr - QUADRATURE_ERROR), f"bound - NLL: {bound - exact_nll}"


# --- the model interface ------------------------------------------------------------------------------------

@pytest.mark.parametrize("levels", [LEVELS, 256])
@pytest.mark.parametrize("name", DEQUANTIZED)
def test_samples_are_levels_in_range(name, levels):
    model = randomize(DEQUANTIZED[name](SHAPE, pixel_levels=levels), std=0.3).eval()
    samples = model.sample(32, torch.Generator().manual_seed(1))
    assert samples.shape == (32, *SHAPE) and samples.dtype == torch.float32
    assert torch.equal(samples, samples.round())
    assert float(samples.min()) >= 0 and float(samples.max()) <= levels - 1
    assert len(samples.unique()) > 2, "grey samples that take two values"
    assert torch.equal(samples, model.sample(32, torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("name", DEQUANTIZED)
def test_bad_pixel_levels_and_preprocessing_are_errors_naming_the_key(name):
    with pytest.raises(ValueError, match="pixel_levels"):
        DEQUANTIZED[name](SHAPE, pixel_levels=1)
    with pytest.raises(ValueError, match="preprocessing"):
        DEQUANTIZED[name](SHAPE, preprocessing="sigmoid")


@pytest.mark.parametrize("name", DEQUANTIZED)
def test_a_grey_checkpoint_round_trips_with_the_same_nll(name, tmp_path):
    kwargs = {**DEQUANTIZED_KWARGS[name], "pixel_levels": LEVELS, "dequantization": "variational",
              "eval_samples": 2}
    model = build_model(name, SHAPE, **kwargs)
    model.train()
    model.loss(grey_images(16))  # actnorm initialises itself on the first training batch
    model.eval()
    save_checkpoint(tmp_path / "model.pt", model, name, kwargs)
    loaded = load_checkpoint(tmp_path / "model.pt")[0]
    assert loaded.pixel_levels == LEVELS
    x = grey_images(5, seed=2)
    torch.manual_seed(0)
    expected = model.nll(x)
    torch.manual_seed(0)
    torch.testing.assert_close(loaded.nll(x), expected)
