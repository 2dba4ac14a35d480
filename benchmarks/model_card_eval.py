"""The numbers of the model card: Y-PSNR / SSIM of weights files beside the baselines.

    python benchmarks/model_card_eval.py weights/tmics-light.safetensors weights/tmics-heavy.safetensors \
        --data ../shared/data --json card.json --rb2-image weights/rb2.jpg

Sets (each scored per frame, averaged):
  nturain_a2       9 real NTURain frames with ground truth (a check, never used to choose anything)
  synthetic-light  fixed rainy windows rendered on the held-out clip `walk`, light preset, seed 1234
  synthetic-light-hazy  the same with the light preset's styles at their haze (the light preset before it
                   dropped accumulation; the model card's synthetic-light set until then)
  synthetic-heavy  the same with the heavy preset
  synthetic-drizzle  the same with the drizzle style alone (short, faint, near-vertical)
  synthetic-dense-drizzle  the same with the dense-drizzle style alone (drizzle matched to nturain_a2 by
                   background luma)
  synthetic-near   the synthetic-light clips and styles with a near-camera layer added to every clip
                   (sparse, long, wide, soft drops, as nturain_a2 shows)
The synthetic sets' presets are frozen here (CARD_PRESETS), so the sets stay the same when a preset changes.
Methods: the rainy input, the 5-frame temporal median of the DIS-aligned frames, and for each weights file
the fused output (TMICS) and the DNA alone (the paper's TMICS_S).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

from tmics_cli.benchmark import aligned_median
from tmics_cli.data.datasets import RainyClipDataset, find_paired_videos, load_clips, read_image, to_tensor
from tmics_cli.data.rain import PRESETS, RainPreset
from tmics_cli.metrics import psnr_y, ssim_y
from tmics_cli.model import load_model
from tmics_cli.video.windows import window_indices

# The synthetic sets are frozen: the presets as they were when the model card's numbers began, so that a
# change to a preset changes what is trained on, never the yardstick. `card-light-hazy` is the light preset
# before it dropped accumulation (same random draws, so the same windows); `card-drizzle` is the light
# preset's drizzle style alone (added after 0.1.0); `card-dense-drizzle` the style that replaced it;
# `card-near` the card-light clips and styles with a near-camera layer in every clip (wide, long, soft drops).
_CARD_LIGHT = RainPreset(
    styles=("streaks", "fine", "slanted"), density_scale=(0.25, 0.8), h264_probability=0.3, haze_scale=0.0
)
CARD_PRESETS = {
    "card-light": _CARD_LIGHT,
    "card-light-hazy": replace(_CARD_LIGHT, haze_scale=1.0),
    "card-heavy": RainPreset(
        styles=("streaks", "fine", "slanted", "dense", "hazy"), density_scale=(0.8, 1.8), h264_probability=0.3
    ),
    "card-drizzle": replace(_CARD_LIGHT, styles=("drizzle",)),
    "card-dense-drizzle": replace(_CARD_LIGHT, styles=("dense-drizzle",)),
    "card-near": replace(_CARD_LIGHT, near_probability=1.0),
}
for _name, _preset in CARD_PRESETS.items():
    PRESETS.setdefault(_name, _preset)


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("weights", nargs="*", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--windows", type=int, default=12, help="synthetic windows per preset")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--rb2-image", type=Path, help="write rb2 input | output of the first weights here")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {w.stem: load_model(w) for w in args.weights}
    walk = args.data / "clean" / "walk"
    sets = {
        "nturain_a2": nturain_a2(args.data / "nturain_a2"),
        "synthetic-light": synthetic(walk, "card-light", args.windows),
        "synthetic-light-hazy": synthetic(walk, "card-light-hazy", args.windows),
        "synthetic-heavy": synthetic(walk, "card-heavy", args.windows),
        "synthetic-drizzle": synthetic(walk, "card-drizzle", args.windows),
        "synthetic-dense-drizzle": synthetic(walk, "card-dense-drizzle", args.windows),
        "synthetic-near": synthetic(walk, "card-near", args.windows),
    }
    report = {}
    for set_name, (windows, targets) in sets.items():
        report[set_name] = evaluate_set(windows, targets, models)
        print(f"\n{set_name} ({len(windows)} frames)")
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
