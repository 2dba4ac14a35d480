"""DIS `fast` instead of `medium` for the OFM's flow at inference: what it costs on the held-out sets and
what it saves in time (issue 27: "the DIS preset is a choice to measure, not to assume").

The shipped weights were trained with DIS `medium` flows. Each of the model card's six frozen synthetic
sets (tmics_cli.benchmark.CARD_SETS, windows of the held-out clip `walk`) and the 9 real NTURain a2 frames
(a check, never a selection set) are scored by tmics_cli.benchmark's code for each weights file with the
flow estimator's preset set to each preset in turn (same Restorer, fp32, so that only the preset differs),
with paired per-video differences against `medium` (a card set's videos are single scored frames). The
speed part times the flow stage alone, the 4 flows of one 5-frame window at 640x480 (synthetic moving
texture), the presets interleaved, median of repeats, with the threads the CPU default gives.

    python experiments/dis_preset.py --data ../shared/data --json experiments/results/dis_preset.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from derain_speed import machine, synthetic_windows  # noqa: E402

from tmics_cli.benchmark import CARD_SETS, card_set, load_set, model_method, run_benchmark  # noqa: E402
from tmics_cli.inference import Restorer, windows_to_tensor  # noqa: E402
from tmics_cli.model import load_model  # noqa: E402
from tmics_cli.model.align import DISFlow  # noqa: E402

PRESETS = ("medium", "fast")


def flow_ms(width: int, height: int, repeats: int) -> dict[str, float]:
    """Median milliseconds of the 4 DIS flows of one window, per preset (interleaved)."""
    frames = windows_to_tensor(synthetic_windows(width, height, 1))  # (1, 5, 3, H, W) in [0, 1]
    reference, neighbours = frames[:, 2], frames[:, [0, 1, 3, 4]]
    times: dict[str, list[float]] = {p: [] for p in PRESETS}
    estimators = {p: DISFlow(p) for p in PRESETS}
    for p in PRESETS:
        estimators[p](reference, neighbours)  # warm-up
    for _ in range(repeats):
        for p in PRESETS:
            start = time.perf_counter()
            estimators[p](reference, neighbours)
            times[p].append((time.perf_counter() - start) * 1000)
    return {p: round(statistics.median(t), 1) for p, t in times.items()}


def score(bench, restorer: Restorer, name: str) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Per-video Y-PSNR of the model on `bench`, for each preset of its DIS flow."""
    flow = restorer.model.flow_estimator
    if not isinstance(flow, DISFlow):
        raise SystemExit(f"{name} does not run with DIS flow ({type(flow).__name__})")
    out = {}
    for preset in PRESETS:
        flow.preset = preset
        result = run_benchmark(bench, [model_method(name, restorer, False)])
        out[preset] = np.array([v["psnr"] for v in result.per_video[name].values()])
    flow.preset = "medium"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--weights", nargs="+", type=Path,
                        default=[ROOT / "weights" / "tmics-light.safetensors",
                                 ROOT / "weights" / "tmics-light-full.safetensors"])  # fmt: skip
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    speed = flow_ms(640, 480, args.repeats)
    print("DIS flow of one window at 640x480: " + ", ".join(f"{p} {ms} ms" for p, ms in speed.items()))
    sets = {"nturain_a2": lambda: load_set(str(args.data / "nturain_a2")),
            **{name: (lambda n=name: card_set(n, args.data)) for name in CARD_SETS}}  # fmt: skip
    scores: dict[str, dict] = {}
    for path in args.weights:
        restorer = Restorer(load_model(path), torch.device("cpu"), torch.float32, flow="dis")
        rows = {}
        for set_name, make in sets.items():
            per = score(make(), restorer, path.stem)
            diff = per["fast"] - per["medium"]
            rows[set_name] = {
                **{p: round(float(v.mean()), 3) for p, v in per.items()},
                "fast_minus_medium_db": round(float(diff.mean()), 3),
                "paired_sd_db": round(float(diff.std(ddof=1)), 3) if len(diff) > 1 else None,
                "videos": len(diff),
            }
            row = rows[set_name]
            print(f"{path.stem:<18} {set_name:<22} medium {row['medium']:6.2f}  "
                  f"fast {row['fast']:6.2f}  ({row['fast_minus_medium_db']:+.3f} dB)")  # fmt: skip
        card = [rows[n]["fast_minus_medium_db"] for n in CARD_SETS]
        rows["six-set mean fast_minus_medium_db"] = round(float(np.mean(card)), 3)
        print(f"{path.stem}: six-set mean {rows['six-set mean fast_minus_medium_db']:+.3f} dB")
        scores[path.stem] = rows

    if args.json:
        args.json.write_text(json.dumps({
            "date": datetime.date.today().isoformat(), "machine": machine(),
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "flow_ms_per_window_640x480": speed, "scores": scores,
        }, indent=2) + "\n")  # fmt: skip
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
