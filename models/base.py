"""The interface every model family implements (docs/architecture.md, 'The model interface').

Every model is a `GenerativeModel`: `nll`, `loss` and `sample`, and the name of its `estimator`.
What only some families can do is declared here as capabilities (runtime-checkable Protocols);
the stages ask `isinstance(model, CanComplete)` and never which family they hold.
"""
from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable
from typing import Literal, Protocol, get_args, runtime_checkable

import torch
from torch import nn

from models.settings import (  # noqa: F401 (the families take them from here, with the interface)
    DIGIT_CLASSES,
    require_pixel_levels,
    require_positive,
    require_sizes,
)

# What a model's `nll` computes: the exact NLL, an importance-sampled estimate (an upper bound in
# expectation), or a bound on the discrete NLL from a density over dequantized pixels.
Estimator = Literal["exact", "importance_sampled", "dequantized"]
ESTIMATORS: tuple[str, ...] = get_args(Estimator)


def no_progress(steps: Iterable, total: int | None = None, unit: str = "px") -> Iterable:
    """A model's default `progress`: its sampler's steps as they are, with no bar."""
    return steps


class GenerativeModel(nn.Module):
    """A density model over images of shape `image_shape` = (C, H, W) whose pixels take the integer
    values 0 .. pixel_levels - 1, held in a float tensor: 2 for binarized images, 256 for grey levels.

    `nll(x)` returns the per-image negative log-likelihood in nats, or the tightest upper bound the
    family has; the class attribute `estimator` names which (one of ESTIMATORS). A family that models
    grey levels takes `pixel_levels` in its constructor and sets the attribute; the others keep 2.
    """

    estimator: Estimator = "exact"
    pixel_levels: int = 2
    # What a sampler that draws step by step (pixel by pixel, or row by row) walks its steps
    # through, as `progress(steps, total, unit)`: a stage sets a progress bar here.
    progress: Callable[..., Iterable] = staticmethod(no_progress)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.estimator not in ESTIMATORS:
            raise TypeError(f"{cls.__name__}.estimator must be one of {', '.join(ESTIMATORS)}, got {cls.estimator!r}")

    def __init__(self, image_shape: tuple[int, int, int]):
        super().__init__()
        self.image_shape = tuple(image_shape)

    @property
    def num_pixels(self) -> int:
        return math.prod(self.image_shape)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The training objective; exact models minimise the mean NLL (given the labels, if any)."""
        return self.nll(x, **labels_kwarg(labels)).mean()

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


# --- optional capabilities -------------------------------------------------------------------------

@runtime_checkable
class CanComplete(Protocol):
    """Inpainting: sample the pixels where `observed` is False given the others."""

    def complete(self, x: torch.Tensor, observed: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor: ...


@runtime_checkable
class HasSampleMeans(Protocol):
    """The mean images behind `sample`'s images, given an identically seeded generator: each pixel's
    expected level given what its draw was conditioned on (a VAE's code z), divided by L - 1 with
    L = `pixel_levels`, so values on [0, 1]; for binary pixels, the Bernoulli means. The samples hold
    levels 0 .. L-1, so a figure that shows both divides the samples by L - 1."""

    def sample_means(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...


@runtime_checkable
class HasLatentCode(Protocol):
    """An encoder and a decoder: reconstructions, interpolations, a scatter of the codes. `decode`
    returns images in pixel levels, as the data are (a decoder's means may lie between levels)."""

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class HasValidationNLL(Protocol):
    """A cheaper estimate than `nll` for model selection (e.g. fewer importance samples)."""

    def validation_nll(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class HasNegativeELBO(Protocol):
    """The negative ELBO per image: a looser bound reported beside the NLL estimate."""

    def negative_elbo(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class FitsWithoutGradients(Protocol):
    """A family with its own fitting procedure (maximum likelihood from counts, EM). When
    `fits_without_gradients` is True (its params chose it), the training loop calls `fit_epoch`
    on all training images in place of an epoch of gradient steps; it returns the epoch's training
    loss (mean NLL per image). Validation, early stopping and checkpoints stay the loop's."""

    fits_without_gradients: bool

    def fit_epoch(self, images: torch.Tensor) -> float: ...


@runtime_checkable
class CountsItsTrainingFlops(Protocol):
    """A family whose training work the FLOP counter (torch.utils.flop_counter, which sees matrix
    products and convolutions) misses: a custom autograd function (NADE), or only elementwise
    arithmetic (independent Bernoulli pixels, the Markov chain). It counts the FLOPs of training on
    one image itself, by the counter's convention: 2 per multiply-add, forward and backward."""

    def training_flops_per_image(self) -> int: ...


@runtime_checkable
class HasComponentMeans(Protocol):
    """A mixture: the pixel means of its components, most probable component first, (K, C, H, W)."""

    def component_means(self) -> torch.Tensor: ...


@runtime_checkable
class ClassConditional(Protocol):
    """p(x | y) for a class label y (a digit). `nll(x, labels)`, `loss(x, labels)` and
    `sample(n, generator, labels)` take labels; without them `nll` is the marginal
    -log sum_y p(x | y) p(y) and `sample` draws y ~ p(y) first, where p(y) (`label_log_prior`,
    log-probabilities) is set from the training labels by `set_label_prior`. Families get it
    from `LabelConditioning`.

    Its data member is the plain attribute `num_classes`, not the `label_log_prior` buffer: from
    Python 3.12, isinstance() looks members up with inspect.getattr_static, which misses buffers."""

    num_classes: int

    def set_label_prior(self, labels: torch.Tensor) -> None: ...


class LabelConditioning:
    """What a family with a `conditional` option shares (mixed into a GenerativeModel): the label
    prior p(y) as a buffer, the marginal NLL over labels, and labels drawn from p(y). `num_classes`
    and the buffer exist only when conditioning is on, so only then is the model `ClassConditional`."""

    def init_labels(self, num_classes: int) -> None:
        require_positive(num_classes=num_classes)
        self.num_classes = num_classes
        self.register_buffer("label_log_prior", torch.full((num_classes,), -math.log(num_classes)))

    @property
    def conditional(self) -> bool:
        return hasattr(self, "num_classes")

    def set_label_prior(self, labels: torch.Tensor) -> None:
        """p(y) = the frequencies of `labels` (integers in [0, num_classes))."""
        if len(labels) == 0 or labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"labels must be a non-empty set of integers in [0, {self.num_classes})")
        counts = torch.bincount(labels.long().cpu(), minlength=self.num_classes).double()
        self.label_log_prior.copy_((counts / counts.sum()).log())

    def class_log_joint(self, x: torch.Tensor, nll=None) -> torch.Tensor:
        """log p(x | y) + log p(y) for every class y, shape (batch, num_classes), with -log p(x | y)
        from `nll(x, labels)` (by default the model's own `nll`)."""
        nll = nll or self.nll
        columns = [-nll(x, labels=torch.full((len(x),), y, dtype=torch.long, device=x.device))
                   for y in range(self.num_classes)]
        return torch.stack(columns, 1) + self.label_log_prior.to(columns[0].dtype)

    def marginal_nll(self, x: torch.Tensor, nll=None) -> torch.Tensor:
        """-log sum_y p(x | y) p(y). Given an upper bound on each -log p(x | y) instead (a negative
        ELBO), the result is an upper bound on -log p(x)."""
        return -torch.logsumexp(self.class_log_joint(x, nll), 1)

    def check_labels(self, labels: torch.Tensor | None) -> None:
        """Refuse a conditional computation without labels, and labels for an unconditional model."""
        if self.conditional and labels is None:
            raise ValueError(f"{type(self).__name__} is class-conditional: this needs labels")
        if not self.conditional and labels is not None:
            raise ValueError(f"{type(self).__name__} was built without conditional: true, so it takes no labels")

    def labels_or_prior(self, labels: torch.Tensor | None, n: int,
                        generator: torch.Generator | None) -> torch.Tensor:
        """`labels` on the model's device, or n draws from p(y) where none are given."""
        if labels is None:
            labels = torch.multinomial(self.label_log_prior.exp().to(generator_device(generator)), n, replacement=True,
                                       generator=generator)
        if len(labels) != n:
            raise ValueError(f"got {len(labels)} labels for {n} images")
        return labels.to(self.device, torch.long)


def marginal_without_labels(nll):
    """For a method `nll(self, x, ..., labels=None)` giving -log p(x | y) per image (or an upper bound
    on it), `labels` its last argument: called on a class-conditional model without labels, it gives
    the marginal -log sum_y p(x | y) p(y) of the same quantity (`LabelConditioning.marginal_nll`)."""
    labels_at = list(inspect.signature(nll).parameters).index("labels") - 2  # among the arguments after x

    @functools.wraps(nll)
    def nll_or_marginal(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        labels = kwargs.pop("labels", args[labels_at] if len(args) > labels_at else None)
        args = args[:labels_at]
        if labels is None and isinstance(self, ClassConditional):
            given = getattr(self, nll.__name__)  # a subclass's override, if any, for each label
            return self.marginal_nll(x, lambda x, labels: given(x, *args, labels=labels, **kwargs))
        return nll(self, x, *args, labels=labels, **kwargs)

    return nll_or_marginal


# --- summaries of per-image NLLs -------------------------------------------------------------------

@torch.no_grad()
def mean_nll_over_batches(estimate, images: torch.Tensor, batch_size: int, labels: torch.Tensor | None = None,
                          float64: bool = False) -> float:
    """The mean of `estimate(batch)` (one NLL per image; given `labels`, with each batch's labels) over
    `images`, `batch_size` at a time: each batch summed in its own precision (float64 with
    `float64`), the batch sums added up in float64."""
    total = 0.0
    for i in range(0, len(images), batch_size):
        nll = estimate(images[i:i + batch_size], **labels_kwarg(None if labels is None else labels[i:i + batch_size]))
        total += float((nll.double() if float64 else nll).sum())
    return total / len(images)


def mean_and_stderr(values) -> tuple[float, float]:
    """The mean of `values` (a torch tensor or a numpy array, each in its own library's arithmetic) and
    its standard error, the sample standard deviation over sqrt(n) (0 for one value)."""
    if len(values) < 2:
        return float(values.mean()), 0.0
    std = values.std() if torch.is_tensor(values) else values.std(ddof=1)  # both the sample standard deviation
    return float(values.mean()), float(std / math.sqrt(len(values)))


def bits_per_dim(nll_nats, num_dims: int):
    """An NLL in nats per image (a number, a tensor or a column) in bits per dimension, for images of
    `num_dims` pixels (a model's `num_pixels`, or its data's)."""
    return nll_nats / (num_dims * math.log(2))


def labels_kwarg(labels: torch.Tensor | None) -> dict:
    """{'labels': labels} when there are labels: families without a conditional option never see the keyword."""
    return {} if labels is None else {"labels": labels}


# --- precision -------------------------------------------------------------------------------------

def fp32(device_type: str):
    """A context in which autocast is off: ops run in the dtype of their (fp32) inputs."""
    return torch.autocast(device_type, enabled=False)


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """fp64 stays fp64 (for tight tests); anything else (bf16 under autocast, fp16) becomes fp32."""
    return x if x.dtype == torch.float64 else x.float()


# --- sampling helpers ------------------------------------------------------------------------------

def generator_device(generator: torch.Generator | None) -> torch.device | str:
    """Where `generator` draws its numbers: its own device, or the CPU for torch's global generator."""
    return generator.device if generator is not None else "cpu"


def device_noise(draw, shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """`draw(shape)` (torch.rand, torch.randn) from `generator` on its own device, so that a seed
    gives the same numbers whatever `device` they go to; from the global RNG on `device` without one."""
    if generator is None:
        return draw(shape, device=device)
    return draw(shape, generator=generator, device=generator.device).to(device)


def uniform_noise(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Uniform [0, 1) numbers (`device_noise`)."""
    return device_noise(torch.rand, shape, generator, device)


def normal_noise(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Standard normal numbers (`device_noise`)."""
    return device_noise(torch.randn, shape, generator, device)


def flat_views(*images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each of `images` (B, C, H, W) as a (B, pixels) view of the same memory: writing a pixel of a
    view writes the image."""
    return tuple(x.view(len(x), -1) for x in images)


class AutoregressiveModel(GenerativeModel):
    """p(x) = prod_i p(x_i | x_<i) in the order `ordering()`, every conditional a `pixel_distribution`
    (models/nn/pixel_distributions.py): Bernoulli for binary pixels, a discretized mixture of
    logistics or a softmax over grey levels.

    Subclasses implement `pixel_params(x)`: the conditionals' parameters for every pixel, shape
    (B, P, C, H, W) with P = `params_per_pixel` (P = 1, the logit of p(x_i = 1 | x_<i), for binary
    pixels), which must not depend on x_i or later pixels. Their networks read `network_input(x)`.
    Sampling and completion then work pixel by pixel; families with a cheaper step (a hidden state,
    a key/value cache) override `fill`, and each of its steps ends with `draw`.
    """

    def __init__(self, image_shape: tuple[int, int, int], pixel_distribution):
        """`pixel_distribution`: a models.nn.pixel_distributions.PixelDistribution (not imported
        here: that module imports this one, and every family would then depend on it)."""
        super().__init__(image_shape)
        self.pixel_distribution = pixel_distribution
        self.pixel_levels = pixel_distribution.levels

    @property
    def params_per_pixel(self) -> int:
        return self.pixel_distribution.params_per_pixel

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the network reads: binary pixels as they are, grey levels scaled to [-1, 1]."""
        return self.pixel_distribution.network_input(x)

    def pixel_params(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def ordering(self) -> torch.Tensor:
        """Pixel indices (into the flattened image) in the order they are generated."""
        return torch.arange(self.num_pixels)

    @marginal_without_labels
    def nll(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """-log p(x), or -log p(x | y) given labels (class-conditional families)."""
        params = self.pixel_params(x, **labels_kwarg(labels))
        # in fp32 under bf16 autocast too: bf16 places a logistic's mean near 1 only to about half a level's bin
        params = at_least_fp32(params)
        return -self.pixel_distribution.log_prob(params, x).flatten(1).sum(1)

    def draw(self, params: torch.Tensor, observed: torch.Tensor, value: torch.Tensor,
             noise: torch.Tensor) -> torch.Tensor:
        """One pixel of a batch: `value` where observed, else a draw from the conditional with these
        `params` (B, P) by the uniform `noise` (B,)."""
        return torch.where(observed, value, self.pixel_distribution.draw(params, noise))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        x = torch.zeros((n, *self.image_shape), device=self.device)
        return self.complete(x, torch.zeros_like(x, dtype=torch.bool), generator, **labels_kwarg(labels))

    @torch.no_grad()
    def complete(self, x: torch.Tensor, observed: torch.Tensor, generator: torch.Generator | None = None,
                 labels: torch.Tensor | None = None) -> torch.Tensor:
        """Sample the pixels where `observed` is False given the others (exact when the observed
        pixels come first in the model's ordering, as the top half does in raster order). A
        class-conditional model completes given `labels`, or given labels drawn from p(y)."""
        if isinstance(self, ClassConditional):
            labels = self.labels_or_prior(labels, len(x), generator)
        noise = uniform_noise(x.shape, generator, x.device)
        return self.fill(x * observed, observed.bool(), noise, **labels_kwarg(labels))

    def fill(self, x: torch.Tensor, observed: torch.Tensor, noise: torch.Tensor,
             labels: torch.Tensor | None = None) -> torch.Tensor:
        """Pixel i is drawn from p(x_i | x_<i) by noise_i; one full forward pass per pixel."""
        x = x.clone()
        flat_x, flat_obs, flat_noise = flat_views(x, observed, noise)
        for i in self.progress(self.ordering().tolist()):
            if flat_obs[:, i].all():
                continue
            params = self.pixel_params(x, **labels_kwarg(labels)).reshape(len(x), self.params_per_pixel, -1)[:, :, i]
            flat_x[:, i] = self.draw(params, flat_obs[:, i], flat_x[:, i], flat_noise[:, i])
        return x
