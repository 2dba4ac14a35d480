"""Helpers that several benchmark scripts share (not a script itself; the scripts put benchmarks/ on
sys.path and import from here):

    quantize   a [0, 1] frame as a saved 8-bit frame would be
    synthetic  the model card's fixed synthetic windows of a clean clip (seed 1234), for a rain preset

The model card's own sets and scoring live in tmics_cli.benchmark (CARD_SETS, run_benchmark); the card's
old preset names (card-light, ...) are tmics_cli.data.rain.CARD_ALIASES.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tmics_cli.data.datasets import RainyClipDataset, load_clips


def quantize(x: torch.Tensor) -> torch.Tensor:
    """As a saved 8-bit frame would be."""
    return (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


def synthetic(clip_root: Path, preset: str, count: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """`count` rainy 5-frame windows (5, 3, H, W) in [0, 1] of the clip, and their clean centre frames as
    8-bit (H, W, 3): the windows the model card's synthetic sets were drawn from."""
    clips = load_clips([clip_root])
    ds = RainyClipDataset(clips, preset, crop=None, seed=1234, clean_probability=0.0, max_stride=1)
    samples = [ds[i] for i in range(count)]
    return [s["frames"] for s in samples], [quantize(s["target"]).permute(1, 2, 0) for s in samples]
