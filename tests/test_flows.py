"""Checks for the flow building blocks (models/nn/transforms.py, models/nn/dequantized.py, the layers of Glow
and MAF) and the dequantized flows built from them."""
import dataclasses
import inspect
import math

import numpy as np
import pytest
import torch
from torch import nn

from models import build_model
from models.checkpoint import load_checkpoint, save_checkpoint
from models.glow import Glow, InvertibleConv1x1
from models.maf import MAF, Flatten, MaskedAffineAutoregressive, Permute
from models.nn.dequantized import Dequantization, LogitTransform, VariationalDequantizer
from models.nn.masked_linear import IncrementalMADE, MaskedMLP, made_degrees, made_masks
from models.nn.transforms import (
    ActNorm,
    AffineCoupling,
    ChannelCoupling,
    CheckerboardCoupling,
    Compose,
    MultiScale,
    Squeeze,
    coupling_net,
    standard_normal_log_prob,
)
from models.realnvp import RealNVP
from tests.helpers import all_binary_images, randomize
from tests.toys import DEQUANTIZED, DEQUANTIZED_KWARGS

pytestmark = pytest.mark.usefixtures("torch_seeded")  # Glow's rotations come from torch's global generator


class MLP(nn.Sequential):
    def __init__(self, inputs: int, outputs: int, hidden: int = 16):
        super().__init__(nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, outputs))


def vector_coupling(dim, parity):
    """A coupling of (N, dim) vectors: one half of the features gives the other half's shift and scale."""
    return ChannelCoupling(dim, parity, MLP(dim // 2, dim))


def checkerboard_coupling(shape, parity, scale="tanh"):
    return CheckerboardCoupling(shape, parity, coupling_net(shape[0], 8, 2 * shape[0], 1), scale)


def channel_coupling(channels, parity, scale="tanh"):
    return ChannelCoupling(channels, parity, coupling_net(channels // 2, 8, channels, 1), scale)


def small_multiscale():
    return MultiScale([Compose(checkerboard_coupling((1, 4, 4), 0), Squeeze(), channel_coupling(4, 1)),
                       Compose(checkerboard_coupling((2, 2, 2), 1))],
                      [(4, 2, 2), (2, 2, 2)])


# name -> (transform factory, shape of one input, input distribution)
TRANSFORMS = {
    "squeeze": (lambda: Squeeze(), (2, 4, 4), "normal"),
    "flatten": (lambda: Flatten((2, 2, 2)), (2, 2, 2), "normal"),
    "reverse": (lambda: Permute.reverse(6), (6,), "normal"),
    "actnorm_image": (lambda: ActNorm(2), (2, 3, 3), "normal"),
    "actnorm_vector": (lambda: ActNorm(5), (5,), "normal"),
    "invertible_conv1x1": (lambda: InvertibleConv1x1(4), (4, 2, 2), "normal"),
    "coupling_checkerboard_tanh": (lambda: checkerboard_coupling((2, 4, 4), 1), (2, 4, 4), "normal"),
    "coupling_channel_sigmoid": (lambda: channel_coupling(4, 0, "sigmoid"), (4, 2, 2), "normal"),
    "coupling_channel_tanh_second_half_given": (lambda: channel_coupling(4, 1), (4, 2, 2), "normal"),
    "coupling_vector": (lambda: vector_coupling(4, 0), (4,), "normal"),
    "maf_layer_one_hidden": (lambda: MaskedAffineAutoregressive(6, [12], torch.Generator().manual_seed(0)),
                             (6,), "normal"),
    "maf_layer_two_hidden": (lambda: MaskedAffineAutoregressive(6, [12, 10], torch.Generator().manual_seed(0)),
                             (6,), "normal"),
    "maf_layer_tanh": (lambda: MaskedAffineAutoregressive(6, [12], torch.Generator().manual_seed(0), "tanh"),
                       (6,), "normal"),
    "multiscale": (small_multiscale, (1, 4, 4), "normal"),
    "logit": (lambda: LogitTransform(alpha=0.05), (1, 2, 2), "dequantized"),
    "compose": (lambda: Compose(ActNorm(4), vector_coupling(4, 1), Permute.reverse(4)), (4,), "normal"),
}
FLOWS = {f"{name}_flow": (lambda make=make: make((1, 4, 4)).flow, (1, 4, 4), "normal")
         for name, make in DEQUANTIZED.items()}


def random_inputs(shape, kind, n, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    if kind == "dequantized":  # values in the open dequantization box (0, 2)
        return (torch.rand((n, *shape), generator=gen, dtype=dtype) * 1.98 + 0.01)
    return torch.randn((n, *shape), generator=gen, dtype=dtype)


def built(factory, seed=0):
    """The transform in float64 with random, non-trivial parameters (zero-initialised output layers
    would make every coupling the identity)."""
    return randomize(factory(), std=0.25, seed=seed).double().eval()


@pytest.mark.parametrize("name", [*TRANSFORMS, *FLOWS])
def test_inverse_undoes_forward(name):
    factory, shape, kind = {**TRANSFORMS, **FLOWS}[name]
    transform = built(factory)
    x = random_inputs(shape, kind, n=5)
    with torch.no_grad():
        y, log_det = transform(x)
        x_back, inverse_log_det = transform.inverse(y)
    assert log_det.shape == (5,)
    torch.testing.assert_close(x_back, x, atol=1e-5, rtol=0)
    torch.testing.assert_close(inverse_log_det, -log_det, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", [*TRANSFORMS, *FLOWS])
def test_log_det_matches_autograd_jacobian(name):
    factory, shape, kind = {**TRANSFORMS, **FLOWS}[name]
    transform = built(factory, seed=1)
    x = random_inputs(shape, kind, n=3, seed=1)
    with torch.no_grad():
        _, log_det = transform(x)
    for b in range(len(x)):
        jacobian = torch.autograd.functional.jacobian(
            lambda flat: transform(flat.view(1, *shape))[0].flatten(), x[b].flatten())
        sign, expected = torch.linalg.slogdet(jacobian)
        assert sign != 0
        assert float(log_det[b]) == pytest.approx(float(expected), abs=1e-6)


def test_maf_layer_is_autoregressive():
    layer = built(lambda: MaskedAffineAutoregressive(6, [12, 12], torch.Generator().manual_seed(0)))
    jacobian = torch.autograd.functional.jacobian(lambda x: layer(x[None])[0][0], torch.randn(6, dtype=torch.float64))
    assert torch.all(jacobian.triu(1) == 0), "output i depends on a later input"
    assert torch.count_nonzero(jacobian.tril(-1)) > 0


@pytest.mark.parametrize("hidden_sizes", [[12], [12, 10]])
def test_the_incremental_pass_gives_the_full_pass_outputs_from_the_inputs_before(hidden_sizes):
    """MADE's incremental pass (MADE's sampling, MAF's inverse) against the network on the whole input."""
    d = 6
    mlp = MaskedMLP([d, *hidden_sizes, 2 * d])
    mlp.set_masks(made_masks(made_degrees(torch.arange(d), hidden_sizes, torch.Generator().manual_seed(0)), 2))
    mlp = randomize(mlp, seed=1).double()
    x = torch.randn(3, d, dtype=torch.float64)
    full = mlp(x)
    steps = IncrementalMADE(mlp, mlp.layers[0](torch.zeros_like(x)))
    for i in range(d):  # output i from inputs 0 .. i - 1 only
        torch.testing.assert_close(steps.outputs(i), full[:, i::d])
        steps.input_changed(i, x[:, i])


COUPLINGS = {
    "realnvp": lambda: RealNVP((1, 8, 8), hidden_channels=4, num_blocks=1, scales=2, couplings=2),
    "glow": lambda: Glow((1, 8, 8), hidden_channels=4, steps=2, levels=2),
    "variational_dequantizer": lambda: VariationalDequantizer((1, 4, 4), hidden_channels=4, couplings=2),
}


@pytest.mark.parametrize("name", COUPLINGS)
def test_each_coupling_network_reads_one_half_and_gives_the_other_halfs_shift_and_scale(name):
    """As in the papers: a channel coupling's network maps the C/2 conditioning channels to the shift
    and scale of the other C/2; a checkerboard coupling's reads the image with the transformed pixels
    zeroed and gives a shift and scale per channel (the variational dequantizer's add its context)."""
    model = randomize(COUPLINGS[name](), std=0.2)
    seen = []
    for coupling in (m for m in model.modules() if isinstance(m, AffineCoupling)):
        coupling.register_forward_hook(lambda m, args, out: seen.append((m, args[0].shape)))
        coupling.net.register_forward_hook(lambda m, args, out: seen.append((args[0], out.shape)))
    context = 4 if name == "variational_dequantizer" else 0
    if name == "variational_dequantizer":
        model.transform(torch.randn(2, 1, 4, 4), torch.ones(2, 1, 4, 4))
    else:
        model.log_density(torch.rand(2, 1, 8, 8) * 2)
    assert len(seen) == 2 * sum(isinstance(m, AffineCoupling) for m in model.modules()) > 0
    for (net_input, net_output), (coupling, (n, c, h, w)) in zip(seen[::2], seen[1::2]):
        if isinstance(coupling, ChannelCoupling):
            assert net_input.shape == (n, c // 2 + context, h, w) and net_output == (n, c, h, w)
        elif isinstance(coupling, CheckerboardCoupling):
            assert net_input.shape == (n, c + context, h, w) and net_output == (n, 2 * c, h, w)
            assert torch.all(net_input[:, :c] * (1 - coupling.mask) == 0), "the net sees a transformed pixel"
        else:  # the dequantizer's first, elementwise layer: its context alone
            assert net_input.shape == (n, context, h, w) and net_output == (n, 2 * c, h, w)


def test_glow_rotations_come_from_the_training_seed():
    """pipeline.fit_model.build seeds torch with train.seed before it builds: one seed gives Glow the
    same 1x1 convolutions, two seeds different ones."""
    from pipeline.fit_model import build
    from pipeline.layout import DATASETS
    from pipeline.model_params import ModelSpec
    from pipeline.train_config import TrainConfig

    def rotations(seed):
        spec = ModelSpec("glow", "glow", {"hidden_channels": 4, "num_blocks": 0, "steps": 2, "levels": 1},
                         TrainConfig(seed=seed), DATASETS["binarized"])
        model = build(spec, torch.device("cpu"))
        return torch.cat([m.weight().flatten() for m in model.modules() if isinstance(m, InvertibleConv1x1)])

    assert torch.equal(rotations(1), rotations(1))
    assert not torch.allclose(rotations(1), rotations(2))


@pytest.mark.parametrize("flow", [RealNVP, Glow, MAF])
def test_the_flows_dequantization_keywords_default_to_the_dequantization_defaults(flow):
    """Each flow's constructor takes the `Dequantization` settings as params.yaml keys; the defaults agree."""
    parameters = inspect.signature(flow.__init__).parameters
    defaults = dataclasses.asdict(Dequantization())
    assert {name: parameters[name].default for name in defaults} == defaults


def test_variational_dequantizer_log_det_matches_autograd():
    dequantizer = built(lambda: VariationalDequantizer((1, 4, 4), hidden_channels=8, couplings=2))
    x = all_binary_images((1, 4, 4))[[5, 1000]].double()
    eps = torch.randn(2, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        u, log_det = dequantizer.transform(eps, x)
    assert torch.all((u > 0) & (u < 1))
    for b in range(2):
        jacobian = torch.autograd.functional.jacobian(
            lambda e: dequantizer.transform(e.view(1, 1, 4, 4), x[b:b + 1])[0].flatten(), eps[b].flatten())
        assert float(log_det[b]) == pytest.approx(float(torch.linalg.slogdet(jacobian)[1]), abs=1e-6)


def test_two_dimensional_flow_density_integrates_to_one():
    flow = built(lambda: Compose(ActNorm(2), vector_coupling(2, 0), MaskedAffineAutoregressive(
        2, [8], torch.Generator().manual_seed(0)), Permute.reverse(2), vector_coupling(2, 1),
        MaskedAffineAutoregressive(2, [8], torch.Generator().manual_seed(1))), seed=3)
    edges = torch.linspace(-12, 12, 1201, dtype=torch.float64)
    centres, step = (edges[1:] + edges[:-1]) / 2, float(edges[1] - edges[0])
    grid = torch.cartesian_prod(centres, centres)
    with torch.no_grad():
        z, log_det = flow(grid)
        density = torch.exp(standard_normal_log_prob(z) + log_det)
    assert float(density.sum()) * step ** 2 == pytest.approx(1.0, abs=1e-2)
    assert float(density.max()) * step ** 2 < 0.01, "the density is too peaked for this grid to measure"


# --- the dequantization bound on 2x2 binary images, against exact discrete probabilities ---------------

TINY = (1, 2, 2)
ALPHA = 1e-3
TINY_FLOWS = {
    "realnvp": lambda **kw: RealNVP(TINY, hidden_channels=4, num_blocks=0, scales=0, couplings=2, **kw),
    "glow": lambda **kw: Glow(TINY, hidden_channels=8, steps=2, levels=1, **kw),
    "maf": lambda **kw: MAF(TINY, num_layers=2, hidden_sizes=[8], **kw),
}


def gauss_legendre_bins(nodes_per_bin: int):
    """Quadrature nodes and weights on the logit-space image of each pixel's two bins: w in
    (logit(alpha), 0) is v in (0, 1) (x = 0) and w in (0, logit(1 - alpha)) is v in (1, 2) (x = 1)."""
    edge = math.log((1 - ALPHA) / ALPHA)
    t, weights = np.polynomial.legendre.leggauss(nodes_per_bin)
    half = edge / 2
    nodes = np.concatenate([-half + half * t, half + half * t])
    return torch.tensor(nodes), torch.tensor(np.concatenate([weights, weights]) * half)


def bin_integrals(model, nodes_per_bin=10):
    """For each of the 16 images x: P(x), the mass of the flow's density p(w) over x's bin, integrated
    from the flow and the base density alone (not through the model's nll), and the uniform-
    dequantization bound E_{u ~ U[0,1)^4}[-log p(x + u)] integrated from the model's `log_density`.
    Also returns log p(v) at the quadrature nodes, from the model and from p(w) and dv/dw."""
    nodes, weights = gauss_legendre_bins(nodes_per_bin)
    d = math.prod(TINY)
    w = torch.cartesian_prod(*[nodes] * d)
    weight = torch.cartesian_prod(*[weights] * d).prod(1)
    s = torch.sigmoid(w)
    v = 2 * (s - ALPHA) / (1 - 2 * ALPHA)
    log_dv_dw = torch.log(2 * s * (1 - s) / (1 - 2 * ALPHA)).sum(1)
    with torch.no_grad():
        z, log_det = model.flow(w.view(-1, *TINY))
        log_pw = standard_normal_log_prob(z) + log_det
        log_pv = model.log_density(v.view(-1, *TINY))
    image = ((w > 0).long() * 2 ** torch.arange(d - 1, -1, -1)).sum(1)
    per_bin = lambda values: torch.zeros(2 ** d, dtype=torch.float64).index_add_(0, image, weight * values)
    probability = per_bin(log_pw.exp())
    uniform_bound = per_bin(-log_pv * log_dv_dw.exp())  # dv = (dv/dw) dw, and each v-bin has volume 1
    return probability, uniform_bound, log_pv, log_pw - log_dv_dw


def monte_carlo_bound(model, draws=3000):
    """The model's own nll (one dequantization draw per call), averaged over `draws` draws per image,
    with its standard error."""
    images = all_binary_images(TINY).double()
    torch.manual_seed(0)
    with torch.no_grad():
        bounds = model.nll(images.repeat_interleave(draws, 0)).view(len(images), draws)
    return bounds.mean(1), bounds.std(1) / math.sqrt(draws)


def tiny_model(name, seed, **kwargs):
    return randomize(TINY_FLOWS[name](logit_alpha=ALPHA, **kwargs), std=0.2, seed=seed).double().eval()


QUADRATURE_ERROR = 0.01  # nats; 10 vs 20 nodes per bin differ by under 0.005 on these toys


@pytest.mark.parametrize("name", TINY_FLOWS)
def test_uniform_bound_is_its_integral_and_never_undercuts_the_exact_nll(name):
    model = tiny_model(name, seed=4)
    probability, uniform_bound, log_pv, expected_log_pv = bin_integrals(model)
    torch.testing.assert_close(log_pv, expected_log_pv, atol=1e-6, rtol=0)  # every Jacobian is counted
    # the bins tile the box (0, 2)^4, so their masses add up to the flow's mass inside it
    assert 0.97 < float(probability.sum()) < 1 + QUADRATURE_ERROR
    exact_nll = -torch.log(probability)
    assert torch.all(uniform_bound >= exact_nll - QUADRATURE_ERROR)
    assert float((uniform_bound - exact_nll).min()) > 0.1, "too easy a toy to tell a bound from the NLL"
    bound, stderr = monte_carlo_bound(model)
    assert torch.all((bound - uniform_bound).abs() < 4 * stderr + QUADRATURE_ERROR), "nll is not this bound"


@pytest.mark.parametrize("name", TINY_FLOWS)
def test_variational_bounds_never_undercut_the_exact_nll(name):
    model = tiny_model(name, seed=4, dequantization="variational", dequantizer_hidden=8, dequantizer_couplings=2)
    probability, *_ = bin_integrals(model)
    assert 0.97 < float(probability.sum()) < 1 + QUADRATURE_ERROR
    bound, stderr = monte_carlo_bound(model)
    exact_nll = -torch.log(probability)
    assert torch.all(bound >= exact_nll - 4 * stderr - QUADRATURE_ERROR), f"bound - NLL: {bound - exact_nll}"
    model.eval_samples, model.importance_weighted = 8, True
    weighted, weighted_stderr = monte_carlo_bound(model, draws=400)
    assert torch.all(weighted >= exact_nll - 4 * weighted_stderr - QUADRATURE_ERROR)
    assert torch.all(weighted <= bound + 4 * (stderr + weighted_stderr)), "importance weighting loosened the bound"
    assert float((bound - weighted).mean()) > 0.05, "importance weighting did not tighten the bound"


# --- the model interface --------------------------------------------------------------------------------

SHAPE = (1, 4, 4)


def images(n, seed=0):
    return torch.bernoulli(torch.full((n, *SHAPE), 0.4), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", DEQUANTIZED)
@pytest.mark.parametrize("dequantization", ["uniform", "variational"])
def test_samples_are_binary_and_reproducible(name, dequantization):
    model = randomize(DEQUANTIZED[name](SHAPE, dequantization=dequantization), std=0.3).eval()
    a = model.sample(6, torch.Generator().manual_seed(1))
    b = model.sample(6, torch.Generator().manual_seed(1))
    assert a.shape == (6, *SHAPE)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a, b)
    cold = model.sample(6, torch.Generator().manual_seed(1), temperature=0.0)
    assert torch.equal(cold, model.decode(torch.zeros(1, model.num_pixels)).expand(6, *SHAPE))


@pytest.mark.parametrize("name", DEQUANTIZED)
def test_decode_inverts_encode(name):
    model = randomize(DEQUANTIZED[name](SHAPE), std=0.3).eval()
    x = images(8)
    z = model.encode(x)
    assert z.shape == (8, model.num_pixels)
    assert torch.equal(model.decode(z), x)
    assert model.decode(0.5 * z[:4] + 0.5 * z[4:]).shape == (4, *SHAPE)


@pytest.mark.parametrize("name", DEQUANTIZED)
def test_nll_is_finite_and_differentiable_under_bf16_autocast(name):
    model = randomize(DEQUANTIZED[name](SHAPE, dequantization="variational"), std=0.3)
    x = images(4)
    torch.manual_seed(0)
    reference = model.nll(x)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low_precision = model.nll(x)
    assert low_precision.dtype == torch.float32
    torch.testing.assert_close(low_precision, reference, rtol=0.05, atol=0.5)
    low_precision.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def assert_same_nll(loaded, model) -> None:
    """A loaded checkpoint's NLL bound equals the model's, with the same dequantization noise."""
    x = images(5, seed=2)
    torch.manual_seed(0)
    expected = model.nll(x)
    torch.manual_seed(0)
    torch.testing.assert_close(loaded.nll(x), expected)


@pytest.mark.parametrize("name", DEQUANTIZED)
def test_checkpoint_round_trip_gives_the_same_nll(name, tmp_path):
    kwargs = {**DEQUANTIZED_KWARGS[name], "dequantization": "variational", "eval_samples": 2}
    model = build_model(name, SHAPE, **kwargs)
    model.train()
    model.loss(images(16))  # actnorm initialises itself on the first training batch
    model.eval()
    save_checkpoint(tmp_path / "model.pt", model, name, kwargs)
    assert_same_nll(load_checkpoint(tmp_path / "model.pt")[0], model)


def strokes(n: int, generator: torch.Generator) -> torch.Tensor:
    """4x4 images with one row or one column lit, the rest off: eight images, an easy distribution
    to become confident about."""
    lines = torch.cat([torch.eye(4)[:, :, None].expand(4, 4, 4), torch.eye(4)[:, None, :].expand(4, 4, 4)])
    return lines[torch.randint(0, 8, (n,), generator=generator)][:, None]


def trained_on_strokes(model, steps: int = 300):
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model.loss(strokes(64, generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_maf_scores_noise_like_the_other_flows_do():
    """Trained on strokes, every flow finds uniform noise unlikely, but MAF's scales must not multiply
    up through its layers (with tanh scales its worst noise image scored 4x the worst of the others)."""
    noise = torch.bernoulli(torch.full((256, *SHAPE), 0.5), generator=torch.Generator().manual_seed(1))
    worst = {}
    for name in DEQUANTIZED:
        torch.manual_seed(0)
        model = trained_on_strokes(DEQUANTIZED[name](SHAPE))
        with torch.no_grad():
            worst[name] = float(model.nll(noise).max())
            assert float(model.nll(strokes(64, torch.Generator().manual_seed(2))).mean()) < worst[name], name
    assert math.isfinite(worst["maf"])
    assert worst["maf"] < 2 * max(worst["realnvp"], worst["glow"]), worst


def test_a_maf_checkpoint_from_before_sigmoid_scales_still_computes_with_tanh_scales(tmp_path):
    kwargs = {**DEQUANTIZED_KWARGS["maf"], "eval_samples": 2}
    tanh = randomize(MAF(SHAPE, log_scale="tanh", **kwargs), std=0.3).eval()
    before = {k: v for k, v in tanh.state_dict().items() if k != "tanh_log_scales"}  # as such checkpoints hold
    torch.save({"family": "maf", "kwargs": kwargs, "image_shape": SHAPE, "state_dict": before, "meta": {}},
               tmp_path / "model.pt")
    assert_same_nll(load_checkpoint(tmp_path / "model.pt")[0], tanh)
    sigmoid = MAF(SHAPE, **kwargs)
    sigmoid.load_state_dict(randomize(MAF(SHAPE, **kwargs), std=0.3).state_dict())
    assert not sigmoid.tanh_log_scales and sigmoid.flow.transforms[-1].log_scale == "sigmoid"


def test_actnorm_initialises_from_the_first_training_batch():
    norm = ActNorm(3).train()
    x = torch.randn(64, 3, 4, 4) * torch.tensor([1.0, 5.0, 0.2])[:, None, None] + 7
    y, _ = norm(x)
    torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std((0, 2, 3)), torch.ones(3), atol=1e-3, rtol=0)
    y2, _ = norm(x * 3)  # later batches use the learned parameters
    assert not torch.allclose(y2.std((0, 2, 3)), torch.ones(3), atol=0.1)


@pytest.mark.parametrize("make, key", [
    (lambda: RealNVP(scales=3), "scales"),
    (lambda: Glow(levels=3), "levels"),
    (lambda: MAF(hidden_sizes=[]), "hidden_sizes"),
    (lambda: MAF(dequantization="gaussian"), "dequantization"),
    (lambda: MAF(log_scale="softplus"), "log_scale"),
    (lambda: RealNVP(logit_alpha=0.7), "logit_alpha"),
    (lambda: Glow(eval_samples=0), "eval_samples"),
])
def test_bad_settings_are_one_line_errors_naming_the_key(make, key):
    with pytest.raises(ValueError, match=key):
        make()
