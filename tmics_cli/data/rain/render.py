"""Rendering: streak layers (impulses convolved with a bank of streak kernels), the screen blend, haze, and
`add_rain` over a clip (then its compression, from compression.py, on rainy and clean frames alike)."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from ...streaks import streak_kernel
from .compression import degrade, h264_roundtrip
from .style import Frame, RainLayer, RainStyle


def render_rain_layer(
    shape: tuple[int, int], layer: RainLayer, angle: float, style: RainStyle, rng: np.random.Generator
) -> np.ndarray:
    """One depth layer of streaks (H, W) float32, peak about `layer.opacity`."""
    h, w = shape
    out = np.zeros((h, w), np.float32)
    n_kernels = max(1, style.kernels_per_layer)
    for _ in range(n_kernels):
        seeds = (rng.random((h, w)) < layer.density / n_kernels).astype(np.float32)
        if not seeds.any():
            continue
        seeds *= rng.uniform(0.5, 1.0, (h, w)).astype(np.float32)
        length = max(2.0, layer.length * (1 + style.length_jitter * rng.uniform(-1, 1)))
        kernel = streak_kernel(length, angle + rng.normal(0, style.angle_spread), layer.width)
        out += cv2.filter2D(seeds, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    return np.clip(out, 0, 1) * layer.opacity


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, cells: int = 4) -> np.ndarray:
    """A smooth random field in [0, 1] (H, W): low-resolution noise upsampled."""
    h, w = shape
    low = rng.random((cells, cells)).astype(np.float32)
    return cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def add_rain(
    frames: list[Frame], style: RainStyle, seed: int | np.random.Generator
) -> tuple[list[Frame], list[Frame]]:
    """Render rain over a clip. Returns (rainy frames, clean targets), both degraded alike."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    h, w = frames[0].shape[:2]
    haze_map = style.haze * (0.6 + 0.4 * _smooth_field((h, w), rng))[..., None] if style.haze > 0 else None
    angle, intensity = style.angle, 1.0
    rainy, clean = [], []
    for frame in frames:
        rain = np.zeros((h, w), np.float32)
        for layer in style.layers:
            scaled = replace(layer, density=layer.density * intensity)
            rain += render_rain_layer((h, w), scaled, angle, style, rng)
        rain = np.clip(rain, 0, 1)[..., None]
        scene = frame.astype(np.float32) * style.dim
        if style.blend_gamma == 1.0:
            wet = scene + rain * (1 - scene)  # screen blend
        else:
            wet = scene + rain * (1 - scene) ** style.blend_gamma
        if haze_map is not None:
            wet = (1 - haze_map) * wet + haze_map * style.airlight
        rainy.append(degrade(wet, style, rng))
        clean.append(degrade(frame.astype(np.float32), replace(style, noise=0.0)))
        angle += rng.normal(0, style.drift)
        intensity = float(np.clip(intensity * (1 + rng.normal(0, 0.03 * style.drift)), 0.7, 1.3))
    if style.h264_crf is not None:
        rainy, clean = h264_roundtrip(rainy, style.h264_crf), h264_roundtrip(clean, style.h264_crf)
    return rainy, clean


# --- presets: distributions over styles ------------------------------------------------------------------
