"""One clip's rain as data: `RainLayer` (a depth layer of streaks) and `RainStyle` (everything drawn
once per clip). Frames are (H, W, 3) float32 RGB in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Frame = np.ndarray  # (H, W, 3) float32 RGB in [0, 1]


@dataclass(frozen=True)
class RainLayer:
    density: float  # streak seeds per pixel
    length: float  # streak length in pixels
    width: float  # Gaussian cross-section sigma in pixels (0 = one-pixel line)
    opacity: float  # peak brightness added (before the screen blend)


@dataclass(frozen=True)
class RainStyle:
    """One clip's rain. Angles in degrees from vertical, positive leaning right at the top."""

    angle: float = 0.0
    angle_spread: float = 4.0  # spread of streak angles within a frame (the kernel bank)
    layers: tuple[RainLayer, ...] = (RainLayer(0.004, 14.0, 0.0, 0.45),)
    length_jitter: float = 0.35  # relative spread of streak lengths around each layer's length
    haze: float = 0.0  # 1 - beta of the accumulation model, at most
    airlight: float = 0.85
    dim: float = 1.0  # scene brightness factor (< 1 for heavy rain)
    drift: float = 0.6  # per-frame random-walk step of the angle (degrees) and 3x that in % of density
    jpeg_quality: int | None = 85  # None: no JPEG
    chroma_420: bool = False
    h264_crf: int | None = None  # the whole clip through H.264 at this CRF (replaces JPEG); None: no H.264
    noise: float = 0.0  # Gaussian noise sigma on the rainy frame
    kernels_per_layer: int = 3
    # I = B + R (1 - B)^blend_gamma: 1 is the screen blend; above 1 the rain fades faster over bright
    # backgrounds, as nturain_a2's does (benchmarks/rain_statistics.py, rain by background luma)
    blend_gamma: float = 1.0
