"""Flow accuracy benchmark: which optical-flow estimator should OFM use by default?

Compares OpenCV DIS (presets ultrafast / fast / medium), PatchInverseSearchFlow ("device-medium": DIS
medium's scheme in PyTorch ops, tmics_cli.model.device_flow) and PyramidFlowNet, untrained (zero flow, a
sanity baseline) and after --train-minutes of CPU pre-training (tmics_cli.training.flow) on clips that
are NOT evaluated. Whole clips are held out (default: walk, city, and bikes from frame 201 on).

  Test A, synthetic motion with known flow: held-out frames, (reference, neighbour, true flow) pairs
    made as in training (tmics_cli.training.flow.make_flow_pair) with real-video-like motion, rain added
    independently to each frame; mean end-point error (px) over valid pixels, clean / light / heavy rain.
  Test B, real motion: 5 consecutive held-out frames, independent rain on each, flows computed on the
    RAINY frames from the centre to the 4 neighbours, neighbours warped onto the centre, per-pixel
    temporal median of the 5 (pixels whose warp leaves the frame use the centre frame); Y-PSNR of the
    median against the clean centre frame. The rainy centre, the unaligned median and DIS-medium flow
    computed on the CLEAN frames (an oracle-like reference) are reported alongside.
  Timing: seconds for the 4 flows of one 640x480 5-frame window (estimators interleaved, median of 5).
  The device flow's bar: EPE within 15% of dis-medium's under every condition, aligned median within
  0.3 dB (the "device_vs_dis_medium" entry of the JSON).

The rain here is a minimal streak renderer kept in this script (sparse impulses drawn with
tmics_cli.streaks.streak_kernel, near-vertical, 8-25 px long, brightness 0.3-0.8 blended toward
white), a stand-in for the real renderer. PyramidFlowNet is trained with the same renderer (on other
clips), which favours it a little under rain; DIS never sees rain beforehand.

Timing uses --threads torch threads (default 2) and 1 thread; training and tests A/B use --work-threads
(default: --threads). On a 2-core machine shared with another job, 2 threads were several times slower
than 1 (threads fighting for the cores), hence the separate setting.

Usage: python benchmarks/flow_accuracy.py [--train-minutes 12] [--work-threads 1] [--out PATH]
                                          [--save-pyramid PATH]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from tmics_cli.model.align import DISFlow, PyramidFlowNet, align_frames, estimate_flows
from tmics_cli.model.device_flow import PatchInverseSearchFlow
from tmics_cli.streaks import streak_kernel
from tmics_cli.training.flow import (
    TRAIN_MOTION,
    FlowPair,
    MotionConfig,
    end_point_error,
    make_flow_pair,
    train_flow,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "clean"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "flow_accuracy.json"

RAIN_DENSITY = {"light": 0.0005, "heavy": 0.002}  # streak starts per pixel
CONDITIONS = ("clean", "light", "heavy")

# Test-A motion: like 1-2 frame steps of real video (a few px up to ~15 px), no noise, rain added apart.
EVAL_MOTION = MotionConfig(
    min_translation=1.0,
    max_translation=12.0,
    max_rotation_deg=2.0,
    max_scale=0.03,
    max_shear=0.01,
    max_perspective=0.01,
    max_nonrigid=2.0,
    noise_std=0.0,
    rain_prob=0.0,
    hflip=False,
)


# ----------------------------------------------------------------------------------------------- data


def load_clip(folder: Path, first: int = 1, last: int | None = None) -> torch.Tensor:
    """Frames first..last (1-based, inclusive) of a folder of numbered JPEGs -> (T, 3, H, W) uint8 RGB."""
    files = sorted(folder.glob("*.jpg"))
    files = [f for f in files if int(f.stem) >= first and (last is None or int(f.stem) <= last)]
    if not files:
        raise FileNotFoundError(f"no frames {first}..{last} in {folder}")
    frames = [cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for f in files]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()  # (T, 3, H, W)


def parse_split(spec: str) -> tuple[str, int, int | None]:
    """Clip spec -> (name, first, last): 'bikes:201-250', 'bikes:201-' (to the end), 'walk' (all)."""
    if ":" not in spec:
        return spec, 1, None
    name, rng = spec.split(":", 1)
    lo, _, hi = rng.partition("-")
    return name, int(lo or 1), int(hi) if hi else None


# ----------------------------------------------------------------------------------------------- rain


class StreakRain:
    """Minimal synthetic rain: sparse random impulses drawn as streaks (streak_kernel), alpha-blended
    toward white. One rain direction per call (a scene), impulses drawn independently for every frame.

    density: streak starts per pixel, or a (low, high) range sampled log-uniformly per call.
    """

    def __init__(
        self,
        density: float | tuple[float, float],
        lengths: tuple[float, float] = (8.0, 25.0),
        brightness: tuple[float, float] = (0.3, 0.8),
        max_angle: float = 15.0,
        kernels_per_frame: int = 4,
    ) -> None:
        self.density = density
        self.lengths = lengths
        self.brightness = brightness
        self.max_angle = max_angle
        self.kernels_per_frame = kernels_per_frame

    @staticmethod
    def _u(g: torch.Generator, lo: float, hi: float) -> float:
        return lo + (hi - lo) * torch.rand((), generator=g).item()

    def __call__(self, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # frames: (T, 3, H, W) in [0, 1] -> (T, 3, H, W)
        t, _, h, w = frames.shape
        if isinstance(self.density, tuple):
            lo, hi = self.density
            density = math.exp(self._u(generator, math.log(lo), math.log(hi)))
        else:
            density = self.density
        angle = self._u(generator, -self.max_angle, self.max_angle)
        out = torch.empty_like(frames)
        for i in range(t):
            alpha = self._alpha(h, w, density, angle, generator)  # (H, W)
            out[i] = frames[i] * (1 - alpha) + alpha
        return out

    def _alpha(self, h: int, w: int, density: float, angle: float, g: torch.Generator) -> torch.Tensor:
        pad = int(self.lengths[1]) + 4
        canvas = torch.zeros((h + 2 * pad) * (w + 2 * pad))
        stride = w + 2 * pad
        for _ in range(self.kernels_per_frame):
            length = self._u(g, *self.lengths)
            width = self._u(g, 0.5, 1.0)
            kernel = torch.from_numpy(streak_kernel(length, angle + self._u(g, -3.0, 3.0), width))
            size = kernel.shape[-1]  # (size, size), 1 on the streak's centre line
            ky, kx = torch.nonzero(kernel > 0.02, as_tuple=True)
            kval = kernel[ky, kx]  # (M,)
            n = int(torch.poisson(torch.tensor(density / self.kernels_per_frame * h * w), generator=g).item())
            if n == 0:
                continue
            cy = torch.randint(0, h, (n,), generator=g) + pad - size // 2  # top-left corner of each streak
            cx = torch.randint(0, w, (n,), generator=g) + pad - size // 2
            amp = self.brightness[0] + (self.brightness[1] - self.brightness[0]) * torch.rand(n, generator=g)
            index = (cy[:, None] + ky[None]) * stride + (cx[:, None] + kx[None])  # (n, M)
            canvas.index_add_(0, index.reshape(-1), (amp[:, None] * kval[None]).reshape(-1))
        alpha = canvas.view(h + 2 * pad, stride)[pad : pad + h, pad : pad + w]
        return alpha.clamp(0, 1)


# -------------------------------------------------------------------------------------------- metrics


def y_psnr(image: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR (dB, peak 255) of the BT.601 luma Y = 16 + 65.481 R + 128.553 G + 24.966 B of (3, H, W) RGB."""
    weights = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64)
    ya = 16 + torch.einsum("chw,c->hw", image.double().clamp(0, 1), weights)
    yb = 16 + torch.einsum("chw,c->hw", target.double().clamp(0, 1), weights)
    mse = (ya - yb).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def median_of_aligned(frames: torch.Tensor, flows: torch.Tensor | None) -> torch.Tensor:
    """Per-pixel temporal median of a 5-frame window (5, 3, H, W), neighbours warped onto the centre with
    flows (4, 2, H, W) (None: unaligned); out-of-frame warped pixels use the centre frame -> (3, H, W)."""
    if flows is None:
        return frames.median(dim=0).values
    aligned, valid = align_frames(frames[None], flows[None])  # (1, 5, 3, H, W), (1, 5, 1, H, W)
    centre = frames[2][None, None]  # (1, 1, 3, H, W)
    aligned = torch.where(valid > 0.5, aligned, centre)
    return aligned[0].median(dim=0).values


# --------------------------------------------------------------------------------------------- tests


def make_test_pairs(
    clips: dict[str, torch.Tensor], pairs_per_clip: int, crop: tuple[int, int], seed: int
) -> list[tuple[str, FlowPair]]:
    """Clean (reference, neighbour, flow, valid) pairs from held-out frames, `pairs_per_clip` per clip."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for name, frames in clips.items():
        for _ in range(pairs_per_clip):
            frame = frames[int(torch.randint(0, len(frames), (), generator=g))]
            pairs.append((name, make_flow_pair(frame, crop, g, EVAL_MOTION)))
    return pairs


def add_rain_pair(pair: FlowPair, condition: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair's reference and neighbour with independent rain of `condition` (or unchanged if clean)."""
    if condition == "clean":
        return pair.reference, pair.neighbour
    g = torch.Generator().manual_seed(seed)
    rainy = StreakRain(RAIN_DENSITY[condition])(torch.stack([pair.reference, pair.neighbour]), g)
    return rainy[0], rainy[1]


@torch.no_grad()
def run_test_a(
    estimators: dict[str, nn.Module], pairs: list[tuple[str, FlowPair]], seed: int
) -> dict[str, dict[str, dict[str, float]]]:
    """EPE and the fraction of pixels with EPE > 3 px, per estimator and condition (means over pairs)."""
    results: dict[str, dict[str, dict[str, float]]] = {name: {} for name in estimators}
    for condition in CONDITIONS:
        epes: dict[str, list[float]] = {name: [] for name in estimators}
        outliers: dict[str, list[float]] = {name: [] for name in estimators}
        for i, (_, pair) in enumerate(pairs):
            ref, nbr = add_rain_pair(pair, condition, seed * 100_003 + i)
            target, valid = pair.flow[None], pair.valid[None]  # (1, 2, H, W), (1, 1, H, W)
            for name, est in estimators.items():
                flow = est(ref[None], nbr[None, None])[:, 0]  # (1, 2, H, W)
                epes[name].append(end_point_error(flow, target, valid).item())
                err = (flow - target).norm(dim=1, keepdim=True)
                outliers[name].append((((err > 3).float() * valid).sum() / valid.sum()).item())
        for name in estimators:
            results[name][condition] = {
                "epe": statistics.fmean(epes[name]),
                "outliers_3px": statistics.fmean(outliers[name]),
            }
    return results


@torch.no_grad()
def run_test_b(
    estimators: dict[str, nn.Module], clips: dict[str, torch.Tensor], stride: int, seed: int
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, dict[str, float]]], int]:
    """Y-PSNR of the temporal median per method and rain level, averaged over windows (and per clip)."""
    oracle = DISFlow("medium")
    methods = ["rainy input", "unaligned median", *estimators, "dis-medium on clean frames"]
    per_clip: dict[str, dict[str, dict[str, list[float]]]] = {}
    windows = 0
    for clip_index, (clip, frames) in enumerate(clips.items()):
        per_clip[clip] = {m: {c: [] for c in ("light", "heavy")} for m in methods}
        for centre in range(2, len(frames) - 2, stride):
            windows += 1
            clean = frames[centre - 2 : centre + 3].float() / 255  # (5, 3, H, W)
            target = clean[2]
            oracle_flows = estimate_flows(oracle, clean[None])[0]  # (4, 2, H, W)
            for k, condition in enumerate(("light", "heavy")):
                g = torch.Generator().manual_seed(seed * 1_000_003 + clip_index * 10_007 + centre * 7 + k)
                rainy = StreakRain(RAIN_DENSITY[condition])(clean, g)  # (5, 3, H, W)
                scores = per_clip[clip]
                scores["rainy input"][condition].append(y_psnr(rainy[2], target))
                scores["unaligned median"][condition].append(y_psnr(median_of_aligned(rainy, None), target))
                for name, est in estimators.items():
                    flows = estimate_flows(est, rainy[None])[0]  # (4, 2, H, W)
                    scores[name][condition].append(y_psnr(median_of_aligned(rainy, flows), target))
                scores["dis-medium on clean frames"][condition].append(
                    y_psnr(median_of_aligned(rainy, oracle_flows), target)
                )
    overall = {
        m: {
            c: statistics.fmean(v for clip in per_clip.values() for v in clip[m][c])
            for c in ("light", "heavy")
        }
        for m in methods
    }
    clip_means = {
        clip: {m: {c: statistics.fmean(v) for c, v in d.items()} for m, d in scores.items()}
        for clip, scores in per_clip.items()
    }
    return overall, clip_means, windows


@torch.no_grad()
def run_timing(
    estimators: dict[str, nn.Module], window: torch.Tensor, repeats: int = 3
) -> dict[str, dict[str, float]]:
    """Median wall and process-CPU seconds for the 4 flows of one (5, 3, 480, 640) window, after one
    warm-up call each; the estimators take turns in every repeat, so load from other jobs on the machine
    falls on all alike. CPU time (all threads) is less sensitive than wall time to such load."""
    wall: dict[str, list[float]] = {name: [] for name in estimators}
    cpu: dict[str, list[float]] = {name: [] for name in estimators}
    for est in estimators.values():
        estimate_flows(est, window[None])
    for _ in range(repeats):
        for name, est in estimators.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            estimate_flows(est, window[None])
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {n: {"wall": statistics.median(wall[n]), "cpu": statistics.median(cpu[n])} for n in wall}


def device_verdict(
    test_a: dict[str, dict[str, dict[str, float]]], test_b: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """The device flow against dis-medium: EPE ratios per condition (bar: <= 1.15) and aligned-median
    PSNR differences per rain level (bar: >= -0.3 dB)."""
    ratios = {c: test_a["device-medium"][c]["epe"] / test_a["dis-medium"][c]["epe"] for c in CONDITIONS}
    deltas = {c: test_b["device-medium"][c] - test_b["dis-medium"][c] for c in ("light", "heavy")}
    return {
        "epe_ratio": ratios,
        "median_psnr_delta_db": deltas,
        "epe_within_15_percent": all(r <= 1.15 for r in ratios.values()),
        "median_within_0.3_db": all(d >= -0.3 for d in deltas.values()),
    }


# ---------------------------------------------------------------------------------------------- main


def train_pyramid(
    train_frames: list[torch.Tensor], minutes: float, args: argparse.Namespace
) -> tuple[PyramidFlowNet, dict]:
    """Train PyramidFlowNet for about `minutes` (steps fixed from a short timing run, for determinism)."""
    rain = StreakRain((RAIN_DENSITY["light"] / 2, RAIN_DENSITY["heavy"] * 1.5))
    crop = (args.train_crop, args.train_crop)
    threads = torch.get_num_threads()
    torch.manual_seed(args.seed)
    model = PyramidFlowNet()
    probe = copy.deepcopy(model)
    hist = train_flow(
        probe, train_frames, 12, args.train_batch, crop, args.lr, "cpu", 1, args.seed + 1, rain=rain
    )
    step_time = (hist[-1]["seconds"] - hist[2]["seconds"]) / (len(hist) - 3)
    steps = max(1, int(minutes * 60 / step_time))
    print(f"training PyramidFlowNet: {step_time:.2f} s/step -> {steps} steps (~{minutes:g} min)", flush=True)
    history = train_flow(
        model,
        train_frames,
        steps,
        args.train_batch,
        crop,
        args.lr,
        "cpu",
        max(1, steps // 20),
        args.seed,
        rain=rain,
        max_seconds=minutes * 60 * 1.15,
    )
    for entry in history:
        print(
            f"  step {entry['step']:5d}  loss {entry['loss']:.3f}  train EPE {entry['epe']:.3f} px",
            flush=True,
        )
    info = {
        "steps_planned": steps,
        "steps_run": history[-1]["step"],
        "seconds": history[-1]["seconds"],
        "batch": args.train_batch,
        "crop": args.train_crop,
        "lr": args.lr,
        "seed": args.seed,
        "threads": threads,
        "seconds_per_step_probe": step_time,
        "motion": asdict(TRAIN_MOTION),
        "rain_density_range": [RAIN_DENSITY["light"] / 2, RAIN_DENSITY["heavy"] * 1.5],
        "history": history,
    }
    return model, info


def fmt_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        cells = zip(row, widths, strict=True)
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells))

    sep = "-" * len(line(header))
    return "\n".join([title, sep, line(header), sep, *(line(r) for r in rows), sep])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of clean clip folders")
    parser.add_argument(
        "--eval-clips", default="walk,city,bikes:201-", help="held-out clips (name[:first-last])"
    )
    parser.add_argument("--train-clips", default="calendar,foliage,tennis,bikes:1-190,carphone")
    parser.add_argument(
        "--train-minutes", type=float, default=12.0, help="0: no training (or --load-pyramid)"
    )
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-crop", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument(
        "--load-pyramid", type=Path, help="evaluate these PyramidFlowNet weights, no training"
    )
    parser.add_argument("--save-pyramid", type=Path, help="write the trained PyramidFlowNet (safetensors)")
    parser.add_argument("--pairs-per-clip", type=int, default=40, help="test A pairs per held-out clip")
    parser.add_argument("--pair-size", default="256x384", help="test A pair size HxW")
    parser.add_argument("--window-stride", type=int, default=3, help="test B: centre frame step")
    parser.add_argument("--max-windows", type=int, default=0, help="test B: windows per clip (0: all)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the timing")
    parser.add_argument(
        "--work-threads",
        type=int,
        default=0,
        help="torch threads for training and tests A/B (0: --threads); 1 is much faster than 2 when another "
        "job shares a 2-core machine",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.work_threads or args.threads)
    started = time.perf_counter()
    load_start = os.getloadavg()

    eval_splits = [parse_split(s) for s in args.eval_clips.split(",") if s]
    train_splits = [parse_split(s) for s in args.train_clips.split(",") if s]
    eval_clips = {
        f"{n}" if lo == 1 and hi is None else f"{n}:{lo}-{hi or ''}": load_clip(args.data / n, lo, hi)
        for n, lo, hi in eval_splits
    }
    for name, frames in eval_clips.items():
        print(f"held out: {name}: {len(frames)} frames {tuple(frames.shape[-2:])}")

    estimators: dict[str, nn.Module] = {
        "dis-ultrafast": DISFlow("ultrafast"),
        "dis-fast": DISFlow("fast"),
        "dis-medium": DISFlow("medium"),
        "device-medium": PatchInverseSearchFlow("medium"),
        "pyramid-untrained": PyramidFlowNet().eval(),
    }
    train_info: dict = {}
    if args.load_pyramid is not None:
        from safetensors.torch import load_file

        trained = PyramidFlowNet()
        trained.load_state_dict(load_file(str(args.load_pyramid)))
        estimators["pyramid-trained"] = trained.eval()
        train_info = {"loaded": str(args.load_pyramid)}
    elif args.train_minutes > 0:
        crop = args.train_crop
        train_frames, used, skipped = [], {}, {}
        for n, lo, hi in train_splits:
            frames = load_clip(args.data / n, lo, hi)
            key = n if lo == 1 and hi is None else f"{n}:{lo}-{hi or ''}"
            if min(frames.shape[-2:]) < crop:
                skipped[key] = f"frames {tuple(frames.shape[-2:])} smaller than the {crop} px training crop"
                continue
            train_frames.extend(frames)
            used[key] = len(frames)
        print(f"training clips: {used}; skipped: {skipped or 'none'}")
        trained, train_info = train_pyramid(train_frames, args.train_minutes, args)
        train_info.update({"train_clips": used, "skipped_clips": skipped})
        estimators["pyramid-trained"] = trained.eval()
        if args.save_pyramid is not None:
            from safetensors.torch import save_file

            args.save_pyramid.parent.mkdir(parents=True, exist_ok=True)
            meta = {
                "format": "tmics-flow/1",
                "estimator": "PyramidFlowNet",
                "levels": "5",
                "width": "32",
                "steps": str(train_info["steps_run"]),
                "command": " ".join(sys.argv),
            }
            save_file(
                {k: v.contiguous() for k, v in trained.state_dict().items()}, str(args.save_pyramid), meta
            )
            print(f"saved {args.save_pyramid}")

    ph, pw = (int(v) for v in args.pair_size.lower().split("x"))
    pairs = make_test_pairs(eval_clips, args.pairs_per_clip, (ph, pw), args.seed + 17)
    true_mag = torch.cat([p.flow.norm(dim=0)[p.valid[0] > 0] for _, p in pairs])
    print(
        f"test A: {len(pairs)} pairs {ph}x{pw}, true flow mean {true_mag.mean():.2f} px, "
        f"p95 {true_mag.quantile(0.95):.2f} px, max {true_mag.max():.2f} px",
        flush=True,
    )
    t0 = time.perf_counter()
    test_a = run_test_a(estimators, pairs, args.seed)
    print(f"test A done in {time.perf_counter() - t0:.0f} s", flush=True)

    b_clips = eval_clips
    if args.max_windows > 0:
        span = args.window_stride * (args.max_windows - 1) + 5
        b_clips = {k: v[:span] for k, v in eval_clips.items()}
    t0 = time.perf_counter()
    b_estimators = {k: v for k, v in estimators.items() if k != "pyramid-untrained"}  # == unaligned median
    test_b, test_b_clips, windows = run_test_b(b_estimators, b_clips, args.window_stride, args.seed)
    print(f"test B: {windows} windows done in {time.perf_counter() - t0:.0f} s", flush=True)

    walk = load_clip(args.data / "walk", 1, 5)[:, :, :480, :640].float() / 255  # (5, 3, 480, 640)
    torch.set_num_threads(args.threads)
    timing = run_timing(estimators, walk, repeats=5)
    torch.set_num_threads(1)
    timing_1 = run_timing(estimators, walk, repeats=5)

    rows_a = []
    for name, res in test_a.items():
        rows_a.append(
            [
                name,
                *(f"{res[c]['epe']:.2f}" for c in CONDITIONS),
                *(f"{100 * res[c]['outliers_3px']:.1f}" for c in CONDITIONS),
                f"{timing[name]['wall']:.3f}",
                f"{timing[name]['cpu']:.3f}",
                f"{timing_1[name]['wall']:.3f}",
            ]
        )
    table_a = fmt_table(
        f"Test A: synthetic motion, EPE (px) over valid pixels, {len(pairs)} pairs {ph}x{pw} "
        f"(true flow mean {true_mag.mean():.2f} px); >3px = % of pixels with EPE > 3 px; "
        f"time = wall / process-CPU s for the 4 flows of a 640x480 window with {args.threads} torch threads, "
        "and wall s with 1 thread",
        [
            "estimator",
            "EPE clean",
            "EPE light",
            "EPE heavy",
            ">3px clean",
            ">3px light",
            ">3px heavy",
            "wall s",
            "cpu s",
            "1-thread s",
        ],
        rows_a,
    )
    rows_b = [[m, f"{v['light']:.2f}", f"{v['heavy']:.2f}"] for m, v in test_b.items()]
    table_b = fmt_table(
        f"Test B: real motion, Y-PSNR (dB) of the 5-frame temporal median vs the clean centre, "
        f"{windows} windows "
        f"({', '.join(b_clips)}); flows on the rainy frames",
        ["method", "light rain", "heavy rain"],
        rows_b,
    )
    print()
    print(table_a)
    print()
    print(table_b)
    per_clip_rows = [
        [f"{clip} / {m}", f"{v['light']:.2f}", f"{v['heavy']:.2f}"]
        for clip, d in test_b_clips.items()
        for m, v in d.items()
    ]
    print()
    print(fmt_table("Test B per clip", ["clip / method", "light", "heavy"], per_clip_rows))
    verdict = device_verdict(test_a, test_b)
    print(
        "\ndevice-medium vs dis-medium: EPE ratio "
        + ", ".join(f"{c} {r:.3f}" for c, r in verdict["epe_ratio"].items())
        + "; median PSNR delta "
        + ", ".join(f"{c} {d:+.2f} dB" for c, d in verdict["median_psnr_delta_db"].items())
        + f"; EPE within 15%: {verdict['epe_within_15_percent']}, median within 0.3 dB: "
        f"{verdict['median_within_0.3_db']}"
    )
    total = time.perf_counter() - started
    print(
        f"\ntotal {total / 60:.1f} min; load average (1 min) at start {load_start[0]:.2f}, "
        f"at end {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )

    result = {
        "command": " ".join(sys.argv) if argv is None else " ".join(["benchmarks/flow_accuracy.py", *argv]),
        "data": str(args.data),
        "held_out_clips": list(eval_clips),
        "held_out_frames": {k: len(v) for k, v in eval_clips.items()},
        "rain": {"renderer": "StreakRain (in-script stand-in)", "density_per_pixel": RAIN_DENSITY},
        "pyramid_training": train_info,
        "test_a": {
            "pairs": len(pairs),
            "pair_size": [ph, pw],
            "motion": asdict(EVAL_MOTION),
            "true_flow_px": {
                "mean": true_mag.mean().item(),
                "p95": true_mag.quantile(0.95).item(),
                "max": true_mag.max().item(),
            },
            "results": test_a,
        },
        "test_b": {
            "windows": windows,
            "window_stride": args.window_stride,
            "clips": list(b_clips),
            "y_psnr_db": test_b,
            "y_psnr_db_per_clip": test_b_clips,
            "note": "pyramid-untrained is zero flow, identical to the unaligned median; not rerun",
        },
        "device_vs_dis_medium": verdict,
        "timing_s_4_flows_640x480": {"threads": args.threads, **timing},
        "timing_s_4_flows_640x480_1_thread": timing_1,
        "environment": {
            "torch": torch.__version__,
            "opencv": cv2.__version__,
            "torch_threads_timing": args.threads,
            "torch_threads_work": args.work_threads or args.threads,
            "cv2_threads": cv2.getNumThreads(),
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "total_seconds": total,
        "load_average_1_5_15min": {"start": load_start, "end": os.getloadavg()},
        "cpu_count": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
