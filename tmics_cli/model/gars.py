"""GARS: generating auxiliary rain streaks (the paper, Sec. III-B3, model K of Eqs. 1-2).

Our reading of the paper, which gives the equations but not the layer sizes:

    R~_t = N_res(I_t)                            a small residual net estimates the rain of the centre frame
    R^_t = sum_i W_i * (K_i conv R~_t) + R~_t    a bank of N learnable streak filters K_i with weights W_i
    I~_t = I_t + R^_t                            the centre frame with extra, re-shaped rain

Only the DNA (the "dominant" network, the one the paper gives K) sees I~_t; the CNA sees I_t. Training
therefore asks the DNA to remove a wider range of streaks (thicker, longer, blurred copies of the rain it
was shown) while the CNA stays on the observed rain; AAS then mixes the two.

The paper applies "two groups of filters"; the authors' code uses 9x9 filters per colour channel,
initialised from a rain-kernel bank. Here group 1 holds sharp oriented streak kernels and group 2 the same
streaks blurred (wide, soft rain); each K_i has one 9x9 plane per colour channel. Because the sum is
linear, sum_i W_i (K_i conv R~) = (sum_i W_i K_i) conv R~: we convolve once with the combined kernel.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..streaks import streak_kernel


def default_streak_bank(size: int = 9) -> torch.Tensor:
    """Two groups of 8 kernels, (16, size, size), each summing to 1: sharp streaks of two lengths at four
    angles, then the same streaks with a blurred (wide) cross-section. Drawn like the renderer's streaks."""
    kernels = []
    for width in (0.0, 1.2):
        for length in (size * 0.5, size * 1.0):
            for angle in (-25.0, -8.0, 8.0, 25.0):
                k = torch.from_numpy(streak_kernel(length, angle, width))
                pad = size - k.shape[-1]
                k = (
                    F.pad(k, (pad // 2,) * 4)
                    if pad > 0
                    else k[-pad // 2 : size - pad // 2, -pad // 2 : size - pad // 2]
                )
                kernels.append(k / k.sum())
    return torch.stack(kernels)


class RainEstimator(nn.Module):
    """N_res: conv -> residual block -> conv, estimating the rain layer R~ of a frame (B, 3, H, W)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(inplace=True))
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.tail = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 3, H, W)
        x = self.head(frame)
        return self.tail(torch.relu(x + self.body(x)))


class AuxiliaryRainStreaks(nn.Module):
    """GARS: I~ = I + sum_i W_i (K_i conv N_res(I)) + N_res(I)."""

    def __init__(self, width: int = 16, kernel_size: int = 9) -> None:
        super().__init__()
        self.estimator = RainEstimator(width)
        bank = default_streak_bank(kernel_size)  # (N, k, k)
        self.kernels = nn.Parameter(bank.unsqueeze(1).repeat(1, 3, 1, 1))  # K: (N, 3, k, k)
        self.kernel_weights = nn.Parameter(torch.full((bank.shape[0],), 1.0 / bank.shape[0]))  # W: (N,)

    def auxiliary_rain(self, rain: torch.Tensor) -> torch.Tensor:
        """R^ = sum_i W_i (K_i conv R~) + R~ for R~ (B, 3, H, W)."""
        combined = torch.einsum("n,nchw->chw", self.kernel_weights, self.kernels).unsqueeze(1)  # (3, 1, k, k)
        pad = combined.shape[-1] // 2
        shaped = F.conv2d(F.pad(rain, (pad,) * 4, mode="replicate"), combined.to(rain.dtype), groups=3)
        return shaped + rain

    def forward(self, centre: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> I~ (B, 3, H, W)
        return centre + self.auxiliary_rain(self.estimator(centre))
