"""Losses of the paper: Eq. (6) for the restored frames, Eq. (7) for the architecture search.

L = -SSIM(x, y) + rho * ||x - y||_1,  rho = 0.75           (Eq. 6; we add 1 so that L >= 0)
L_arc = L + eta * sum_l entropy(softmax(alpha_l)), eta = 0.01 (Eq. 7)
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

RHO = 0.75
ETA = 0.01


def _gaussian_window(
    channels: int, size: int = 11, sigma: float = 1.5, device=None, dtype=None
) -> torch.Tensor:
    r = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    w = torch.outer(g, g)
    return (w / w.sum()).to(dtype).expand(channels, 1, size, size).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of images (B, C, H, W) in [0, 1]: Gaussian 11x11 window, sigma 1.5, per channel."""
    c = x.shape[1]
    win = _gaussian_window(c, device=x.device, dtype=x.dtype)
    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = F.conv2d(x, win, groups=c), F.conv2d(y, win, groups=c)
    sxx = F.conv2d(x * x, win, groups=c) - mu_x**2
    syy = F.conv2d(y * y, win, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, win, groups=c) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean()


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
