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
import time
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
from tmics_cli.data.datasets import RainyClipDataset, find_paired_videos, load_clips, read_image, to_tensor
from tmics_cli.data.rain import CARD_ALIASES
from tmics_cli.inference import Restorer, frames_to_uint8, windows_to_tensor
from tmics_cli.metrics import psnr_y, ssim_y
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
# The card's old preset names (benchmarks/error_breakdown.py, flow_headroom.py take them): frozen preset
# versions in tmics_cli.data.rain, nothing registered here any more
CARD_PRESETS = dict(CARD_ALIASES)


def score(outputs: list[torch.Tensor], targets: list[torch.Tensor]) -> dict[str, float]:
    return {
        "psnr": float(np.mean([psnr_y(o, t) for o, t in zip(outputs, targets, strict=True)])),
        "ssim": float(np.mean([ssim_y(o, t) for o, t in zip(outputs, targets, strict=True)])),
    }


def quantize(x: torch.Tensor) -> torch.Tensor:
    """As a saved 8-bit frame would be."""
    return (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


@torch.no_grad()
def evaluate_set(windows: list[torch.Tensor], targets: list[torch.Tensor], models: dict) -> dict[str, dict]:
    results: dict[str, dict] = {}
    results["input"] = score([quantize(w[2]) for w in windows], targets)
    # the DIS fast preset, as when the model card's median row was first measured
    results["aligned median"] = score(
        [quantize(aligned_median(w[None], "fast")[0]) for w in windows], targets
    )
    for name, model in models.items():
        fused, dna, seconds = [], [], 0.0
        for w in windows:
            start = time.perf_counter()
            out = model(w[None], return_all=True)
            seconds += time.perf_counter() - start
            fused.append(quantize(out.derained[0]))
            dna.append(quantize(out.dna[0]))
        results[f"{name}"] = {**score(fused, targets), "s_per_frame": seconds / len(windows)}
        results[f"{name} DNA only (TMICS_S)"] = score(dna, targets)
    return results


def nturain_a2(root: Path) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    _, videos = find_paired_videos(root)
    video = videos[0]
    rain = to_tensor([read_image(p) for p in video.rain])
    gts = [torch.from_numpy(read_image(p)) for p in video.gt]
    windows = [rain[window_indices(t, len(rain))] for t in range(len(rain))]
    return windows, gts


def synthetic(clip_root: Path, preset: str, count: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    clips = load_clips([clip_root])
    ds = RainyClipDataset(clips, preset, crop=None, seed=1234, clean_probability=0.0, max_stride=1)
    samples = [ds[i] for i in range(count)]
    return [s["frames"] for s in samples], [quantize(s["target"]).permute(1, 2, 0) for s in samples]


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
