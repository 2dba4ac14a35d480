"""Losses of the paper: Eq. (6) for the restored frames, Eq. (7) for the architecture search.

L = -SSIM(x, y) + rho * ||x - y||_1,  rho = 0.75           (Eq. 6; we add 1 so that L >= 0)
    (+ mu * mean squared error, mu = 0 in the paper: an optional term for the PSNR the benchmarks score)
L_arc = L + eta * sum_l entropy(softmax(alpha_l)), eta = 0.01 (Eq. 7)
"""

from __future__ import annotations

import torch

from ..metrics import ssim

RHO = 0.75
ETA = 0.01


def restoration_loss(output: torch.Tensor, target: torch.Tensor, rho: float = RHO) -> torch.Tensor:
    """Eq. (6): 1 - SSIM + rho * L1, for (B, 3, H, W) in [0, 1]."""
    return 1 - ssim(output, target) + rho * (output - target).abs().mean()


def alpha_entropy(alpha: torch.Tensor) -> torch.Tensor:
    """sum over layers of the entropy of softmax(alpha_l); alpha (L, ops) logits."""
    p = torch.softmax(alpha, -1)
    return -(p * torch.log_softmax(alpha, -1)).sum()


def architecture_loss(
    output: torch.Tensor, target: torch.Tensor, alpha: torch.Tensor, eta: float = ETA
) -> torch.Tensor:
    """Eq. (7): L_arc = Eq. (6) + eta * entropy(alpha)."""
    return restoration_loss(output, target) + eta * alpha_entropy(alpha)
