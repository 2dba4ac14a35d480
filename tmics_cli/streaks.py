"""Streak kernels: the motion-blur line a raindrop draws in one exposure.

A leaf module (numpy and math only) shared by the rain renderer (`tmics_cli.data.rain`, the kernel bank K of
the paper's Eq. 1) and GARS (`tmics_cli.model.gars`, which initialises its learnable filter bank from the same
kernels), so that the model layer need not import the data layer. The numbers must not change: the frozen
synthetic benchmark sets and the GARS banks of new models are drawn from them.
"""

from __future__ import annotations

import math

import numpy as np


def streak_kernel(length: float, angle_deg: float, width: float) -> np.ndarray:
    """A motion-blur streak kernel with peak 1: `length` px at `angle_deg` from vertical."""
    size = int(math.ceil(length + 4 * max(width, 0.5))) | 1
    c = (size - 1) / 2
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) - c
    t = math.radians(angle_deg)
    dx, dy = math.sin(t), -math.cos(t)
    along = xs * dx + ys * dy
    across = xs * dy - ys * dx
    profile = np.exp(-0.5 * (across / width) ** 2) if width > 0 else np.clip(1 - np.abs(across), 0, 1)
    # soft ends: streaks fade in and out along their length
    ends = np.clip((length / 2 - np.abs(along)) / 1.5 + 0.5, 0, 1)
    k = (profile * ends).astype(np.float32)
    return k / max(float(k.max()), 1e-6)
