"""`tmics derain` stage by stage: milliseconds per frame in decode, upload, flow, network, download and
encode, frames per second end to end, peak RSS and peak GPU memory, per frame size, weights and device;
each case in a fresh process, printed as a table and kept as JSON.

    python benchmarks/derain_speed.py                         # 640x480 and 1920x1080, light and light-full,
                                                              # every device here (cpu; cuda, mps if present)
    python benchmarks/derain_speed.py --model-only            # no PyAV: synthetic windows into the Restorer
    python benchmarks/derain_speed.py --sizes 640x480 --weights light light-full heavy --frames 40
    python benchmarks/derain_speed.py --memory                # peak RSS at 100 vs 1,000 frames, 320x240
    python benchmarks/derain_speed.py --merge gpu_check.json  # fold a GPU run's rows into the results
    python benchmarks/derain_speed.py --markdown              # the README's speed table, from the results

End to end ("e2e") derains an H.264 clip: the bundled sample's frames resized to the size, played forward
and back to the asked length, encoded once per size (needs PyAV); `tmics derain`'s own path (decode
thread, model, encode thread, segments, join), the model loaded beforehand. Decode and encode are their
threads' busy time, overlapped with the model's: fps follows the slowest of the three, not their sum.
"model" cases need no PyAV: synthetic 5-frame windows (moving texture with streaks, uint8) straight into
`Restorer`, after one warm-up call. The model's four stages come from `Restorer.timings` with
`profile=True` (a device synchronize ends each stage, so a GPU's split is true; with DIS flow the host
waits on the GPU at the flow and the download anyway, so the syncs cost little: gpu_check.py measures
it). CPU runs are short by default (1080p: 6 frames end to end), so their numbers are rough.

Peak RSS is the case's process's VmHWM (Linux; reset per case where several share a process) or
ru_maxrss; peak GPU memory is torch.cuda.max_memory_allocated. `estimate_mb` is tmics' own estimate of the
model's live tensors for the batch (tmics_cli.guards.bytes_per_pixel, fp32, measured on a 32x32 probe).
Each row records the machine, its load average before and after, and the torch threads.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "derain_speed.json"
STAGES = ("decode", "upload", "flow", "network", "download", "encode")
MODEL_STAGES = STAGES[1:5]  # tmics_cli.inference.STAGES
SIZES = ("640x480", "1920x1080")
WEIGHTS = ("light", "light-full")


# --- the machine -------------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def devices_present() -> list[str]:
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, python {platform.python_version()}"


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return "Apple MPS" if device == "mps" else f"CPU ({os.cpu_count()} cores)"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def reset_peak_rss() -> None:
    """Start a new peak-RSS measurement in this process (Linux: VmHWM reset; elsewhere a no-op)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory of this process since the last reset_peak_rss (or since it started), MB."""
    try:
        with open("/proc/self/status") as f:
            match = re.search(r"VmHWM:\s+(\d+) kB", f.read())
        if match:
            return round(int(match.group(1)) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)


def reset_peak_gpu(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gpu_mb(device: str) -> tuple[float | None, float | None]:
    """(peak allocated, peak reserved) MB on a CUDA device since the last reset; None elsewhere."""
    import torch

    if not device.startswith("cuda"):
        return None, None
    return (
        round(torch.cuda.max_memory_allocated() / 2**20, 1),
        round(torch.cuda.max_memory_reserved() / 2**20, 1),
    )


# --- inputs ------------------------------------------------------------------------------------------------


def synthetic_windows(width: int, height: int, count: int, seed: int = 0) -> np.ndarray:
    """`count` 5-frame windows (count, 5, H, W, 3) uint8 of one synthetic clip: a smooth texture panning
    2 px right and 1 px down per frame, with bright streaks drawn anew on every frame (rain-like work for
    the flow and the network; no PyAV, no data files)."""
    import cv2

    rng = np.random.default_rng(seed)
    frames = count + 4
    pad_w, pad_h = width + 2 * frames, height + frames
    texture = np.zeros((pad_h, pad_w, 3), np.float32)
    for cell, weight in ((64, 0.6), (16, 0.3), (4, 0.1)):
        coarse = rng.random((max(2, pad_h // cell), max(2, pad_w // cell), 3), dtype=np.float32)
        texture += weight * cv2.resize(coarse, (pad_w, pad_h), interpolation=cv2.INTER_CUBIC)
    texture = np.clip(texture * 255, 0, 255).astype(np.uint8)
    clip = []
    for t in range(frames):
        frame = np.ascontiguousarray(texture[t : t + height, 2 * t : 2 * t + width])
        for _ in range(max(1, width * height // 4000)):
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            length = int(rng.integers(8, 24))
            cv2.line(frame, (x, y), (x + length // 6, y + length), (235, 235, 235), 1)
        clip.append(frame)
    return np.stack([np.stack(clip[i : i + 5]) for i in range(count)])


def _cycle(frames: list[np.ndarray]) -> Iterator[np.ndarray]:
    while True:
        yield from frames


def make_input(path: Path, frames: int, width: int, height: int) -> Path:
    """An H.264 clip of `frames` frames at width x height: the bundled sample resized, forward and back."""
    import av
    import cv2

    from tmics_cli.derain import SAMPLE_CLIP
    from tmics_cli.video.reader import open_source

    source = open_source(SAMPLE_CLIP)
    clip = [cv2.resize(item.rgb, (width, height), interpolation=cv2.INTER_AREA) for item in source]
    source.close()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, 25)
        stream.options = {"crf": "20", "preset": "veryfast"}
        for i in range(frames):
            k = i % (2 * len(clip) - 2)  # play forward and back so that motion stays continuous
            rgb = clip[k if k < len(clip) else 2 * len(clip) - 2 - k]
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


# --- one case ----------------------------------------------------------------------------------------------


def _row(mode: str, weights: str, size: str, device: str, precision: str, batch: int) -> dict[str, Any]:
    import torch

    return {
        "mode": mode,
        "weights": weights,
        "size": size,
        "device": device,
        "device_name": device_name(device),
        "precision": precision,
        "batch": batch,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": machine(),
        "when": datetime.date.today().isoformat(),
        "load_before": load(),
    }


def _estimate_mb(model: Any, width: int, height: int, batch: int) -> float | None:
    from tmics_cli.guards import bytes_per_pixel

    per_pixel = bytes_per_pixel(model, train=False)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return None if per_pixel is None else round((per_pixel * width * height * batch + params) / 2**20, 1)


def _precision(device: str, precision: str) -> tuple[Any, Any, str]:
    """(torch device, dtype, its name) for a device and a precision name such as auto."""
    import torch

    from tmics_cli.inference import pick_device, pick_precision

    torch_device = pick_device(device)
    dtype = pick_precision(precision, torch_device)
    names = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
    return torch_device, dtype, names[dtype]


def model_case(
    weights: str,
    size: str,
    device: str,
    precision: str = "auto",
    batch: int | None = None,
    *,
    min_frames: int | None = None,
    min_seconds: float = 3.0,
    max_seconds: float = 20.0,
    profile: bool = True,
    windows: np.ndarray | None = None,
    feed: str = "stream",
    compile: str | None = None,  # noqa: A002 - torch.compile's name
    pipeline: bool | None = None,
) -> dict[str, Any]:
    """Synthetic windows straight into a Restorer (no PyAV): one warm-up call, then calls until at least
    `min_frames` (default 2 batches) and `min_seconds`, or `max_seconds` (which one call may overrun).
    feed "stream": the windows' frames, over and over, through derain_stream (as `tmics derain`: each frame
    uploaded once, as uint8, the windows gathered on the device); "windows": the (B, 5, H, W, 3) windows
    themselves into `Restorer.__call__` (each frame converted and uploaded 5 times, as before 0.6).
    `compile`: the DNA and CNA networks through torch.compile in that mode ("default", "reduce-overhead":
    with CUDA graphs, "max-autotune-no-cudagraphs"); the warm-up call, which compiles, is `warmup_s`.
    `pipeline`: Restorer's (None: one batch in flight on CUDA; False: each batch downloaded before the next
    is queued)."""
    from tmics_cli.inference import STAGES as RESTORER_STAGES
    from tmics_cli.inference import Restorer, default_batch, derain_stream
    from tmics_cli.weights import load_model

    assert tuple(RESTORER_STAGES) == MODEL_STAGES
    width, height = parse_size(size)
    torch_device, dtype, precision_name = _precision(device, precision)
    batch = batch or default_batch(torch_device)
    row = _row("model", weights, size, device, precision_name, batch)
    model = load_model(weights)
    row["estimate_mb"] = _estimate_mb(model, width, height, batch)
    if windows is None or windows.shape[0] != batch or windows.shape[2:4] != (height, width):
        windows = synthetic_windows(width, height, batch)
    restorer = Restorer(model, torch_device, dtype, profile=profile, pipeline=pipeline)
    if compile is not None:
        import torch

        for name in ("dna", "cna"):
            setattr(restorer.model, name, torch.compile(getattr(restorer.model, name), mode=compile))
        row["variant"] = f"compiled {compile}"
    if feed not in ("stream", "windows"):
        raise ValueError(f"unknown feed {feed!r}: stream or windows")
    row["feed"] = feed
    if feed == "windows":
        row["variant"] = "per-window upload"
        step = lambda: restorer(windows)  # noqa: E731
    else:
        clip = [*windows[:, 0], *windows[-1, 1:]]  # the windows' frames (cycled: a jump every batch + 4)
        outputs = derain_stream(_cycle(clip), restorer, batch)
        step = lambda: [next(outputs) for _ in range(batch)]  # noqa: E731
    reset_peak_gpu(device)
    reset_peak_rss()
    start = time.perf_counter()
    step()  # warm-up: allocations, kernel choice, first-call costs
    row["warmup_s"] = round(time.perf_counter() - start, 3)
    before = dict(restorer.timings)
    frames, start = 0, time.perf_counter()
    min_frames = min_frames or 2 * batch
    while True:
        step()
        frames += batch
        elapsed = time.perf_counter() - start
        if (frames >= min_frames and elapsed >= min_seconds) or elapsed >= max_seconds:
            break
    ms = {stage: 1000 * (restorer.timings[stage] - before[stage]) / frames for stage in MODEL_STAGES}
    row.update(
        frames=frames,
        seconds=round(elapsed, 3),
        ms_per_frame={stage: round(ms[stage], 2) if stage in ms else None for stage in STAGES},
        model_ms_per_frame=round(sum(ms.values()), 2),
        fps=round(frames / elapsed, 3),
        profiled=profile,
        peak_rss_mb=peak_rss_mb(),
    )
    row["peak_gpu_mb"], row["peak_gpu_reserved_mb"] = peak_gpu_mb(device)
    row["retries"] = restorer.retries  # out-of-memory retries (smaller batches, then tiles)
    row["load_after"] = load()
    return row


def e2e_case(
    src: Path,
    weights: str,
    device: str,
    precision: str = "auto",
    batch: int | None = None,
    profile: bool = True,
    colour: str = "auto",
    preset: str = "medium",
) -> dict[str, Any]:
    """`tmics derain` of `src` (PyAV) with `weights`, the model loaded beforehand and profiled; `colour`:
    where YUV becomes RGB (Derainer's: auto, host, device; recorded as the row's "colour"); `preset`: the
    x264 preset (tmics' default medium)."""
    from tmics_cli.derain import Derainer
    from tmics_cli.video.reader import open_source

    probe = open_source(src)
    size = f"{probe.info.width}x{probe.info.height}"
    probe.close()
    derainer = Derainer(
        weights=weights,
        device=device,
        precision=precision,
        batch=batch,
        overwrite=True,
        colour=colour,
        preset=preset,
    )
    row = _row("e2e", weights, size, device, derainer.precision, derainer.batch)
    row["colour"] = "device" if derainer.device_colour else "host"
    row["preset"] = preset
    restorer, _, _ = derainer.model("custom")  # loaded once, kept by the Derainer for its derain
    restorer.profile = profile
    width, height = parse_size(size)
    row["estimate_mb"] = _estimate_mb(restorer.model, width, height, derainer.batch)
    reset_peak_gpu(device)
    reset_peak_rss()
    with tempfile.TemporaryDirectory() as tmp:
        summary = derainer.derain(src, Path(tmp) / "out.mp4")
    t = summary.timings
    row.update(
        frames=summary.frames,
        seconds=round(summary.seconds, 3),
        ms_per_frame={stage: round(1000 * t[stage] / summary.frames, 2) for stage in STAGES},
        model_ms_per_frame=round(1000 * t["model"] / summary.frames, 2),
        fps=round(summary.fps, 3),
        profiled=profile,
        peak_rss_mb=peak_rss_mb(),  # from the model loaded to the output joined
    )
    row["peak_gpu_mb"], row["peak_gpu_reserved_mb"] = peak_gpu_mb(device)
    row["load_after"] = load()
    return row


def key(row: dict[str, Any]) -> str:
    variant = f" {row['variant']}" if row.get("variant") else ""
    parts = (row["mode"], row["weights"], row["size"], row["device"], row["precision"], f"b{row['batch']}")
    return " ".join(parts) + variant


def run_case(params: dict[str, Any]) -> dict[str, Any]:
    """One case in this process: params as main hands them to --case."""
    import torch

    if params.get("threads"):
        torch.set_num_threads(params["threads"])
    if params["mode"] == "e2e":
        return e2e_case(
            Path(params["input"]),
            params["weights"],
            params["device"],
            params["precision"],
            params.get("batch"),
            colour=params.get("colour", "auto"),
            preset=params.get("preset", "medium"),
        )
    return model_case(
        params["weights"],
        params["size"],
        params["device"],
        params["precision"],
        params.get("batch"),
        max_seconds=params.get("max_seconds", 20.0),
        feed=params.get("feed", "stream"),
    )


def subprocess_case(params: dict[str, Any]) -> dict[str, Any]:
    """One case in a fresh Python, so that its peak memory is its own."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", json.dumps(params)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"case {params} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- tables ------------------------------------------------------------------------------------------------


def _cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    """Plain text: one line per row, ms per frame per stage."""
    head = ["mode", "weights", "size", "device", "prec", "batch", *STAGES, "model", "fps", "RSS MB", "GPU MB"]
    lines = [head]
    for r in rows:
        ms = r["ms_per_frame"]
        lines.append(
            [
                r["mode"] + (f" ({r['variant']})" if r.get("variant") else ""),
                r["weights"],
                r["size"],
                r["device"],
                r["precision"],
                str(r["batch"]),
                *(_cell(ms[s]) for s in STAGES),
                _cell(r["model_ms_per_frame"]),
                _cell(r["fps"], 2),
                _cell(r["peak_rss_mb"], 0),
                _cell(r.get("peak_gpu_mb"), 0),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(
            c.rjust(w) if i > 5 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )


def _fps(fps: float) -> str:
    return f"{fps:.2f}" if fps >= 0.1 else f"{fps:.3f}"


def line(row: dict[str, Any]) -> str:
    """One row as a line of progress."""
    ms = row["ms_per_frame"]
    stages = ", ".join(f"{s} {ms[s]:.1f}" for s in STAGES if ms[s] is not None)
    gpu = f", GPU {row['peak_gpu_mb']:.0f} MB" if row.get("peak_gpu_mb") is not None else ""
    return (
        f"{key(row)}: {row['fps']:.2f} fps, {row['frames']} frames; ms/frame {stages}; "
        f"RSS {row['peak_rss_mb']:.0f} MB{gpu}; load {row['load_before']} -> {row['load_after']}"
    )


def markdown(rows: list[dict[str, Any]]) -> str:
    """The README's table: per device, size and weights, end to end where measured, else model only."""
    chosen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        if r.get("variant"):
            continue
        k = (r["device_name"], r["size"], r["weights"])
        old = chosen.get(k)
        better = (
            old is None
            or (r["mode"] == "e2e") > (old["mode"] == "e2e")
            or (r["mode"] == old["mode"] and r["fps"] > old["fps"])
        )
        if better:
            chosen[k] = r
    out = [
        "| device | size | weights | run | fps | decode | upload | flow | network | download | encode "
        "| peak RSS | peak GPU |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = {"cpu": 0, "cuda": 1, "mps": 2}
    for k in sorted(chosen, key=lambda k: (order.get(chosen[k]["device"], 3), k[0], parse_size(k[1]), k[2])):
        r = chosen[k]
        ms = r["ms_per_frame"]
        gpu = r.get("peak_gpu_mb")
        run = (
            "end to end" if r["mode"] == "e2e" else "model only"
        ) + f", {r['precision']}, batch {r['batch']}"
        out.append(
            f"| {r['device_name']} | {r['size']} | tmics-{r['weights']} | {run} | {_fps(r['fps'])} | "
            + " | ".join(_cell(ms[s], 0 if (ms[s] or 0) >= 10 else 1) for s in STAGES)
            + f" | {r['peak_rss_mb']:.0f} MB | {'-' if gpu is None else f'{gpu:.0f} MB'} |"
        )
    return "\n".join(out)


def read_results(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"cases": {}}
    data = json.loads(path.read_text())
    if "cases" not in data:  # the first version's layout: its rows (no stage split) kept under "v1"
        data = {"cases": {}, "memory": data.get("memory"), "v1": data}
    return data


# --- main --------------------------------------------------------------------------------------------------


def default_frames(device: str, size: str) -> int:
    """End-to-end frames when --frames is not given: short on the CPU (1080p: 6), longer on a GPU."""
    width, height = parse_size(size)
    big = width * height > 640 * 480
    if device == "cpu":
        return 6 if big else 24
    return 100 if big else 200


def memory_check(args: argparse.Namespace, results: dict[str, Any], tmp: Path) -> None:
    """Peak RSS at --memory-frames (100, 1000) frames end to end, each in its own process: flat?"""
    width, height = parse_size(args.memory_size)
    device = args.devices[0] if args.devices else "cpu"
    rows = []
    for frames in args.memory_frames:
        src = make_input(tmp / f"m{frames}.mp4", frames, width, height)
        params = {
            "mode": "e2e",
            "input": str(src),
            "weights": args.weights[0],
            "device": device,
            "precision": args.precision,
            "batch": args.batch,
            "threads": args.threads,
        }
        row = subprocess_case(params)
        rows.append(row)
        print(
            f"{frames} frames at {args.memory_size}: peak RSS {row['peak_rss_mb']} MB, {row['fps']} fps, "
            f"load {row['load_before']} -> {row['load_after']}",
            flush=True,
        )
    growth = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"] - 1
    print(
        f"peak RSS growth from {args.memory_frames[0]} to {args.memory_frames[-1]} frames: {growth:+.1%} "
        "(target: flat, within 10%)"
    )
    results["memory"] = {
        "size": args.memory_size,
        "weights": args.weights[0],
        "runs": rows,
        "growth": round(growth, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), help="WIDTHxHEIGHT ...")
    parser.add_argument("--weights", nargs="+", default=list(WEIGHTS), help="registered weights or files")
    parser.add_argument("--devices", nargs="+", default=None, help="default: every device present")
    parser.add_argument(
        "--precision", default="auto", help="auto: bf16 on CPUs with native BF16 (else fp32), fp16 on a GPU"
    )
    parser.add_argument("--batch", type=int, default=None, help="default: tmics' own per device")
    parser.add_argument(
        "--frames", type=int, default=None, help="end-to-end frames (default: by device, size)"
    )
    parser.add_argument("--model-only", action="store_true", help="synthetic windows, no PyAV, no video")
    parser.add_argument("--also-model", action="store_true", help="model-only cases beside end-to-end ones")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="a model-only case's time budget")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--feed",
        nargs="+",
        choices=("stream", "windows"),
        default=["stream"],
        help="model-only: stream (frames uploaded once, as tmics derain) and/or windows (per-window uploads)",
    )
    parser.add_argument("--memory", action="store_true", help="peak RSS at --memory-frames: flat in length?")
    parser.add_argument("--memory-size", default="320x240")
    parser.add_argument("--memory-frames", type=int, nargs=2, default=[100, 1000])
    parser.add_argument("--json", type=Path, default=RESULTS, help="results file (updated, not replaced)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, help="fold these files' rows in")
    parser.add_argument("--markdown", action="store_true", help="print the README table from --json")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    results = read_results(args.json)
    if args.markdown:
        print(markdown(list(results["cases"].values())))
        return
    if args.merge:
        for path in args.merge:
            rows = read_results(path)["cases"]
            results["cases"].update(rows)
            print(f"{path}: {len(rows)} rows")
    elif args.memory:
        with tempfile.TemporaryDirectory() as tmp:
            memory_check(args, results, Path(tmp))
    else:
        cores, busy = os.cpu_count() or 1, os.getloadavg()[0]
        if busy > cores / 2:
            print(
                f"note: load {busy:.1f} on {cores} cores; CPU numbers are slower and noisier than on an idle "
                "machine (--threads 1 keeps torch from waiting on a thread that shares its core)"
            )
        if has_pyav():  # what a GPU encode could use; tmics derain uses one only when --codec names it
            from tmics_cli.video.encoders import hardware_encoders

            print("hardware encoders (probed):", "; ".join(str(e) for e in hardware_encoders(probe=True)))
        devices = args.devices or devices_present()
        modes = ["model"] if args.model_only else ["e2e", *(["model"] if args.also_model else [])]
        if "e2e" in modes and not has_pyav():
            print("PyAV is missing: end-to-end cases skipped, model-only cases run instead")
            modes = ["model"]
        done: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory() as tmp:
            for size in args.sizes:
                width, height = parse_size(size)
                clips: dict[int, Path] = {}
                for device in devices:
                    for weights in args.weights:
                        runs = [(m, f) for m in modes for f in (args.feed if m == "model" else [""])]
                        for mode, feed in runs:
                            params = {
                                "feed": feed,
                                "mode": mode,
                                "weights": weights,
                                "size": size,
                                "device": device,
                                "precision": args.precision,
                                "batch": args.batch,
                                "threads": args.threads,
                                "max_seconds": args.max_seconds,
                            }
                            if mode == "e2e":
                                n = args.frames or default_frames(device, size)
                                if n not in clips:
                                    clips[n] = make_input(Path(tmp) / f"{size}-{n}.mp4", n, width, height)
                                params["input"] = str(clips[n])
                            row = subprocess_case(params)
                            results["cases"][key(row)] = row
                            done.append(row)
                            print(line(row), flush=True)
        print()
        print(
            "ms per frame; decode and encode are busy time in their own threads (overlapped with the model)"
        )
        print(table(done))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
