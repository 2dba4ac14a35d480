"""Running a TMICS model over frames: device and precision, tiling, out-of-memory retry, streaming windows.

    Restorer(model, device, precision, tile)   (B, 5, H, W, 3) uint8 windows -> (B, H, W, 3) uint8 frames
    stream_windows(frames)                     frames one at a time -> (frame, its 5-frame window), in order
    derain_stream(frames, restorer)            frames one at a time -> derained frames, in order
    derain_clip(model, frames)                 a clip in memory, (T, 3, H, W) in [0, 1]

Windows reflect at the ends (frame 0 sees 2, 1, 0, 1, 2). Tiling splits a frame into overlapping tiles for
the DNA and CNA and blends them; the optical flow is computed once on the whole frames and the AAS fusion
weight comes from the whole stitched frame, so tiles differ from one pass only near their borders.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from .model.align import CENTRE, NUM_FRAMES, estimate_flows
from .model.fuse import for_inference
from .model.network import TMICS
from .video.windows import reflect_index, window_indices

T = TypeVar("T")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
MIN_TILE = 64


def pick_device(name: str = "auto") -> torch.device:
    """auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps, checked against this machine; a
    bare CUDA device is the one of this process's LOCAL_RANK (torchrun), else GPU 0."""
    rank = int(os.environ.get("LOCAL_RANK", 0))
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but this machine has no CUDA GPU")
        if device.index is None:
            device = torch.device("cuda", rank)
        if device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s)"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for, but Apple MPS is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is emulated, and slow."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def pick_precision(name: str, device: torch.device) -> torch.dtype:
    """auto: fp16 on CUDA and MPS GPUs; on the CPU bf16 where the CPU has native bf16 (cpu_has_bf16), else
    fp32. On an H200, fp16 output was closer to fp32 than bf16 (Y-PSNR against fp32 88 dB against 68 dB)
    and 10% faster at 1080p (benchmarks/gpu_speed.py). On the 2-core AVX-512 BF16 CPU, bf16 autocast took
    30% less time than fp32 in the network (17% less per window with the flows) and scored within 0.01 dB
    of fp32 on each of the model card's six held-out sets (benchmarks/cpu_speedups.py)."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; known: {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type in ("cuda", "mps"):
            return torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else torch.float32
    if name == "fp16" and device.type == "cpu":
        raise ValueError("fp16 needs a GPU; on the CPU use fp32 (or bf16)")
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def default_batch(device: torch.device) -> int:
    """Windows per model call when none is asked for: 8 on CUDA, 2 on MPS, 1 on the CPU (on the 2-core
    CPU one window at a time ran 1.69 against 1.43 fps for tmics-light and 0.50 against 0.23 fps for
    tmics-light-full at 640x480, with less memory: benchmarks/results/derain_speed.json)."""
    return {"cuda": 8, "mps": 2}.get(device.type, 1)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _tiles(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of `tile` pixels covering `size`, neighbours overlapping by >= `overlap`."""
    if tile >= size:
        return [0]
    step = max(tile // 2, tile - overlap)  # an overlap near the tile size would mean millions of tiles
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """Blending weights along one axis of a tile: linear ramps over the overlaps, flat elsewhere."""
    w = torch.ones(length)
    ramp = torch.linspace(0, 1, overlap + 2)[1:-1] if overlap > 0 else torch.ones(0)
    n = min(len(ramp), length)
    if not at_start and n:
        w[:n] = ramp[:n]
    if not at_end and n:
        w[length - n :] = torch.minimum(w[length - n :], ramp[:n].flip(0))
    return w


@dataclass
class Restorer:
    """A loaded model on a device, with its precision and tiling: windows in, derained frames out."""

    model: TMICS
    device: torch.device
    dtype: torch.dtype = torch.float32
    tile: int | None = None  # None or 0: whole frames (tiles are made on out-of-memory)
    tile_overlap: int = 32
    retries: int = 0  # out-of-memory retries so far (smaller batches or tiles)
    seconds: float = 0.0  # time spent in the model (and flow), for the decode / model / encode split
    # Run a copy of the model rewritten for inference (BatchNorm folded, heads fused: the same outputs up to
    # float rounding, tmics_cli.model.fuse), in channels_last on the CPU. False: the model as given
    # (benchmarks/cpu_speedups.py compares the two).
    optimize: bool = True

    def __post_init__(self) -> None:
        if self.optimize:
            self.model = for_inference(copy.deepcopy(self.model).eval())
        self.model.eval().to(self.device)
        if self.optimize and self.device.type == "cpu":
            self.model.to(memory_format=torch.channels_last)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @torch.no_grad()
    def _forward(self, frames: torch.Tensor, tile: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        # frames: (B, 5, 3, H, W) in [0, 1] on the device -> fused and DNA-only (B, 3, H, W) in [0, 1]
        h, w = frames.shape[-2:]
        with self._autocast():
            if not tile or (tile >= h and tile >= w):
                out = self.model(frames, return_all=True)
                return out.derained.float().clamp(0, 1), out.dna.float().clamp(0, 1)
            flow_net = self.model.flow_estimator
            flows = estimate_flows(flow_net, frames) if flow_net is not None else None
            b = frames.shape[0]
            dna = frames.new_zeros(b, 3, h, w, dtype=torch.float32)
            cna = torch.zeros_like(dna)
            weight = frames.new_zeros(1, 1, h, w, dtype=torch.float32)
            ys, xs = _tiles(h, tile, self.tile_overlap), _tiles(w, tile, self.tile_overlap)
            for y in ys:
                for x in xs:
                    th, tw = min(tile, h), min(tile, w)
                    crop = (..., slice(y, y + th), slice(x, x + tw))
                    out = self.model(frames[crop], None if flows is None else flows[crop], return_all=True)
                    wy = _ramp(th, self.tile_overlap, y == 0, y + th >= h).to(dna.device)
                    wx = _ramp(tw, self.tile_overlap, x == 0, x + tw >= w).to(dna.device)
                    mask = (wy[:, None] * wx[None, :])[None, None]
                    dna[crop] += out.dna.float() * mask
                    cna[crop] += out.cna.float() * mask
                    weight[crop] += mask
            dna, cna = dna / weight, cna / weight
            fused, _ = self.model.aas(dna, cna)  # the fusion weight from the whole frame
            return fused.float().clamp(0, 1), dna.clamp(0, 1)

    def restore(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 5, 3, H, W) in [0, 1] -> (B, 3, H, W) in [0, 1] on the CPU. On out-of-memory: one window at a
        time, then ever smaller tiles (never dropping a frame); fails only below 64-pixel tiles."""
        return self.restore_all(frames)[0]

    def restore_all(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As `restore`, returning (fused output, the DNA's output alone: the paper's TMICS_S)."""
        tile = self.tile or None
        batch = frames.shape[0]
        while True:
            try:
                parts = [
                    self._forward(frames[i : i + batch].to(self.device), tile)
                    for i in range(0, len(frames), batch)
                ]
                return torch.cat([f for f, _ in parts]).cpu(), torch.cat([d for _, d in parts]).cpu()
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not _is_oom(exc):
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.retries += 1
                if batch > 1:
                    batch = 1
                    continue
                side = max(frames.shape[-2:])
                tile = min(tile or side, side) // 2
                if tile < MIN_TILE:
                    hint = "; try --device cpu" if self.device.type != "cpu" else ""
                    raise MemoryError(
                        f"out of memory even with {MIN_TILE}-pixel tiles on {self.device}{hint}"
                    ) from None
                self.tile = tile  # later chunks start from the size that worked
                self.tile_overlap = min(self.tile_overlap, tile // 4)  # tiles must still advance

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """(B, 5, H, W, 3) uint8 windows -> (B, H, W, 3) uint8 derained centre frames."""
        start = time.perf_counter()
        out = self.restore(windows_to_tensor(windows))
        self.seconds += time.perf_counter() - start
        return frames_to_uint8(out)


def windows_to_tensor(windows: np.ndarray) -> torch.Tensor:
    """(B, 5, H, W, 3) uint8 -> (B, 5, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(windows).permute(0, 1, 4, 2, 3).float().div_(255)


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float -> (B, H, W, 3) uint8, rounded and clamped."""
    return frames.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def stream_windows(frames: Iterable[T]) -> Iterator[tuple[T, list[T]]]:
    """(frame t, [frames t-2 .. t+2]) for every frame in order, holding at most 5 frames; windows reflect
    at both ends, which the stream's end is found to be only when the iterator runs out."""
    buffer: dict[int, T] = {}
    source = iter(frames)
    read, ended = 0, False
    t = 0
    while True:
        while not ended and read <= t + 2:
            item = next(source, _END)
            if item is _END:
                ended = True
            else:
                buffer[read] = item
                read += 1
        if t >= read:
            return
        indices = window_indices(t, read) if ended else [reflect_index(t + d, read) for d in range(-2, 3)]
        yield buffer[t], [buffer[i] for i in indices]
        buffer.pop(t - 2, None)
        t += 1


_END: Any = object()


def derain_stream(
    frames: Iterable[np.ndarray], restorer: Restorer, batch: int = 4, first: int = 0, count: int | None = None
) -> Iterator[np.ndarray]:
    """Derain frames (H, W, 3) uint8 arriving one at a time; yields derained frames in the same order.
    With `first` / `count` only frames first .. first + count - 1 are derained, the others being context: a
    part of a video with (up to) two frames on each side derains as it would within the whole video."""
    pending: list[list[np.ndarray]] = []
    for position, (_, window) in enumerate(stream_windows(frames)):
        if position < first or (count is not None and position >= first + count):
            continue
        pending.append(window)
        if len(pending) == batch:
            yield from restorer(np.stack([np.stack(w) for w in pending]))
            pending = []
    if pending:
        yield from restorer(np.stack([np.stack(w) for w in pending]))


@torch.no_grad()
def derain_clip(model: TMICS, frames: torch.Tensor, batch: int = 4) -> torch.Tensor:
    """Derain a short clip held in memory, one output frame per input frame, in order.

    frames: (T, 3, H, W) RGB in [0, 1] -> (T, 3, H, W) in [0, 1]. Each output frame t comes from the
    window t-2..t+2, reflected at the clip's ends (frame 0 sees 2, 1, 0, 1, 2).
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected frames (T, 3, H, W), got {tuple(frames.shape)}")
    if batch < 1:
        raise ValueError("batch must be at least 1")
    model.eval()
    device = next(model.parameters()).device
    length = frames.shape[0]
    out = []
    for start in range(0, length, batch):
        centres = range(start, min(start + batch, length))
        windows = torch.stack([frames[window_indices(t, length)] for t in centres])  # (b, 5, 3, H, W)
        out.append(model(windows.to(device)).clamp(0, 1).to(frames.device, frames.dtype))
    return torch.cat(out)


# --- the rain level of a clip, for --rain auto --------------------------------------------------------------

# Calibrated on rendered rain over 4 clean clips, 12 windows per preset: light median 0.095 (0.055-0.18),
# heavy median 0.22 (0.096-0.29), rain-free 0-0.036. 0.14 puts about 3 of 12 of each on the wrong side.
HEAVY_RAIN_COVERAGE = 0.14


derain_frames = derain_clip  # the name before 0.2


def rain_coverage_estimate(frames: list[np.ndarray]) -> float:
    """Share of pixels of the middle frame brighter (by > 12 levels of luma) than the median of its four
    flow-aligned neighbours, less the share darker by as much: how much of the picture rain streaks
    cover. frames: 5 of (H, W, 3) uint8."""
    from .model.align import DISFlow, align_frames, split_neighbours

    centre = len(frames) // 2
    window = np.stack(frames[centre - 2 : centre + 3])  # (5, H, W, 3)
    x = torch.from_numpy(window).permute(0, 3, 1, 2).float().div(255)[None]  # (1, 5, 3, H, W)
    flows = DISFlow("medium")(x[:, CENTRE], split_neighbours(x))
    aligned, _ = align_frames(x, flows)
    luma = (aligned * torch.tensor([0.299, 0.587, 0.114]).view(1, 1, 3, 1, 1)).sum(2) * 255  # (1, 5, H, W)
    neighbours = torch.cat([luma[:, :CENTRE], luma[:, CENTRE + 1 :]], 1)
    difference = luma[:, CENTRE] - neighbours.median(1).values
    # Rain only brightens; misalignment and noise go both ways, so their share is taken off.
    return max(0.0, float((difference > 12).float().mean() - (difference < -12).float().mean()))


def rain_level(frames: list[np.ndarray]) -> tuple[str, float]:
    """("light" | "heavy", measured coverage) from the first frames of a clip (at least 5 for a
    measurement; fewer give "light" and 0). Coverage of the middle of up to 3 windows, averaged."""
    if len(frames) < NUM_FRAMES:
        return "light", 0.0
    centres = range(2, min(len(frames) - 2, 2 + 3 * 4), 4)
    coverage = float(np.mean([rain_coverage_estimate(frames[c - 2 : c + 3]) for c in centres]))
    return ("heavy" if coverage >= HEAVY_RAIN_COVERAGE else "light"), coverage
