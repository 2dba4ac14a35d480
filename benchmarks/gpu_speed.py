"""GPU speed and precision of the network: DIS flow (CPU) and network (GPU) milliseconds per frame, peak GPU
memory, and how far bf16 / fp16 outputs are from fp32, per weights file and frame size.

    python benchmarks/gpu_speed.py weights/tmics-light.safetensors --frames ../shared/data/clean/tennis \\
        --sizes 1920x1080 640x480 --json gpu_speed.json

Frames are real clean frames (a folder of images, resized to each size) so the flow sees real motion; the
network runs on precomputed flows, so its time is the GPU's alone, and `restore` times what `tmics derain`
does per window at its automatic precision (DIS flow + network + copies), `--batch` windows at a time.
A benchmark, not a test: it prints numbers (and needs a CUDA GPU).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from tmics_cli.data.datasets import load_clips
from tmics_cli.inference import Restorer, pick_precision
from tmics_cli.metrics import psnr_y
from tmics_cli.model import align, load_model
from tmics_cli.model.align import estimate_flows

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def window(clip: Path, width: int, height: int) -> torch.Tensor:
    """(1, 5, 3, H, W) in [0, 1]: the first five frames of `clip` (a folder of frames or a video), resized."""
    first = load_clips([clip])[0].frames[:5]
    images = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in first]
    arr = np.stack(images).astype(np.float32) / 255
    return torch.from_numpy(arr).permute(0, 3, 1, 2)[None]


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, runs: int) -> tuple[float, object]:  # noqa: ANN001
    fn()  # warm-up (cuDNN autotuning, allocations)
    _sync()
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        _sync()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times)), out


def measure(
    path: Path, frames: torch.Tensor, runs: int, batch: int, device: torch.device
) -> dict[str, object]:
    cuda = device.type == "cuda"
    model = load_model(path).to(device).eval()
    cpu_frames = frames.repeat(batch, 1, 1, 1, 1)
    gpu_frames = cpu_frames.to(device)
    flow_net = model.flow_estimator
    result: dict[str, object] = {"weights": path.name, "size": f"{frames.shape[-1]}x{frames.shape[-2]}"}
    result["batch"] = batch
    if flow_net is not None:
        flow_ms, flows = timed(lambda: estimate_flows(flow_net, gpu_frames), max(2, runs // 2))
        result["flow_ms_per_frame"] = round(flow_ms / batch, 2)
        threads = align.flow_threads
        align.flow_threads = lambda tasks, pixels: 1  # the same flows, one after another
        try:
            flow_ms, _ = timed(lambda: estimate_flows(flow_net, gpu_frames), max(2, runs // 2))
        finally:
            align.flow_threads = threads
        result["flow_ms_per_frame_one_thread"] = round(flow_ms / batch, 2)
    else:
        flows = None
    reference = None
    for name, dtype in DTYPES.items():
        if cuda:
            torch.cuda.reset_peak_memory_stats()

        def run(dtype: torch.dtype = dtype) -> torch.Tensor:
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                return model(gpu_frames, flows).float().clamp(0, 1)

        ms, out = timed(run, runs)
        entry: dict[str, float] = {"net_ms_per_frame": round(ms / batch, 2)}
        if cuda:
            entry["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        if reference is None:
            reference = out
        else:
            entry["max_abs_diff_vs_fp32"] = round(float((out - reference).abs().max()), 5)
            entry["psnr_y_vs_fp32"] = round(psnr_y(out[0].cpu(), reference[0].cpu()), 2)
        result[name] = entry
    restorer = Restorer(model, device, pick_precision("auto", device))
    ms, _ = timed(lambda: restorer.restore(cpu_frames), max(2, runs // 2))
    result["restore_auto_precision_ms_per_frame"] = round(ms / batch, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("weights", nargs="+", type=Path)
    parser.add_argument(
        "--frames", type=Path, required=True, help="clean clip: frame folder or video (>= 5 frames)"
    )
    parser.add_argument("--sizes", nargs="+", default=["1920x1080", "640x480"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--device", default="cuda", help="cuda (the point), or cpu for a dry run")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_speed.py needs a CUDA GPU (or --device cpu for a dry run)")
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    report = {"device": name, "torch": torch.__version__, "results": []}
    for size in args.sizes:
        width, height = map(int, size.split("x"))
        frames = window(args.frames, width, height)
        for path in args.weights:
            result = measure(path, frames, args.runs, args.batch, device)
            report["results"].append(result)
            print(json.dumps(result), flush=True)
            if args.json:  # after each result: a run cut short keeps what it measured
                args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
