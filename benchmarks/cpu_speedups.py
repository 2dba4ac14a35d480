"""What each CPU speed-up of the model step is worth, variant against variant in one process, interleaved:

    as loaded     the weights file's network as trained (BatchNorm, pixel-unshuffle heads), fp32, NCHW
    rewritten     tmics_cli.model.fuse.for_inference (BatchNorm folded, strided-conv heads) + channels_last
                  (Restorer(optimize=True), what `tmics derain` runs), fp32
    rewritten bf16  the same under bf16 autocast (--precision auto on CPUs with native BF16)
    compiled bf16 torch.compile(rewritten network), bf16 (with --compile: its compile time is printed, the
                  question being whether it pays back within a short clip)

Each variant runs synthetic 5-frame windows (derain_speed.synthetic_windows: moving texture with streaks)
through a Restorer with profile=True, DIS medium flow; per round every variant derains `--windows`
windows, rounds alternate the order; the median per-frame time of the network stage and of the model step
(upload + flow + network + download) is reported, per torch thread count in --threads. Outputs are checked
against "as loaded" (max level difference, uint8), so that a variant that is fast because it is wrong
shows.

    python benchmarks/cpu_speedups.py                          # 640x480, tmics-light, threads 1 and 2
    python benchmarks/cpu_speedups.py --weights light-full --size 320x240 --threads 2 --compile
    python benchmarks/cpu_speedups.py --json benchmarks/results/cpu_speedups.json

With --encoder, `tmics derain`'s own path (Derainer.derain, the model loaded once) on an H.264 clip at the
size (derain_speed.make_input), alternating the x264 encoder's threads: one (what tmics gives it on the
CPU) or FFmpeg's choice (all cores); median wall time and process CPU time per frame.

The whole `tmics derain` against an earlier commit is benchmarks/cpu_side_by_side.py.
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
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from derain_speed import load, machine, make_input, parse_size, synthetic_windows  # noqa: E402

from tmics_cli.inference import Restorer, cpu_has_bf16, frames_to_uint8, windows_to_tensor  # noqa: E402
from tmics_cli.weights import load_model  # noqa: E402

RESULTS = HERE / "results" / "cpu_speedups.json"


def make_variants(weights: str, names: list[str], frames: torch.Tensor) -> dict[str, Any]:
    """name -> a callable (B, 5, 3, H, W) float -> (B, 3, H, W) uint8 numpy, with its Restorer's timings."""
    bf16 = torch.bfloat16
    cpu = torch.device("cpu")
    variants: dict[str, Any] = {}
    for name in names:
        model = load_model(weights)
        start = time.perf_counter()
        if name == "as loaded":
            restorer = Restorer(model, cpu, torch.float32, flow="dis", optimize=False, profile=True)
        elif name == "rewritten":
            restorer = Restorer(model, cpu, torch.float32, flow="dis", profile=True)
        elif name == "rewritten bf16":
            restorer = Restorer(model, cpu, bf16, flow="dis", profile=True)
        elif name == "compiled bf16":
            restorer = Restorer(model, cpu, bf16, flow="dis", profile=True)
            restorer.model = torch.compile(restorer.model)  # type: ignore[assignment]
            restorer.restore(frames)  # the compile itself
        else:
            raise ValueError(f"unknown variant {name!r}")
        setup = time.perf_counter() - start
        variants[name] = {"restorer": restorer, "setup_s": round(setup, 2)}
    return variants


def encoder_threads(weights: str, width: int, height: int, frames: int, rounds: int) -> list[dict[str, Any]]:
    """Derainer.derain of one clip with the encoder on one thread and on FFmpeg's choice, interleaved."""
    import dataclasses
    import tempfile

    from tmics_cli.derain import Derainer

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_input(Path(tmp) / "clip.mp4", frames, width, height)
        derainer = Derainer(weights=weights, device="cpu", overwrite=True)
        one = derainer.options
        settings = {"1 (tmics on the CPU)": one, "FFmpeg's choice": dataclasses.replace(one, threads=None)}
        wall: dict[str, list[float]] = {k: [] for k in settings}
        cpu: dict[str, list[float]] = {k: [] for k in settings}
        derainer.options = one
        derainer.derain(clip, Path(tmp) / "warm.mp4")  # the model loaded, first-call costs paid
        for r in range(rounds):
            for name in settings if r % 2 == 0 else reversed(settings):
                derainer.options = settings[name]
                start, start_cpu = time.perf_counter(), time.process_time()
                derainer.derain(clip, Path(tmp) / "out.mp4")
                wall[name].append((time.perf_counter() - start) * 1000 / frames)
                cpu[name].append((time.process_time() - start_cpu) * 1000 / frames)
        for name in settings:
            row = {
                "encoder_threads": name, "frames": frames, "size": f"{width}x{height}",
                "wall_ms_per_frame": round(statistics.median(wall[name]), 1),
                "cpu_ms_per_frame": round(statistics.median(cpu[name]), 1), "load_after": load(),
            }  # fmt: skip
            print(f"encoder threads {name:<20} {row['wall_ms_per_frame']:7.1f} ms/frame wall, "
                  f"{row['cpu_ms_per_frame']:7.1f} ms/frame CPU")  # fmt: skip
            rows.append(row)
    return rows


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--weights", default="light")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--windows", type=int, default=4, help="windows per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also torch.compile (slow to compile)")
    parser.add_argument("--encoder", action="store_true", help="also the encoder's threads, end to end")
    parser.add_argument("--encoder-frames", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    width, height = parse_size(args.size)
    names = ["as loaded", "rewritten"] + (["rewritten bf16"] if cpu_has_bf16() else [])
    names += ["compiled bf16"] if args.compile else []
    windows = synthetic_windows(width, height, args.windows)
    frames = windows_to_tensor(windows)  # (N, 5, 3, H, W) in [0, 1]

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        variants = make_variants(args.weights, names, frames[:1])
        reference = None
        for name in names:  # warm-up, and the outputs compared
            out = frames_to_uint8(variants[name]["restorer"].restore(frames[:1]))
            reference = out if reference is None else reference
            variants[name]["max_level_diff"] = int(np.abs(out.astype(int) - reference.astype(int)).max())
        per: dict[str, dict[str, list[float]]] = {n: {"network": [], "model": []} for n in names}
        load_before = load()
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else reversed(names):
                restorer = variants[name]["restorer"]
                before = dict(restorer.timings)
                for i in range(args.windows):
                    restorer.restore(frames[i : i + 1])
                spent = {k: (restorer.timings[k] - before[k]) * 1000 / args.windows for k in before}
                per[name]["network"].append(spent["network"])
                per[name]["model"].append(sum(spent.values()))
        base = statistics.median(per["as loaded"]["network"])
        for name in names:
            network, model = (statistics.median(per[name][k]) for k in ("network", "model"))
            row = {
                "variant": name, "threads": threads, "network_ms": round(network, 1),
                "model_ms": round(model, 1), "network_speedup": round(base / network, 2),
                "setup_s": variants[name]["setup_s"], "max_level_diff": variants[name]["max_level_diff"],
                "load_before": load_before, "load_after": load(),
            }  # fmt: skip
            rows.append(row)
            print(
                f"threads {threads}  {name:<15} network {network:7.1f} ms/frame "
                f"({row['network_speedup']:.2f}x)"
                f"  model step {model:7.1f} ms/frame  setup {row['setup_s']:.1f} s  "
                f"max diff {row['max_level_diff']} levels"
            )

    encoder = (
        encoder_threads(args.weights, width, height, args.encoder_frames, args.rounds) if args.encoder else []
    )

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "date": datetime.date.today().isoformat(), "machine": machine(), "cpu_count": os.cpu_count(),
            "weights": args.weights, "size": args.size, "windows": args.windows, "rounds": args.rounds,
            "rows": rows, "encoder": encoder,
        }, indent=2) + "\n")  # fmt: skip
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
