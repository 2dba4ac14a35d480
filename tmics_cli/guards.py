"""Sizes the user gives, checked against the data and this machine's memory before any work starts.

A run that cannot fit must not start: `train --crop 4096` on 320x240 clips once grew to 21 GB and was
killed by the kernel without a word. So every command estimates what a step will hold and refuses, in one
line that says what fits, sizes that cannot work:

    check_crop(crop, clips, paired)                  crop against the smallest clip or paired frame
    check_training_memory(model, crop, batch, ...)   one training step (train, search) against RAM or GPU
    check_derain_memory(model, h, w, batch, ...)     a batch of windows at a frame size against RAM

The estimate of a forward (and backward) pass is measured, not modelled: the network runs once on a
32 x 32 probe, batch 1, while a dispatch mode adds up the bytes of the tensors alive at each moment; the
peak, per pixel, is scaled to the crop or frame and the batch (it is nearly constant per pixel: 3566 and
3591 B/px at 64 and 32 pixels for `small` in training). The process's peak RSS was 1.35 to 1.5 times that
peak (allocator slack; measured on the CPU for tiny, small, small-full and paper, training and
inference), so MARGIN is 1.5. The probe runs on a copy of the model and draws no random numbers, so it
changes neither the weights, the batch-norm statistics nor the seeded data stream. Its first run in a
process costs about a second (torch imports its compiler stack for the dispatch mode), a visible part of
derain's start-up on a short clip, so each result is kept in the user's tmics cache (ESTIMATES, keyed by
the network's description, its flow, the mode, tmics' and torch's versions) and measured once.

TMICS_NO_MEMORY_CHECK=1 skips the memory checks (for a machine whose swap the estimate does not count).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch

MARGIN = 1.5  # measured peak RSS over the measured peak of live tensors: 1.35-1.5
PROBE = 32  # probe side in pixels (a multiple of every named size's scale)
SAMPLE_BYTES_PER_PIXEL = (5 * 3 + 3 + 4 * 2) * 4  # a training sample: 5 frames, target, 4 flows, float32
WINDOW_BYTES_PER_PIXEL = 5 * 3 * (1 + 4) + 3 * (4 + 1)  # a window as uint8 and float, its output likewise
SKIP_ENV = "TMICS_NO_MEMORY_CHECK"
ESTIMATES = "memory-estimates.json"  # in weights.cache_root(): bytes_per_pixel by estimate_key


class SizeError(ValueError):
    """A size that does not fit the data or the machine; the message is one line that says what fits."""


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover - unreachable


def available_ram() -> int | None:
    """Bytes of RAM a new allocation can get now: MemAvailable (Linux), else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            return os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            continue
    return None


def available_memory(device: torch.device) -> tuple[int | None, str]:
    """(free bytes, what they are in words) on `device`: GPU memory for CUDA, RAM otherwise."""
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
            return int(free), f"is free on {device}"
        except (RuntimeError, AssertionError):
            return None, ""
    return available_ram(), "of RAM is available"


def _checks_off() -> bool:
    return os.environ.get(SKIP_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _peak_mode() -> Any:
    """A dispatch mode that follows the bytes of every tensor storage created under it, and their peak."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class PeakBytes(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live = self.peak = 0
            self.alive: set[int] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if not isinstance(t, torch.Tensor):
                    continue
                storage = t.untyped_storage()
                key, size = storage.data_ptr(), storage.nbytes()
                if size == 0 or key in self.alive:
                    continue  # a view or an in-place result: no new memory
                self.alive.add(key)
                self.live += size
                self.peak = max(self.peak, self.live)
                weakref.finalize(storage, self._free, key, size)  # the storage's Python object lives as long
            return out

        def _free(self, key: int, size: int) -> None:
            self.alive.discard(key)
            self.live -= size

    return PeakBytes()


def peak_bytes(fn: Callable[[], Any]) -> int | None:
    """The peak of the bytes of tensors alive while `fn` runs (not counting those it was given), or None
    where this torch cannot tell."""
    try:
        mode = _peak_mode()
        with mode:
            fn()
        return mode.peak
    except Exception:  # noqa: BLE001 - a private torch API: without it there is no estimate, not an error
        return None


def estimate_key(model: torch.nn.Module, train: bool) -> str | None:
    """What bytes_per_pixel's probe depends on, as a short hash; None for a network without a description."""
    from .version import __version__

    to_dict = getattr(getattr(model, "config", None), "to_dict", None)
    if to_dict is None:
        return None
    what = {
        "network": to_dict(), "flow": getattr(model, "flow_name", None), "train": train, "probe": PROBE,
        "tmics": __version__, "torch": torch.__version__,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _estimates_file() -> Any:
    from .weights import cache_root

    return cache_root() / ESTIMATES


def _read_estimates() -> dict[str, float]:
    try:
        found = json.loads(_estimates_file().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {k: float(v) for k, v in found.items() if isinstance(v, (int, float))}


def _keep_estimate(key: str, value: float) -> None:
    """Add one estimate to the cache file (written atomically by tmics_cli.outputs, replacing tmics' own
    file; a cache that cannot be written is only a slower start next time)."""
    from .outputs import write_text

    path = _estimates_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(
            path, json.dumps({**_read_estimates(), key: value}, indent=1, sort_keys=True), overwrite=True
        )
    except (OSError, ValueError):  # ValueError: outputs.OutputError, e.g. the name is a folder
        pass


def bytes_per_pixel(model: torch.nn.Module, train: bool, cached: bool = True) -> float | None:
    """Peak bytes of one window's forward pass (and backward when `train`) per pixel of the window, on a
    copy of `model` on the CPU (the original's weights and statistics stay untouched). With `cached`, a
    value measured before for the same network (estimate_key) is read from the user's tmics cache, and a
    new one is kept there."""
    key = estimate_key(model, train) if cached else None
    if key is not None and (known := _read_estimates().get(key)) is not None:
        return known
    probe = copy.deepcopy(model).cpu().float().train(train)
    frames = torch.full((1, 5, 3, PROBE, PROBE), 0.5)
    flows = torch.zeros(1, 4, 2, PROBE, PROBE) if train else None  # training passes its flows in

    def step() -> None:
        if train:
            out = probe(frames, flows, return_all=True)
            (out.dna.mean() + out.cna.mean() + out.derained.mean()).backward()
        else:
            with torch.no_grad():
                probe(frames)

    peak = peak_bytes(step)
    if peak is None:
        return None
    if key is not None:
        _keep_estimate(key, peak / PROBE**2)
    return peak / PROBE**2


def parameter_count(build: Callable[[], torch.nn.Module]) -> int | None:
    """Parameters of the network `build` makes, built on the meta device (no memory taken)."""
    try:
        with torch.device("meta"):
            return sum(p.numel() for p in build().parameters())
    except Exception:  # noqa: BLE001 - an estimate only
        return None


def check_parameters(build: Callable[[], torch.nn.Module], device: torch.device, width: str) -> None:
    """Refuse a network (e.g. a huge --width) whose weights, gradients and Adam state cannot fit."""
    if _checks_off():
        return
    count = parameter_count(build)
    free, where = available_memory(device)
    if count is None or free is None:
        return
    need = 16 * count  # float32 weights, gradients and Adam's two moments
    if need > free:
        raise SizeError(
            f"{width} makes a network of {count:,} parameters, which with gradients and optimiser state "
            f"needs about {format_bytes(need)}; {format_bytes(free)} {where}: choose a smaller --width "
            f"or --size (or set {SKIP_ENV}=1 to try anyway)"
        )


def _side(frames: Any) -> tuple[int, int]:
    h, w = frames.shape[:2]
    return int(h), int(w)


def check_crop(crop: int, clips: Sequence[Any], paired: Sequence[Any] = ()) -> None:
    """Refuse a crop larger than the smallest clip or paired frame, naming it and its size. `clips` are
    data.datasets.Clip (frames in memory); `paired` PairedVideo, whose first rain and ground-truth frames
    are read here (and must have one size)."""
    from .data.datasets import DataError, read_image

    sizes: list[tuple[str, int, int]] = []
    for clip in clips:
        if clip.frames:
            h, w = _side(clip.frames[0])
            sizes.append((f"clip {clip.name}", h, w))
    for video in paired:
        rain, gt = read_image(video.rain[0]), read_image(video.gt[0])
        if rain.shape[:2] != gt.shape[:2]:
            raise DataError(
                f"paired video {video.name} frame 1: rain {video.rain[0].name} is {rain.shape[1]}x"
                f"{rain.shape[0]} but ground truth {video.gt[0].name} is {gt.shape[1]}x{gt.shape[0]}"
            )
        h, w = _side(rain)
        sizes.append((f"paired video {video.name}", h, w))
    if not sizes:
        return
    name, h, w = min(sizes, key=lambda s: min(s[1], s[2]))
    if crop > min(h, w):
        raise SizeError(
            f"--crop {crop} is larger than {name} ({w}x{h}): give --crop {min(h, w)} or less "
            "(the smallest side of the smallest clip)"
        )


def _largest(fits: Callable[[int], bool], low: int, high: int) -> int | None:
    """The largest n in [low, high] with fits(n) (fits is monotonic), or None."""
    if not fits(low):
        return None
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def check_training_memory(
    model: torch.nn.Module,
    crop: int,
    batch: int,
    device: torch.device,
    *,
    workers: int = 0,
    pool: int = 0,
    processes: int = 1,
) -> float | None:
    """Refuse a --crop / --batch whose training step cannot fit in this machine's memory (the step in GPU
    memory on CUDA, in RAM otherwise). `workers` loader processes each hold 2 batches of samples in RAM;
    `pool` samples stay in RAM for the whole run (search's --groups + --val-groups). `processes` (torchrun
    on one machine) share the RAM. Returns the estimate in bytes (None: no estimate)."""
    if _checks_off():
        return None
    per_pixel = bytes_per_pixel(model, train=True)
    ram = available_ram()
    gpu, gpu_where = available_memory(device) if device.type == "cuda" else (None, "")
    if per_pixel is None or ram is None:
        return None
    ram //= processes
    params = 16 * sum(p.numel() for p in model.parameters())  # weights, gradients, Adam moments

    def need(c: int, b: int, g: int = pool) -> tuple[float, float]:
        """(bytes of the step, bytes of the samples waiting in RAM)"""
        step = MARGIN * (per_pixel + SAMPLE_BYTES_PER_PIXEL) * c * c * b + params
        return step, SAMPLE_BYTES_PER_PIXEL * c * c * ((2 * workers + 1) * b + g)

    def fits(c: int, b: int, g: int = pool) -> bool:
        step, data = need(c, b, g)
        if gpu is not None:
            return step <= gpu and data <= ram
        return step + data <= ram

    if fits(crop, batch):
        return sum(need(crop, batch))
    step, data = need(crop, batch)
    if gpu is not None and step > gpu:
        what = f"--crop {crop} --batch {batch} needs about {format_bytes(step)} per training step (estimate)"
        have = f"{format_bytes(gpu)} {gpu_where}"
    else:
        held = f", {pool} pooled windows (--groups + --val-groups) included" if pool else ""
        total = data if gpu is not None else step + data
        what = f"--crop {crop} --batch {batch} needs about {format_bytes(total)} (estimate{held})"
        have = f"{format_bytes(ram)} of RAM is available"
    best_batch = _largest(lambda b: fits(crop, b), 1, batch)
    best_pool = _largest(lambda g: fits(crop, min(batch, g), g), 2, pool) if pool else None
    best_crop = _largest(lambda c: fits(c, 1), 16, crop)
    if best_batch is not None:
        hint = f"at --crop {crop} up to --batch {best_batch} fits"
    elif best_pool is not None:
        hint = f"at --crop {crop} up to {best_pool} windows in --groups + --val-groups fit"
    elif best_crop is not None:
        hint = f"even --batch 1 does not fit at --crop {crop}; --crop {best_crop // 16 * 16} --batch 1 would"
    else:
        hint = "even --crop 16 --batch 1 does not fit: choose a smaller --size or --width"
    raise SizeError(f"{what}; {have}: {hint} (or set {SKIP_ENV}=1 to try anyway)")


def check_derain_memory(
    model: torch.nn.Module,
    height: int,
    width: int,
    batch: int,
    device: torch.device,
    *,
    tile: int | None = None,
    compare: bool = False,
    min_tile: int = 64,
) -> float | None:
    """Refuse a --batch (or whole frames without --tile) whose windows cannot fit in RAM at this frame
    size. On a GPU only the host's share is checked (windows, queues): out of GPU memory, derain itself
    halves the windows per call down to one, then tiles (inference.Restorer). Returns the estimate in
    bytes (None: no estimate)."""
    if _checks_off():
        return None
    free = available_ram()
    if free is None:
        return None
    pixels = height * width
    on_cpu = device.type == "cpu"
    per_pixel = bytes_per_pixel(model, train=False) if on_cpu else 0.0
    if per_pixel is None:
        return None
    # frames waiting in the decode and encode queues (2 batches + a few each), outputs twice as wide
    queued = 3 * pixels * (1 + (2 if compare else 1))

    def need(b: int, t: int | None) -> float:
        tiled = pixels if not t else min(t, height) * min(t, width)
        model_part = MARGIN * per_pixel * tiled * b
        if t and tiled < pixels:  # tiles are stitched into whole-frame buffers (DNA, CNA, flows, weights)
            model_part += MARGIN * (3 + 3 + 1 + 8) * 4 * pixels * b
        return model_part + WINDOW_BYTES_PER_PIXEL * pixels * b + queued * (4 * b + 8)

    estimate = need(batch, tile)
    if estimate <= free:
        return estimate
    what = (
        f"--batch {batch} at {width}x{height} needs about {format_bytes(estimate)} (estimate); "
        f"{format_bytes(free)} of RAM is available"
    )
    best_batch = _largest(lambda b: need(b, tile) <= free, 1, batch)
    if best_batch is not None:
        hint = f"use --batch {best_batch} or less"
    elif on_cpu:
        sides = range(max(height, width) // min_tile * min_tile, min_tile - 1, -min_tile)
        best_tile = next((t for t in sides if (not tile or t < tile) and need(1, t) <= free), None)
        hint = (
            f"even one window does not fit; --batch 1 --tile {best_tile} would"
            if best_tile is not None
            else f"even one window in {min_tile}-pixel tiles does not fit"
        )
    else:
        hint = "even one window does not fit"
    raise SizeError(f"{what}: {hint} (or set {SKIP_ENV}=1 to try anyway)")
