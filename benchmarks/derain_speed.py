"""End-to-end `tmics derain` speed and memory: frames per second, the decode / model / encode split, and
peak resident memory, each case in a fresh process.

    python benchmarks/derain_speed.py                       # 640x480, light and heavy, 40 frames, this device
    python benchmarks/derain_speed.py --size 1920x1080 --device cuda --precision bf16 --frames 300
    python benchmarks/derain_speed.py --memory              # peak RSS: 100 vs 1000 frames (flat?)
    python benchmarks/derain_speed.py --rain light light-full   # any registered weights

The input is the bundled sample clip's frames resized to the asked size, looped to the asked length and
encoded as H.264 once per size (in a temporary folder). Results are printed and written to
benchmarks/results/derain_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "derain_speed.json"


def make_input(path: Path, frames: int, width: int, height: int) -> Path:
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


def run_case(args: argparse.Namespace) -> dict:
    """One derain run in this process; returns its numbers."""
    import torch

    from tmics_cli.derain import RAIN_LEVELS, derain_video

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(args.input)
        name = args.rain[0]  # a rain level, or registered weights such as light-full
        summary = derain_video(
            src,
            Path(tmp) / "out.mp4",
            rain=name if name in RAIN_LEVELS else "light",
            weights=None if name in RAIN_LEVELS else name,
            device=args.device,
            precision=args.precision,
            batch=args.batch,
        )
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {
        "rain": args.rain[0],
        "frames": summary.frames,
        "seconds": round(summary.seconds, 2),
        "fps": round(summary.fps, 3),
        "device": summary.device,
        "precision": summary.precision,
        "decode_s": round(summary.timings["decode"], 2),
        "model_s": round(summary.timings["model"], 2),
        "encode_s": round(summary.timings["encode"], 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "peak_gpu_mb": None if gpu_peak is None else round(gpu_peak, 1),
    }


def subprocess_case(input_path: Path, rain: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--case", "--input", str(input_path), "--rain", rain]
    cmd += ["--device", args.device, "--precision", args.precision]
    if args.batch:
        cmd += ["--batch", str(args.batch)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument(
        "--rain", nargs="+", default=["light", "heavy"], help="rain levels or registered weights (light-full)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--memory", action="store_true", help="peak RSS at 100 vs 1000 frames")
    parser.add_argument("--memory-size", default="160x120")
    parser.add_argument("--case", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=RESULTS, help="results file (updated, not replaced)")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args)))
        return
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    machine = f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}"
    with tempfile.TemporaryDirectory() as tmp:
        if args.memory:
            w, h = (int(v) for v in args.memory_size.split("x"))
            rows = []
            for frames in (100, 1000):
                src = make_input(Path(tmp) / f"m{frames}.mp4", frames, w, h)
                rows.append(subprocess_case(src, args.rain[0], args))
                row = rows[-1]
                print(f"{frames} frames at {w}x{h}: peak RSS {row['peak_rss_mb']} MB, {row['fps']} fps")
            growth = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"] - 1
            print(f"peak RSS growth from 100 to 1000 frames: {growth:+.1%} (target: within 10%)")
            results["memory"] = {
                "size": args.memory_size,
                "runs": rows,
                "growth": round(growth, 4),
                "machine": machine,
            }
        else:
            w, h = (int(v) for v in args.size.split("x"))
            src = make_input(Path(tmp) / "in.mp4", args.frames, w, h)
            for rain in args.rain:
                row = subprocess_case(src, rain, args)
                print(
                    f"{rain:10s} {args.size} {row['device']} {row['precision']}: {row['fps']:.2f} fps "
                    f"({row['frames']} frames in {row['seconds']} s; decode {row['decode_s']} s, model "
                    f"{row['model_s']} s, encode {row['encode_s']} s in their threads), peak RSS "
                    f"{row['peak_rss_mb']} MB"
                    + (f", GPU {row['peak_gpu_mb']} MB" if row["peak_gpu_mb"] else "")
                )
                key = f"{rain}-{args.size}-{row['device']}-{row['precision']}"
                results[key] = {**row, "size": args.size, "machine": machine}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
