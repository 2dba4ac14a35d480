"""How much would better optical flow give a trained network? Flow quality headroom at test time.

The network aligns neighbours by DIS flow computed on the rainy frames. On 9-frame rainy windows of the
held-out clip `walk` (rendered with frozen card presets, seed 77), the centre frame is derained three ways:
    rainy      as `tmics derain` does: flows computed on the rainy frames
    oracle     flows computed on the clean frames (compressed as the targets): the most any flow could give
    two-pass   flows computed on the network's own first-pass output of the 5 frames around the centre
               (twice the network's time)
and each is scored by Y-PSNR against the clean centre frame (the rainy input's score beside them).

    python benchmarks/flow_headroom.py weights/tmics-light.safetensors --data ../shared/data

A diagnosis, not a target: it says whether alignment quality still limits the network.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from tmics_cli.data.datasets import load_clips, to_tensor
from tmics_cli.data.rain import CARD_ALIASES, add_rain, sample_style
from tmics_cli.metrics import psnr_y
from tmics_cli.model import load_model
from tmics_cli.model.align import estimate_flows
from tmics_cli.video.windows import reflect_index

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import quantize  # noqa: E402


def window(clip_frames: list[np.ndarray], preset: str, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nine consecutive frames with one clip's rain: (rainy, clean), each (9, 3, H, W) in [0, 1]."""
    rng = np.random.default_rng([77, index])
    n = len(clip_frames)
    centre = int(rng.integers(0, n))
    frames = [clip_frames[reflect_index(centre + d, n)].astype(np.float32) / 255 for d in range(-4, 5)]
    rainy, clean = add_rain(frames, sample_style(preset, rng), rng)
    return to_tensor(rainy), to_tensor(clean)


@torch.no_grad()
def headroom(model: torch.nn.Module, rainy: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
    # rainy, clean: (9, 3, H, W) in [0, 1]; the centre frame is 4, its 5-frame window 2..6
    target = quantize(clean[4]).permute(1, 2, 0)

    def score(frame: torch.Tensor) -> float:
        return psnr_y(quantize(frame).permute(1, 2, 0), target)

    estimator = model.flow_estimator
    window5 = rainy[None, 2:7]
    first_pass = torch.stack([model(rainy[None, t - 2 : t + 3])[0].clamp(0, 1) for t in range(2, 7)])
    return {
        "input": score(rainy[4]),
        "rainy": score(model(window5)[0]),
        "oracle": score(model(window5, flows=estimate_flows(estimator, clean[None, 2:7]))[0]),
        "two-pass": score(model(window5, flows=estimate_flows(estimator, first_pass[None]))[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("weights", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument(
        "--sets", nargs="+", default=["card-light", "card-dense-drizzle"], choices=list(CARD_ALIASES)
    )
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.weights).eval()
    if model.flow_estimator is None:
        raise SystemExit(f"{args.weights} aligns without optical flow; nothing to measure")
    clip = load_clips([args.data / "clean" / "walk"])[0]
    report = {}
    for preset in args.sets:
        rows = [headroom(model, *window(clip.frames, preset, i)) for i in range(args.windows)]
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        report[preset] = {"mean": mean, "windows": rows}
        print(f"{preset:<20} " + "  ".join(f"{k} {v:.2f}" for k, v in mean.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
