"""Where the remaining error of derained frames lies, on a paired set (rainy input, ground truth).

Pixels are split by the rain's own amplitude, rainy minus ground truth on luma (Y of the MATLAB protocol,
16..235): rain pixels are those the rain brightened by more than 10 levels. For each weights file it prints
    psnr        Y-PSNR of the output
    rain share  share of pixels that are rain pixels
    SE on rain  share of the output's squared error that lies on rain pixels
    removed     per band of rain amplitude: the share of the rain's mean amplitude taken off
    bias        mean error (output - truth) on the other pixels (< 0: the background got darker)
    wide        rain pixels in streak bodies at least 5 px wide across (a morphological opening of the rain
                mask with a horizontal line: near-camera, out-of-focus drops): their share of the pixels and
                of the squared error, and the share of their amplitude removed

    python benchmarks/error_breakdown.py weights/tmics-light.safetensors --data ../shared/data/nturain_a2
    python benchmarks/error_breakdown.py weights/tmics-light.safetensors --card-sets card-light card-near \
        --data ../shared/data   # the model card's frozen synthetic sets instead (8 windows of `walk` each)

A diagnosis, not a target: it says whether a model leaves rain behind or harms the background.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from tmics_cli.data.datasets import find_paired_videos, read_image, to_tensor
from tmics_cli.data.rain import CARD_ALIASES
from tmics_cli.inference import frames_to_uint8
from tmics_cli.metrics import luma
from tmics_cli.model import load_model
from tmics_cli.video.windows import window_indices

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import synthetic  # noqa: E402

BANDS = ((10, 20), (20, 40), (40, 80), (80, 255))


WIDE = 5  # px across


def wide_rain(rain_y: np.ndarray) -> np.ndarray:
    """Mask (H, W) of the rain pixels (above 10 levels) in streak bodies at least WIDE px wide across."""
    mask = (rain_y > BANDS[0][0]).astype(np.uint8)
    wide = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((1, WIDE), np.uint8))
    return (cv2.dilate(wide, np.ones((3, 3), np.uint8)) & mask).astype(bool)  # with the soft edges


def breakdown(outputs: list[np.ndarray], inputs: list[np.ndarray], truths: list[np.ndarray]) -> dict:
    """outputs, inputs, truths: (H, W, 3) uint8 frames, in the same order."""
    errors, rains = [], []
    for out, inp, gt in zip(outputs, inputs, truths, strict=True):
        y_gt = luma(gt).numpy()  # 16..235, integer for uint8
        errors.append(luma(out).numpy() - y_gt)
        rains.append(luma(inp).numpy() - y_gt)
    e, r = np.concatenate([x.ravel() for x in errors]), np.concatenate([x.ravel() for x in rains])
    rain = r > BANDS[0][0]
    wide = np.concatenate([wide_rain(x).ravel() for x in rains])
    per_frame_mse = [float(np.mean(x**2)) for x in errors]
    removed = {}
    for lo, hi in BANDS:
        band = (r > lo) & (r <= hi)
        if band.any():
            removed[f"{lo}-{hi}"] = float(1 - e[band].mean() / r[band].mean())
    return {
        "psnr": float(np.mean([10 * np.log10(255**2 / m) for m in per_frame_mse])),
        "rain_share": float(rain.mean()),
        "se_on_rain": float((e[rain] ** 2).sum() / (e**2).sum()),
        "removed": removed,
        "bias_elsewhere": float(e[~rain].mean()),
        "abs_error_elsewhere": float(np.abs(e[~rain]).mean()),
        "wide_share": float(wide.mean()),
        "se_on_wide": float((e[wide] ** 2).sum() / (e**2).sum()),
        "wide_removed": float(1 - e[wide].mean() / r[wide].mean()) if wide.any() else float("nan"),
    }


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("weights", nargs="+", type=Path)
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("../shared/data/nturain_a2"),
        help="a paired set; with --card-sets, the shared data folder (its clean/walk is rendered)",
    )
    parser.add_argument("--card-sets", nargs="+", choices=list(CARD_ALIASES), help="frozen synthetic sets")
    parser.add_argument("--windows", type=int, default=8, help="windows per card set")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sets = (
        {name: card_set(args.data, name, args.windows) for name in args.card_sets}
        if args.card_sets
        else {args.data.name: paired_set(args.data)}
    )
    models = {path.name: load_model(path).eval() for path in args.weights}
    report: dict[str, dict] = {}
    for set_name, (windows, inputs, truths) in sets.items():
        for name, model in models.items():
            outputs = [frames_to_uint8(model(w[None]))[0] for w in windows]
            r = breakdown(outputs, inputs, truths)
            report[f"{set_name} {name}" if args.card_sets else name] = r
            print_report(f"{set_name}, {name}", r)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def paired_set(root: Path) -> tuple[list[torch.Tensor], list[np.ndarray], list[np.ndarray]]:
    """Every frame's 5-frame window (reflected at the ends), rainy input and truth, video by video."""
    _, videos = find_paired_videos(root)
    inputs, truths, windows = [], [], []
    for video in videos:
        frames = [read_image(p) for p in video.rain]
        rain = to_tensor(frames)  # (T, 3, H, W) in [0, 1]
        windows += [rain[window_indices(t, len(rain))] for t in range(len(rain))]
        inputs += frames
        truths += [read_image(p) for p in video.gt]
    return windows, inputs, truths


def card_set(
    data: Path, name: str, count: int
) -> tuple[list[torch.Tensor], list[np.ndarray], list[np.ndarray]]:
    """One of the model card's frozen synthetic sets: windows, rainy centre frames and targets (uint8)."""
    windows, targets = synthetic(data / "clean" / "walk", name, count)
    inputs = list(frames_to_uint8(torch.stack([w[2] for w in windows])))
    return windows, inputs, [t.numpy() for t in targets]


def print_report(name: str, r: dict) -> None:
    bands = ", ".join(f"{k}: {v:.0%}" for k, v in r["removed"].items())
    print(
        f"{name}: Y-PSNR {r['psnr']:.2f} dB; rain pixels {r['rain_share']:.1%} hold "
        f"{r['se_on_rain']:.0%} of the squared error; rain removed by amplitude {bands}; "
        f"bias elsewhere {r['bias_elsewhere']:+.2f} levels; wide rain {r['wide_share']:.1%} of pixels, "
        f"{r['se_on_wide']:.0%} of the squared error, {r['wide_removed']:.0%} removed"
    )


if __name__ == "__main__":
    main()
