"""RealNVP (Dinh et al. 2017): affine coupling layers with checkerboard and channel masks in a
multi-scale architecture, trained on dequantized images, binarized or grey (see models/nn/dequantized.py)."""
from __future__ import annotations

from typing import Literal

from models.base import require_positive
from models.nn.dequantized import Dequantization, DequantizedFlow
from models.nn.transforms import ChannelCoupling, CheckerboardCoupling, Compose, MultiScale, Squeeze, coupling_net


class RealNVP(DequantizedFlow):
    """Each of `scales` levels: `couplings` checkerboard couplings, a squeeze (C, H, W) -> (4C, H/2, W/2),
    `couplings` channel couplings, then half of the channels leave as latents. The remaining channels
    go through `couplings + 1` checkerboard couplings. Masks alternate so that every value is
    transformed; scales are log_s = bound * tanh(raw) with a learned per-channel bound. Each coupling's
    network (`coupling_net`, `num_blocks` residual blocks of `hidden_channels`) reads the conditioning
    half and gives the shift and scale of the other: a checkerboard coupling's reads the C channels
    with the transformed pixels zeroed and gives 2C, a channel coupling's reads C/2 and gives C.
    The dequantization keywords: see `Dequantization`."""

    def __init__(self, image_shape=(1, 28, 28), *, hidden_channels: int = 64, num_blocks: int = 2,
                 scales: int = 2, couplings: int = 3,
                 dequantization: Literal["uniform", "variational"] = "uniform", dequantizer_hidden: int = 32,
                 dequantizer_couplings: int = 2, logit_alpha: float = 1e-3, eval_samples: int = 1,
                 importance_weighted: bool = False, pixel_levels: int = 2,
                 preprocessing: Literal["logit", "scale"] = "logit"):
        super().__init__(image_shape, dequantization=Dequantization(
            dequantization=dequantization, dequantizer_hidden=dequantizer_hidden,
            dequantizer_couplings=dequantizer_couplings, logit_alpha=logit_alpha, eval_samples=eval_samples,
            importance_weighted=importance_weighted, pixel_levels=pixel_levels, preprocessing=preprocessing))
        require_positive(hidden_channels=hidden_channels, couplings=couplings)
        if num_blocks < 0 or scales < 0:
            raise ValueError("num_blocks and scales must be >= 0")
        c, h, w = self.image_shape
        if h % 2 ** scales or w % 2 ** scales:
            raise ValueError(f"scales: {scales} squeezes need height and width divisible by {2 ** scales}, "
                             f"got {h}x{w}")

        def checkerboard(shape, parity):
            net = coupling_net(shape[0], hidden_channels, 2 * shape[0], num_blocks)
            return CheckerboardCoupling(shape, parity, net, scale="tanh")

        def channel(shape, parity):
            net = coupling_net(shape[0] // 2, hidden_channels, shape[0], num_blocks)
            return ChannelCoupling(shape[0], parity, net, scale="tanh")

        levels, shapes = [], []
        shape = self.image_shape
        for _ in range(scales):
            steps = [checkerboard(shape, k % 2) for k in range(couplings)]
            c, h, w = shape
            shape = (4 * c, h // 2, w // 2)
            steps.append(Squeeze())
            steps += [channel(shape, k % 2) for k in range(couplings)]
            levels.append(Compose(*steps))
            shapes.append(shape)
            shape = (shape[0] // 2, *shape[1:])  # the other half was factored out
        levels.append(Compose(*[checkerboard(shape, k % 2) for k in range(couplings + 1)]))
        shapes.append(shape)
        self.flow = MultiScale(levels, shapes)
