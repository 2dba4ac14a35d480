"""Running a TMICS model over frames: device and precision, tiling, out-of-memory retry, streaming windows.

    Restorer(model, device, precision, tile, flow)
                                               (B, 5, H, W, 3) uint8 windows -> (B, H, W, 3) uint8 frames
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
import functools
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from .model.align import CENTRE, NUM_FRAMES, choose_flow, estimate_flows
from .model.fuse import for_inference
from .model.network import TMICS
from .video.colour import PlaneFormat, YUVPlanes
from .video.colour_torch import rgb_to_yuv_uint8, yuv_to_rgb_uint8
from .video.windows import reflect_index, window_indices

T = TypeVar("T")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
MIN_TILE = 64
STAGES = ("upload", "flow", "network", "download")  # a Restorer's time, stage by stage (Restorer.timings)
UPLOAD_CONVERT_FRAMES = 4  # YUV frames converted to RGB on the device at once (and made into YUV again)


class OutOfMemoryWarning(UserWarning):
    """The model ran out of memory and goes on in smaller steps (fewer windows per call, or tiles): the
    output is whole, the run slower (and, in tiles, blended at the seams). The message is one line and
    names the option that would start there. A Restorer tells each step once and keeps the smaller steps
    for the rest of its run (later inputs too)."""


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
    about 35% less time than fp32 in the network (benchmarks/cpu_speedups.py) and scored within 0.05 dB of
    fp32 on each of the model card's six held-out sets (light within 0.011, light-full 0.039, heavy 0.014:
    benchmarks/results/card_precision.json)."""
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


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass
class Restorer:
    """A loaded model on a device, with its precision and tiling: windows in, derained frames out.

    Its time is charged to `timings` (seconds, summed over calls) stage by stage as it passes: upload (the
    uint8 frames to float windows on the device, YUV planes converted to RGB there), flow (the OFM's flow
    estimator: DIS on the host's CPU, or a flow network), network (the rest of the model, out-of-memory
    retries included) and download (back to the host and to uint8); `seconds` is their sum. On a GPU the
    model's work is queued and runs behind the host, so a stage's time is where the host waited, not where
    the GPU worked: the sum is true, the split is not (the GPU's time lands mostly in flow, whose DIS reads
    the frames back, and download). With `profile` every stage ends in a device synchronize, so the split
    is true too, at the price of the overlap (for benchmarks). Bookkeeping without `profile` is a clock
    read per stage."""

    model: TMICS
    device: torch.device
    dtype: torch.dtype = torch.float32
    tile: int | None = None  # None or 0: whole frames (tiles are made on out-of-memory)
    tile_overlap: int = 32
    retries: int = 0  # out-of-memory retries so far (smaller batches or tiles)
    # windows per model call at most: None, as many as given; lowered for the rest of the run (halved each
    # time) when a call runs out of memory, so that only one call fails at each size
    batch_limit: int | None = None
    # the OFM's flow: auto (the device flow on CUDA / MPS, DIS on the CPU; a trained flow is kept), dis or
    # device (model.align.choose_flow); after construction, the one that runs
    flow: str = "auto"
    profile: bool = False  # synchronize the device at the end of every stage (a true split, slower)
    # Run a copy of the model rewritten for inference (BatchNorm folded, heads fused: the same outputs up to
    # float rounding, tmics_cli.model.fuse), in channels_last on the CPU. False: the model as given
    # (benchmarks/cpu_speedups.py compares the two).
    optimize: bool = True
    # One batch in flight (`launch_windows`): its result is downloaded into pinned memory without blocking
    # while the host prepares the next batch. None: on CUDA (elsewhere the work is done when it is asked
    # for; True there takes the same steps, synchronously, which is how the suite tests them)
    pipeline: bool | None = None
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    _clock: float = field(default=0.0, init=False, repr=False)  # the last lap's end
    _staging: torch.Tensor | None = field(default=None, init=False, repr=False)  # pinned, for uploads
    _staged: Any = field(default=None, init=False, repr=False)  # CUDA event: the staging buffer is free
    _windows: torch.Tensor | None = field(default=None, init=False, repr=False)  # assembled windows
    # pinned download buffers, used in turn (one batch in flight: two suffice)
    _downloads: list[torch.Tensor] = field(default_factory=list, init=False, repr=False)
    _turn: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.optimize:
            self.model = for_inference(copy.deepcopy(self.model).eval())
        self.flow = choose_flow(self.flow, self.model.config.flow, self.device.type)
        if self.flow in ("dis", "device"):
            self.model.use_flow(self.flow)  # also back to DIS for a model an earlier Restorer changed
        self.model.eval().to(self.device)
        if self.optimize and self.device.type == "cpu":
            self.model.to(memory_format=torch.channels_last)

    @property
    def seconds(self) -> float:
        """Time spent in the model so far (upload + flow + network + download), for the decode / model /
        encode split."""
        return sum(self.timings.values())

    def _lap(self, stage: str | None) -> None:
        """Charge the time since the last lap to `stage` (None: to no stage, a new start)."""
        if self.profile:
            _synchronize(self.device)
        now = time.perf_counter()
        if stage is not None:
            self.timings[stage] += now - self._clock
        self._clock = now

    @contextlib.contextmanager
    def _flow_timed(self) -> Iterator[None]:
        """While open, the model's flow estimator charges its calls to flow (the time before to network)."""
        flow_net = self.model.flow_estimator
        if flow_net is None:
            yield
            return
        before = flow_net.register_forward_pre_hook(lambda *_: self._lap("network"))
        after = flow_net.register_forward_hook(lambda *_: self._lap("flow"))
        try:
            yield
        finally:
            before.remove()
            after.remove()

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
        time, then ever smaller tiles (never dropping a frame); fails only below 64-pixel tiles. Only the
        fused output comes back (the DNA's is left on the device: `restore_all` for both)."""
        return self._restore(frames, dna=False, to_host=True)[0]

    def restore_all(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As `restore`, returning (fused output, the DNA's output alone: the paper's TMICS_S)."""
        fused, dna = self._restore(frames, dna=True, to_host=True)
        assert dna is not None
        return fused, dna

    def _restore(
        self, frames: torch.Tensor, dna: bool, to_host: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        tile = self.tile or None
        batch = frames.shape[0]
        self._lap(None)
        with self._flow_timed():
            return self._restore_all(frames, tile, batch, dna, to_host)

    def _restore_all(
        self, frames: torch.Tensor, tile: int | None, batch: int, dna: bool = True, to_host: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`frames` on the host or the device -> (fused, DNA-only or None), on the CPU with `to_host`. The
        outputs are joined outside the retries: smaller calls or tiles cannot make the whole batch's output
        smaller (an out-of-memory there is the caller's: fewer windows, `out_of_memory`)."""
        if self.batch_limit:
            batch = min(batch, self.batch_limit)
        while True:
            try:
                parts = self._restore_chunks(frames, tile, batch, dna)
                break
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not _is_oom(exc):
                    raise
            # out of memory; the failed attempt's tensors went with the exception (its traceback held them)
            self._lap("network")  # the failed attempt's time
            self._release()
            if batch > 1:
                batch = self._lower_batch(batch)
                continue
            side = max(frames.shape[-2:])
            was = tile if tile and tile < side else None
            tile = min(tile or side, side) // 2
            if tile < MIN_TILE:
                hint = "; try --device cpu" if self.device.type != "cpu" else ""
                raise MemoryError(
                    f"out of memory even with {MIN_TILE}-pixel tiles on {self.device}{hint}"
                ) from None
            self.tile = tile  # later chunks start from the size that worked
            self.tile_overlap = min(self.tile_overlap, tile // 4)  # tiles must still advance
            h, w = frames.shape[-2:]
            before = f"whole {w}x{h} frames" if was is None else f"{was}-pixel tiles"
            self._warn(f"{before}: going on in {tile}-pixel tiles, blended at the seams (--tile {tile})")
        fused = _joined([f for f, _ in parts])
        only_dna = _joined([d for _, d in parts]) if dna else None  # type: ignore[misc]
        if to_host:
            fused = fused.cpu()
            only_dna = only_dna.cpu() if only_dna is not None else None
            self._lap("download")
        return fused, only_dna

    def _restore_chunks(
        self, frames: torch.Tensor, tile: int | None, batch: int, dna: bool
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """The model over `frames`, `batch` windows per call: (fused, DNA-only or None) per call."""
        parts: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        for i in range(0, len(frames), batch):
            chunk = frames[i : i + batch].to(self.device)
            self._lap("upload")
            fused, only_dna = self._forward(chunk, tile)
            parts.append((fused, only_dna if dna else None))
            self._lap("network")
        return parts

    def _release(self) -> None:
        """Hand the memory the allocator keeps back to the device after an out-of-memory error."""
        self.retries += 1
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "mps":
            torch.mps.empty_cache()

    def _lower_batch(self, batch: int) -> int:
        """After a call of `batch` windows ran out of memory: half as many from now on (batch_limit), and
        the window buffer made again at that size (the call under way keeps the old one until it ends)."""
        self.batch_limit = max(1, batch // 2)
        self._windows = None
        self._warn(f"{batch} windows per call: going on with {self.batch_limit} (--batch {self.batch_limit})")
        return self.batch_limit

    def _warn(self, what: str) -> None:
        """One OutOfMemoryWarning, placed at the caller's caller. Without a registry, so that every Restorer
        tells its own steps (warnings.warn shows a text once per place: a second model going the same way,
        e.g. a later input's other rain level, would be silent); the user's filters still apply."""
        caller = sys._getframe(2)
        message = f"out of memory on {self.device} with {what}"
        warnings.warn_explicit(message, OutOfMemoryWarning, caller.f_code.co_filename, caller.f_lineno)

    def out_of_memory(self, windows: int) -> None:
        """Out of memory outside the model's call, while `windows` windows were uploaded, assembled or made
        into output frames: the window buffer is let go (made again at the size that fits) and batch_limit
        lowered below `windows`; at one window, MemoryError (tiles cannot make the window smaller)."""
        self._lap("upload")  # the failed attempt's time
        self._windows = None  # (also done by _lower_batch; here for the one window that does not fit)
        self._release()
        if windows > 1:
            self._lower_batch(min(windows, self.batch_limit or windows))
            return
        hint = "; try --device cpu" if self.device.type != "cpu" else ""
        raise MemoryError(f"out of memory on {self.device} even for one window at a time{hint}")

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """(B, 5, H, W, 3) uint8 windows -> (B, H, W, 3) uint8 derained centre frames."""
        self._lap(None)
        frames = windows_to_tensor(windows)
        self._lap("upload")
        out = self.restore(frames)
        result = frames_to_uint8(out)
        self._lap("download")
        return result

    # --- the batched device path: each frame uploaded once, as uint8, windows gathered on the device ---

    def upload(self, frames: np.ndarray) -> torch.Tensor:
        """(F, H, W, 3) uint8 frames -> the same on the device: one uint8 copy (on CUDA from a pinned
        staging buffer, not blocking the host), 4 times fewer bytes than floats; `assemble` and
        `gather_windows` turn them into float windows there."""
        host = torch.from_numpy(np.ascontiguousarray(frames))
        if self.device.type != "cuda":
            return host.to(self.device)
        staged = self._stage(host)
        on_device = staged.to(self.device, non_blocking=True)
        assert self._staged is not None
        self._staged.record(torch.cuda.current_stream(self.device))  # the staging buffer is free after it
        return on_device

    def upload_pixels(self, frames: list[np.ndarray | YUVPlanes]) -> list[torch.Tensor]:
        """Frames, each (H, W, 3) uint8 RGB or a YUV frame's planes -> each (H, W, 3) uint8 RGB on the device.
        All go up in one copy (`upload`): RGB frames as they are, planes as they are (1.5 bytes a pixel for
        4:2:0 against RGB's 3), converted there with their stream's matrix and range
        (colour_torch.yuv_to_rgb_uint8: within one level of the host's swscale)."""
        if not frames:
            return []
        out: list[torch.Tensor | None] = [None] * len(frames)
        rgb = [i for i, f in enumerate(frames) if isinstance(f, np.ndarray)]
        groups: dict[tuple[Any, ...], list[int]] = {}  # frames converted together: same size and colours
        for i, f in enumerate(frames):
            if isinstance(f, YUVPlanes):
                groups.setdefault((f.y.shape, f.u.shape, f.matrix, f.range_name), []).append(i)
        # one copy for all: the RGB frames, then per group every Y plane, every U, every V (each group a
        # (n, h, w) batch there); one staging buffer, so a second copy would wait for the first
        parts = [frames[i].ravel() for i in rgb]
        for members in groups.values():
            parts += [getattr(frames[i], name).ravel() for name in "yuv" for i in members]
        on_device = self.upload(np.concatenate(parts))
        at = 0
        for i in rgb:
            size = frames[i].size
            out[i] = on_device[at : at + size].view(frames[i].shape)
            at += size
        for (y_shape, c_shape, matrix, range_name), members in groups.items():
            n, luma, chroma = len(members), int(np.prod(y_shape)), int(np.prod(c_shape))
            y = on_device[at : at + n * luma].view(n, *y_shape)
            u = on_device[at + n * luma : at + n * (luma + chroma)].view(n, *c_shape)
            v = on_device[at + n * (luma + chroma) : at + n * (luma + 2 * chroma)].view(n, *c_shape)
            at += n * (luma + 2 * chroma)
            for first in range(0, n, UPLOAD_CONVERT_FRAMES):  # a few frames at a time: float RGB is 12 B/px
                part = slice(first, first + UPLOAD_CONVERT_FRAMES)
                converted = yuv_to_rgb_uint8(y[part], u[part], v[part], matrix, range_name)
                for i, frame in zip(members[part], converted.unbind(0), strict=True):
                    out[i] = frame
        assert all(frame is not None for frame in out), "frames are RGB arrays or YUVPlanes"
        return out  # type: ignore[return-value]

    def _stage(self, host: torch.Tensor) -> torch.Tensor:
        """`host` copied into a page-locked buffer, reused (and grown) call to call: the buffer's last
        non-blocking copy is waited for before it is written again."""
        if self._staged is None:
            self._staged = torch.cuda.Event()
        else:
            self._staged.synchronize()
        if self._staging is None or self._staging.numel() < host.numel():
            self._staging = torch.empty(host.numel(), dtype=torch.uint8).pin_memory()
        view = self._staging[: host.numel()].view(host.shape)
        view.copy_(host)
        return view

    def assemble(self, frames: list[torch.Tensor]) -> torch.Tensor:
        """B * 5 uint8 frames (H, W, 3) on the device, window after window -> (B, 5, 3, H, W) float windows
        in [0, 1], the values and layout of `windows_to_tensor`. Converted into a float buffer kept from
        call to call: a fresh one each time cost more in page faults than the conversion (CPU, 1080p:
        70 against 18 ms a frame) and fragments a GPU's memory; frames are held as uint8 until then
        (holding them as floats was no faster and took 25 MB more a held 1080p frame)."""
        shape = (len(frames) // NUM_FRAMES, NUM_FRAMES, *frames[0].shape)
        size = int(np.prod(shape))
        buffer = self._windows
        if buffer is None or buffer.numel() < size or buffer.device != frames[0].device:
            buffer = self._windows = torch.empty(size, dtype=torch.float32, device=frames[0].device)
        out = buffer[:size].view(len(frames), *frames[0].shape)
        for slot, frame in zip(out, frames, strict=True):
            slot.copy_(frame)
        out.div_(255)
        return out.view(shape).permute(0, 1, 4, 2, 3)

    def restore_windows(
        self, windows: torch.Tensor, planes: PlaneFormat | None = None
    ) -> np.ndarray | list[YUVPlanes]:
        """(B, 5, 3, H, W) float in [0, 1] on the device -> (B, H, W, 3) uint8 on the host: the fused output
        rounded to uint8 on the device, then downloaded (4 times fewer bytes than floats; the DNA-only
        output never leaves the device). With `planes`, each frame made into that encoder's YUV planes on
        the device (colour_torch.rgb_to_yuv_uint8, within a level of the host's swscale) and downloaded as
        them, in one copy (1.5 bytes a pixel for 4:2:0): B YUVPlanes."""
        return self.launch_windows(windows, planes, pipeline=False)()

    def launch_windows(
        self, windows: torch.Tensor, planes: PlaneFormat | None = None, pipeline: bool | None = None
    ) -> Callable[[], np.ndarray | list[YUVPlanes]]:
        """`restore_windows` in two steps: the work is queued now, its result comes from the callable
        returned. Pipelined (`pipeline`, default `self.pipeline`: on CUDA) the download is queued too, into
        one of two pinned buffers, and the callable waits for it: the host prepares the next batch while
        the GPU works on this one. Otherwise the work is done here and the callable hands it over."""
        fused, _ = self._restore(windows, dna=False, to_host=False)
        result = _to_uint8(fused)  # (B, H, W, 3) uint8 on the device
        if planes is not None:
            rows, shapes = [], []
            for at in range(0, len(result), UPLOAD_CONVERT_FRAMES):  # a few at a time: floats are 12 B/pixel
                part = result[at : at + UPLOAD_CONVERT_FRAMES]
                y, u, v = rgb_to_yuv_uint8(part, planes.matrix, planes.range_name, planes.subsampling)
                rows.append(torch.cat([y.flatten(1), u.flatten(1), v.flatten(1)], 1))
                shapes = [tuple(y.shape[1:]), tuple(u.shape[1:]), tuple(v.shape[1:])]
            flat = torch.cat(rows)  # (B, bytes)
        else:
            flat = result.contiguous().flatten(1)
            shapes = [tuple(result.shape[1:])]
        unpack = functools.partial(_unpack, shapes=shapes, planes=planes)
        if pipeline is None:
            pipeline = self.pipeline if self.pipeline is not None else self.device.type == "cuda"
        if not pipeline:
            host = flat.cpu().numpy() if self.device.type != "cpu" else flat.numpy()
            out = unpack(host)
            self._lap("download")
            return lambda: out
        cuda = self.device.type == "cuda"
        buffer = self._download_buffer(flat.numel()).view(flat.shape)
        buffer.copy_(flat, non_blocking=cuda)  # elsewhere (asked for) a plain copy: the same steps, in tests
        copied = None
        if cuda:
            copied = torch.cuda.Event()
            copied.record(torch.cuda.current_stream(self.device))
        self._lap("download")

        def result() -> np.ndarray | list[YUVPlanes]:
            self._lap(None)
            if copied is not None:
                copied.synchronize()
            out = unpack(buffer.numpy().copy())  # the buffer is reused two batches on
            self._lap("download")
            return out

        return result

    def _download_buffer(self, size: int) -> torch.Tensor:
        """The next of two download buffers (page-locked from CUDA), grown to `size` bytes when needed."""
        self._turn = (self._turn + 1) % 2
        while len(self._downloads) < 2:
            self._downloads.append(torch.empty(0, dtype=torch.uint8))
        if self._downloads[self._turn].numel() < size:
            buffer = torch.empty(size, dtype=torch.uint8)
            self._downloads[self._turn] = buffer.pin_memory() if self.device.type == "cuda" else buffer
        return self._downloads[self._turn][:size]

    def restore_frames(self, frames: np.ndarray, index: np.ndarray) -> np.ndarray:
        """(F, H, W, 3) uint8 distinct frames and (B, 5) indices into them -> (B, H, W, 3) uint8, the
        derained centres of windows frames[index[b]]: every frame uploaded once, the windows gathered on
        the device. Bit for bit what `self(frames[index])` gives."""
        self._lap(None)
        on_device = self.upload(frames)
        windows = gather_windows(on_device, torch.as_tensor(np.asarray(index), device=self.device))
        self._lap("upload")
        return self.restore_windows(windows)


def _joined(parts: list[torch.Tensor]) -> torch.Tensor:
    """The parts one after another: a lone part as it is (a copy of a 4K batch is not free)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def windows_to_tensor(windows: np.ndarray) -> torch.Tensor:
    """(B, 5, H, W, 3) uint8 -> (B, 5, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(windows).permute(0, 1, 4, 2, 3).float().div_(255)


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float -> (B, H, W, 3) uint8, rounded and clamped."""
    return _to_uint8(frames).numpy()


def _to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float -> (B, H, W, 3) uint8 on the same device, rounded and clamped."""
    return frames.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def _unpack(
    flat: np.ndarray, shapes: list[tuple[int, ...]], planes: PlaneFormat | None
) -> np.ndarray | list[YUVPlanes]:
    """(B, bytes) uint8 downloaded -> (B, H, W, 3) RGB frames, or B YUVPlanes of `planes` (shapes Y, U, V)."""
    if planes is None:
        return flat.reshape(len(flat), *shapes[0])
    cut = np.cumsum([0, *(int(np.prod(shape)) for shape in shapes)])
    return [
        YUVPlanes(
            *(row[cut[k] : cut[k + 1]].reshape(shapes[k]) for k in range(3)),
            planes.pix_fmt,
            planes.matrix,
            planes.range_name,
        )
        for row in flat
    ]


def gather_windows(frames: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(F, H, W, 3) uint8 frames and (B, 5) integer indices -> (B, 5, 3, H, W) float windows in [0, 1],
    gathered and converted where the frames are: `windows_to_tensor(frames[index])`'s values and layout
    (the same strides, so the same kernels)."""
    return frames[index.long()].float().div_(255).permute(0, 1, 4, 2, 3)


def stream_windows(frames: Iterable[T]) -> Iterator[tuple[T, list[T]]]:
    """(frame t, [frames t-2 .. t+2]) for every frame in order, holding at most 5 frames; windows reflect
    at both ends, which the stream's end is found to be only when the iterator runs out."""
    for t, indices, buffer in _indexed_windows(frames):
        yield buffer[t], [buffer[i] for i in indices]


def _indexed_windows(frames: Iterable[T]) -> Iterator[tuple[int, list[int], dict[int, T]]]:
    """(t, the stream positions of its window, the frames held by position) for every frame t in order;
    the frames held are valid during the step (frames before t - 2 are let go after it)."""
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
        yield t, list(indices), buffer
        buffer.pop(t - 2, None)
        t += 1


_END: Any = object()


def derain_stream(
    frames: Iterable[np.ndarray | YUVPlanes],
    restorer: Restorer,
    batch: int = 4,
    first: int = 0,
    count: int | None = None,
    planes: PlaneFormat | None = None,
) -> Iterator[np.ndarray | YUVPlanes]:
    """Derain frames (H, W, 3) uint8 arriving one at a time; yields derained frames in the same order.
    A frame may come as a YUV frame's planes instead (video.colour.YUVPlanes), converted to RGB on the
    device (`Restorer.upload_pixels`); with `planes` the derained frames come as YUVPlanes in that format,
    made on the device (`Restorer.restore_windows`).
    With `first` / `count` only frames first .. first + count - 1 are derained, the others being context: a
    part of a video with (up to) two frames on each side derains as it would within the whole video.

    Each frame goes to the device once, as uint8 (`Restorer.upload`), and stays there while a window needs
    it; a batch's windows are gathered there. Batches hold the windows they held when windows were stacked
    on the host, and the output is bit for bit the same (tests/test_gpu_pipeline.py). On CUDA one batch is
    in flight (`Restorer.launch_windows`): a batch's results are handed on once the next batch is queued."""
    on_device: dict[int, torch.Tensor] = {}  # stream position -> (H, W, 3) uint8 frame on the device
    new: dict[int, np.ndarray | YUVPlanes] = {}  # positions a pending window needs, not uploaded yet
    pending: list[list[int]] = []
    in_flight: Callable[[], np.ndarray | list[YUVPlanes]] | None = None
    for position, indices, held in _indexed_windows(frames):
        if position < first or (count is not None and position >= first + count):
            continue
        new.update((i, held[i]) for i in indices if i not in on_device and i not in new)
        pending.append(indices)
        if len(pending) >= min(batch, restorer.batch_limit or batch):  # fewer after an out-of-memory
            launched = _launch_pending(restorer, pending, new, on_device, planes)
            if in_flight is not None:
                yield from in_flight()
            in_flight = launched
            pending, new = [], {}
            for stale in [i for i in on_device if i < position - 1]:  # later windows start at >= t - 1
                del on_device[stale]  # (work queued on the device before keeps its memory: stream order)
    if pending:
        launched = _launch_pending(restorer, pending, new, on_device, planes)
        if in_flight is not None:
            yield from in_flight()
        in_flight = launched
    if in_flight is not None:
        yield from in_flight()


def _launch_pending(
    restorer: Restorer,
    pending: list[list[int]],
    new: dict[int, np.ndarray | YUVPlanes],
    on_device: dict[int, torch.Tensor],
    planes: PlaneFormat | None = None,
    pipeline: bool | None = None,
) -> Callable[[], np.ndarray | list[YUVPlanes]]:
    """Upload the frames of `new` (one copy for RGB frames, one for planes), then queue the derain of the
    `pending` windows (stream positions), as RGB or as `planes`; the callable returned gives the frames.
    More windows than the restorer's batch_limit, or out of memory on the way (Restorer.out_of_memory
    lowers the limit): the windows go in groups of the limit, each done and downloaded before the next
    starts (not pipelined: the batch in flight before holds one of the two download buffers)."""
    if len(pending) <= (restorer.batch_limit or len(pending)):
        try:
            return _launch(restorer, pending, new, on_device, planes, pipeline)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not _is_oom(exc):
                raise
        restorer.out_of_memory(len(pending))  # outside the except: its traceback held the attempt's tensors
    limit = restorer.batch_limit or len(pending)
    done: list[np.ndarray | list[YUVPlanes]] = []
    for at in range(0, len(pending), limit):
        group = pending[at : at + limit]
        needed = {i: new[i] for w in group for i in w if i in new and i not in on_device}
        done.append(_launch_pending(restorer, group, needed, on_device, planes, pipeline=False)())
    if planes is None:
        frames = np.concatenate(done)  # (B, H, W, 3)
        return lambda: frames
    joined = [frame for part in done for frame in part]
    return lambda: joined


def _launch(
    restorer: Restorer,
    pending: list[list[int]],
    new: dict[int, np.ndarray | YUVPlanes],
    on_device: dict[int, torch.Tensor],
    planes: PlaneFormat | None,
    pipeline: bool | None,
) -> Callable[[], np.ndarray | list[YUVPlanes]]:
    restorer._lap(None)
    if new:
        order = sorted(new)
        on_device.update(zip(order, restorer.upload_pixels([new[i] for i in order]), strict=True))
    windows = restorer.assemble([on_device[i] for w in pending for i in w])
    restorer._lap("upload")
    return restorer.launch_windows(windows, planes, pipeline)


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
