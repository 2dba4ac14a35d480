"""The speed issue's GPU measurement in one command, for any CUDA machine with the project checked out: no
network, nothing to install (torch, numpy and opencv; PyAV only for the end-to-end part, skipped without
it), within 4 minutes, writing DIR/gpu_check.json after every case so that a run cut short keeps what it
measured. Rows are derain_speed.py's (`derain_speed.py --merge DIR/gpu_check.json` folds them in).

    bash benchmarks/gpu_check.sh "$OUT"                   # the GPU machine: PYTHONUNBUFFERED, timeout, PyAV
    python benchmarks/gpu_check.py --out DIR              #   wheel from .whl/ if carried, then this
    python benchmarks/gpu_check.py --dry-run --out /tmp/gc   # here: the same plan, tiny sizes, on the CPU,
                                                             #   one timed call a case, bf16 for fp16

Parts, in this order, each with a share of --budget (220 s), time a part leaves unused going to the next;
a case is skipped (and listed in "skipped") when it would not end within its part's time, as long as the
part's last case took:

    stages    35%  model only at 1920x1080: light, light-full x fp16, fp32 x batch 1, 4, 8 (profiled split)
    variants   8%  light 1080p fp16 b8 with the per-window upload (feed windows: against the stages' rows);
                   light, light-full 1080p fp16 batch 8: profile off (what the syncs cost), profile and
                   pipeline off (one batch in flight, the default, against none); cudnn.benchmark
    small      7%  model only at 640x480: light, light-full, fp16, batch 8
    colour     2%  YUV 4:2:0 -> RGB of a 1080p frame: swscale on the host (the decode thread's way on the CPU,
                   PyAV) against colour_torch on the device (planes uploaded, converted to uint8), and the
                   upload of the RGB frame alone (the e2e part runs the whole path both ways)
    memory    20%  3840x2160: light, light-full x fp16, fp32 x batch 1, 8; peak GPU memory against tmics'
                   estimate (guards.bytes_per_pixel, fp32; bound: 1.5 times it) and out-of-memory retries
    retry      3%  out of GPU memory for real: light 1080p fp16 batch 8 over 24 frames, then again with the
                   process's GPU memory capped (torch.cuda.set_per_process_memory_fraction) at what it held
                   plus 40% of that run's peak growth: the batch it went on with, retries, the warnings, the
                   frames and their largest difference from the uncapped run (on the CPU, the dry run: the
                   windows of more than half a batch refused, as in the suite)
    e2e       25%  end to end (PyAV): 640x480 (160 frames) and 1920x1080 (80), light-full then light, fp16,
                   b8, YUV -> RGB on the device (the GPU default); light-full 1080p also with it on the
                   host, and with x264 veryfast (medium is the default)

Not in the default run, as a compile takes a minute or more before its first frame: `--parts compile` (a
second call, e.g. `bash benchmarks/gpu_check.sh "$OUT" --parts compile --budget 150`, all its budget):

    compile        light-full 1080p fp16 b8 with the DNA and CNA through torch.compile, modes reduce-overhead
                   (CUDA graphs) and default: ms per frame against the stages' row, compile time (warmup_s)

Model-only cases feed derain_stream the frames of synthetic uint8 windows (derain_speed.synthetic_windows;
each frame uploaded once, pinned, as uint8; "feed": "windows" gives them to the Restorer whole), one warm-up
call then at least two batches and 1.5 s (at most 5 s); memory cases one warm-up and one timed call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import derain_speed as ds  # noqa: E402

CAP_GROWTH = 0.4  # the retry part's cap: the memory held before its first run plus this share of its growth
MARGIN = 1.5  # the stated bound: peak GPU memory within tmics' estimate times guards.MARGIN
BUDGET = 220.0  # seconds for all parts; gpu_check.sh stops the run at 235
SHARES = {"stages": 0.35, "variants": 0.08, "small": 0.07, "colour": 0.02, "memory": 0.20, "retry": 0.03}
SHARES["e2e"] = 0.25
# torch.compile takes a minute or more before its first frame: its own run, `--parts compile` (all its budget)
SHARES["compile"] = 1.0
DEFAULT_PARTS = [part for part in SHARES if part != "compile"]


def plan(dry: bool) -> dict[str, list[dict[str, Any]]]:
    """The cases of each part: derain_speed.model_case / e2e_case keyword sets."""
    hd, sd, uhd = ("64x36", "32x24", "128x72") if dry else ("1920x1080", "640x480", "3840x2160")
    half = "bf16" if dry else "fp16"  # the CPU has no fp16
    both = ("light", "light-full")
    quick = {"min_seconds": 0.0, "max_seconds": 0.0} if dry else {"min_seconds": 1.5, "max_seconds": 5.0}
    stages = [
        {"weights": w, "size": hd, "precision": p, "batch": b, **quick}
        for w in both
        for p in (half, "fp32")
        for b in (1, 4, 8)
    ]
    # the per-window upload (each frame converted and uploaded 5 times, as floats) against the default
    # feed, derain_stream's (each frame uploaded once as uint8, windows gathered on the GPU): stages, b8
    variants = [{"weights": "light", "size": hd, "precision": half, "batch": 8, "feed": "windows", **quick}]
    variants += [
        {"weights": w, "size": hd, "precision": half, "batch": 8, "profile": False, **quick} for w in both
    ]
    # one batch in flight (the CUDA default) against each batch downloaded before the next is queued
    variants += [
        {"weights": w, "size": hd, "precision": half, "batch": 8, "profile": False, "pipeline": False} | quick
        for w in both
    ]
    variants += [
        {"weights": w, "size": hd, "precision": half, "batch": 8, "cudnn_benchmark": True, **quick}
        for w in both
    ]
    small = [{"weights": w, "size": sd, "precision": half, "batch": 8, **quick} for w in both]
    memory = [
        {
            "weights": w,
            "size": uhd,
            "precision": p,
            "batch": b,
            "min_frames": b,
            "min_seconds": 0.0,
            "max_seconds": 0.0,
        }
        for w in both
        for p in (half, "fp32")
        for b in (1, 8)
    ]
    # light-full first (the GPU's default for light rain); at 1080p also with YUV -> RGB on the host (the
    # CPU's way) against the default on a GPU, the device (colour_on_device), and with x264 veryfast against
    # medium (can the encoder keep up with the model?)
    e2e = [
        {
            "mode": "e2e",
            "weights": w,
            "size": size,
            "frames": (8 if dry else n),
            "precision": half,
            "batch": 8,
            **extra,
        }
        for w, size, n, extra in (
            ("light-full", sd, 160, {}),
            ("light-full", hd, 80, {}),
            ("light-full", hd, 80, {"colour": "host"}),
            ("light-full", hd, 80, {"preset": "veryfast"}),
            ("light", sd, 160, {}),
            ("light", hd, 80, {}),
        )
    ]
    colour = [{"mode": "colour", "size": hd}]
    retry = [{"mode": "retry", "weights": "light", "size": hd, "precision": half, "batch": 8, "frames": 24}]
    # torch.compile of the DNA and CNA (fused kernels, CUDA graphs): does it pay back, and how long does it
    # take (warmup_s)? Its own run (--parts compile); a row is written when its case ends
    compiled = [
        {"weights": "light-full", "size": hd, "precision": half, "batch": 8, "compile": mode, **quick}
        for mode in ("reduce-overhead", "default")
    ]
    parts = {"stages": stages, "variants": variants, "small": small, "colour": colour, "memory": memory}
    parts["retry"] = retry
    return {**parts, "e2e": e2e, "compile": compiled}


def _ms_per_call(fn: Any, device: str, seconds: float) -> float:
    """Mean ms of fn() over at least 3 calls and `seconds` (after one warm-up), the device synchronized."""
    import torch

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    fn()
    sync()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        fn()
        calls += 1
    sync()
    return round((time.perf_counter() - start) * 1000 / calls, 3)


def colour_case(device: str, size: str, seconds: float) -> dict[str, Any]:
    """ms per frame of YUV 4:2:0 (BT.709, limited range) -> RGB uint8: swscale on the host (PyAV, if any),
    colour_torch on `device` including the planes' upload, and uploading the host's RGB frame alone."""
    import numpy as np
    import torch

    from tmics_cli.video.colour_torch import yuv_to_rgb_uint8

    width, height = ds.parse_size(size)
    rng = np.random.default_rng(0)
    y = rng.integers(16, 236, (height, width), dtype=np.uint8)
    u, v = rng.integers(16, 241, (2, height // 2, width // 2), dtype=np.uint8)
    rgb = np.ascontiguousarray(np.stack([y, y, y], -1))
    dev = torch.device(device)
    pinned = dev.type == "cuda"
    host = [torch.from_numpy(p) for p in (y, u, v)]
    host = [t.pin_memory() for t in host] if pinned else host
    rgb_host = torch.from_numpy(rgb).pin_memory() if pinned else torch.from_numpy(rgb)

    def on_device() -> None:
        planes = [t.to(dev, non_blocking=pinned) for t in host]
        yuv_to_rgb_uint8(*planes, "ITU709", "MPEG")

    row: dict[str, Any] = {
        "mode": "colour", "size": size, "device": device,
        "device_ms": _ms_per_call(on_device, device, seconds),
        "rgb_upload_ms": _ms_per_call(lambda: rgb_host.to(dev, non_blocking=pinned), device, seconds),
        "swscale_ms": None,
    }  # fmt: skip
    if ds.has_pyav():
        import av

        from tmics_cli.video.colour import ColourTags, frame_to_rgb

        frame = av.VideoFrame(width, height, "yuv420p")
        for plane, data in zip(frame.planes, (y, u, v), strict=True):
            rows, cols = data.shape
            np.frombuffer(plane, np.uint8).reshape(rows, plane.line_size)[:, :cols] = data
        tags = ColourTags(1, 1)  # BT.709, limited range
        frame.colorspace, frame.color_range = tags.colorspace, tags.color_range
        row["swscale_ms"] = _ms_per_call(lambda: frame_to_rgb(frame, tags), "cpu", seconds)
    return row


def retry_case(
    device: str, weights: str, size: str, precision: str, batch: int, frames: int
) -> dict[str, Any]:
    """derain_stream over `frames` synthetic frames, then again with less memory than its batch needs: on
    CUDA the process's GPU memory capped (CAP_GROWTH), on the CPU the windows of more than half a batch
    refused (as tests/test_out_of_memory.py does). What Restorer did (batch_limit, tile, retries, its
    OutOfMemoryWarnings) and how the frames compare with the uncapped run's."""
    import gc
    import warnings

    import numpy as np
    import torch

    from tmics_cli.inference import OutOfMemoryWarning, Restorer, derain_stream
    from tmics_cli.weights import load_model

    width, height = ds.parse_size(size)
    torch_device, dtype, precision_name = ds._precision(device, precision)
    cuda = torch_device.type == "cuda"
    windows = ds.synthetic_windows(width, height, batch)
    clip = [*windows[:, 0], *windows[-1, 1:]]
    clip = (clip * -(-frames // len(clip)))[:frames]
    model = load_model(weights)

    def run(restorer: Restorer) -> tuple[list[np.ndarray], float, list[str]]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", OutOfMemoryWarning)
            start = time.perf_counter()
            out = list(derain_stream(iter(clip), restorer, batch))
            seconds = round(time.perf_counter() - start, 3)
        return out, seconds, [str(w.message) for w in caught if issubclass(w.category, OutOfMemoryWarning)]

    row = ds._row("retry", weights, size, device, precision_name, batch)
    plain = Restorer(model, torch_device, dtype)
    if cuda:
        torch.cuda.synchronize()
        held = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    reference, row["plain_s"], _ = run(plain)
    capped = Restorer(model, torch_device, dtype)
    if cuda:
        growth = torch.cuda.max_memory_allocated() - held
        del plain
        gc.collect()
        torch.cuda.empty_cache()
        cap = held + int(CAP_GROWTH * growth)
        total = torch.cuda.get_device_properties(torch_device).total_memory
        row.update(
            held_mb=round(held / 2**20, 1), growth_mb=round(growth / 2**20, 1), cap_mb=round(cap / 2**20, 1)
        )
        torch.cuda.set_per_process_memory_fraction(cap / total, torch_device)
    else:
        assemble = capped.assemble

        def half_batch(frames_: list[Any]) -> Any:
            if len(frames_) > 5 * max(1, batch // 2):
                raise torch.OutOfMemoryError("out of memory (dry run: more than half a batch of windows)")
            return assemble(frames_)

        capped.assemble = half_batch  # type: ignore[method-assign]
    try:
        got, row["capped_s"], told = run(capped)
    except MemoryError as exc:
        got, told = [], []
        row["error"] = str(exc)
    finally:
        if cuda:
            torch.cuda.set_per_process_memory_fraction(1.0, torch_device)
            torch.cuda.empty_cache()
    diffs = [int(np.abs(a.astype(int) - b).max()) for a, b in zip(got, reference, strict=False)]
    row.update(
        frames=len(got),
        frames_expected=frames,
        batch_limit=capped.batch_limit,
        tile=capped.tile,
        retries=capped.retries,
        warnings=told,
        max_level_diff=max(diffs) if diffs else None,
    )
    return row


def info(device: str) -> dict[str, Any]:
    import cv2
    import torch

    out: dict[str, Any] = {
        "device": device,
        "device_name": ds.device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "machine": ds.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "opencv_threads": cv2.getNumThreads(),
        "pyav": ds.has_pyav(),
        "load": os.getloadavg(),
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        out["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        try:
            smi = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv"]
            out["nvidia_smi"] = subprocess.run(smi, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    if out["pyav"]:  # which hardware encoders this PyAV build has, and whether one frame encodes here
        from tmics_cli.video.encoders import hardware_encoders

        out["hardware_encoders"] = [str(e) for e in hardware_encoders(probe=True)]
    return out


class Report:
    """gpu_check.json (gpu_check-PARTS.json for other parts than the default run's), rewritten whole
    (atomically) after every case."""

    def __init__(self, folder: Path, header: dict[str, Any], parts: list[str] = DEFAULT_PARTS) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        name = "gpu_check" if parts == DEFAULT_PARTS else "gpu_check-" + "-".join(parts)
        self.path = folder / f"{name}.json"
        self.data: dict[str, Any] = {"info": header, "cases": {}, "skipped": [], "errors": [], "parts": {}}
        self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        os.replace(tmp, self.path)


def run_case(case: dict[str, Any], device: str, tmp: Path) -> dict[str, Any]:
    import torch

    case = dict(case)
    mode = case.pop("mode", "model")
    cudnn = case.pop("cudnn_benchmark", False)
    variant = "cudnn.benchmark" if cudnn else ("profile off" if case.get("profile") is False else "")
    if case.get("pipeline") is False:
        variant = "profile off, pipeline off"
    if case.get("colour"):
        variant = f"colour {case['colour']}"
    if case.get("preset"):
        variant = f"x264 {case['preset']}"
    torch.backends.cudnn.benchmark = cudnn
    try:
        if mode == "e2e":
            width, height = ds.parse_size(case["size"])
            src = tmp / f"{case['size']}-{case['frames']}.mp4"
            if not src.exists():
                ds.make_input(src, case["frames"], width, height)
            row = ds.e2e_case(
                src,
                case["weights"],
                device,
                case["precision"],
                case["batch"],
                colour=case.get("colour", "auto"),
                preset=case.get("preset", "medium"),
            )
        else:
            weights, size = case.pop("weights"), case.pop("size")
            precision, batch = case.pop("precision"), case.pop("batch")
            row = ds.model_case(weights, size, device, precision, batch, **case)
    finally:
        torch.backends.cudnn.benchmark = False
    if variant:
        row["variant"] = variant
    if row.get("estimate_mb") and row.get("peak_gpu_mb"):
        row["peak_over_estimate"] = round(row["peak_gpu_mb"] / row["estimate_mb"], 3)
        row["within_bound"] = row["peak_over_estimate"] <= MARGIN
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_check_out")))
    parser.add_argument("--budget", type=float, default=None, help=f"seconds in all (default {BUDGET:.0f})")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny sizes on the CPU: proves the script runs"
    )
    parser.add_argument("--parts", nargs="+", default=DEFAULT_PARTS, choices=list(SHARES))
    args = parser.parse_args()
    begin = time.perf_counter()
    import torch

    device = args.device or ("cpu" if args.dry_run else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_check.py: no CUDA GPU here (use --dry-run or --device cpu to try it)")
    budget = args.budget or (120.0 if args.dry_run else BUDGET)
    if args.dry_run:
        torch.set_num_threads(1)  # a busy small CPU: one thread is steadier
    deadline = begin + budget
    header = info(device)
    header.update(budget_s=budget, dry_run=args.dry_run)
    report = Report(args.out, header, args.parts)
    print(
        f"gpu_check: {header['device_name']}, torch {header['torch']}, {header['cpu_count']} cores, "
        f"PyAV {'yes' if header['pyav'] else 'no'}; budget {budget:.0f} s -> {report.path}",
        flush=True,
    )
    cases = plan(args.dry_run)
    with tempfile.TemporaryDirectory() as tmp:
        share = 0.0
        for part in args.parts:
            start = time.perf_counter()
            share += SHARES[part]
            part_end = min(deadline, begin + share * budget)  # time a part leaves unused goes to the next
            last = 0.0  # the part's last case's seconds: the next is skipped if it would not fit
            for case in cases[part]:
                name = f"{part}: " + " ".join(f"{k}={v}" for k, v in case.items() if "seconds" not in k)
                now = time.perf_counter()
                if part == "e2e" and not header["pyav"]:
                    report.data["skipped"].append(f"{name} (no PyAV)")
                    continue
                if now + last > part_end:
                    report.data["skipped"].append(f"{name} (time: {part_end - now:.0f} s left of the part)")
                    print(f"skipped {name}: the part's time is spent", flush=True)
                    continue
                if case.get("mode") in ("colour", "retry"):  # rows of their own, not derain_speed's
                    mode = case["mode"]
                    try:
                        if mode == "colour":
                            row = colour_case(device, case["size"], 0.05 if args.dry_run else 1.0)
                        else:
                            row = retry_case(device, **{k: v for k, v in case.items() if k != "mode"})
                    except Exception as exc:  # noqa: BLE001 - recorded; the rest go on
                        report.data["errors"].append(f"{name}: {type(exc).__name__}: {exc}"[:500])
                        print(f"error {name}: {exc}", flush=True)
                        report.write()
                        continue
                    report.data.setdefault(mode, []).append(row)
                    report.write()
                    print(f"[{time.perf_counter() - begin:5.0f} s] {mode} {row}", flush=True)
                    last = time.perf_counter() - now
                    continue
                try:
                    row = run_case(case, device, Path(tmp))
                except Exception as exc:  # noqa: BLE001 - one case's failure is recorded; the rest go on
                    report.data["errors"].append(f"{name}: {type(exc).__name__}: {exc}"[:500])
                    print(f"error {name}: {exc}", flush=True)
                    report.write()
                    continue
                last = time.perf_counter() - now
                row["part"] = part
                report.data["cases"][ds.key(row)] = row
                report.write()
                print(f"[{time.perf_counter() - begin:5.0f} s] {ds.line(row)}", flush=True)
            report.data["parts"][part] = round(time.perf_counter() - start, 1)
            report.write()
    report.data["seconds"] = round(time.perf_counter() - begin, 1)
    report.write()
    rows = list(report.data["cases"].values())
    print(ds.table(rows))
    print(
        f"{len(rows)} cases, {len(report.data['skipped'])} skipped, {len(report.data['errors'])} errors, "
        f"{report.data['seconds']} s; wrote {report.path}"
    )


if __name__ == "__main__":
    main()
