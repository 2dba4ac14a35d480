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


# --- FSIM and VIF (optional in `tmics benchmark`), after the authors' MATLAB code ------------------------


def gray_255(image: Image) -> np.ndarray:
    """(H, W) float64 luma 0.299 R + 0.587 G + 0.114 B in 0..255 (FeatureSIM.m's Y, MATLAB's rgb2gray)."""
    rgb, _ = _as_chw_float64(image)
    return (255.0 * (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])).numpy()


def _centred_range(n: int) -> np.ndarray:
    """Kovesi's frequency grid along one axis, as in phasecong2.m / lowpassfilter.m."""
    return (np.arange(n) - (n - 1) / 2) / (n - 1) if n % 2 else (np.arange(n) - n // 2) / n


def phase_congruency(image: np.ndarray) -> np.ndarray:
    """Phase congruency map (H, W) of a grey image, as phasecong2.m inside FeatureSIM.m: 4 scales of
    log-Gabor filters (shortest wavelength 6, factor 2, sigma_f 0.55) in 4 orientations, noise threshold
    k = 2 with the 1/1.7 rescaling of that code."""
    scales, orients, min_wave, mult, sigma_f, d_theta, k, eps = 4, 4, 6, 2, 0.55, 1.2, 2.0, 1e-4
    rows, cols = image.shape
    spectrum = np.fft.fft2(image)
    x, y = np.meshgrid(_centred_range(cols), _centred_range(rows))
    radius = np.sqrt(x**2 + y**2)
    theta = np.fft.ifftshift(np.arctan2(-y, x))
    lowpass = np.fft.ifftshift(1.0 / (1.0 + (radius / 0.45) ** 30))
    radius = np.fft.ifftshift(radius)
    radius[0, 0] = 1
    sin_t, cos_t = np.sin(theta), np.cos(theta)
    log_gabor = []
    for s in range(scales):
        f0 = 1.0 / (min_wave * mult**s)
        g = np.exp(-(np.log(radius / f0) ** 2) / (2 * np.log(sigma_f) ** 2)) * lowpass
        g[0, 0] = 0
        log_gabor.append(g)
    theta_sigma = np.pi / orients / d_theta
    energy_all, amplitude_all = np.zeros_like(image), np.zeros_like(image)
    for o in range(orients):
        angle = o * np.pi / orients
        ds = sin_t * np.cos(angle) - cos_t * np.sin(angle)
        dc = cos_t * np.cos(angle) + sin_t * np.sin(angle)
        spread = np.exp(-(np.abs(np.arctan2(ds, dc)) ** 2) / (2 * theta_sigma**2))
        responses, spatial = [], []
        for s in range(scales):
            filt = log_gabor[s] * spread
            spatial.append(np.real(np.fft.ifft2(filt)) * np.sqrt(rows * cols))
            responses.append(np.fft.ifft2(spectrum * filt))
            if s == 0:
                filter_energy = np.sum(filt**2)
        even = sum(r.real for r in responses)
        odd = sum(r.imag for r in responses)
        amplitude = sum(np.abs(r) for r in responses)
        norm = np.sqrt(even**2 + odd**2) + eps
        mean_e, mean_o = even / norm, odd / norm
        energy = sum(
            r.real * mean_e + r.imag * mean_o - np.abs(r.real * mean_o - r.imag * mean_e) for r in responses
        )
        mean_e2n = -np.median(np.abs(responses[0]) ** 2) / np.log(0.5)
        noise_power = mean_e2n / filter_energy
        sum_an2 = sum(np.sum(a**2) for a in spatial)
        sum_aiaj = sum(np.sum(spatial[i] * spatial[j]) for i in range(scales) for j in range(i + 1, scales))
        tau = np.sqrt((2 * noise_power * sum_an2 + 4 * noise_power * sum_aiaj) / 2)
        threshold = (tau * np.sqrt(np.pi / 2) + k * np.sqrt((2 - np.pi / 2) * tau**2)) / 1.7
        energy_all += np.maximum(energy - threshold, 0)
        amplitude_all += amplitude
    return energy_all / amplitude_all


def _box_then_subsample(image: np.ndarray, f: int) -> np.ndarray:
    """conv2(image, ones(f)/f^2, 'same') then image(1:f:end, 1:f:end), as FeatureSIM.m downsamples."""
    if f == 1:
        return image
    before, after = f - 1 - f // 2, f // 2
    padded = np.pad(image, ((before, after), (before, after)))
    c = np.cumsum(np.cumsum(np.pad(padded, ((1, 0), (1, 0))), 0), 1)
    h, w = image.shape
    box = c[f : f + h, f : f + w] - c[:h, f : f + w] - c[f : f + h, :w] + c[:h, :w]
    return (box / f**2)[::f, ::f]


def fsim(output: Image, target: Image) -> float:
    """FSIM (Zhang et al., TIP 2011) of two RGB images, grey version, as FeatureSIM.m."""
    import cv2

    y1, y2 = gray_255(target), gray_255(output)
    f = max(1, round(min(y1.shape) / 256))
    y1, y2 = _box_then_subsample(y1, f), _box_then_subsample(y2, f)
    pc1, pc2 = phase_congruency(y1), phase_congruency(y2)
    dx = np.array([[3, 0, -3], [10, 0, -10], [3, 0, -3]], np.float64) / 16

    def gradient(y: np.ndarray) -> np.ndarray:
        gx = cv2.filter2D(y, cv2.CV_64F, dx, borderType=cv2.BORDER_CONSTANT)
        gy = cv2.filter2D(y, cv2.CV_64F, dx.T, borderType=cv2.BORDER_CONSTANT)
        return np.sqrt(gx**2 + gy**2)

    g1, g2 = gradient(y1), gradient(y2)
    s_pc = (2 * pc1 * pc2 + 0.85) / (pc1**2 + pc2**2 + 0.85)
    s_g = (2 * g1 * g2 + 160) / (g1**2 + g2**2 + 160)
    pc_max = np.maximum(pc1, pc2)
    return float(np.sum(s_g * s_pc * pc_max) / np.sum(pc_max))


def vif(output: Image, target: Image, sigma_n_sq: float = 2.0) -> float:
    """Pixel-domain VIF (Sheikh and Bovik, vifp_mscale.m) of two RGB images on their grey luma, 0..255."""
    import cv2

    ref, dist = gray_255(target), gray_255(output)
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        g = cv2.getGaussianKernel(n, n / 5, cv2.CV_64F)
        win = g @ g.T
        r = n // 2

        def valid(a: np.ndarray, win: np.ndarray = win, r: int = r) -> np.ndarray:
            return cv2.filter2D(a, cv2.CV_64F, win, borderType=cv2.BORDER_CONSTANT)[r:-r, r:-r]

        if scale > 1:
            ref, dist = valid(ref)[::2, ::2], valid(dist)[::2, ::2]
        if min(ref.shape) <= 2 * r:
            raise ValueError("VIF needs images of at least 64x64 pixels")
        mu1, mu2 = valid(ref), valid(dist)
        s1 = np.maximum(valid(ref * ref) - mu1 * mu1, 0)
        s2 = np.maximum(valid(dist * dist) - mu2 * mu2, 0)
        s12 = valid(ref * dist) - mu1 * mu2
        gain = s12 / (s1 + 1e-10)
        sv = s2 - gain * s12
        flat1 = s1 < 1e-10
        gain[flat1], sv[flat1], s1[flat1] = 0, s2[flat1], 0
        flat2 = s2 < 1e-10
        gain[flat2], sv[flat2] = 0, 0
        negative = gain < 0
        sv[negative], gain[negative] = s2[negative], 0
        sv = np.maximum(sv, 1e-10)
        num += np.sum(np.log10(1 + gain**2 * s1 / (sv + sigma_n_sq)))
        den += np.sum(np.log10(1 + s1 / sigma_n_sq))
    return float(num / den)
