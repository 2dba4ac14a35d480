"""What segments and resume cost, and what local workers give (numbers, not a test).

One generated clip (3,000 frames by default) is derained losslessly (--crf 0) by `tmics derain` as a user
runs it, each run a fresh process timed from the outside:

    one pass      --segment-frames larger than the clip: a single segment
    segmented     the default segments (about 10 s of video each)
    killed x3     segmented, SIGKILL at three random moments (seeded), then the same command until done
    workers 2     segmented, --workers 2

and it checks that every output decodes to exactly the frames of the one-pass run. Prints a table and
writes JSON (--json). The overhead of segmenting is `segmented / one pass - 1` (target: under 5%).

    python benchmarks/resume_overhead.py --json benchmarks/results/resume_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def make_clip(path: Path, frames: int, w: int, h: int) -> None:
    """A drifting texture with bright streaks (some rain for the model to see), H.264 at 25 fps."""
    import av

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 12800)
        stream.options = {"crf": "18", "preset": "fast"}
        for i in range(frames):
            x = xx + 2 * i
            rgb = np.stack(
                [
                    128 + 90 * np.sin(x / 7) * np.cos(yy / 9),
                    120 + 70 * np.cos((x - yy) / 11),
                    100 + 50 * np.sin(yy / 5),
                ],
                -1,
            )
            for _ in range(w * h // 400):  # short bright streaks
                cx, cy = rng.integers(0, w), rng.integers(0, h - 8)
                rgb[cy : cy + 8, cx] += 60
            frame = av.VideoFrame.from_ndarray(rgb.clip(0, 255).astype(np.uint8), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = i * 512, stream.time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def command(src: Path, dst: Path, extra: list[str], weights: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "tmics_cli", "derain", str(src), "-o", str(dst), "--crf", "0", "-q"]
    cmd += ["--device", "cpu", *extra]
    return cmd + (["--weights", weights] if weights else [])


def run(cmd: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def killed(cmd: list[str], kills: int, seconds: float, seed: int) -> tuple[float, list[float]]:
    """Run `cmd`, SIGKILL it at `kills` random moments within `seconds` of work, then run it to the end;
    returns the total wall time and the moments."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    moments = sorted(random.Random(seed).uniform(0.1, 0.9) * seconds for _ in range(kills))
    total, previous = 0.0, 0.0
    for moment in moments:
        began = time.perf_counter()
        process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            process.wait(timeout=max(1.0, moment - previous))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
        total += time.perf_counter() - began
        previous = moment
    total += run(cmd)
    return total, moments


def frames_of(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="yuv420p") for frame in container.decode(video=0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--size", default="160x120", help="WxH of the generated clip")
    parser.add_argument("--weights", default=None, help="default: the shipped light weights")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        src = root / "clip.mp4"
        make_clip(src, args.frames, w, h)
        times = {}
        outputs = {}
        for name, extra in (
            ("one pass", ["--segment-frames", str(args.frames + 1)]),
            ("segmented", []),
            ("workers 2", ["--workers", "2"]),
        ):
            dst = root / f"{name.replace(' ', '-')}.mkv"
            times[name] = run(command(src, dst, extra, args.weights))
            outputs[name] = dst
        dst = root / "killed.mkv"
        times["killed x3"], moments = killed(
            command(src, dst, [], args.weights), 3, times["segmented"], args.seed
        )
        outputs["killed x3"] = dst
        reference = frames_of(outputs["one pass"])
        identical = {
            name: all(np.array_equal(a, b) for a, b in zip(reference, frames_of(path), strict=True))
            for name, path in outputs.items()
        }
    base = times["one pass"]
    rows = [
        {
            "run": name,
            "seconds": round(seconds, 2),
            "fps": round(args.frames / seconds, 2),
            "vs one pass": round(seconds / base, 3),
            "identical frames": identical[name],
        }
        for name, seconds in times.items()
    ]
    result = {
        "benchmark": "resume_overhead",
        "frames": args.frames,
        "size": args.size,
        "weights": args.weights or "light (shipped)",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "kill_moments_s": [round(m, 1) for m in moments],
        "segmenting_overhead": round(times["segmented"] / base - 1, 4),
        "runs": rows,
    }
    print(f"{'run':<12} {'seconds':>8} {'fps':>7} {'vs one pass':>12}  identical frames")
    for row in rows:
        print(
            f"{row['run']:<12} {row['seconds']:>8.1f} {row['fps']:>7.2f} {row['vs one pass']:>12.3f}  "
            f"{row['identical frames']}"
        )
    print(f"segmenting overhead: {result['segmenting_overhead']:+.1%}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
