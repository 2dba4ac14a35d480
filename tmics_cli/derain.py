"""`derain_video(src, dst)`: a whole video (or folder of frames) derained into a new one, streaming;
`Derainer`: the model loaded once for many inputs (the object `tmics derain` wraps).

    decode thread ──frames──▶ model (this thread, batches of 5-frame windows) ──frames──▶ encode thread

Decoding and encoding overlap the model's compute through bounded queues, so memory stays flat in the
video's length and a GPU does not wait on I/O. One output frame per input frame, in order, with the input's
timestamps. A video is derained as segments (about 10 s each) recorded in a job folder beside the output
(`tmics_cli.jobs`): a run that dies keeps its finished segments and the same call resumes; at the end the
segments are joined by stream copy with the input's other streams (`video.join`) and the result is renamed
onto `dst`.

Damage in the input (decoder errors, frames flagged corrupt, a video that stops short of what its container
states, truncated JPEG/PNG frames) is a `VideoWarning` per finding and the work goes on; with `strict=True`
it is a `VideoError` and, as after any error, no output is left.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
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
from .jobs import Job, JobGone, input_identity, job_folder, plan_segments, read_manifest
from .model.align import FLOW_CHOICES, GPU_DEVICE_TYPES, choose_flow
from .model.io import load_model
from .outputs import MARKER, OutputError, check_apart
from .records import CHANGED, made_by, record_output
from .segments import BackgroundReader, SegmentRunner, model_pixels
from .video.compare import panel_size, shown_rotation
from .video.join import join_frames, join_video
from .video.reader import (
    SourceFrame,
    SourceInfo,
    VideoError,
    VideoWarning,
    check_input,
    open_media,
    open_source,
    parse_time,
)
from .video.writer import EncodeOptions, check_encoder, check_output, is_folder_output, piece_late
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
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage: segments.TIMINGS, join
    status: str = "done"  # "skipped": the output was already whole; "helped": a helper worker's share
    resumed: tuple[int, int] | None = None  # (segments done before this run, all segments)
    segments: int = 1
    weights_sha256: str = ""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.frames} frames in {self.seconds:.1f} s ({self.fps:.2f} fps) on {self.device}, "
            f"{self.precision}, weights {self.weights} -> {self.output}"
        )


COLOUR_CHOICES = ("auto", "host", "device")


def colour_on_device(colour: str, device: torch.device) -> bool:
    """Whether a video's YUV frames go to the device as planes and become RGB there, and the derained
    frames are made into the encoder's planes there (`colour` device: colour_torch, within a level of
    swscale), or both conversions are swscale's on the host (host). auto: on GPUs (CUDA, MPS), where the
    conversions are a few small kernels and the copies halve (4:2:0 planes are 1.5 bytes a pixel, RGB 3),
    while the host's swscale took 28 ms a 1080p frame on one core here, half the budget of 60 fps, each
    way; on the CPU swscale stays (the torch conversion took 130 ms). Not yet measured on a GPU
    (benchmarks/gpu_check.py's e2e part runs both)."""
    if colour not in COLOUR_CHOICES:
        raise ValueError(f"unknown colour conversion {colour!r}; known: {', '.join(COLOUR_CHOICES)}")
    return colour == "device" or (colour == "auto" and device.type in GPU_DEVICE_TYPES)


def level_weights(rain: str, device: torch.device) -> str:
    """The shipped weights that derain a rain level (light, heavy) on a kind of device: tmics-light-full for
    light rain on GPUs (CUDA, MPS), where its cells at full resolution cost little beside the rest (on
    every held-out set above tmics-light: +0.19 dB on the model card's six, about half a dB on real rain),
    tmics-light on the CPU, where it is 2.2x faster; heavy is heavy everywhere."""
    return "light-full" if rain == "light" and device.type in GPU_DEVICE_TYPES else rain


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
    flow: str = "auto",
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
    model, path = load_weights(level_weights(rain, torch_device), weights, "cpu")
    batch = batch or default_batch(torch_device)
    if size is not None:
        check_derain_memory(model, *size, batch, torch_device, tile=tile, compare=compare, min_tile=MIN_TILE)
    restorer = Restorer(model, torch_device, dtype, tile=tile, tile_overlap=tile_overlap, flow=flow)
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
    flow: str = "auto",
    planes: bool = False,
) -> tuple[Any, _Setup]:
    """Check --fps and the times, open the source and set up the model for its frame size (the source is
    closed again if the set-up fails): the start that derain_video and iter_derained share."""
    check_fps(fps)
    start_s, end_s = parse_times(start, end)
    source = open_source(src, fps=fps, start=start_s, end=end_s, strict=strict, planes=planes)
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
            flow=flow,
        )
    except BaseException:
        source.close()
        raise
    return source, setup


def _weights_read(rain: str, weights: str | Path | None, device: torch.device) -> list[Path]:
    """The weights files a run on `device` may read (both levels' for --rain auto), so that no output lands
    on them."""
    levels = ["light", "heavy"] if rain == "auto" else [rain]
    names = [weights] if weights is not None else [level_weights(level, device) for level in levels]
    found = []
    for name in names:
        try:
            found.append(Path(resolve_weights(name)))
        except Exception:  # noqa: BLE001 - an unknown name is refused with its own message later
            if Path(name).exists():
                found.append(Path(name))
    return found


def _made_otherwise(recorded: dict[str, Any], made: dict[str, Any]) -> str:
    """How the run that made an output differs from this one: 'derained by tmics from another input' or
    '... with other rain, crf'."""
    if recorded.get("input") != made["input"]:
        return "derained by tmics from another input (or this one before it changed)"
    names = [key.replace("_sha256", "") for key in made if key != "input" and recorded.get(key) != made[key]]
    return f"derained by tmics with other {', '.join(names) or 'settings'}"


_HDR_TRANSFER = {16: "PQ", 18: "HLG"}  # AVColorTransferCharacteristic values of HDR video


def _depth_note(info: SourceInfo) -> str:
    """What a derain of a deep-colour or HDR input does not keep: tmics derains and writes 8-bit frames."""
    parts = []
    if info.bits > 8:
        parts.append(
            f"{info.path} is {info.bits}-bit ({info.pix_fmt}): it is derained and written at 8 bits, so "
            "smooth gradients may band"
        )
    else:
        parts.append(f"{info.path} carries HDR metadata")
    transfer = _HDR_TRANSFER.get(info.colour.trc)
    if transfer:
        parts.append(f"its HDR transfer ({transfer}) stays tagged")
    if info.hdr_metadata:
        parts.append(f"its HDR metadata ({', '.join(info.hdr_metadata)}) is not kept")
    return "; ".join(parts)


def _not_in_frames(info: SourceInfo, dst: Path) -> str:
    """The warning for a frames-folder output of a video with other streams, a display rotation or
    non-square pixels: pictures hold none of them (the frames are as stored, unrotated)."""
    counts: dict[str, int] = {}
    for kind in info.other_streams:
        counts[kind] = counts.get(kind, 0) + 1
    kinds = [f"{n} {kind} stream{'s' if n > 1 else ''}" for kind, n in counts.items()]
    if info.other_streams:
        kinds.append("chapters and tags")
    if info.rotation:
        kinds.append(f"the display rotation ({info.rotation} degrees: the frames are as stored, unrotated)")
    if info.pixel_aspect:
        ratio = info.pixel_aspect
        kinds.append(f"the pixel aspect ratio {ratio.numerator}:{ratio.denominator}")
    return (
        f"{info.path}: not kept in the frames folder {dst} (PNG frames hold pictures only): "
        f"{', '.join(kinds)}; write a video file (e.g. .mkv) to keep them"
    )


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
    flow: str = "auto",
    colour: str = "auto",
) -> Iterator[tuple[SourceFrame, np.ndarray]]:
    """Derain a video or frame folder lazily: yields (input frame, with its index and timestamp;
    derained frame (H, W, 3) uint8 RGB) in order, decoding in a background thread. Damage in the input
    is a `VideoWarning`, or with `strict` a `VideoError` raised where it is found. `flow`, `colour`: as
    Derainer's (with the conversion on the device an input frame's `.rgb` is made on the host when asked)."""
    src = check_input(src)
    planes = colour_on_device(colour, pick_device(device))
    source, setup = _open(
        src, rain, weights, device, precision, batch, tile, tile_overlap, fps, start, end, strict,
        flow=flow, planes=planes,
    )  # fmt: skip
    reader = BackgroundReader(source, size=2 * setup.batch + 6)
    pending: list[SourceFrame] = []
    try:
        for out in derain_stream(model_pixels(reader, pending), setup.restorer, setup.batch):
            yield pending.pop(0), out
    finally:
        reader.close()
        source.close()


derained_frames = iter_derained  # the name before 0.2


DEFAULT_SEGMENT_SECONDS = 10.0  # a segment's length when --segment-frames is not given
_BYTES_PER_PIXEL = {"lossy": 0.06, "lossless": 1.2, "png": 2.0}  # output size estimates, for the disk check
_PRECISION_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def weights_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


MIN_SIDE = 12  # pixels a frame needs on one side at least (OpenCV's DIS flow refuses smaller images)


def output_complete(dst: Path, frames: int | None, width: int) -> bool:
    """Whether `dst` already holds a whole derain: a video (or tmics frames folder) of `frames` frames of
    `width` pixels. Outputs only ever appear whole (renamed at the end), so this tells a finished output
    from one cut short or of another input's length or size; it cannot tell one made with other weights
    or settings, or a file of the user's of the same length and size: `records` tells those where this
    machine finished the output, and this is what is left where it did not."""
    if frames is None:
        return False
    if dst.is_dir():
        if not (dst / MARKER).is_file():
            return False
        pngs = [name for name in os.listdir(dst) if name.endswith(".png")]
        return len(pngs) == frames
    import av

    try:
        with open_media(dst) as container:
            if not container.streams.video:
                return False
            stream = container.streams.video[0]
            if stream.codec_context.width != width:
                return False
            return sum(1 for packet in container.demux(stream) if packet.size) == frames
    except (av.error.FFmpegError, OSError, ValueError):
        return False


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _device_kind(name: str) -> torch.device:
    """The kind of a device named for a job (its index dropped), not looked for on this machine."""
    try:
        kind = torch.device(name).type
    except RuntimeError:
        kind = ""
    if kind not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown job device {name!r}: use cpu, cuda or mps")
    return torch.device(kind)


@dataclass
class Prepared:
    """A job ready to be derained: its input, probe, model and job folder (`Derainer.prepare`)."""

    src: Path
    dst: Path
    info: SourceInfo
    job: Job
    restorer: Restorer
    path: Path  # the weights file
    sha: str  # its sha256
    level: str  # the rain level whose weights run ("custom" for --weights)
    note: str  # what --rain auto measured
    folder_out: bool
    begin: float
    done: dict[int, dict[str, Any]]  # segments finished by earlier runs
    made: dict[str, Any] = field(default_factory=dict)  # what makes its output (Derainer.made), recorded


class Derainer:
    """The settings of a derain and its model, loaded once and kept for every input given to `derain`
    (with --rain auto, each input's level is measured and both models are kept as they are needed).

        derainer = Derainer(rain="light", device="auto")
        for src in clips:
            derainer.derain(src, src.with_suffix(".derained.mp4"))

    Options are checked when it is made (ValueError / VideoError with one-line messages).

    `job_device` ("cpu", "cuda" or "mps"; default: `device`'s type) is the kind of device the jobs' segments
    are derained on when that is not this process's own: a cluster's driver (tmics_cli.cluster) prepares
    jobs on its CPU for GPU nodes. Precision auto, the default batch and the jobs' recorded device follow
    it; the model here stays on `device` (in fp32 when the kinds differ) and derains nothing: `work`,
    `help` and `segment` are refused.

    `flow` is the OFM's flow: auto (the device flow, PatchInverseSearchFlow, on CUDA and MPS; DIS on the
    CPU; a trained flow is kept), dis or device (model.align.choose_flow). `colour`: where a video's YUV
    frames become RGB: auto (on the device on CUDA and MPS, on the host on the CPU), host or device
    (colour_on_device)."""

    def __init__(
        self,
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
        segment_frames: int | None = None,
        job_device: str | None = None,
        flow: str = "auto",
        colour: str = "auto",
    ) -> None:
        if rain not in RAIN_LEVELS:
            raise ValueError(f"unknown rain level {rain!r}; known: {', '.join(RAIN_LEVELS)}")
        check_fps(fps)
        if batch is not None and batch < 1:
            raise ValueError(f"--batch must be at least 1, got {batch}")
        if segment_frames is not None and segment_frames < 1:
            raise ValueError(f"--segment-frames must be at least 1, got {segment_frames}")
        if flow not in FLOW_CHOICES:
            raise ValueError(f"unknown flow {flow!r}; known: {', '.join(FLOW_CHOICES)}")
        # as given: what a helper worker needs to make the same Derainer (not job_device: whoever derains
        # the segments runs on that device itself)
        self.kwargs: dict[str, Any] = {
            "rain": rain, "weights": weights, "device": device, "precision": precision, "batch": batch,
            "tile": tile, "tile_overlap": tile_overlap, "codec": codec, "crf": crf, "preset": preset,
            "pix_fmt": pix_fmt, "compare": compare, "start": start, "end": end, "fps": fps, "audio": audio,
            "overwrite": overwrite, "strict": strict, "segment_frames": segment_frames, "flow": flow,
            "colour": colour,
        }  # fmt: skip
        self.rain, self.weights, self.tile, self.compare = rain, weights, tile, compare
        self.tile_overlap = tile_overlap_for(tile, tile_overlap)
        self.start, self.end = parse_times(start, end)
        self.times = (start, end)  # as given, for iter_derained-style checks
        self.fps, self.audio, self.overwrite, self.strict = fps, audio, overwrite, strict
        self.segment_frames = segment_frames
        self.flow = flow
        self.device = pick_device(device)
        self.job_device = self.device if job_device is None else _device_kind(job_device)
        self.device_colour = colour_on_device(colour, self.job_device)
        # The encoder's threads are FFmpeg's choice: on the 2-core CPU at 640x480 (bf16 network) one x264
        # thread ran 8% slower end to end than FFmpeg's choice, with more CPU time (benchmarks/cpu_speedups.py
        # --encoder, results/cpu_speedups.json)
        self.options = EncodeOptions(codec, crf, preset, pix_fmt, audio)
        self.dtype = pick_precision(precision, self.job_device)
        self.batch = batch or default_batch(self.job_device)
        self._models: dict[Path, tuple[Restorer, str]] = {}
        self._shas: dict[Path, str] = {}  # sha256 of the weights files, read once

    @property
    def precision(self) -> str:
        return _PRECISION_NAMES[self.dtype]

    def _runs_here(self) -> bool:
        return self.job_device.type == self.device.type

    def _check_runs_here(self) -> None:
        if not self._runs_here():
            raise ValueError(
                f"this Derainer prepares jobs for {self.job_device.type} workers; it derains nothing on "
                f"{self.device}"
            )

    def weights_file(self) -> Path:
        """The weights that run (for --rain auto, light's: each input's level is said as it starts)."""
        level = "light" if self.rain == "auto" else self.rain
        return Path(
            resolve_weights(
                self.weights if self.weights is not None else level_weights(level, self.job_device)
            )
        )

    def reads(self) -> list[Path]:
        """The weights files a run may read, so that no output lands on them."""
        return _weights_read(self.rain, self.weights, self.job_device)

    def model(self, rain: str) -> tuple[Restorer, Path, str]:
        """The restorer for a rain level (or the --weights file), its path and sha256; loaded once."""
        name = self.weights if self.weights is not None else level_weights(rain, self.job_device)
        path = Path(resolve_weights(name))
        if path not in self._models:
            model = load_model(path, "cpu")
            dtype = self.dtype if self._runs_here() else torch.float32
            restorer = Restorer(
                model, self.device, dtype, tile=self.tile, tile_overlap=self.tile_overlap, flow=self.flow
            )
            self._models[path] = (restorer, weights_sha256(path))
        restorer, sha = self._models[path]
        return restorer, path, sha

    def _level(self, src: Path) -> tuple[str, str]:
        """(rain level, note): as given, or measured on the first frames for auto."""
        if self.weights is not None:
            return "custom", ""
        if self.rain != "auto":
            return self.rain, ""
        level, coverage = rain_level(_read_first(src, 13, self.fps, self.start, self.end, self.strict))
        note = (
            f"rain auto: {coverage:.1%} of pixels brighter than their aligned neighbours -> {level}"
            f" (heavy from {HEAVY_RAIN_COVERAGE:.0%})"
        )
        return level, note

    def settings(
        self, restorer: Restorer, path: Path, sha: str, info: SourceInfo, level: str
    ) -> dict[str, Any]:
        """Every setting that changes the output's pixels (a job's manifest holds them). The flow is
        named only when it is not the one the weights name (so jobs made before --flow still match)."""
        trained = restorer.model.config.flow
        flow = choose_flow(self.flow, trained, self.job_device.type)
        return {
            "weights": path.name,
            "weights_sha256": sha,
            "rain": level,
            "device": self.job_device.type,
            "precision": self.precision,
            # the network rewritten for inference (tmics_cli.model.fuse): the same up to float rounding, but
            # not bit for bit, so a job begun before the rewrite is not resumed with it
            "network": "fused" if restorer.optimize else "as loaded",
            "batch": self.batch,
            "tile": self.tile or 0,
            "tile_overlap": self.tile_overlap,
            "codec": self.options.codec,
            "crf": self.options.crf,
            "preset": self.options.preset,
            "pix_fmt": self.options.pix_fmt,
            "compare": self.compare,
            "start": self.start,
            "end": self.end,
            "fps": self.fps if info.kind == "frames" else None,
            **({"flow": flow} if flow != trained else {}),
            # YUV -> RGB on the device (within a level of swscale's): named only then, as jobs made
            # before it converted on the host
            **({"colour": "device"} if self.device_colour else {}),
        }

    def segment_length(self, info: SourceInfo) -> int:
        """Frames per segment: as asked, or about 10 s; rounded up to whole batches, so that every batch
        holds the windows it would hold in one uninterrupted pass (the same pixels, bit for bit)."""
        n = self.segment_frames or max(1, round(DEFAULT_SEGMENT_SECONDS * float(info.fps or 25)))
        return -(-n // self.batch) * self.batch

    def prepare(
        self, src: str | Path, dst: str | Path, folder: bool | None = None
    ) -> Prepared | DerainSummary:
        """Check `src` and `dst`, load the model and start or resume the job of `dst` (nothing is derained
        yet); a `DerainSummary` with status "skipped" when `dst` is already a whole output of `src`.
        `folder`: whether `dst` is a folder of PNG frames (default: when it has no suffix)."""
        src, dst = check_input(src), Path(dst)
        begin = time.perf_counter()
        if not src.exists():
            raise VideoError(f"{src} does not exist")
        probe = open_source(src, fps=self.fps, start=self.start, end=self.end, strict=self.strict)
        try:
            info = probe.info
            times = probe.frame_index()
        finally:
            probe.close()
        if max(info.width, info.height) < MIN_SIDE:
            raise VideoError(
                f"{src} is {info.width}x{info.height}: frames need at least {MIN_SIDE} pixels on one side "
                "(the optical flow finds no motion in less)"
            )
        frames = len(times) if times is not None else info.frames
        folder_out = is_folder_output(dst) if folder is None else folder
        out_w, out_h = self.frame_size(info, dst, folder_out)
        check_apart(dst, [src, *self.reads()], folder=folder_out)  # an input is never taken for a done output
        made = self.made(src)
        if not self.overwrite and os.path.lexists(dst):
            recorded = made_by(dst)
            if recorded == made or recorded is None and output_complete(dst, frames, out_w):
                return self._skipped(dst, frames or 0, begin)
            if recorded == CHANGED:
                raise OutputError(
                    f"{dst} exists, changed since tmics wrote it; add --overwrite to replace it"
                )
            if isinstance(recorded, dict):
                raise OutputError(
                    f"{dst} exists, {_made_otherwise(recorded, made)}; add --overwrite to redo it"
                )
        check_output(src, dst, self.overwrite, also_read=self.reads(), folder=folder_out)
        check_encoder(dst, self.options, folder_out, size=(out_w, out_h), fps=info.fps)
        level, note = self._level(src)
        restorer, path, sha = self.model(level)
        if self._runs_here():  # another kind of device (a cluster node's) is not measurable from here
            check_derain_memory(
                restorer.model,
                info.height,
                info.width,
                self.batch,
                self.device,
                tile=self.tile,
                compare=self.compare,
                min_tile=MIN_TILE,
            )
        length = self.segment_length(info)
        segments = plan_segments(times, length)
        late = 0 if folder_out else piece_late(dst.suffix.lower())
        job = Job.start(
            dst,
            input=input_identity(src),
            settings={
                **self.settings(restorer, path, sha, info, level),
                "segment_frames": length,
                # MPEG-TS pieces are written late (writer.piece_late); named only then, as jobs made before
                **({"piece_late_s": late} if late else {}),
            },
            segments=segments,
            frames=frames,
            piece_suffix="" if folder_out else dst.suffix.lower(),
            overwrite=self.overwrite,
        )
        done = job.done()
        try:
            self._check_space(dst, info, frames, len(done), len(segments))
        except BaseException:
            if not done:
                job.remove()  # refused before any work: nothing left behind
            raise
        if info.interlaced:
            warnings.warn(
                f"{src} is interlaced: it is derained as whole frames and written progressive (the field "
                "order is not kept); deinterlace it first (e.g. ffmpeg -vf bwdif) for the cleanest result",
                VideoWarning,
                stacklevel=2,
            )
        if info.alpha:
            warnings.warn(
                f"{src} has an alpha channel (transparency): it is derained and written without it",
                VideoWarning,
                stacklevel=2,
            )
        if info.bits > 8 or info.hdr_metadata:
            warnings.warn(_depth_note(info), VideoWarning, stacklevel=2)
        if folder_out and (info.other_streams or info.rotation or info.pixel_aspect):
            warnings.warn(_not_in_frames(info, dst), VideoWarning, stacklevel=2)
        return Prepared(src, dst, info, job, restorer, path, sha, level, note, folder_out, begin, done, made)

    def work(
        self,
        job: Prepared,
        on_frame: Callable[[int], None] | None = None,
        wait: bool = True,
        on_segment: Callable[[int, int, int, float], None] | None = None,
    ) -> dict[str, float]:
        """Derain the unfinished segments of a prepared job here (waiting for those other workers hold,
        with `wait`); returns the seconds spent per stage (segments.TIMINGS). `on_segment(index, segments,
        frames, seconds)` after each segment derained here."""
        self._check_runs_here()
        counted = sum(record.get("frames", 0) for record in job.done.values())
        run = SegmentRunner(self, job.job, job.src, job.info, job.restorer, job.folder_out, on_frame, counted)
        run.on_segment = on_segment
        run.all(wait=wait)
        return run.timings

    def finish(self, job: Prepared, timings: dict[str, float] | None = None) -> DerainSummary:
        """Join the finished segments onto the output and remove the job folder; the summary's timings are
        `timings` and the seconds of the join ("join")."""
        joined = time.perf_counter()
        job.job.check()
        pieces = job.job.pieces()
        try:
            if job.folder_out:
                frames = join_frames(pieces, job.dst, self.overwrite)
            else:
                frames = join_video(
                    pieces, job.dst, job.info, self.options, self.overwrite, job.job.piece_late
                )
        except OutputError:
            job.job.remove()  # the result is kept under another name (see PendingOutput.commit)
            raise
        record_output(job.dst, job.made)
        left = job.job.remove()
        if left:
            warnings.warn(
                f"{job.job.folder} kept: it holds files tmics did not write ({', '.join(left[:3])})",
                VideoWarning,
                stacklevel=2,
            )
        total = len(job.job.segments)
        return DerainSummary(
            frames=frames,
            seconds=time.perf_counter() - job.begin,
            device=str(job.restorer.device),
            precision=self.precision,
            weights=job.path.name if self.weights is None else str(job.path),
            rain=job.level,
            output=job.dst,
            rain_note=job.note,
            timings={**(timings or {}), "join": time.perf_counter() - joined},
            resumed=(len(job.done), total) if job.done else None,
            segments=total,
            weights_sha256=job.sha,
        )

    def derain(
        self,
        src: str | Path,
        dst: str | Path,
        *,
        on_start: Callable[[SourceInfo, str], None] | None = None,
        on_frame: Callable[[int], None] | None = None,
        on_resume: Callable[[int, int], None] | None = None,
        folder: bool | None = None,
    ) -> DerainSummary:
        """Derain `src` into `dst` (see derain_video): prepare, work, finish. An output that exists and is
        whole (as many frames as the input, its width) is left as it is (status "skipped") unless
        `overwrite`. `on_frame` gets the frames done so far, those of earlier runs of a resumed job
        included. After an error or interrupt the finished segments stay for a rerun (none: no job left)."""
        job = self.prepare(src, dst, folder)
        if isinstance(job, DerainSummary):
            return job
        if on_start is not None:
            on_start(job.info, job.note)
        if job.done and on_resume is not None:
            on_resume(len(job.done), len(job.job.segments))
        return self.run(job, on_frame)

    def run(
        self,
        job: Prepared,
        on_frame: Callable[[int], None] | None = None,
        on_segment: Callable[[int, int, int, float], None] | None = None,
    ) -> DerainSummary:
        """Work and finish a prepared job. Its summary has status "skipped" when another run sharing the
        job joined the output meanwhile. After an error or interrupt the finished segments stay for a
        rerun; a job with none is removed (unless another run replaced or finished it)."""
        try:
            return self.finish(job, self.work(job, on_frame, on_segment=on_segment))
        except JobGone:
            if self.finished_elsewhere(job):
                return self.skipped(job)
            raise
        except BaseException:
            if not job.job.gone() and not job.job.done():
                job.job.remove()  # nothing finished: leave nothing behind
            raise

    def finished_elsewhere(self, job: Prepared) -> bool:
        """Whether another run sharing the job finished its output meanwhile (the job gone, the output
        whole)."""
        width = self.frame_size(job.info, job.dst, job.folder_out)[0]
        return job.job.gone() and output_complete(job.dst, job.job.manifest.get("frames"), width)

    def frame_size(self, info: SourceInfo, dst: Path, folder: bool) -> tuple[int, int]:
        """(width, height) of the frames written to `dst`: the input's, or a --compare frame's."""
        if not self.compare:
            return info.width, info.height
        return panel_size(info.width, info.height, shown_rotation(dst, info.rotation, folder))

    def skipped(self, job: Prepared) -> DerainSummary:
        """The summary of a job whose output another run finished (status "skipped")."""
        return self._skipped(job.dst, job.job.manifest.get("frames") or 0, job.begin)

    def made(self, src: Path) -> dict[str, Any]:
        """What makes an output of `src` the one this derainer makes: the input's identity and the settings
        as asked (the weights by their sha256). A finished output's record (`records`) holds it, so that
        a rerun skips its own output and refuses one made otherwise."""
        made = {
            "input": input_identity(src),
            "weights_sha256": [self._sha(path) for path in self.reads()],
            "rain": "custom" if self.weights is not None else self.rain,
            "flow": self.flow,
            "codec": self.options.codec,
            "crf": self.options.crf,
            "preset": self.options.preset,
            "pix_fmt": self.options.pix_fmt,
            "compare": self.compare,
            "start": self.start,
            "end": self.end,
            "fps": self.fps,
            "tile": self.tile or 0,
            "tile_overlap": self.tile_overlap,
        }
        return json.loads(json.dumps(made))  # as a record reads back

    def _sha(self, path: Path) -> str:
        if path not in self._shas:
            self._shas[path] = weights_sha256(path)
        return self._shas[path]

    def _skipped(self, dst: Path, frames: int, begin: float) -> DerainSummary:
        """A summary of status "skipped": `dst` is whole (`frames` frames) and nothing was derained here."""
        elapsed = time.perf_counter() - begin
        return DerainSummary(frames, elapsed, str(self.device), self.precision, "", "", dst, status="skipped")

    def help(self, src: str | Path, dst: str | Path) -> int:
        """A helper worker's share of the job of `dst` that another process prepared: the segments nobody
        holds, derained here without waiting or joining. Returns the frames derained (0: no job)."""
        self._check_runs_here()
        folder = job_folder(Path(dst))
        manifest = read_manifest(folder) if folder.is_dir() else None
        if manifest is None:
            return 0
        job = Job(folder, manifest)
        restorer, info = self._for_job(Path(src), manifest)
        run = SegmentRunner(
            self, job, check_input(src), info, restorer, not manifest["piece_suffix"], None, 0
        )
        run.all(wait=False)
        return run.frames

    def segment(self, src: str | Path, dst: str | Path, index: int) -> dict[str, Any]:
        """Derain segment `index` of the job of `dst` (prepared elsewhere, e.g. by a cluster's driver) and
        record it; returns its record. No claim is taken: the caller hands each segment to one task."""
        self._check_runs_here()
        folder = job_folder(Path(dst))
        manifest = read_manifest(folder) if folder.is_dir() else None
        if manifest is None:
            raise VideoError(f"{dst}: its job folder {folder} is missing or unreadable")
        job = Job(folder, manifest)
        restorer, info = self._for_job(Path(src), manifest)
        run = SegmentRunner(
            self, job, check_input(src), info, restorer, not manifest["piece_suffix"], None, 0
        )
        run.one(job.segments[index])
        return job.done()[index]

    def _for_job(self, src: Path, manifest: dict[str, Any]) -> tuple[Restorer, SourceInfo]:
        """The model and the input's probe for a job another process made; refused if the weights or the
        settings of this Derainer differ from the job's."""
        settings = manifest["settings"]
        restorer, path, sha = self.model(settings["rain"] if self.weights is None else "custom")
        if sha != settings["weights_sha256"]:
            raise VideoError(
                f"the job of {manifest['output']} was made with other weights than this worker's"
            )
        probe = open_source(src, fps=self.fps, start=self.start, end=self.end, strict=self.strict)
        try:
            info = probe.info
        finally:
            probe.close()
        mine = {
            **self.settings(restorer, path, sha, info, settings["rain"]),
            "segment_frames": self.segment_length(info),
        }
        keys = [*mine, *(k for k in settings if k not in mine)]
        differ = [k for k in keys if k != "device" and settings.get(k) != mine.get(k)]
        if differ:
            raise VideoError(
                f"the job of {manifest['output']} was made with other settings ({', '.join(differ)})"
            )
        return restorer, info

    def _check_space(self, dst: Path, info: SourceInfo, frames: int | None, done: int, total: int) -> None:
        if not frames:
            return
        kind = "png" if is_folder_output(dst) else ("lossless" if self.options.crf == 0 else "lossy")
        pixels = info.width * info.height * (2 if self.compare else 1)
        left = frames * (1 - done / total) if total else frames
        need = pixels * _BYTES_PER_PIXEL[kind] * (left + frames) + (
            64 << 20
        )  # segments, then the joined copy
        free = _free_bytes(dst.absolute().parent)
        if free is not None and free < need:
            raise VideoError(
                f"not enough disk space for {dst}: about {_size(need)} needed (segments and the joined "
                f"output), {_size(free)} free; free some space or write the output to another disk"
            )


def derain_video(
    src: str | Path,
    dst: str | Path,
    *,
    on_start: Callable[[SourceInfo, str], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
    **options: Any,
) -> DerainSummary:
    """Derain the video (or frame folder) `src` into `dst` (a video file, or a folder of PNG frames when
    `dst` has no suffix); `options` are those of `Derainer`: `rain` picks the shipped weights (light,
    heavy, or auto: measured on the first frames), `weights` a file instead, and device, crf, ... The
    video is derained in segments of `segment_frames` (about 10 s) kept in a job folder beside `dst`: if
    the run dies, the same call resumes at the first unfinished segment (`on_resume(done, all)`), and a
    job made with other settings is refused (JobMismatch) unless `overwrite`. An existing whole output is
    skipped (`status` "skipped") unless `overwrite`.

    Damage found in the input is a `VideoWarning` per finding, or with `strict` an error. Input that
    cannot be seeked in (a pipe, stdin, a device) is refused before anything is read. Raises VideoError /
    OutputError (an output that would lose data) / ValueError / FileNotFoundError / WeightsError /
    MemoryError with one-line messages; after any error no file is left at `dst`."""
    derainer = Derainer(**options)
    return derainer.derain(src, dst, on_start=on_start, on_frame=on_frame, on_resume=on_resume)
