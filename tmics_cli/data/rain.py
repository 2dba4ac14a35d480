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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from types import MappingProxyType

import cv2
import numpy as np
import torch

from ..streaks import streak_kernel  # also reachable here as tmics_cli.data.rain.streak_kernel

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


def degrade(frame: Frame, style: RainStyle, rng: np.random.Generator | None = None) -> Frame:
    """Compression as in footage from the wild (and mild noise when `rng` is given)."""
    out = frame
    if style.chroma_420:
        ycc = cv2.cvtColor(out, cv2.COLOR_RGB2YCrCb)
        h, w = ycc.shape[:2]
        for c in (1, 2):
            half = cv2.resize(ycc[..., c], ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)
            ycc[..., c] = cv2.resize(half, (w, h), interpolation=cv2.INTER_LINEAR)
        out = cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)
    if rng is not None and style.noise > 0:
        out = out + rng.normal(0, style.noise, out.shape).astype(np.float32)
    if style.jpeg_quality is not None:
        u8 = (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(style.jpeg_quality)])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255
    return np.clip(out, 0, 1).astype(np.float32)


def h264_roundtrip(frames: list[Frame], crf: int) -> list[Frame]:
    """Encode a clip with libx264 (4:2:0, the given CRF, one thread: deterministic) and decode it again,
    as footage from phones, dashcams and the web has been. Odd sizes are padded for the encoder.

    Where PyAV is missing (the lent GPU machines), the clip gets 4:2:0 chroma and per-frame JPEG at a
    quality of similar strength instead, with a warning once: training must not stop for it."""
    try:
        import av  # lazy: training on frame folders must run where PyAV is missing
    except ImportError:
        return _jpeg_instead_of_h264(frames, crf)

    h, w = frames[0].shape[:2]
    ph, pw = h % 2, w % 2
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = w + pw, h + ph, "yuv420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"crf": str(int(crf)), "preset": "veryfast", "threads": "1", "tune": "zerolatency"}
    packets = []
    for i, frame in enumerate(frames):
        u8 = (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)
        if ph or pw:
            u8 = np.pad(u8, ((0, ph), (0, pw), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(u8, format="rgb24")
        video_frame.pts = i
        packets += encoder.encode(video_frame)
    packets += encoder.encode(None)
    decoder = av.CodecContext.create("h264", "r")
    decoded = [f for packet in [*packets, None] for f in decoder.decode(packet)]
    if len(decoded) != len(frames):
        raise RuntimeError(f"H.264 round trip returned {len(decoded)} of {len(frames)} frames")
    return [f.to_ndarray(format="rgb24")[:h, :w].astype(np.float32) / 255 for f in decoded]


_warned_no_pyav = False


def _jpeg_instead_of_h264(frames: list[Frame], crf: int) -> list[Frame]:
    global _warned_no_pyav
    if not _warned_no_pyav:
        import warnings

        warnings.warn(
            "PyAV is not installed: H.264 compression of rendered rain falls back to JPEG", stacklevel=3
        )
        _warned_no_pyav = True
    quality = int(round(np.interp(crf, [18, 32], [92, 55])))
    style = RainStyle(layers=(), jpeg_quality=quality, chroma_420=True)
    return [degrade(f, style) for f in frames]


def degrade_clip(
    frames: list[Frame], style: RainStyle, rng: np.random.Generator | None = None
) -> list[Frame]:
    """`degrade` on every frame, then the clip-level H.264 round trip when the style asks for one."""
    out = [degrade(f, style, rng) for f in frames]
    return h264_roundtrip(out, style.h264_crf) if style.h264_crf is not None else out


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


@dataclass(frozen=True)
class RainPreset:
    """Ranges from which `sample_style` draws one clip's RainStyle."""

    styles: tuple[str, ...]  # rain styles mixed by this preset, drawn uniformly
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


def sample_style(preset: str | RainPreset, rng: np.random.Generator, scale: float = 1.0) -> RainStyle:
    """Draw one clip's rain from a preset. `scale` stretches streak lengths and widths (e.g. for frames far
    larger or smaller than the 640x480 the ranges were tuned on)."""
    p = PRESETS[preset] if isinstance(preset, str) else preset
    kind = p.styles[rng.integers(len(p.styles))]
    d = rng.uniform(*p.density_scale)
    u = rng.uniform
    blend_gamma = 1.0
    if kind == "streaks":  # NTURain-like: short, thin, near-vertical, semi-transparent
        angle, spread = u(-10, 10), u(1, 4)
        layers = [
            RainLayer(0.006 * d, u(8, 18), 0.0, u(0.3, 0.6)),
            RainLayer(0.003 * d, u(14, 30), u(0.0, 0.7), u(0.35, 0.7)),
        ]
        haze, dim = 0.0, 1.0
    elif kind == "drizzle":  # a2-like streak shapes: sparse, short, one-pixel-thin, near-vertical, faint
        angle, spread = u(-6, 6), u(1, 3)
        layers = [
            RainLayer(0.005 * d, u(4, 9), u(0.2, 0.7), u(0.2, 0.45)),
            RainLayer(0.002 * d, u(7, 14), u(0.4, 0.9), u(0.25, 0.5)),
        ]
        haze, dim = 0.0, 1.0
    elif kind == "dense-drizzle":  # drizzle matched to a2 band by band of background luma: 3.3x as dense,
        # 1.5x as bright, fading faster over bright backgrounds (visible behind dark objects, not on sky)
        angle, spread = u(-6, 6), u(1, 3)
        layers = [
            RainLayer(0.0165 * d, u(4, 9), u(0.2, 0.7), u(0.3, 0.68)),
            RainLayer(0.0066 * d, u(7, 14), u(0.4, 0.9), u(0.38, 0.75)),
        ]
        haze, dim, blend_gamma = 0.0, 1.0, 2.0
    elif kind == "fine":  # many faint, short, thin streaks
        angle, spread = u(-20, 20), u(2, 6)
        layers = [
            RainLayer(0.012 * d, u(4, 10), 0.0, u(0.15, 0.35)),
            RainLayer(0.004 * d, u(8, 16), 0.0, u(0.25, 0.45)),
        ]
        haze, dim = u(0.0, 0.1), 1.0
    elif kind == "slanted":  # wind-driven rain, as in real footage like rb2
        angle, spread = rng.choice([-1, 1]) * u(15, 40), u(2, 6)
        layers = [
            RainLayer(0.008 * d, u(6, 14), 0.0, u(0.2, 0.45)),
            RainLayer(0.003 * d, u(15, 35), u(0.0, 1.0), u(0.3, 0.6)),
        ]
        haze, dim = u(0.0, 0.15), 1.0
    elif kind == "dense":  # heavy streaks over three depth layers
        angle, spread = u(-25, 25), u(3, 8)
        layers = [
            RainLayer(0.012 * d, u(5, 12), 0.0, u(0.2, 0.4)),
            RainLayer(0.006 * d, u(12, 28), u(0.0, 0.8), u(0.3, 0.55)),
            RainLayer(0.0015 * d, u(25, 60), u(0.8, 2.0), u(0.25, 0.5)),
        ]
        haze, dim = u(0.05, 0.25), u(0.85, 1.0)
    else:  # "hazy": heavy rain far away: accumulation, dim scene, faint fine streaks
        angle, spread = u(-30, 30), u(3, 8)
        layers = [
            RainLayer(0.014 * d, u(4, 10), 0.0, u(0.1, 0.3)),
            RainLayer(0.004 * d, u(10, 22), u(0.0, 0.8), u(0.2, 0.4)),
        ]
        haze, dim = u(0.2, 0.45), u(0.75, 0.95)
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


if __name__ == "__main__":  # the preview left this module, so that it need not import datasets.py
    raise SystemExit("the rain preview moved: python tools/rain_preview.py --preview out.png --clip FRAMES")
