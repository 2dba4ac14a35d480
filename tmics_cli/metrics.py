"""Image-quality metrics as the deraining papers compute them (MATLAB protocol).

- Luma: Y = 16 + 65.481 R + 128.553 G + 24.966 B for RGB in [0, 1] (MATLAB rgb2ycbcr; Y in 16..235).
  For uint8 inputs MATLAB returns uint8, i.e. Y rounded to an integer; so do we. Float inputs keep
  fractional Y.
- PSNR on Y with peak 255.
- SSIM on Y after Wang et al. (ssim_index.m): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03,
  data range 255, statistics over 'valid' windows only, the map's mean.
- Temporal consistency: mean |(O_t - O_t-1) - (G_t - G_t-1)| on Y, needing neither flow nor weights.

Images are numpy arrays or tensors, (H, W, 3) or (3, H, W), uint8 or float in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

Image = np.ndarray | torch.Tensor

_Y_WEIGHTS = (65.481, 128.553, 24.966)


def _as_chw_float64(image: Image) -> tuple[torch.Tensor, bool]:
    """(3, H, W) float64 in [0, 1], and whether the input was uint8."""
    t = torch.as_tensor(np.asarray(image) if isinstance(image, np.ndarray) else image).detach().cpu()
    was_uint8 = t.dtype == torch.uint8
    if t.ndim != 3:
        raise ValueError(f"expected one RGB image (H, W, 3) or (3, H, W), got shape {tuple(t.shape)}")
    if t.shape[0] != 3 and t.shape[-1] == 3:
        t = t.permute(2, 0, 1)
    if t.shape[0] != 3:
        raise ValueError(f"expected 3 colour channels, got shape {tuple(t.shape)}")
    t = t.to(torch.float64)
    return (t / 255.0 if was_uint8 else t), was_uint8


def luma(image: Image) -> torch.Tensor:
    """Y (H, W) float64 in 16..235 (rounded for uint8 input, as MATLAB's rgb2ycbcr)."""
    rgb, was_uint8 = _as_chw_float64(image)
    y = 16.0 + sum(w * c for w, c in zip(_Y_WEIGHTS, rgb, strict=True))
    return torch.round(y) if was_uint8 else y


def psnr_y(output: Image, target: Image) -> float:
    """PSNR in dB of the luma channels, peak 255 (inf for identical images)."""
    mse = torch.mean((luma(output) - luma(target)) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def gaussian_window(channels: int, size: int = 11, sigma: float = 1.5, **like: object) -> torch.Tensor:
    """(channels, 1, size, size) normalised Gaussian window for a grouped conv; `like` gives device/dtype."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    w = torch.outer(g, g)
    return (w / w.sum()).to(**like).expand(channels, 1, size, size).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM (Wang et al.) of (B, C, H, W) images, per channel: Gaussian 11x11 window, sigma 1.5,
    K1 = 0.01, K2 = 0.03, 'valid' windows only. Differentiable: the training loss uses it too.

    The window is separable, so the local means run as two 1-D passes over the five maps at once (the
    11x11 2-D convolution in float64 took 0.7 s per 640x272 frame on the CPU, mostly in page faults)."""
    c = x.shape[1]
    g = gaussian_window(1, device=x.device, dtype=x.dtype)[0, 0].sum(0)  # (11,) normalised 1-D Gaussian
    k = g.numel()
    maps = torch.cat([x, y, x * x, y * y, x * y], 1)  # (B, 5C, H, W)
    blurred = F.conv2d(maps, g.view(1, 1, 1, k).expand(5 * c, 1, 1, k), groups=5 * c)
    blurred = F.conv2d(blurred, g.view(1, 1, k, 1).expand(5 * c, 1, k, 1), groups=5 * c)
    mu_x, mu_y, exx, eyy, exy = blurred.split(c, 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    sxx, syy, sxy = exx - mu_x**2, eyy - mu_y**2, exy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return ssim_map.mean()


def ssim_y(output: Image, target: Image) -> float:
    """SSIM of the luma channels (Wang et al.'s ssim_index: Gaussian 11x11, sigma 1.5, 'valid')."""
    x, y = luma(output)[None, None], luma(target)[None, None]
    if min(x.shape[-2:]) < 11:
        raise ValueError("SSIM needs images of at least 11x11 pixels")
    return ssim(x, y, data_range=255.0).item()


def temporal_error(outputs: Sequence[Image], targets: Sequence[Image]) -> float:
    """Mean |(O_t - O_t-1) - (G_t - G_t-1)| on Y (0..255 scale) over consecutive pairs; lower is steadier."""
    if len(outputs) != len(targets):
        raise ValueError("outputs and targets must have the same number of frames")
    if len(outputs) < 2:
        raise ValueError("temporal error needs at least two frames")
    ys_o = [luma(o) for o in outputs]
    ys_g = [luma(g) for g in targets]
    diffs = [
        torch.mean(torch.abs((ys_o[t] - ys_o[t - 1]) - (ys_g[t] - ys_g[t - 1]))).item()
        for t in range(1, len(ys_o))
    ]
    return float(np.mean(diffs))
