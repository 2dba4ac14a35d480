"""`derain_video(src, dst)`: a whole video (or folder of frames) derained into a new one, streaming.

    decode thread ──frames──▶ model (this thread, batches of 5-frame windows) ──frames──▶ encode thread

Decoding and encoding overlap the model's compute through bounded queues, so memory stays flat in the
video's length and a GPU does not wait on I/O. One output frame per input frame, in order, with the input's
timestamps. The output is written to a temporary file beside `dst` and renamed at the end.

Damage in the input (decoder errors, frames flagged corrupt, a video that stops short of what its container
states, truncated JPEG/PNG frames) is a `VideoWarning` per finding and the work goes on; with `strict=True`
it is a `VideoError` and, as after any error, no output is left.
"""

from __future__ import annotations

import math
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .guards import check_derain_memory
from .inference import (
    HEAVY_RAIN_COVERAGE,
    MIN_TILE,
    Restorer,
    default_batch,
    derain_stream,
    pick_device,
    pick_precision,
    rain_level,
)
from .model.io import load_model
from .video.reader import (
    SourceFrame,
    SourceInfo,
    VideoError,
    VideoWarning,
    check_input,
    open_source,
    parse_time,
)
from .video.writer import EncodeOptions, check_encoder, check_output, is_folder_output, open_sink
from .weights import resolve_weights

RAIN_LEVELS = ("light", "heavy", "auto")
DEFAULT_TILE_OVERLAP = 32
MIN_FPS = 0.01  # a folder's frame rate becomes a fraction with a denominator of at most 1001
SAMPLE_CLIP = Path(__file__).resolve().parent / "assets" / "sample-rain.mp4"


@dataclass
class DerainSummary:
    frames: int
    seconds: float
    device: str
    precision: str
    weights: str
    rain: str  # the rain level whose weights ran ("custom" for --weights)
    output: Path
    rain_note: str = ""  # why --rain auto chose what it chose
    timings: dict[str, float] = field(default_factory=dict)  # seconds spent in decode / model / encode

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.frames} frames in {self.seconds:.1f} s ({self.fps:.2f} fps) on {self.device}, "
            f"{self.precision}, weights {self.weights} -> {self.output}"
        )


class _Background:
    """Run `iterable` in a thread; iterate the items here (bounded queue; errors re-raised here)."""

    def __init__(self, iterable: Iterable[Any], size: int) -> None:
        self.queue: queue.Queue = queue.Queue(size)
        self.stop = threading.Event()
        self.busy = 0.0
        self.thread = threading.Thread(target=self._run, args=(iterable,), daemon=True)
        self.thread.start()

    def _run(self, iterable: Iterable[Any]) -> None:
        try:
            iterator = iter(iterable)
            while not self.stop.is_set():
                start = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    break
                self.busy += time.perf_counter() - start
                self._put(("item", item))
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
            self._put(("error", exc))
            return
        self._put(("end", None))

    def _put(self, message: tuple[str, Any]) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(message, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Any]:
        while True:
            kind, item = self.queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item

    def close(self) -> None:
        """Stop the thread and wait for it, so the source can be closed under it safely."""
        self.stop.set()
        while self.thread.is_alive():
            try:  # make room in case it waits to put
                self.queue.get_nowait()
            except queue.Empty:
                pass
            self.thread.join(timeout=0.05)


class _Writer:
    """Consume (rgb, pts) items in a thread and hand them to a sink; errors surface on put/finish."""

    def __init__(self, sink: Any, size: int) -> None:
        self.sink = sink
        self.queue: queue.Queue = queue.Queue(size)
        self.error: BaseException | None = None
        self.cancelled = threading.Event()
        self.busy = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None or self.cancelled.is_set():
                continue  # drain: after an error or a cancel nothing more reaches the sink
            try:
                start = time.perf_counter()
                self.sink.write(*item)
                self.busy += time.perf_counter() - start
            except BaseException as exc:  # noqa: BLE001 - handed to the producing thread
                self.error = exc

    def put(self, rgb: np.ndarray, pts: int) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((rgb, pts))

    def finish(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def cancel(self) -> None:
        """Stop writing; returns once the thread no longer touches the sink (so it may be closed)."""
        self.cancelled.set()
        self.queue.put(None)  # the thread drains the queue without writing, so this put cannot block long
        self.thread.join()


def load_weights(rain: str = "light", weights: str | Path | None = None, device: str | torch.device = "cpu"):
    """The model for a rain level or a weights file; errors as one line (FileNotFoundError, WeightsError)."""
    path = resolve_weights(weights if weights is not None else rain)
    return load_model(path, device), path


def _read_first(
    src: Path, count: int, fps: float, start: float | None, end: float | None, strict: bool = False
) -> list[np.ndarray]:
    source = open_source(src, fps=fps, start=start, end=end, strict=strict)
    try:
        frames = []
        with warnings.catch_warnings():  # damage is told (or, strict, raised) once: by the pass that derains
            warnings.simplefilter("ignore", VideoWarning)
            for item in source:
                frames.append(item.rgb)
                if len(frames) >= count:
                    break
        return frames
    finally:
        source.close()


def parse_times(start: str | float | None, end: str | float | None) -> tuple[float | None, float | None]:
    """--start and --end in seconds (None where not given); anything but a finite time is refused."""
    out = []
    for option, text in (("--start", start), ("--end", end)):
        seconds = parse_time(text)
        if seconds is not None and not math.isfinite(seconds):
            raise VideoError(f"{option} {text} is not a time: give seconds (12.5), mm:ss or hh:mm:ss")
        out.append(seconds)
    return out[0], out[1]


def check_fps(fps: float) -> None:
    """--fps (the frame rate of a folder of frames) must be a finite positive number."""
    if not isinstance(fps, int | float) or not math.isfinite(fps) or fps < MIN_FPS:
        raise VideoError(
            f"--fps must be a positive number of frames per second (at least {MIN_FPS}), got {fps}"
        )


def tile_overlap_for(tile: int | None, tile_overlap: int | None) -> int:
    """The overlap of neighbouring tiles: as given (checked), else 32, or the largest a small tile allows."""
    if tile and tile < MIN_TILE:
        raise ValueError(f"--tile {tile} is too small: give 0 (whole frames) or at least {MIN_TILE} pixels")
    if tile_overlap is None:
        return min(DEFAULT_TILE_OVERLAP, tile // 2 - 1) if tile else DEFAULT_TILE_OVERLAP
    if tile_overlap < 0:
        raise ValueError(f"--tile-overlap must be 0 or more, got {tile_overlap}")
    if tile and tile_overlap >= tile // 2:
        raise ValueError(
            f"--tile-overlap {tile_overlap} must be less than half of --tile {tile} (at most {tile // 2 - 1})"
        )
    return tile_overlap


@dataclass
class _Setup:
    restorer: Restorer
    weights: Path
    rain: str
    note: str
    batch: int
    dtype: torch.dtype


def _setup(
    src: Path,
    rain: str,
    weights: str | Path | None,
    device: str,
    precision: str,
    batch: int | None,
    tile: int | None,
    tile_overlap: int | None,
    fps: float,
    start: float | None,
    end: float | None,
    strict: bool = False,
    size: tuple[int, int] | None = None,
    compare: bool = False,
) -> _Setup:
    """Check the options and load the model (choosing the rain level for auto); no output touched yet.
    With the frames' (height, width) `size`, a batch whose windows cannot fit in memory is refused."""
    if rain not in RAIN_LEVELS:
        raise ValueError(f"unknown rain level {rain!r}; known: {', '.join(RAIN_LEVELS)}")
    torch_device = pick_device(device)
    dtype = pick_precision(precision, torch_device)
    if batch is not None and batch < 1:
        raise ValueError(f"--batch must be at least 1, got {batch}")
    tile_overlap = tile_overlap_for(tile, tile_overlap)
    note = ""
    if weights is None and rain == "auto":
        level, coverage = rain_level(_read_first(src, 13, fps, start, end, strict))
        note = (
            f"rain auto: {coverage:.1%} of pixels brighter than their aligned neighbours -> {level}"
            f" (heavy from {HEAVY_RAIN_COVERAGE:.0%})"
        )
        rain = level
    model, path = load_weights(rain, weights, "cpu")
    batch = batch or default_batch(torch_device)
    if size is not None:
        check_derain_memory(model, *size, batch, torch_device, tile=tile, compare=compare, min_tile=MIN_TILE)
    restorer = Restorer(model, torch_device, dtype, tile=tile, tile_overlap=tile_overlap)
    return _Setup(restorer, path, rain if weights is None else "custom", note, batch, dtype)


def _open(
    src: Path,
    rain: str,
    weights: str | Path | None,
    device: str,
    precision: str,
    batch: int | None,
    tile: int | None,
    tile_overlap: int | None,
    fps: float,
    start: str | float | None,
    end: str | float | None,
    strict: bool,
    compare: bool = False,
) -> tuple[Any, _Setup]:
    """Check --fps and the times, open the source and set up the model for its frame size (the source is
    closed again if the set-up fails): the start that derain_video and iter_derained share."""
    check_fps(fps)
    start_s, end_s = parse_times(start, end)
    source = open_source(src, fps=fps, start=start_s, end=end_s, strict=strict)
    try:
        size = (source.info.height, source.info.width)
        setup = _setup(
            src,
            rain,
            weights,
            device,
            precision,
            batch,
            tile,
            tile_overlap,
            fps,
            start_s,
            end_s,
            strict,
            size=size,
            compare=compare,
        )
    except BaseException:
        source.close()
        raise
    return source, setup


def _weights_read(rain: str, weights: str | Path | None) -> list[Path]:
    """The weights files a run may read (both for --rain auto), so that no output lands on them."""
    names = [weights] if weights is not None else (["light", "heavy"] if rain == "auto" else [rain])
    found = []
    for name in names:
        try:
            found.append(Path(resolve_weights(name)))
        except Exception:  # noqa: BLE001 - an unknown name is refused with its own message later
            if Path(name).exists():
                found.append(Path(name))
    return found


def _not_in_frames(info: SourceInfo, dst: Path) -> str:
    """The warning for a frames-folder output of a video with other streams: pictures hold none of them."""
    counts: dict[str, int] = {}
    for kind in info.other_streams:
        counts[kind] = counts.get(kind, 0) + 1
    kinds = ", ".join(f"{n} {kind} stream{'s' if n > 1 else ''}" for kind, n in counts.items())
    return (
        f"{info.path}: not kept in the frames folder {dst} (PNG frames hold pictures only): {kinds}, "
        "chapters and tags; write a video file (e.g. .mkv) to keep them"
    )


def _pixels(frames: Iterable[SourceFrame], pending: list[SourceFrame]) -> Iterator[np.ndarray]:
    """The frames' pixels for the model; each frame waits in `pending` until its output comes back."""
    for item in frames:
        pending.append(item)
        yield item.rgb


def iter_derained(
    src: str | Path,
    *,
    rain: str = "light",
    weights: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    batch: int | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
    start: str | float | None = None,
    end: str | float | None = None,
    fps: float = 25.0,
    strict: bool = False,
) -> Iterator[tuple[SourceFrame, np.ndarray]]:
    """Derain a video or frame folder lazily: yields (input frame, with its index and timestamp;
    derained frame (H, W, 3) uint8 RGB) in order, decoding in a background thread. Damage in the input
    is a `VideoWarning`, or with `strict` a `VideoError` raised where it is found."""
    src = check_input(src)
    source, setup = _open(
        src, rain, weights, device, precision, batch, tile, tile_overlap, fps, start, end, strict
    )
    reader = _Background(source, size=2 * setup.batch + 6)
    pending: list[SourceFrame] = []
    try:
        for out in derain_stream(_pixels(reader, pending), setup.restorer, setup.batch):
            yield pending.pop(0), out
    finally:
        reader.close()
        source.close()


derained_frames = iter_derained  # the name before 0.2


def derain_video(
    src: str | Path,
    dst: str | Path,
    *,
    rain: str = "light",
    weights: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    batch: int | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
    codec: str | None = None,
    crf: int = 18,
    preset: str = "medium",
    pix_fmt: str | None = None,
    compare: bool = False,
    start: str | float | None = None,
    end: str | float | None = None,
    fps: float = 25.0,
    audio: bool = True,
    overwrite: bool = False,
    strict: bool = False,
    on_start: Callable[[SourceInfo, str], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> DerainSummary:
    """Derain the video (or frame folder) `src` into `dst` (a video file, or a folder of PNG frames when
    `dst` has no suffix). `rain` picks the shipped weights (light, heavy, or auto: measured on the first
    frames), `weights` a file instead. Damage found in the input is a `VideoWarning` per finding, or with
    `strict` an error. Input that cannot be seeked in (a pipe, stdin, a device) is refused before anything
    is read. Raises VideoError / OutputError (an output that would lose data) / ValueError /
    FileNotFoundError / WeightsError / MemoryError with one-line messages; after any error no file is left
    at `dst`. An existing `dst` is replaced only with `overwrite` (see tmics_cli.outputs)."""
    src, dst = check_input(src), Path(dst)
    begin = time.perf_counter()
    if not src.exists():
        raise VideoError(f"{src} does not exist")
    check_output(src, dst, overwrite, also_read=_weights_read(rain, weights))
    options = EncodeOptions(codec, crf, preset, pix_fmt, audio)
    check_encoder(dst, options)
    source, setup = _open(
        src, rain, weights, device, precision, batch, tile, tile_overlap, fps, start, end, strict, compare
    )
    info = source.info
    try:
        out_w = info.width * (2 if compare else 1)
        sink = open_sink(dst, info, options, out_w, info.height, overwrite)
        if is_folder_output(dst) and info.other_streams:
            warnings.warn(_not_in_frames(info, dst), VideoWarning, stacklevel=2)
    except BaseException:
        source.close()
        raise
    if on_start is not None:
        on_start(info, setup.note)
    reader = _Background(source, size=2 * setup.batch + 6)
    writer = _Writer(sink, size=2 * setup.batch + 2)
    pending: list[SourceFrame] = []
    done = 0
    try:
        for out in derain_stream(_pixels(reader, pending), setup.restorer, setup.batch):
            item = pending.pop(0)
            writer.put(np.concatenate([item.rgb, out], 1) if compare else out, item.pts)
            done += 1
            if on_frame is not None:
                on_frame(done)
        writer.finish()
        sink.commit()
    except BaseException:
        writer.cancel()
        reader.close()
        sink.abort()
        raise
    finally:
        reader.close()
        source.close()
    return DerainSummary(
        frames=done,
        seconds=time.perf_counter() - begin,
        device=str(setup.restorer.device),
        precision={torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[setup.dtype],
        weights=setup.weights.name if weights is None else str(setup.weights),
        rain=setup.rain,
        output=dst,
        rain_note=setup.note,
        timings={"decode": reader.busy, "model": setup.restorer.seconds, "encode": writer.busy},
    )
