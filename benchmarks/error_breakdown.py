"""Where the remaining error of derained frames lies, on a paired set (rainy input, ground truth).

Pixels are split by the rain's own amplitude, rainy minus ground truth on luma (Y of the MATLAB protocol,
16..235): rain pixels are those the rain brightened by more than 10 levels. For each weights file it prints
    psnr        Y-PSNR of the output
    rain share  share of pixels that are rain pixels
    SE on rain  share of the output's squared error that lies on rain pixels
    removed     per band of rain amplitude: the share of the rain's mean amplitude taken off
    bias        mean error (output - truth) on the other pixels (< 0: the background got darker)

    python benchmarks/error_breakdown.py weights/tmics-light.safetensors --data ../shared/data/nturain_a2

A diagnosis, not a target: it says whether a model leaves rain behind or harms the background.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from tmics_cli.data.datasets import find_paired_videos, read_image, to_tensor
from tmics_cli.inference import frames_to_uint8
from tmics_cli.metrics import luma
from tmics_cli.model import load_model
from tmics_cli.video.windows import window_indices

BANDS = ((10, 20), (20, 40), (40, 80), (80, 255))


def breakdown(outputs: list[np.ndarray], inputs: list[np.ndarray], truths: list[np.ndarray]) -> dict:
    """outputs, inputs, truths: (H, W, 3) uint8 frames, in the same order."""
    errors, rains = [], []
    for out, inp, gt in zip(outputs, inputs, truths, strict=True):
        y_gt = luma(gt).numpy()  # 16..235, integer for uint8
        errors.append(luma(out).numpy() - y_gt)
        rains.append(luma(inp).numpy() - y_gt)
    e, r = np.concatenate([x.ravel() for x in errors]), np.concatenate([x.ravel() for x in rains])
    rain = r > BANDS[0][0]
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
    }


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("weights", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/nturain_a2"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _, videos = find_paired_videos(args.data)
    inputs, truths, windows = [], [], []  # read once, for every weights file
    for video in videos:
        frames = [read_image(p) for p in video.rain]
        rain = to_tensor(frames)  # (T, 3, H, W) in [0, 1]
        windows += [rain[window_indices(t, len(rain))] for t in range(len(rain))]
        inputs += frames
        truths += [read_image(p) for p in video.gt]
    report = {}
    for path in args.weights:
        model = load_model(path).eval()
        outputs = [frames_to_uint8(model(w[None]))[0] for w in windows]
        r = report[path.name] = breakdown(outputs, inputs, truths)
        bands = ", ".join(f"{k}: {v:.0%}" for k, v in r["removed"].items())
        print(
            f"{path.name}: Y-PSNR {r['psnr']:.2f} dB; rain pixels {r['rain_share']:.1%} hold "
            f"{r['se_on_rain']:.0%} of the squared error; rain removed by amplitude {bands}; "
            f"bias elsewhere {r['bias_elsewhere']:+.2f} levels"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
