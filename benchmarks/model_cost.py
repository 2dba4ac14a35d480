"""Model cost: parameters, multiply-accumulates and CPU milliseconds per frame, light and heavy, per size.

    python benchmarks/model_cost.py                      # 640x480, sizes tiny/small/paper, 2 threads
    python benchmarks/model_cost.py --sizes small --runs 5 --height 1080 --width 1920

MACs count every conv and linear layer of one forward pass (one derained frame from a 5-frame window);
the OFM's DIS optical flow is classical (not counted in MACs, included in the milliseconds).
A benchmark, not a test: it prints numbers.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from tmics_cli.model import SIZES, build_model


def count_macs(model: nn.Module, frames: torch.Tensor) -> int:
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            per_output = module.in_channels // module.groups * int(torch.tensor(module.kernel_size).prod())
            total += output.numel() * per_output
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad():
        model(frames)
    for h in handles:
        h.remove()
    return total


def measure(preset: str, size: str, height: int, width: int, runs: int) -> dict[str, float | int | str]:
    torch.manual_seed(0)
    model = build_model(preset, size).eval()
    frames = torch.rand(1, 5, 3, height, width)
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, frames)
    times = []
    with torch.no_grad():
        model(frames)  # warm-up
        for _ in range(runs):
            start = time.perf_counter()
            model(frames)
            times.append(time.perf_counter() - start)
    ms = 1000 * sorted(times)[len(times) // 2]
    return {"preset": preset, "size": size, "params": params, "gmacs": macs / 1e9, "ms_per_frame": ms}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--presets", nargs="+", default=["light", "heavy"], choices=["light", "heavy"])
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per model (median reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.width}x{args.height}, {args.threads} CPU threads, torch {torch.__version__}")
    print(f"{'preset':<7} {'size':<6} {'params':>10} {'GMACs':>8} {'ms/frame':>10} {'fps':>6}")
    rows = []
    for size in args.sizes:
        for preset in args.presets:
            runs = 1 if size == "paper" else args.runs
            row = measure(preset, size, args.height, args.width, runs)
            rows.append(row)
            print(
                f"{preset:<7} {size:<6} {row['params']:>10,} {row['gmacs']:>8.1f} "
                f"{row['ms_per_frame']:>10.0f} {1000 / row['ms_per_frame']:>6.2f}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
