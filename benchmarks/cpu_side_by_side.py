"""Issue 27's CPU target, measured side by side: `tmics derain` of one clip by an earlier commit and by this
tree, whole process each (start-up, model load, decode, model, encode, join), the two interleaved in one
run on one machine, so that load and thermal drift fall on both alike.

    python benchmarks/cpu_side_by_side.py                           # e2dfff5 (before issue 27) vs this tree
    python benchmarks/cpu_side_by_side.py --baseline REV --size 640x480 --frames 60 --rounds 3
    python benchmarks/cpu_side_by_side.py --weights light light-full --threads 2 --json out.json

The earlier commit is exported with `git archive` into a temporary folder and run from there with
PYTHONPATH pointing at it (the same Python, torch and PyAV: only tmics' code differs); each run prints
which tmics it imported, and the script checks it. The clip is derain_speed.py's (the bundled sample
resized, forward and back, H.264). Both sides run with their own defaults (precision auto, batch,
threads unless --threads), as a user would; the same weights file is given to both. Each round runs the
two sides in alternating order; the result is the median wall time per side, per weights, and the
speed-up (baseline / new). The two outputs are compared frame by frame (Y-PSNR of new against baseline),
so that a speed-up that changed the pictures shows.

Results go to benchmarks/results/cpu_side_by_side.json (--json to write elsewhere).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from derain_speed import load, machine, make_input, parse_size  # noqa: E402

RESULTS = HERE / "results" / "cpu_side_by_side.json"
BASELINE = "e2dfff5"  # main when issue 27 was filed: the "today" of its CPU target
WEIGHTS = {"light": "tmics-light", "light-full": "tmics-light-full", "heavy": "tmics-heavy"}
WHICH = "import sys, runpy, tmics_cli; print('tmics from', tmics_cli.__file__, file=sys.stderr); "


def export(rev: str, into: Path) -> str:
    """The tree of `rev` under `into` (git archive); returns the full commit id."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    archive = into.with_suffix(".tar")
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), commit], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    archive.unlink()
    return commit


def this_tree() -> str:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "tmics_cli"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return head.stdout.strip() + ("+changes" if dirty else "")


def derain(tree: Path, clip: Path, out: Path, weights: Path, threads: int | None) -> float:
    """Seconds of one whole `tmics derain` process run from `tree`."""
    args = [str(clip), "-o", str(out), "--weights", str(weights), "--overwrite", "-q"]
    if threads:
        args += ["--threads", str(threads)]
    code = WHICH + "sys.argv = ['tmics', 'derain', *sys.argv[1:]]; runpy.run_module('tmics_cli')"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    run = [sys.executable, "-c", code, *args]  # in out's folder: '' on sys.path must not be a checkout
    done = subprocess.run(run, env=env, capture_output=True, text=True, cwd=out.parent)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"tmics derain from {tree} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    imported = next((ln for ln in done.stderr.splitlines() if ln.startswith("tmics from")), "")
    if not imported.startswith(f"tmics from {tree}"):
        raise SystemExit(f"the run from {tree} imported another tmics: {imported!r}")
    return seconds


def frames_of(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="gray") for f in container.decode(video=0)]  # Y plane, 8 bit


def y_psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    if len(a) != len(b):
        raise SystemExit(f"the outputs differ in length: {len(a)} vs {len(b)} frames")
    mse = float(np.mean([np.mean((x.astype(np.float64) - y) ** 2) for x, y in zip(a, b, strict=True)]))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--baseline", default=BASELINE, help=f"the earlier commit (default {BASELINE})")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--weights", nargs="+", default=["light", "light-full"], choices=sorted(WEIGHTS))
    parser.add_argument("--threads", type=int, default=None, help="--threads for both sides (default theirs)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    width, height = parse_size(args.size)

    with tempfile.TemporaryDirectory(prefix="tmics-sbs-") as tmp:
        tmp_path = Path(tmp)
        old_tree = tmp_path / "baseline"
        old_commit = export(args.baseline, old_tree)
        sides = {"baseline": old_tree, "new": ROOT}
        clip = make_input(tmp_path / f"clip-{args.size}.mp4", args.frames, width, height)
        rows: list[dict[str, Any]] = []
        for name in args.weights:
            weights = ROOT / "weights" / f"{WEIGHTS[name]}.safetensors"
            times: dict[str, list[float]] = {side: [] for side in sides}
            outputs = {side: tmp_path / f"{side}-{name}.mp4" for side in sides}
            load_before = load()
            for r in range(args.rounds):
                order = list(sides) if r % 2 == 0 else list(reversed(sides))
                for side in order:
                    seconds = derain(sides[side], clip, outputs[side], weights, args.threads)
                    times[side].append(round(seconds, 2))
                    per_frame = seconds / args.frames * 1000
                    print(f"{name} round {r + 1} {side}: {seconds:.1f} s ({per_frame:.0f} ms/frame)")
            apart = y_psnr(frames_of(outputs["new"]), frames_of(outputs["baseline"]))
            median = {side: statistics.median(t) for side, t in times.items()}
            row = {
                "weights": name, "size": args.size, "frames": args.frames, "rounds": args.rounds,
                "seconds": times, "median_s": median,
                "ms_per_frame": {side: round(m / args.frames * 1000, 1) for side, m in median.items()},
                "speedup": round(median["baseline"] / median["new"], 3),
                "y_psnr_new_vs_baseline_db": round(apart, 2),
                "load_before": load_before, "load_after": load(),
            }  # fmt: skip
            print(
                f"{name}: baseline {median['baseline']:.1f} s, new {median['new']:.1f} s: "
                f"{row['speedup']:.2f}x; outputs {row['y_psnr_new_vs_baseline_db']} dB apart (Y-PSNR)"
            )
            rows.append(row)

    result = {
        "date": datetime.date.today().isoformat(), "machine": machine(),
        "baseline": old_commit, "new": this_tree(), "threads": args.threads or "default",
        "what": "whole `tmics derain` processes, median of rounds alternating the order", "rows": rows,
    }  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
