"""The numbers of the model card: Y-PSNR / SSIM of weights files beside the baselines, scored by
`tmics benchmark`'s code (tmics_cli.benchmark): one scoring path. Each set alone is

    tmics benchmark card-light-v1 --data ../shared/data -m input -m light --ablate

and all of them, for several weights files at once:

    python benchmarks/model_card_eval.py weights/tmics-light.safetensors weights/tmics-heavy.safetensors \
        --data ../shared/data --json card.json --rb2-image weights/rb2.jpg

Sets (each scored per frame, averaged):
  nturain_a2       9 real NTURain frames with ground truth (a check, never used to choose anything)
  synthetic-light ... synthetic-near: the frozen sets tmics_cli.benchmark.CARD_SETS (card-light-v1, ...):
                   8 fixed rainy windows of the held-out clip `walk`, seed 1234, each from a frozen rain
                   preset version (tmics_cli.data.rain.PRESET_VERSIONS), so they stay the same when a
                   preset gets a new version.
Methods: the rainy input, the 5-frame temporal median of the DIS-aligned frames (DIS `fast`, as when the
card's median row was first measured; `tmics benchmark -m median` uses DIS `medium`), and for each weights
file the fused output (TMICS) and the DNA alone (the paper's TMICS_S).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from tmics_cli.benchmark import (
    BenchSet,
    Method,
    aligned_median,
    baseline,
    card_set,
    load_set,
    model_method,
    run_benchmark,
)
from tmics_cli.data.datasets import read_image, to_tensor
from tmics_cli.inference import Restorer, frames_to_uint8, windows_to_tensor
from tmics_cli.model import load_model
from tmics_cli.video.windows import window_indices

# The model card's names of its sets -> tmics_cli.benchmark's frozen sets
CARD_SET_NAMES = {
    "synthetic-light": "card-light-v1",
    "synthetic-light-hazy": "card-light-hazy-v1",
    "synthetic-heavy": "card-heavy-v1",
    "synthetic-drizzle": "card-drizzle-v1",
    "synthetic-dense-drizzle": "card-dense-drizzle-v1",
    "synthetic-near": "card-near-v1",
}


def rb2_side_by_side(model: torch.nn.Module, folder: Path, out: Path, frame: int = 30) -> None:
    files = sorted(folder.glob("*.jpg"))
    frames = to_tensor([read_image(files[i]) for i in window_indices(frame, len(files))])
    with torch.no_grad():
        derained = model(frames[None])[0]
    pair = torch.cat([frames[2], derained.clamp(0, 1)], -1)
    img = (pair.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    cv2.imwrite(str(out), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])


def median_fast() -> Method:
    """The aligned median with DIS `fast` (the card's median row)."""

    def run(windows: np.ndarray) -> dict[str, np.ndarray]:
        return {"aligned median": frames_to_uint8(aligned_median(windows_to_tensor(windows), "fast"))}

    return Method("aligned median", run, ["aligned median"])


def card_rows(bench: BenchSet, models: dict[str, torch.nn.Module]) -> dict[str, dict]:
    """One set through tmics_cli.benchmark.run_benchmark, as the card's rows."""
    methods = [baseline("input"), median_fast()]
    methods += [
        model_method(name, Restorer(model, torch.device("cpu")), True) for name, model in models.items()
    ]
    result = run_benchmark(bench, methods)
    rows = {}
    for row, mean in result.means().items():
        scores = {"psnr": mean["psnr"], "ssim": mean["ssim"]}
        if row in models and mean["fps"]:
            scores["s_per_frame"] = 1 / mean["fps"]
        rows[row] = scores
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("weights", nargs="*", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--sets", nargs="+", choices=["nturain_a2", *CARD_SET_NAMES], help="default: all")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--rb2-image", type=Path, help="write rb2 input | output of the first weights here")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {w.stem: load_model(w) for w in args.weights}
    report = {}
    for set_name in args.sets or ["nturain_a2", *CARD_SET_NAMES]:
        if set_name == "nturain_a2":
            bench = load_set(str(args.data / "nturain_a2"))
        else:
            bench = card_set(CARD_SET_NAMES[set_name], args.data)
        report[set_name] = card_rows(bench, models)
        frames = sum(len(v.scored) for v in bench.videos)
        print(f"\n{set_name} ({frames} frames)")
        for method, r in report[set_name].items():
            extra = f"  {r['s_per_frame']:.2f} s/frame" if "s_per_frame" in r else ""
            print(f"  {method:<36} Y-PSNR {r['psnr']:6.2f}  SSIM {r['ssim']:.4f}{extra}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.rb2_image and models:
        rb2_side_by_side(next(iter(models.values())), args.data / "real_rain" / "rb2", args.rb2_image)
        print(f"wrote {args.rb2_image}")


if __name__ == "__main__":
    main()
