"""What rain looks like, in numbers: real rain beside the renderer's presets, style by style.

The rain layer is rainy minus clean on luma (Y of the MATLAB protocol, 16..235). For a paired set the clean
frame is its ground truth; for a preset it is the clean clip the rain was rendered over (both compressed
alike, as in training). Per set it prints
    >10        share of pixels the rain brightened by more than 10 levels
    amp p50/p90  median and 90th percentile of the rain's amplitude on those pixels (levels)
    <-10       share of pixels darkened by more than 10 levels (compression ringing, haze, dimming)
    vert       share of the strong rain gradients that belong to streaks within 8 degrees of vertical
    dev        median deviation of those gradients' streak direction from vertical (degrees)
    len / wid  median length and width of the streaks (connected regions above 10 levels, their second
               moments; width 1 is one-pixel-thin)
    streaks/kpx  streak count per 1,000 pixels
and then, because how visible rain is depends on what lies behind it and clips differ in brightness, the
rain by the clean frame's luma (five bands): the share of pixels above 10 levels and the mean rain; and
last, the rain over time, clip by clip:
    lag1       correlation of the rain layers of consecutive frames, unshifted
    fall       the downward shift (pixels) at which that correlation peaks, and the peak: drops that stay
               in view from frame to frame show up as a peak some pixels down
    kept       per band of rain amplitude (10-20, 20-40, 40-80, above 80 levels): the share of rain pixels
               that a neighbouring frame, warped onto them as the network aligns frames (DIS flow, here of
               the clean frames), covers with at least half their rain; there the "rain moves, the scene
               stays" cue fails

`--clip` also takes a folder of clean frames, e.g. a paired set's ground truth, to render over the very
backgrounds of a real set.

    python benchmarks/rain_statistics.py --data ../shared/data --presets light heavy

Matching these is how the renderer is tuned against real rain; nturain_a2 is looked at, never trained on,
and no setting is chosen by a network's score on it.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

from tmics_cli.data.datasets import find_paired_videos, list_images, read_image
from tmics_cli.data.rain import PRESETS, RainPreset, add_rain, sample_style
from tmics_cli.metrics import luma as metrics_luma
from tmics_cli.model.align import DISFlow, backward_warp


def luma(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] -> (H, W) Y in 16..235, the metrics' own formula."""
    return metrics_luma(frame).numpy()


def streak_geometry(rain_y: np.ndarray) -> tuple[list[float], list[float]]:
    """Lengths and widths (pixels) of the connected regions the rain brightened by more than 10 levels."""
    mask = (rain_y > 10).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    ys, xs = np.nonzero(labels)
    ids = labels[ys, xs]
    x, y = xs.astype(np.float64), ys.astype(np.float64)
    n = np.bincount(ids, minlength=count).astype(np.float64)
    keep = np.nonzero(stats[:, cv2.CC_STAT_AREA] >= 3)[0]
    keep = keep[keep > 0]
    if keep.size == 0:
        return [], []

    def moment(values: np.ndarray) -> np.ndarray:
        return np.bincount(ids, weights=values, minlength=count)[keep]

    k = n[keep]
    mx, my = moment(x) / k, moment(y) / k
    # each region's sample covariance of its pixels' (x, y), as np.cov (ddof 1)
    cxx = (moment(x * x) - k * mx * mx) / (k - 1)
    cyy = (moment(y * y) - k * my * my) / (k - 1)
    cxy = (moment(x * y) - k * mx * my) / (k - 1)
    eig = np.linalg.eigvalsh(np.stack([np.stack([cxx, cxy], -1), np.stack([cxy, cyy], -1)], -2))
    small, large = np.sqrt(np.maximum(eig, 0)).T
    # a uniform segment of length L has standard deviation L / sqrt(12)
    return list(large * np.sqrt(12)), list(np.maximum(small * np.sqrt(12), 1.0))


def orientation(rain_y: np.ndarray) -> np.ndarray:
    """Deviation from vertical (degrees) of the streaks at the strongest 5% of the rain's gradients."""
    gy, gx = np.gradient(rain_y)
    mag = np.hypot(gx, gy)
    strong = mag > np.percentile(mag, 95)
    grad = np.degrees(np.arctan2(gy[strong], gx[strong]))
    return np.abs(((grad + 90) % 180) - 90)  # a horizontal gradient is a vertical streak: 0


def statistics(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """pairs: (rainy, clean) frames (H, W, 3) RGB float in [0, 1]."""
    rains = [luma(r) - luma(c) for r, c in pairs]
    flat = np.concatenate([r.ravel() for r in rains])
    big = flat[flat > 10]
    dev = np.concatenate([orientation(r) for r in rains])
    lengths, widths = [], []
    for r in rains:
        ln, wd = streak_geometry(r)
        lengths += ln
        widths += wd
    return {
        "share10": float((flat > 10).mean()),
        "amp50": float(np.percentile(big, 50)) if big.size else 0.0,
        "amp90": float(np.percentile(big, 90)) if big.size else 0.0,
        "neg10": float((flat < -10).mean()),
        "vert8": float((dev < 8).mean()),
        "dev": float(np.median(dev)),
        "length": float(np.median(lengths)) if lengths else 0.0,
        "width": float(np.median(widths)) if widths else 0.0,
        "streaks_per_kpx": 1000 * len(lengths) / flat.size,
    }


LUMA_BANDS = ((16, 60), (60, 100), (100, 140), (140, 180), (180, 236))


def by_background(pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[float, float, float]]:
    """Per band of the clean frame's luma: (share of the frame's pixels in the band, share of the band's
    pixels the rain lifted by more than 10 levels, the band's mean rain in levels)."""
    ys = np.concatenate([luma(c).ravel() for _, c in pairs])
    rain = np.concatenate([(luma(r) - luma(c)).ravel() for r, c in pairs])
    out = []
    for lo, hi in LUMA_BANDS:
        band = (ys >= lo) & (ys < hi)
        if not band.any():
            out.append((0.0, 0.0, 0.0))
            continue
        out.append((float(band.mean()), float((rain[band] > 10).mean()), float(rain[band].mean())))
    return out


def paired_set(root: Path) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """A paired set's (rainy, ground truth) frames, one list per video, in order."""
    _, videos = find_paired_videos(root)
    return [
        [
            (read_image(r).astype(np.float32) / 255, read_image(g).astype(np.float32) / 255)
            for r, g in zip(v.rain, v.gt, strict=True)
        ]
        for v in videos
    ]


def rendered_set(
    clip: Path, preset: RainPreset, clips: int, frames: int, seed: int
) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """`clips` rainy clips of `frames` frames from one clean clip, one style each: a list of clips."""
    clean = [read_image(p).astype(np.float32) / 255 for p in list_images(clip)[:frames]]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(clips):
        rainy, target = add_rain(clean, sample_style(preset, rng), rng)
        out.append(list(zip(rainy, target, strict=True)))
    return out


COLUMNS = (
    ("share10", ">10", "{:6.3f}"),
    ("amp50", "amp p50", "{:7.1f}"),
    ("amp90", "amp p90", "{:7.1f}"),
    ("neg10", "<-10", "{:6.3f}"),
    ("vert", "vert", "{:5.2f}"),
    ("dev", "dev", "{:5.1f}"),
    ("length", "len", "{:5.1f}"),
    ("width", "wid", "{:4.1f}"),
    ("streaks_per_kpx", "streaks/kpx", "{:11.2f}"),
)


AMPLITUDE_BANDS = ((10, 20), (20, 40), (40, 80), (80, 256))
MAX_FALL = 40


def over_time(clip: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, object]:
    """Rain over time in one clip of (rainy, clean) frames in order: see the module's docstring."""
    rains = [np.clip(luma(r) - luma(c), 0, None) for r, c in clip]
    shifts = range(MAX_FALL + 1)
    corr = np.zeros(len(shifts))
    for a, b in zip(rains, rains[1:], strict=False):
        for dy in shifts:  # frame t+1's rain dy pixels below frame t's
            x, y = a[: a.shape[0] - dy], b[dy:]
            corr[dy] += np.corrcoef(x.ravel(), y.ravel())[0, 1]
    corr /= max(len(rains) - 1, 1)
    fall = int(np.argmax(corr))
    clean = torch.stack([torch.from_numpy(c).permute(2, 0, 1) for _, c in clip])  # (T, 3, H, W)
    flow_of = DISFlow("medium")  # the network's own alignment, on the clean frames
    counts = np.zeros((len(AMPLITUDE_BANDS), 2))
    for t in range(1, len(rains) - 1):
        flows = flow_of(clean[t][None], clean[[t - 1, t + 1]][None])[0]  # (2, 2, H, W)
        around = torch.from_numpy(np.stack([rains[t - 1], rains[t + 1]]))[:, None]
        neighbour = backward_warp(around, flows)[0].amax(0)[0].numpy()
        for i, (lo, hi) in enumerate(AMPLITUDE_BANDS):
            rain = (rains[t] > lo) & (rains[t] <= hi)
            counts[i] += rain.sum(), (neighbour[rain] > 0.5 * rains[t][rain]).sum()
    return {"lag1": float(corr[0]), "fall": fall, "fall_corr": float(corr[fall]), "kept": counts}


def print_over_time(name: str, clips: list[list[tuple[np.ndarray, np.ndarray]]]) -> None:
    stats = [over_time(c) for c in clips if len(c) >= 3]
    if not stats:
        return
    kept = sum(s["kept"] for s in stats)
    shares = " ".join(f"{k / max(n, 1):6.2f}" for n, k in kept)
    falls = np.median([s["fall"] for s in stats])
    lag1 = np.mean([s["lag1"] for s in stats])
    peak = np.mean([s["fall_corr"] for s in stats])
    print(f"{name:<28}{lag1:6.3f} {falls:5.0f} px {peak:6.3f}   {shares}")


def print_row(name: str, s: dict[str, float]) -> None:
    s = {**s, "vert": s["vert8"]}
    print(f"{name:<28}" + " ".join(fmt.format(s[key]) for key, _, fmt in COLUMNS))


def print_bands(name: str, bands: list[tuple[float, float, float]]) -> None:
    cells = [f"{share:4.0%} {above:5.1%} {mean:5.1f}" for share, above, mean in bands]
    print(f"{name:<28}" + "   ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--presets", nargs="*", default=["light"], choices=list(PRESETS))
    parser.add_argument(
        "--clip",
        default="walk",
        help="clean clip under DATA/clean, or a folder of clean frames, to render over",
    )
    parser.add_argument("--clips", type=int, default=8, help="rendered clips per style")
    parser.add_argument("--frames", type=int, default=3, help="frames per rendered clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--styles", nargs="*", help="only these styles of each preset")
    args = parser.parse_args()
    print(f"{'set':<28}" + " ".join(f"{title:>{len(fmt.format(0.0))}}" for _, title, fmt in COLUMNS))
    sets: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    clips_of: dict[str, list[list[tuple[np.ndarray, np.ndarray]]]] = {}
    a2 = args.data / "nturain_a2"
    if a2.is_dir():
        clips_of["nturain_a2 (real)"] = paired_set(a2)  # over time, video by video
        sets["nturain_a2 (real)"] = [p for clip in clips_of["nturain_a2 (real)"] for p in clip]
        print_row("nturain_a2 (real)", statistics(sets["nturain_a2 (real)"]))
    over = Path(args.clip) if Path(args.clip).is_dir() else args.data / "clean" / args.clip
    for name in args.presets:
        preset = PRESETS[name]
        everything = []
        for style in args.styles or preset.styles:
            one = replace(preset, styles=(style,))
            clips = rendered_set(over, one, args.clips, args.frames, args.seed)
            pairs = [p for c in clips for p in c]
            everything += pairs
            sets[f"{name}: {style}"] = pairs
            clips_of[f"{name}: {style}"] = clips
            print_row(f"{name}: {style}", statistics(pairs))
        sets[f"{name}: all styles"] = everything
        print_row(f"{name}: all styles", statistics(everything))
    print("\nby the clean frame's luma: share of the frame, share above 10 levels, mean rain (levels)")
    print(f"{'set':<28}" + "   ".join(f"{f'{lo}-{hi}':<16}" for lo, hi in LUMA_BANDS))
    for name, pairs in sets.items():
        print_bands(name, by_background(pairs))
    print("\nover time: lag-1 correlation, fall and its correlation, kept by a neighbour per amplitude band")
    print(
        f"{'set':<28}{'lag1':>6} {'fall':>8} {'peak':>6}   "
        + " ".join(f"{f'{lo}-{hi}' if hi < 256 else f'{lo}+':>6}" for lo, hi in AMPLITUDE_BANDS)
    )
    for name, clips in clips_of.items():
        print_over_time(name, clips)


if __name__ == "__main__":
    main()
