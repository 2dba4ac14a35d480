"""Streaming frame sinks: a video file (PyAV) or a folder of PNG frames, written atomically.

Everything goes to a temporary file (or folder) beside the output and is renamed onto the output's name
only by `commit()`; `abort()` (after an error or Ctrl-C) deletes it, so a failed run never leaves a
partial file under the output's name nor touches an existing one.

A video sink keeps what the input had: the timestamps of every frame (variable frame rate too), the time
base and frame rate, the display rotation, the colour tags (and converts with the same matrix), the video
stream's tags and dispositions, and everything else of the input (`streams.StreamCopy`: audio, subtitles,
data, attachments, chapters, tags), copied without re-encoding and interleaved with the video as it is
written. What the output container cannot hold is named in a `VideoWarning` (and what its muxer left out
of stream titles, languages and dispositions, read back from the finished file, in a second one).
"""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..outputs import PendingOutput, check_name
from ..outputs import check_output as check_output_path
from .colour import ColourTags, PlaneFormat, YUVPlanes, rgb_to_frame
from .files import CONTAINER_SUFFIXES
from .images import write_png
from .reader import SourceInfo, VideoError, VideoWarning, _reason
from .streams import StreamCopy
from .streams import accepts as _accepts

_DEFAULT_CODEC = {".webm": "libvpx-vp9"}


@dataclass(frozen=True)
class EncodeOptions:
    codec: str | None = None  # default: libx264 (libvpx-vp9 for .webm)
    crf: int = 18
    preset: str = "medium"
    pix_fmt: str | None = None  # default: the input's chroma sampling at 8 bits (choose_pix_fmt)
    audio: bool = True
    threads: int | None = None  # encoder threads; None: FFmpeg's choice (all cores)


def is_folder_output(path: Path) -> bool:
    """Frames go to a folder when the output has no suffix (or is an existing folder)."""
    return path.is_dir() or not path.suffix


def check_output(
    src: Path,
    dst: Path,
    overwrite: bool,
    also_read: Iterable[str | os.PathLike[str]] = (),
    folder: bool | None = None,
) -> None:
    """Refuse outputs that would lose data or cannot be written, before any work is done (the rules of
    `tmics_cli.outputs`: never an input or inside one, an existing output only with --overwrite, an
    existing folder only when it holds an earlier tmics frames output and nothing else). `also_read`:
    other files the run reads (a weights file)."""
    check_name(dst)
    folder = is_folder_output(dst) if folder is None else folder
    check_output_path(dst, [src, *also_read], overwrite=overwrite, folder=folder)
    if not folder and dst.suffix.lower() not in CONTAINER_SUFFIXES:
        known = ", ".join(sorted(CONTAINER_SUFFIXES))
        raise VideoError(
            f"unknown output type {dst.suffix!r}: use {known}, or a name without suffix for PNG frames"
        )


class FolderSink:
    """PNG frames 000001.png, 000002.png, ... in a folder (with tmics' marker file, so that a later
    --overwrite can tell it from a folder of the user's)."""

    def __init__(self, dst: Path, overwrite: bool = False, first: int = 0, shown: Path | None = None) -> None:
        self.dst, self.first = dst, first  # first: frames before this one are written by other sinks
        self.shown = shown or dst  # the output named in messages (a segment's piece says its output's name)
        self.pending = PendingOutput(dst, overwrite=overwrite, folder=True, kind="frames")
        self.tmp = self.pending.path
        self.count = 0

    def plane_format(self) -> PlaneFormat | None:
        """PNG frames are RGB: no planes are taken as they are."""
        return None

    def write(self, rgb: np.ndarray | YUVPlanes, pts: int) -> None:
        if isinstance(rgb, YUVPlanes):
            rgb = rgb.rgb
        self.count += 1
        number = self.first + self.count
        try:
            write_png(self.tmp / f"{number:06d}.png", rgb)
        except OSError as exc:
            raise write_error(self.shown, exc, number) from None

    def commit(self) -> None:
        self.pending.commit()

    def abort(self) -> None:
        self.pending.abort()


class VideoSink:
    """One encoded video stream (+ the input's other streams) in a container chosen by the output's
    extension."""

    def __init__(
        self,
        dst: Path,
        info: SourceInfo,
        options: EncodeOptions,
        width: int,
        height: int,
        overwrite: bool = False,
        others: bool = True,
        first: int = 0,
        shown: Path | None = None,
        piece_late: int = 0,
    ) -> None:
        import av

        self.dst, self.info, self.options = dst, info, options
        self.first, self.shown = first, shown or dst  # as FolderSink's
        suffix = dst.suffix.lower()
        self.codec, self.encoder = _video_encoder(dst, options)  # an unknown one refused before the tmp file
        self.pending = PendingOutput(dst, overwrite=overwrite)
        self.tmp = self.pending.path
        self.count = 0
        self.others: StreamCopy | None = None  # the input's other streams, chapters and tags
        # AVI has no timestamps, only frame numbers at one rate: a fine time base would make the muxer
        # write an index entry per tick (thousands of empty frames); MPEG-1/2 video counts time in frames
        # of one of its rates too. Everywhere else: the input's.
        self.avi = suffix == ".avi"
        rates = _frame_rates(self.encoder)
        self.frame_clock = self.avi or bool(rates)
        rate = Fraction(info.fps).limit_denominator(1001)
        if rates:
            rate = clock_rate(info.fps, rates) or rate  # refused before any work where there is none
        self.time_base = 1 / rate if self.frame_clock else info.time_base
        self._last_pts: int | None = None
        self.offset = late_ticks(piece_late, self.time_base)  # added to every frame's time
        try:
            self.container = av.open(
                str(self.tmp),
                "w",
                format=_format_for(suffix),
                options=_container_options(suffix, self.time_base),
            )
        except av.error.FFmpegError as exc:
            self.pending.abort()
            raise VideoError(f"cannot write {dst}: {_reason(exc)}") from None
        try:
            self.stream = self._video_stream(width, height)
            if info.kind == "video" and others:
                self.others = self._copy_others(suffix)
        except BaseException:
            self.abort()
            raise
        self.pix_fmt = self.stream.pix_fmt
        self.tags = _tags_for(info.colour, self.pix_fmt)
        self.planes = PlaneFormat.of(self.pix_fmt, self.tags, width, height)  # taken as they are

    def _copy_others(self, suffix: str) -> StreamCopy | None:
        """Set up the copy of the input's other streams, chapters and tags; warn of what cannot be kept."""
        import av

        info = self.info
        try:
            copy = StreamCopy(info, self.container, suffix, audio=self.options.audio)
        except av.error.FFmpegError as exc:
            if self.options.audio and info.audio_streams:
                raise VideoError(f"cannot reopen {info.path} to copy its audio: {_reason(exc)}") from None
            warnings.warn(
                f"{info.path}: cannot reopen it to copy its tags, subtitles and chapters ({_reason(exc)})",
                VideoWarning,
                stacklevel=2,
            )
            return None
        self.stream.metadata.update(copy.video_tags)
        self.stream.disposition = copy.video_disposition
        note = copy.dropped_note(info.path, self.dst)
        if note:
            warnings.warn(note, VideoWarning, stacklevel=2)
        return copy

    def _video_stream(self, width: int, height: int) -> Any:

        opts, info = self.options, self.info
        codec, encoder = self.codec, self.encoder
        if not _accepts(self.container, codec, getattr(encoder, "canonical_name", codec)):
            raise VideoError(
                f"a {self.dst.suffix} file cannot hold {codec} video; choose another --codec or output type"
            )
        formats = [f.name for f in (encoder.video_formats or [])]
        pix_fmt = choose_pix_fmt(opts, codec, formats, width, height, info.pix_fmt)
        if formats and pix_fmt not in formats:
            raise VideoError(f"{codec} cannot encode {pix_fmt}; it takes {', '.join(formats[:8])}")
        _check_subsampling(codec, pix_fmt, width, height)
        stream = self.container.add_stream(codec, rate=info.fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        ctx = stream.codec_context
        if opts.threads:
            ctx.thread_count = opts.threads
        tags = _tags_for(info.colour, pix_fmt)
        if tags.colorspace not in (0, 2):
            ctx.colorspace = tags.colorspace
        if tags.color_range:
            ctx.color_range = tags.color_range
        if tags.primaries not in (0, 2):
            ctx.color_primaries = tags.primaries
        if tags.trc not in (0, 2):
            ctx.color_trc = tags.trc
        options = {}
        if codec in ("libx264", "libx265"):
            options = {"crf": str(opts.crf), "preset": opts.preset}
            if codec == "libx265":  # x265 prints its banner and settings (info) to stderr, -q or not
                options["x265-params"] = "log-level=error"
            if self.dst.suffix.lower() == ".avi":
                options["bf"] = "0"  # AVI keeps no presentation timestamps: B-frames would scramble them
        elif codec in ("libvpx-vp9", "libaom-av1", "libsvtav1"):
            options = {"crf": str(opts.crf), "b": "0"}
        stream.options = options
        if info.rotation:
            stream.set_display_rotation(info.rotation)
        set_pixel_aspect(stream, info.pixel_aspect)
        return stream

    def plane_format(self) -> PlaneFormat | None:
        """The planes `write` takes as they are (made on a device), or None when it needs RGB frames."""
        return self.planes

    def write(self, rgb: np.ndarray | YUVPlanes, pts: int) -> None:
        """Encode a frame: (H, W, 3) uint8 RGB, converted here, or planes in this sink's plane_format()
        (others are converted through RGB)."""
        import av

        if isinstance(rgb, YUVPlanes):
            ready = rgb.format == self.planes
            frame = rgb.frame() if ready else rgb_to_frame(rgb.rgb, self.pix_fmt, self.tags)
        else:
            frame = rgb_to_frame(rgb, self.pix_fmt, self.tags)
        seconds = float(pts * self.info.time_base)
        if self.frame_clock:
            pts = round(pts * self.info.time_base / self.time_base)
            if self._last_pts is not None and pts <= self._last_pts:
                pts = self._last_pts + 1
        self._last_pts = pts
        frame.pts, frame.time_base = pts + self.offset, self.time_base
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
            if self.others is not None:
                self.others.copy_until(seconds + 0.5)
        except av.error.FFmpegError as exc:
            raise write_error(self.shown, exc, self.first + self.count + 1) from None
        self.count += 1

    def _flush_video(self) -> None:
        """The encoder's last packets (a joining sink copies packets and has none)."""
        for packet in self.stream.encode(None):
            self.container.mux(packet)

    def commit(self) -> None:
        import av

        try:
            self._flush_video()
            if self.others is not None:
                self.others.copy_until(None)
            self.container.close()
        except av.error.FFmpegError as exc:
            self.abort()
            raise write_error(self.shown, exc, self.first + self.count) from None
        if self.others is not None:
            note = self.others.unkept_note(self.tmp, self.info.path, self.dst)
            self.others.close()
            if note:
                warnings.warn(note, VideoWarning, stacklevel=2)
        self.pending.commit()

    def abort(self) -> None:
        try:
            if self.others is not None:
                self.others.close()
            self.container.close()
        except Exception:  # noqa: BLE001 - closing a half-written file may fail; the file goes anyway
            pass
        self.pending.abort()


def set_pixel_aspect(stream: Any, ratio: Fraction | None) -> None:
    """Give the output video the input's non-square pixels (anamorphic video), in the bitstream and the
    container, so that it plays at the input's shape."""
    if ratio:
        stream.codec_context.sample_aspect_ratio = ratio
        stream.sample_aspect_ratio = ratio


PIECE_LATE_SECONDS = 10  # an MPEG-TS piece's times are written this much later (piece_late)


def piece_late(suffix: str) -> int:
    """Seconds by which a segment's piece in `suffix`'s container is written later than its frames' times
    (a job records it; the join takes it back: video.join). MPEG-TS holds no time below zero, so its muxer
    shifts a piece whose first decode time is negative (the first piece: its B-frames decode before its
    first frame is shown) and not the others, which would then come too early by the encoder's delay;
    written 10 s later, no piece is shifted. Elsewhere 0: MP4 and MOV keep negative times (edit lists),
    Matroska and AVI store no decode times."""
    return PIECE_LATE_SECONDS if suffix in (".ts", ".mts") else 0


def late_ticks(seconds: int, time_base: Fraction) -> int:
    """`seconds` of lateness in ticks of `time_base`: what a piece's sink adds and the join takes back."""
    return round(Fraction(seconds) / time_base)


def _container_options(suffix: str, time_base: Fraction) -> dict[str, str]:
    """MP4 and MOV: the movie's timescale that of the video stream's time base, so that the edit list of
    a stream that starts late (a segment's piece, an input whose first frame is not at 0) holds its start
    exactly; at the muxer's default, milliseconds, it was cut to the millisecond below (a 29.97 fps piece
    came out up to 1 ms early)."""
    if suffix not in (".mp4", ".m4v", ".mov") or time_base.numerator != 1 or time_base.denominator >= 1 << 31:
        return {}
    return {"movie_timescale": str(time_base.denominator)}


def _format_for(suffix: str) -> str | None:
    return {
        ".mkv": "matroska",
        ".webm": "webm",
        ".mov": "mov",
        ".mp4": "mp4",
        ".m4v": "mp4",
        ".ts": "mpegts",
        ".mts": "mpegts",
        ".avi": "avi",
    }.get(suffix)


def open_sink(
    dst: Path,
    info: SourceInfo,
    options: EncodeOptions,
    width: int,
    height: int,
    overwrite: bool = False,
    *,
    folder: bool | None = None,
    others: bool = True,
    first: int = 0,
    shown: Path | None = None,
    piece_late: int = 0,
) -> VideoSink | FolderSink:
    """A sink for `dst` (a folder of PNG frames when it has no suffix, or as `folder` says); nothing appears
    at `dst` before `commit()`, which never replaces an output that another run wrote meanwhile (see
    tmics_cli.outputs). `others=False`: the video alone (a segment, joined later); `piece_late`: seconds
    added to its times (piece_late); `first`: the number of frames before this sink's first (a folder's
    PNG names count on from it)."""
    if is_folder_output(dst) if folder is None else folder:
        return FolderSink(dst, overwrite, first, shown)
    return VideoSink(dst, info, options, width, height, overwrite, others, first, shown, piece_late)


# --- checks before the work, and write errors in the user's terms ------------------------------------------

X264_PRESETS = (  # x265 takes the same names
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
CRF_RANGES = {
    "libx264": (0, 51),
    "libx265": (0, 51),
    "libvpx-vp9": (0, 63),
    "libaom-av1": (0, 63),
    "libsvtav1": (0, 63),
}


def _video_encoder(dst: Path, options: EncodeOptions) -> tuple[str, Any]:
    """(name, PyAV codec) of the video encoder for `dst`; VideoError for an unknown or non-video one."""
    import av

    codec = options.codec or _DEFAULT_CODEC.get(dst.suffix.lower(), "libx264")
    try:
        encoder = av.codec.Codec(codec, "w")
    except Exception:  # noqa: BLE001 - PyAV raises several types for unknown codecs
        raise VideoError(f"unknown video encoder {codec!r} (try libx264, libx265, libvpx-vp9)") from None
    if encoder.type != "video":
        raise VideoError(f"{codec} is not a video encoder")
    return codec, encoder


def choose_pix_fmt(
    options: EncodeOptions, codec: str, formats: list[str], width: int, height: int, source: str = ""
) -> str:
    """The pixel format frames are encoded in: --pix-fmt; else the input's chroma sampling at 8 bits
    (a yuv444p or yuv422p input keeps its colour resolution; RGB, grey and palette inputs, and folders of
    frames, get yuv420p), where the encoder takes it; then yuv444p where x264/x265 cannot take the frame
    size in that sampling (an odd side)."""
    if options.pix_fmt:
        return options.pix_fmt
    chosen = "yuv420p"
    if source:
        import av

        try:
            fmt = av.VideoFormat(source)
        except (ValueError, TypeError):
            fmt = None
        if fmt is not None and not (fmt.is_rgb or fmt.has_palette or len(fmt.components) < 3):
            chosen = {(1, 1): "yuv444p", (2, 1): "yuv422p"}.get(_chroma_step(fmt), "yuv420p")
    if formats and chosen not in formats:
        chosen = "yuv420p"
    if codec == "mjpeg":  # JPEG is full range: FFmpeg's encoder refuses limited-range YUV as non-standard
        chosen = "yuvj" + chosen[3:]
    if _subsampling_misfit(codec, chosen, width, height):
        chosen = "yuv444p"
    return chosen


def _tags_for(tags: ColourTags, pix_fmt: str) -> ColourTags:
    """The colour tags frames of `pix_fmt` are written with: the input's, full range for yuvj formats."""
    return replace(tags, color_range=2) if pix_fmt.startswith("yuvj") else tags


def _frame_rates(encoder: Any) -> list[Fraction]:
    """The only frame rates an encoder takes (MPEG-1/2 video), or [] where it takes any."""
    return [Fraction(r.numerator, r.denominator) for r in (getattr(encoder, "frame_rates", None) or [])]


def clock_rate(fps: Fraction | float, rates: list[Fraction]) -> Fraction | None:
    """The rate of `rates` within 0.5% of `fps` (a clip's average rate, 29.973 for 30000/1001), nearest
    first; None where none is that close."""
    near = [r for r in rates if abs(float(r) / float(fps) - 1) < 0.005]
    return min(near, key=lambda r: abs(float(r) - float(fps))) if near else None


def _subsampling_misfit(codec: str, pix_fmt: str, width: int, height: int) -> tuple[int, int] | None:
    """(horizontal, vertical) chroma steps where x264/x265 cannot take a frame of this size in `pix_fmt`,
    else None."""
    import av

    if codec not in ("libx264", "libx265"):
        return None
    step = _chroma_step(av.VideoFormat(pix_fmt))
    return step if width % step[0] or height % step[1] else None


def _chroma_step(fmt: Any) -> tuple[int, int]:
    """(horizontal, vertical) luma pixels per chroma sample of an av.VideoFormat: (2, 2) for 4:2:0."""
    return 1024 // max(1, fmt.chroma_width(1024)), 1024 // max(1, fmt.chroma_height(1024))


def _check_subsampling(codec: str, pix_fmt: str, width: int, height: int) -> None:
    """x264 and x265 refuse frames whose sides are not whole multiples of the chroma subsampling (a
    65x49 frame in yuv420p), with "Generic error in an external library" at the first frame; say it first.
    Other encoders (VP9, AV1, MPEG-4, FFV1) round the chroma planes up and take any size."""
    step = _subsampling_misfit(codec, pix_fmt, width, height)
    if step:
        need = {(2, 2): "an even width and height", (2, 1): "an even width"}.get(
            step, f"sides in multiples of {step[0]}x{step[1]}"
        )
        raise VideoError(
            f"{codec} cannot encode {width}x{height} frames in {pix_fmt} (its colour planes need {need}); "
            "give --pix-fmt yuv444p, or leave --pix-fmt out"
        )


def check_encoder(
    dst: Path,
    options: EncodeOptions,
    folder: bool | None = None,
    size: tuple[int, int] | None = None,
    fps: Fraction | float | None = None,
) -> None:
    """Refuse an unknown encoder, --preset or --pix-fmt, a --crf out of the encoder's range, or frames of
    `size` (width, height) the encoder cannot take in that pixel format, or a frame rate `fps` it cannot
    take (MPEG-1/2), before any work: the encoder itself would refuse them only at the first frame
    ("Invalid argument")."""
    if is_folder_output(dst) if folder is None else folder:
        return
    import av

    codec, encoder = _video_encoder(dst, options)
    fmt = _format_for(dst.suffix.lower())
    if fmt is not None:
        import io

        with av.open(io.BytesIO(), "w", format=fmt) as scratch:
            if not _accepts(scratch, codec, getattr(encoder, "canonical_name", codec)):
                raise VideoError(
                    f"a {dst.suffix} file cannot hold {codec} video; choose another --codec or output type"
                )
    if codec in ("libx264", "libx265") and options.preset not in X264_PRESETS:
        raise VideoError(f"unknown --preset {options.preset!r} for {codec}; known: {', '.join(X264_PRESETS)}")
    low, high = CRF_RANGES.get(codec, (None, None))
    if low is not None and not low <= options.crf <= high:
        raise VideoError(
            f"--crf {options.crf} is out of {codec}'s range: give {low} to {high} (lower is better)"
        )
    if options.pix_fmt is not None:
        formats = ", ".join(f.name for f in (encoder.video_formats or [])[:8])
        try:
            av.VideoFormat(options.pix_fmt)
        except (ValueError, TypeError):
            takes = f"; {codec} takes {formats}" if formats else ""
            raise VideoError(f"unknown --pix-fmt {options.pix_fmt!r}{takes}") from None
        if formats and options.pix_fmt not in [f.name for f in encoder.video_formats]:
            raise VideoError(f"{codec} cannot encode {options.pix_fmt}; it takes {formats}")
    if size is not None and options.pix_fmt:
        _check_subsampling(codec, options.pix_fmt, *size)
    rates = _frame_rates(encoder)
    if fps and rates and clock_rate(fps, rates) is None:
        shown = ", ".join(f"{float(r):.3f}".rstrip("0").rstrip(".") for r in sorted(set(rates)))
        raise VideoError(
            f"{codec} takes only the frame rates {shown}; this video is {float(fps):.3f} fps: choose another "
            "--codec"
        )


def write_error(dst: Path, exc: BaseException, frame: int) -> VideoError:
    """A failed write as one line; a full disk says so (ENOSPC), with the frame it happened at."""
    if getattr(exc, "errno", None) == errno.ENOSPC:
        return VideoError(
            f"disk full while writing {dst} (frame {frame}): free some space or write the output to "
            "another disk"
        )
    return VideoError(f"cannot write {dst} (frame {frame}): {_reason(exc)}")
