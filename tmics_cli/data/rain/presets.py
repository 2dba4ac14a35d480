"""Rain presets as frozen, versioned data (`light-v1` ... `light-v9`, `heavy-v1`, `heavy-v2`, the card's
versions) with `light` / `heavy` naming the newest, the rain styles they mix as data too (`STYLE_RANGES`),
and `sample_style`: one clip's `RainStyle` drawn from a preset. Old versions never change
(tests/test_presets.py holds their hashes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

import numpy as np

from .style import RainLayer, RainStyle


@dataclass(frozen=True)
class RainPreset:
    """Ranges from which `sample_style` draws one clip's RainStyle."""

    styles: tuple[str, ...]  # rain styles mixed by this preset (keys of STYLE_RANGES), drawn uniformly
    density_scale: tuple[float, float]
    jpeg_quality: tuple[int, int] = (55, 95)
    no_jpeg_probability: float = 0.15
    chroma_420_probability: float = 0.5
    noise: tuple[float, float] = (0.0, 0.01)
    h264_probability: float = 0.0  # share of clips compressed with H.264 (instead of JPEG)
    h264_crf: tuple[int, int] = (18, 32)
    haze_scale: float = 1.0  # multiplies each style's haze (accumulation); 0: streaks only
    # share of clips that also get a near-camera layer: drops close to the lens, out of focus and falling
    # fast, so sparse, long, wide, soft and bright (nturain_a2 shows 3-5 such bars per frame, 50-110 px
    # long and 4-10 px wide at 640x480, up to 160 levels bright, and they hold much of what the
    # eleventh tmics-light round left there; no other style draws streaks wider than sigma 1 px)
    near_probability: float = 0.0
    near_density: tuple[float, float] = (1e-5, 4e-5)  # streak seeds per pixel: 3-12 per 640x480 frame
    near_length: tuple[float, float] = (60.0, 140.0)
    near_width: tuple[float, float] = (0.9, 2.2)  # Gaussian sigma across, pixels
    near_opacity: tuple[float, float] = (0.25, 0.6)
    # share of clips that get accumulation whatever their style (1 - beta drawn from haze_range, in place
    # of the style's own haze after haze_scale): a preset with no haze leaves its model unused to haze
    haze_probability: float = 0.0
    haze_range: tuple[float, float] = (0.0, 0.15)


# Preset versions are data: each is frozen once a recipe, a weights file or a benchmark set names it, and
# never edited again (tests/test_presets.py holds a hash of each one's fields). A change to a preset is a
# new version; the plain names (`light`, `heavy`) are aliases of the newest. Versions before today's are
# reconstructed from `git log -p -- tmics_cli/data/rain.py`: the preset's fields as each commit left them,
# drawn by today's renderer (which is what a recipe can run).
_LIGHT_V1 = RainPreset(styles=("streaks", "fine", "slanted"), density_scale=(0.25, 0.8))  # 818013c
_LIGHT_V3 = replace(_LIGHT_V1, h264_probability=0.3, haze_scale=0.0)
_HEAVY_V1 = RainPreset(styles=("streaks", "fine", "slanted", "dense", "hazy"), density_scale=(0.8, 1.8))
_LIGHT_V6 = replace(_LIGHT_V3, styles=("streaks", "drizzle", "dense-drizzle", "fine", "slanted"))

PRESET_VERSIONS: Mapping[str, RainPreset] = MappingProxyType(
    {
        # light, first release (818013c): streaks, fine and slanted rain with their haze, JPEG only
        "light-v1": _LIGHT_V1,
        # H.264 in 30% of clips at CRF 18-32 (20f2cf0); the model card's synthetic-light-hazy set
        "light-v2": replace(_LIGHT_V1, h264_probability=0.3),
        # Light rain has no visible accumulation (7522ca1): RainSynLight25 has none, and neither has
        # nturain_a2 (the median of its rain minus ground truth is 0 levels, 8% of pixels above 10). With
        # haze, the fine and slanted clips had 22% and 38% of pixels above 10 levels; without it, 8% and 14%.
        # The model card's synthetic-light set.
        "light-v3": _LIGHT_V3,
        # a drizzle style (1034faf) with a2's whole-frame streak length, width, amplitude and count
        "light-v4": replace(_LIGHT_V3, styles=("streaks", "drizzle", "fine", "slanted")),
        # dense-drizzle in drizzle's place (04f2ff3): over a2's dark and middle backgrounds a2's rain is 2-4x
        # denser than drizzle (benchmarks/rain_statistics.py, by luma); dense-drizzle matches it band by band
        "light-v5": replace(_LIGHT_V3, styles=("streaks", "dense-drizzle", "fine", "slanted")),
        # trained on light-v5, the ninth round lost 0.3 dB on held-out drizzle and streak rain, so both
        # stay: five styles (ab664b2)
        "light-v6": _LIGHT_V6,
        # Compression rings dark around bright streaks. H.264 at CRF 18-32 left 0.6-4% of pixels more than
        # 10 levels below the clean frame (nturain_a2: 0.24%; JPEG at q55-95: 0-1.5%); CRF 14-23 spans
        # JPEG's range (a004aac, from the tenth tmics-light round).
        "light-v7": replace(_LIGHT_V6, h264_crf=(14, 23)),
        # a near-camera layer in half the clips (911de81, from the twelfth round)
        "light-v8": replace(_LIGHT_V6, h264_crf=(14, 23), near_probability=0.5),
        # Without any haze the twelfth and thirteenth rounds drifted 0.07-0.11 dB below the eleventh on
        # held-out light rain with its styles' haze (synthetic-light-hazy, 1 - beta up to 0.15 in 2 of 3
        # clips); a quarter of the clips with up to that much keeps it in view (44c1022, from the
        # fourteenth round).
        "light-v9": replace(_LIGHT_V6, h264_crf=(14, 23), near_probability=0.5, haze_probability=0.25),
        # heavy, first release (818013c), JPEG only
        "heavy-v1": _HEAVY_V1,
        # H.264 in 30% of clips at CRF 18-32 (20f2cf0); the model card's synthetic-heavy set
        "heavy-v2": replace(_HEAVY_V1, h264_probability=0.3),
        # The model card's single-style sets (frozen in benchmarks/model_card_eval.py until they moved
        # here): light-v3 with the drizzle style alone, with the dense-drizzle style alone, and light-v3's
        # clips and styles with a near-camera layer in every clip.
        "drizzle-v1": replace(_LIGHT_V3, styles=("drizzle",)),
        "dense-drizzle-v1": replace(_LIGHT_V3, styles=("dense-drizzle",)),
        "near-v1": replace(_LIGHT_V3, near_probability=1.0),
    }
)
# the plain names: the newest version of each preset (a recipe names a version, not an alias)
PRESET_ALIASES: Mapping[str, str] = MappingProxyType({"light": "light-v9", "heavy": "heavy-v2"})
# the model card's old names of its frozen presets (benchmarks/*.py take them): fixed, never moved
CARD_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "card-light": "light-v3",
        "card-light-hazy": "light-v2",
        "card-heavy": "heavy-v2",
        "card-drizzle": "drizzle-v1",
        "card-dense-drizzle": "dense-drizzle-v1",
        "card-near": "near-v1",
    }
)
# every name a preset is asked for by: aliases, versions, card names
PRESETS: dict[str, RainPreset] = {
    **{alias: PRESET_VERSIONS[version] for alias, version in PRESET_ALIASES.items()},
    **PRESET_VERSIONS,
    **{alias: PRESET_VERSIONS[version] for alias, version in CARD_ALIASES.items()},
}


Range = tuple[float, float]  # a uniform draw between the two ends
Value = float | Range  # a float is a constant (no draw); a pair, one uniform draw


def _draw(u, value: Value) -> float:
    return u(*value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class LayerRanges:
    """One depth layer of a style: what `sample_style` draws its RainLayer from."""

    density: float  # streak seeds per pixel, times the preset's density scale (no draw)
    length: Range  # streak length, pixels at 640x480
    width: Value  # Gaussian sigma across, pixels at 640x480 (0.0: one-pixel lines)
    opacity: Range


@dataclass(frozen=True)
class StyleRanges:
    """One rain style: the ranges `sample_style` draws a clip's RainStyle from, in the order drawn (angle,
    spread, each layer's length, width and opacity, haze, dim). A constant draws nothing."""

    angle: Range  # degrees from vertical; with `either_side`, its magnitude
    spread: Range
    layers: tuple[LayerRanges, ...]
    haze: Value = 0.0
    dim: Value = 1.0
    blend_gamma: float = 1.0
    either_side: bool = False  # the angle's sign drawn first (-1 or 1, evenly), then its magnitude


# The rain styles presets mix. Changing one changes every preset version that names it (and so their
# frozen renders): a different style is a new entry.
STYLE_RANGES: Mapping[str, StyleRanges] = MappingProxyType(
    {
        # NTURain-like: short, thin, near-vertical, semi-transparent
        "streaks": StyleRanges(
            angle=(-10.0, 10.0),
            spread=(1.0, 4.0),
            layers=(
                LayerRanges(0.006, (8.0, 18.0), 0.0, (0.3, 0.6)),
                LayerRanges(0.003, (14.0, 30.0), (0.0, 0.7), (0.35, 0.7)),
            ),
        ),
        # a2-like streak shapes: sparse, short, one-pixel-thin, near-vertical, faint
        "drizzle": StyleRanges(
            angle=(-6.0, 6.0),
            spread=(1.0, 3.0),
            layers=(
                LayerRanges(0.005, (4.0, 9.0), (0.2, 0.7), (0.2, 0.45)),
                LayerRanges(0.002, (7.0, 14.0), (0.4, 0.9), (0.25, 0.5)),
            ),
        ),
        # drizzle matched to a2 band by band of background luma: 3.3x as dense, 1.5x as bright, fading
        # faster over bright backgrounds (visible behind dark objects, not on sky)
        "dense-drizzle": StyleRanges(
            angle=(-6.0, 6.0),
            spread=(1.0, 3.0),
            layers=(
                LayerRanges(0.0165, (4.0, 9.0), (0.2, 0.7), (0.3, 0.68)),
                LayerRanges(0.0066, (7.0, 14.0), (0.4, 0.9), (0.38, 0.75)),
            ),
            blend_gamma=2.0,
        ),
        # many faint, short, thin streaks
        "fine": StyleRanges(
            angle=(-20.0, 20.0),
            spread=(2.0, 6.0),
            layers=(
                LayerRanges(0.012, (4.0, 10.0), 0.0, (0.15, 0.35)),
                LayerRanges(0.004, (8.0, 16.0), 0.0, (0.25, 0.45)),
            ),
            haze=(0.0, 0.1),
        ),
        # wind-driven rain, as in real footage like rb2
        "slanted": StyleRanges(
            angle=(15.0, 40.0),
            spread=(2.0, 6.0),
            layers=(
                LayerRanges(0.008, (6.0, 14.0), 0.0, (0.2, 0.45)),
                LayerRanges(0.003, (15.0, 35.0), (0.0, 1.0), (0.3, 0.6)),
            ),
            haze=(0.0, 0.15),
            either_side=True,
        ),
        # heavy streaks over three depth layers
        "dense": StyleRanges(
            angle=(-25.0, 25.0),
            spread=(3.0, 8.0),
            layers=(
                LayerRanges(0.012, (5.0, 12.0), 0.0, (0.2, 0.4)),
                LayerRanges(0.006, (12.0, 28.0), (0.0, 0.8), (0.3, 0.55)),
                LayerRanges(0.0015, (25.0, 60.0), (0.8, 2.0), (0.25, 0.5)),
            ),
            haze=(0.05, 0.25),
            dim=(0.85, 1.0),
        ),
        # heavy rain far away: accumulation, dim scene, faint fine streaks
        "hazy": StyleRanges(
            angle=(-30.0, 30.0),
            spread=(3.0, 8.0),
            layers=(
                LayerRanges(0.014, (4.0, 10.0), 0.0, (0.1, 0.3)),
                LayerRanges(0.004, (10.0, 22.0), (0.0, 0.8), (0.2, 0.4)),
            ),
            haze=(0.2, 0.45),
            dim=(0.75, 0.95),
        ),
    }
)


def sample_style(preset: str | RainPreset, rng: np.random.Generator, scale: float = 1.0) -> RainStyle:
    """Draw one clip's rain from a preset. `scale` stretches streak lengths and widths (e.g. for frames far
    larger or smaller than the 640x480 the ranges were tuned on)."""
    p = PRESETS[preset] if isinstance(preset, str) else preset
    kind = p.styles[rng.integers(len(p.styles))]
    if kind not in STYLE_RANGES:
        raise ValueError(f"unknown rain style {kind!r}: one of {', '.join(STYLE_RANGES)}")
    s = STYLE_RANGES[kind]
    d = rng.uniform(*p.density_scale)
    u = rng.uniform
    # the draws in their order: the angle's sign (either_side only), its magnitude, the spread, each layer's
    # length, width and opacity, then haze and dim (constants draw nothing)
    angle = rng.choice([-1, 1]) * u(*s.angle) if s.either_side else u(*s.angle)
    spread = u(*s.spread)
    layers = [
        RainLayer(layer.density * d, u(*layer.length), _draw(u, layer.width), u(*layer.opacity))
        for layer in s.layers
    ]
    haze, dim, blend_gamma = _draw(u, s.haze), _draw(u, s.dim), s.blend_gamma
    haze *= p.haze_scale
    quality = (
        None
        if rng.random() < p.no_jpeg_probability
        else int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1))
    )
    crf = None
    if p.h264_probability > 0:
        # A spawned child generator leaves `rng`'s own stream untouched, so every other draw (and the
        # streaks rendered after this) stays what it was before H.264 existed.
        codec_rng = rng.spawn(1)[0]
        if codec_rng.random() < p.h264_probability:
            crf, quality = int(codec_rng.integers(p.h264_crf[0], p.h264_crf[1] + 1)), None
    if p.near_probability > 0:  # its own spawned child too, so the rest of the style stays as without it
        near_rng = rng.spawn(1)[0]
        if near_rng.random() < p.near_probability:
            v = near_rng.uniform
            near = RainLayer(v(*p.near_density), v(*p.near_length), v(*p.near_width), v(*p.near_opacity))
            layers.append(near)
    if p.haze_probability > 0:  # and its own child again
        haze_rng = rng.spawn(1)[0]
        if haze_rng.random() < p.haze_probability:
            haze = haze_rng.uniform(*p.haze_range)
    layers = [replace(layer, length=layer.length * scale, width=layer.width * scale) for layer in layers]
    return RainStyle(
        angle=float(angle),
        angle_spread=float(spread),
        layers=tuple(layers),
        haze=float(haze),
        airlight=float(u(0.7, 0.95)),
        dim=float(dim),
        jpeg_quality=quality,
        chroma_420=bool(rng.random() < p.chroma_420_probability) and crf is None,
        noise=float(u(*p.noise)),
        h264_crf=crf,
        blend_gamma=float(blend_gamma),
    )
