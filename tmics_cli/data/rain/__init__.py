"""Synthetic rain over clean frames, after the paper's Eq. (1) and the rain models it cites.

A clip's rain is drawn once as a `RainStyle` (direction, density, streak sizes, depth layers, haze,
compression) and then rendered frame by frame: streak positions are new in every frame (rain is i.i.d. in
time), while direction and intensity drift slowly, as in real video.

Per frame, for each depth layer (near -> far: longer, wider, brighter and sparser -> shorter, thinner,
fainter and denser):
    impulses   sparse random points with random amplitude
    R_l        impulses convolved with streak kernels from a small bank (the K of Eq. 1: several lengths,
               widths and angles around the clip's direction)
Then R = sum_l opacity_l * R_l, the frame gets the streaks by a screen blend (I = B + R (1 - B): streaks
brighten dark regions more than bright sky, as real streaks do), heavy rain dims the scene and adds
accumulation / haze (I = beta * I + (1 - beta) * A with airlight A), and last the rainy frame is degraded as
footage in the wild is: mild noise, then either per-frame JPEG at a random quality (optionally with 4:2:0
chroma) or the whole clip through H.264 (libx264 via PyAV, at a random CRF). The clean target gets the same
compression, so a network learns to remove rain, not compression.

Presets: `light` (sparse streaks without accumulation, RainSynLight25-like, with `drizzle` and
`dense-drizzle` styles drawn to match nturain_a2's rain statistics, over whole frames and band by band of
background luma: `benchmarks/rain_statistics.py` compares them; half its clips add a near-camera layer of
sparse, long, wide, soft drops) and
`heavy` (dense, varied, hazy: RainSynComplex25 / NTURain-like, with slanted, fine, dense and hazy styles
mixed). Everything is reachable through `RainStyle` fields, and everything is deterministic under a seed.

A side-by-side preview for judging realism (clean | rainy rows) is a script, not part of this module:

    python tools/rain_preview.py --preview preview.png --clip ../shared/data/clean/walk --preset heavy
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from ...streaks import streak_kernel  # also reachable here as tmics_cli.data.rain.streak_kernel
from .compression import degrade, degrade_clip, h264_roundtrip
from .presets import (
    CARD_ALIASES,
    PRESET_ALIASES,
    PRESET_VERSIONS,
    PRESETS,
    STYLE_RANGES,
    RainPreset,
    sample_style,
)
from .render import add_rain, render_rain_layer
from .style import Frame, RainLayer, RainStyle

__all__ = [
    "CARD_ALIASES",
    "PRESETS",
    "PRESET_ALIASES",
    "PRESET_VERSIONS",
    "STYLE_RANGES",
    "Frame",
    "RainLayer",
    "RainPreset",
    "RainStyle",
    "add_rain",
    "degrade",
    "degrade_clip",
    "h264_roundtrip",
    "rain_coverage",
    "render_rain_layer",
    "sample_style",
    "streak_kernel",
    "tensor_rain",
]


def tensor_rain(preset: str) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """rain(frames (T, 3, H, W) in [0, 1], torch generator) -> rainy frames: one clip's style from the
    preset, fresh streaks per frame (for the flow stage, whose pairs are built from torch tensors)."""

    def rain(frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (), generator=generator)))
        style = replace(sample_style(preset, rng), jpeg_quality=None, chroma_420=False, h264_crf=None)
        images = [f.permute(1, 2, 0).numpy().astype(np.float32) for f in frames]
        rainy, _ = add_rain(images, style, rng)
        return torch.from_numpy(np.stack(rainy)).permute(0, 3, 1, 2).contiguous()

    return rain


def rain_coverage(rainy: Frame, clean: Frame, threshold: float = 10 / 255) -> float:
    """Fraction of pixels the rain brightened by more than `threshold` (mean over channels)."""
    return float(((rainy - clean).mean(-1) > threshold).mean())
