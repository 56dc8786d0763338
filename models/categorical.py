"""Independent pixels over L levels, each with its own softmax: the grey-level baseline, as
independent Bernoulli pixels (models/bernoulli.py) are the binarized one."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.base import GenerativeModel, mean_nll_over_batches, require_pixel_levels, uniform_noise

# Training images counted at once by `fit_epoch`: their levels as int64 indices take 8 bytes a pixel.
IMAGES_PER_COUNT = 10_000


class IndependentCategorical(GenerativeModel):
    """p(x) = prod_i softmax(theta_i)[x_i]: L free logits per pixel for pixels of L = `pixel_levels`
    levels (one of them redundant). With 2 levels it is the independent Bernoulli model: the logits
    (0, t) give Bernoulli(sigmoid(t)).

    fit: `counts` sets each pixel's probabilities to its smoothed level frequencies in the training
    images, (count + a) / (images + L a) with a = `smoothing`: maximum likelihood under a symmetric
    Dirichlet(1 + a) prior, which keeps a level no training image has at a pixel (most grey levels in
    MNIST's corners) at a finite cost. `gradient` leaves the logits to the training loop.

    Example: `IndependentCategorical((1, 28, 28), pixel_levels=256).fit_epoch(train_images)`.
    """

    def __init__(self, image_shape=(1, 28, 28), pixel_levels: int = 2, fit: Literal["counts", "gradient"] = "counts",
                 smoothing: float = 1.0):
        super().__init__(image_shape)
        require_pixel_levels(pixel_levels)
        if fit not in ("counts", "gradient"):
            raise ValueError(f"fit must be 'counts' or 'gradient', got {fit!r}")
        if not smoothing > 0:
            raise ValueError(f"smoothing must be > 0, got {smoothing}")
        self.pixel_levels, self.fit, self.smoothing = pixel_levels, fit, smoothing
        self.logits = nn.Parameter(torch.zeros(pixel_levels, *self.image_shape))

    @property
    def fits_without_gradients(self) -> bool:
        return self.fit == "counts"

    def level_log_probs(self) -> torch.Tensor:
        """log p(x_i = level) for every level and pixel, shape (L, C, H, W)."""
        return F.log_softmax(self.logits, 0)

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        # The table is normalized once per batch; each image then only picks its levels' entries.
        per_pixel = self.level_log_probs().flatten(1)  # (L, pixels)
        return -per_pixel.gather(0, x.flatten(1).long()).sum(1)

    def training_flops_per_image(self) -> int:
        """Elementwise work only, which the FLOP counter does not see. Per image and pixel: forward,
        picking log p(x_i) from the normalized table (a read) and adding it into the image's sum;
        backward, adding the image's gradient onto the picked entry (a scatter-add). Each counts as
        one multiply-add (2 FLOPs, the counter's convention): 4 per pixel, whatever L. The log-softmax
        of the L x pixels table and its gradient (about 4 L FLOPs per pixel each way) run once per
        training step for the whole batch, not once per image: like the optimizer's update, work
        proportional to the parameters that no family's count includes. A fit from counts does less
        (one addition per pixel and image)."""
        return 4 * self.num_pixels

    @torch.no_grad()
    def fit_epoch(self, images: torch.Tensor) -> float:
        """Maximum likelihood (smoothed) from the level counts of `images`; returns their mean NLL."""
        counts = self.level_counts(images)
        frequencies = (counts + self.smoothing) / (len(images) + self.pixel_levels * self.smoothing)
        self.logits.copy_(frequencies.log().view_as(self.logits))
        return mean_nll_over_batches(self.nll, images, 10_000, float64=True)

    def level_counts(self, images: torch.Tensor) -> torch.Tensor:
        """How many of `images` have each level at each pixel, shape (L, pixels), float64."""
        counts = torch.zeros(self.pixel_levels, self.num_pixels, dtype=torch.float64, device=images.device)
        for chunk in images.split(IMAGES_PER_COUNT):
            levels = chunk.flatten(1).long()
            counts.scatter_add_(0, levels, torch.ones_like(levels, dtype=counts.dtype))
        return counts

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Levels by inverting each pixel's cumulative distribution at one uniform number, as
        models/nn/pixel_distributions.py draws, without expanding the table to n images."""
        noise = uniform_noise((n, *self.image_shape), generator, self.device)
        cdf = self.level_log_probs().float().exp().cumsum(0).flatten(1)  # (L, pixels)
        levels = torch.searchsorted(cdf.T.contiguous(), noise.flatten(1).T.contiguous())  # first level with cdf >= noise
        return levels.clamp(max=self.pixel_levels - 1).T.reshape(n, *self.image_shape).float()
