"""Training compute in floating-point operations, counted the same way on every machine.

The count is that of `torch.utils.flop_counter.FlopCounterMode`: 2 per multiply-add of every
matrix product, convolution and attention, forward and backward; elementwise work is not counted.
It is taken once per model, on a CPU copy of the model in fp32 (fused recurrent kernels off, so an
LSTM's products are seen), on a small batch of random images, and scaled per image: the work of a
training step grows linearly with the batch for every family here. A family whose work the counter
misses counts it itself (`CountsItsTrainingFlops`); one that fits without gradients (EM) is counted
over one fit on the batch. So the count depends on the model and its settings only, not on the
hardware, the precision it trains in or compilation.
"""
from __future__ import annotations

import copy

import torch
from torch.utils.flop_counter import FlopCounterMode

from models.base import ClassConditional, CountsItsTrainingFlops, FitsWithoutGradients, GenerativeModel

COUNT_BATCH = 2


def training_flops_per_image(model: GenerativeModel) -> int:
    """The FLOPs of one training image (forward and backward, or one fit), see the module's docstring."""
    if isinstance(model, CountsItsTrainingFlops):
        return int(model.training_flops_per_image())
    with torch.random.fork_rng(devices=[]):  # counting draws random numbers; training must not see it
        torch.manual_seed(0)
        flops = _counted(copy.deepcopy(model).cpu().float().train(), COUNT_BATCH)
    if flops == 0:
        raise ValueError(f"{type(model).__name__}: the FLOP counter sees no matrix product in a training step; "
                         "the family must count its FLOPs itself (models.base.CountsItsTrainingFlops)")
    return flops // COUNT_BATCH


def _counted(model: GenerativeModel, batch: int) -> int:
    images = torch.rand(batch, *model.image_shape).round()
    labels = {"labels": torch.arange(batch) % model.num_classes} if isinstance(model, ClassConditional) else {}
    counter, fused_kernels = FlopCounterMode(display=False), torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # (its flags() context also warns about TF32 on Intel GPUs)
    try:
        with counter:
            if isinstance(model, FitsWithoutGradients) and model.fits_without_gradients:
                model.fit_epoch(images)
            else:
                model.loss(images, **labels).backward()
    finally:
        torch.backends.mkldnn.enabled = fused_kernels
    return counter.get_total_flops()

