"""`tmics derain` wall time on one machine: one process, `--workers 2`, `--ray local` (numbers, not a test).

    python benchmarks/ray_local.py                          # 160x120, 100 frames, shipped light weights
    python benchmarks/ray_local.py --frames 400 --size 320x240 --segment-frames 50
    python benchmarks/ray_local.py --tiny                   # a tiny untrained network: the overheads alone

Each case is the command line in a fresh process, timed from its start to its end: process start, torch
import, model load, (for Ray) starting the local cluster and its worker processes, derain and join. The
input is the sample clip's frames resized and looped (benchmarks/derain_speed.py's `make_input`); outputs
are lossless (--crf 0), so every case writes the same pixels. Needs Ray (`pip install "tmics[ray]"`).
The machine's load average is recorded before each run: other work on it skews the numbers (a busy
2-core machine slows the 2-thread single process most). Results are printed and written to
benchmarks/results/ray_local.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "ray_local.json"
CASES = {"one process": [], "--workers 2": ["--workers", "2"], "--ray local": ["--ray", "local"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", default="160x120", help="WIDTHxHEIGHT")
    parser.add_argument("--segment-frames", type=int, default=25)
    parser.add_argument("--rain", default="light", help="shipped weights (light, heavy, light-full)")
    parser.add_argument("--tiny", action="store_true", help="a tiny untrained network instead of --rain")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the best is kept")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    sys.path.insert(0, str(HERE))
    from derain_speed import make_input

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src = make_input(folder / "in.mp4", args.frames, width, height)
        if args.tiny:
            import torch

            from tmics_cli.model import build_model, save_model

            torch.manual_seed(0)
            save_model(build_model("light", "tiny"), folder / "tiny.safetensors")
            model = ["--weights", str(folder / "tiny.safetensors")]
        else:
            model = ["--rain", args.rain]
        base = [sys.executable, "-m", "tmics_cli", "derain", str(src), *model, "--device", "cpu"]
        base += ["--crf", "0", "--segment-frames", str(args.segment_frames), "-q"]
        runs = []
        for name, extra in CASES.items():
            out, summary = folder / f"out-{len(runs)}.mp4", folder / f"summary-{len(runs)}.json"
            walls, loads, entry = [], [], {}
            for _ in range(args.repeat):
                loads.append(round(os.getloadavg()[0], 2))  # other work on the machine skews the numbers
                began = time.perf_counter()
                command = [*base, "-o", str(out), "--json", str(summary), "--overwrite", *extra]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"{name} failed:\n{done.stderr}")
                walls.append(round(time.perf_counter() - began, 2))
                [entry] = json.loads(summary.read_text())["inputs"]
            best = min(walls)
            runs.append(
                {
                    "case": name,
                    "wall_s": best,  # the best of the repeats
                    "wall_s_each": walls,
                    "load_before": loads,  # 1-minute load average before each repeat
                    "derain_s": round(entry["seconds"], 2),  # the last repeat's input time, as tmics says it
                    "frames": entry["frames"],
                    "fps_wall": round(entry["frames"] / best, 2),
                }
            )
            print(f"{name:12s} {best:7.2f} s wall, best of {walls} (load before: {loads})")
        same = len({(folder / f"out-{k}.mp4").read_bytes() for k in range(len(runs))}) == 1
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "size": args.size,
        "frames": args.frames,
        "segment_frames": args.segment_frames,
        "repeat": args.repeat,
        "weights": "tiny (untrained)" if args.tiny else args.rain,
        "outputs_identical": same,
        "runs": runs,
    }
    print(f"outputs identical: {same}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
