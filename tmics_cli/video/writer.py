"""Streaming frame sinks: a video file (PyAV) or a folder of PNG frames, written atomically.

Everything goes to a temporary file (or folder) beside the output and is renamed onto the output's name
only by `commit()`; `abort()` (after an error or Ctrl-C) deletes it, so a failed run never leaves a
partial file under the output's name nor touches an existing one.

A video sink keeps what the input had: the timestamps of every frame (variable frame rate too), the time
base and frame rate, the display rotation, the colour tags (and converts with the same matrix), and the
audio streams, whose packets are copied without re-encoding, interleaved with the video as it is written.
Audio is re-encoded (AAC, or Opus for WebM) only when the output container cannot hold its codec.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .colour import rgb_to_frame
from .reader import SourceInfo, VideoError, _reason

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".ts", ".mts"}
_DEFAULT_CODEC = {".webm": "libvpx-vp9"}
_FALLBACK_AUDIO = {".webm": "libopus"}


@dataclass(frozen=True)
class EncodeOptions:
    codec: str | None = None  # default: libx264 (libvpx-vp9 for .webm)
    crf: int = 18
    preset: str = "medium"
    pix_fmt: str | None = None  # default: yuv420p, or yuv444p when a side is odd
    audio: bool = True


def is_folder_output(path: Path) -> bool:
    """Frames go to a folder when the output has no suffix (or is an existing folder)."""
    return path.is_dir() or not path.suffix


def check_output(src: Path, dst: Path, overwrite: bool) -> None:
    """Refuse outputs that would lose data or cannot be written, before any work is done."""
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise VideoError(f"output {dst} is the input; choose another output")
    if dst.exists() and not overwrite:
        raise VideoError(f"{dst} exists; pass --overwrite to replace it")
    if dst.exists() and dst.is_dir() != is_folder_output(dst):
        raise VideoError(
            f"{dst} exists and is {'a folder' if dst.is_dir() else 'a file'}; choose another output"
        )
    parent = dst.absolute().parent
    if not parent.is_dir():
        raise VideoError(f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise VideoError(f"output folder {parent} is not writable")
    if not is_folder_output(dst) and dst.suffix.lower() not in VIDEO_SUFFIXES:
        known = ", ".join(sorted(VIDEO_SUFFIXES))
        raise VideoError(
            f"unknown output type {dst.suffix!r}: use {known}, or a name without suffix for PNG frames"
        )


class FolderSink:
    """PNG frames 000001.png, 000002.png, ... in a folder."""

    def __init__(self, dst: Path) -> None:
        self.dst = dst
        self.tmp = Path(
            tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.absolute().parent)
        )
        self.count = 0

    def write(self, rgb: np.ndarray, pts: int) -> None:
        self.count += 1
        try:
            _write_png(self.tmp / f"{self.count:06d}.png", rgb)
        except OSError as exc:
            raise write_error(self.dst, exc, self.count) from None

    def commit(self) -> None:
        old = None
        if self.dst.exists():  # replaced only now, when the new frames are complete
            old = self.dst.with_name(f".{self.dst.name}.old-{os.getpid()}")
            os.replace(self.dst, old)
        os.chmod(self.tmp, 0o777 & ~_umask())
        os.replace(self.tmp, self.dst)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class VideoSink:
    """One encoded video stream (+ copied audio) in a container chosen by the output's extension."""

    def __init__(self, dst: Path, info: SourceInfo, options: EncodeOptions, width: int, height: int) -> None:
        import av

        self.dst, self.info, self.options = dst, info, options
        suffix = dst.suffix.lower()
        fd, name = tempfile.mkstemp(
            prefix=f".{dst.stem}.", suffix=f".partial{suffix}", dir=dst.absolute().parent
        )
        os.close(fd)
        self.tmp = Path(name)
        self.count = 0
        self.audio: _AudioCopy | None = None
        # AVI has no timestamps, only frame numbers at one rate: a fine time base would make the muxer
        # write an index entry per tick (thousands of empty frames). Everywhere else: the input's.
        self.avi = suffix == ".avi"
        self.time_base = 1 / Fraction(info.fps).limit_denominator(1001) if self.avi else info.time_base
        self._last_pts: int | None = None
        try:
            self.container = av.open(str(self.tmp), "w", format=_format_for(suffix))
        except av.error.FFmpegError as exc:
            self.tmp.unlink(missing_ok=True)
            raise VideoError(f"cannot write {dst}: {_reason(exc)}") from None
        try:
            self.stream = self._video_stream(width, height)
            if options.audio and info.audio_streams:
                self.audio = _AudioCopy(info, self.container, suffix)
        except BaseException:
            self.abort()
            raise
        self.tags = info.colour
        self.pix_fmt = self.stream.pix_fmt

    def _video_stream(self, width: int, height: int) -> Any:
        import av

        opts, info = self.options, self.info
        codec = opts.codec or _DEFAULT_CODEC.get(self.dst.suffix.lower(), "libx264")
        try:
            encoder = av.codec.Codec(codec, "w")
        except Exception:  # noqa: BLE001 - PyAV raises several types for unknown codecs
            raise VideoError(f"unknown video encoder {codec!r} (try libx264, libx265, libvpx-vp9)") from None
        if encoder.type != "video":
            raise VideoError(f"{codec} is not a video encoder")
        if not _accepts(self.container, codec, getattr(encoder, "canonical_name", codec)):
            raise VideoError(
                f"a {self.dst.suffix} file cannot hold {codec} video; choose another --codec or output type"
            )
        odd = width % 2 or height % 2
        pix_fmt = opts.pix_fmt or ("yuv444p" if odd else "yuv420p")
        formats = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
        if formats and pix_fmt not in formats:
            raise VideoError(f"{codec} cannot encode {pix_fmt}; it takes {', '.join(formats[:8])}")
        stream = self.container.add_stream(codec, rate=info.fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        ctx = stream.codec_context
        tags = info.colour
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
            if self.dst.suffix.lower() == ".avi":
                options["bf"] = "0"  # AVI keeps no presentation timestamps: B-frames would scramble them
        elif codec in ("libvpx-vp9", "libaom-av1", "libsvtav1"):
            options = {"crf": str(opts.crf), "b": "0"}
        stream.options = options
        if info.rotation:
            stream.set_display_rotation(info.rotation)
        return stream

    def write(self, rgb: np.ndarray, pts: int) -> None:
        import av

        frame = rgb_to_frame(rgb, self.pix_fmt, self.tags)
        seconds = float(pts * self.info.time_base)
        if self.avi:
            pts = round(pts * self.info.time_base / self.time_base)
            if self._last_pts is not None and pts <= self._last_pts:
                pts = self._last_pts + 1
        self._last_pts = pts
        frame.pts, frame.time_base = pts, self.time_base
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
            if self.audio is not None:
                self.audio.copy_until(seconds + 0.5)
        except av.error.FFmpegError as exc:
            raise write_error(self.dst, exc, self.count + 1) from None
        self.count += 1

    def commit(self) -> None:
        import av

        try:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
            if self.audio is not None:
                self.audio.copy_until(None)
                self.audio.close()
            self.container.close()
        except av.error.FFmpegError as exc:
            self.abort()
            raise write_error(self.dst, exc, self.count) from None
        _plain_mode(self.tmp)
        os.replace(self.tmp, self.dst)

    def abort(self) -> None:
        try:
            if self.audio is not None:
                self.audio.close()
            self.container.close()
        except Exception:  # noqa: BLE001 - closing a half-written file may fail; the file goes anyway
            pass
        self.tmp.unlink(missing_ok=True)


class _AudioCopy:
    """Audio packets of the input, muxed into the output in step with the video (flat memory)."""

    def __init__(self, info: SourceInfo, out: Any, suffix: str) -> None:
        import av

        self.input = av.open(str(info.path))
        self.out = out
        self.shift = info.shift  # seconds taken off every timestamp (the video's are shifted alike)
        self.first = info.origin + info.start if info.start else None  # absolute cut points, seconds
        self.last = info.origin + info.end if info.end is not None else None
        self.pairs: dict[int, tuple[Any, Any | None]] = {}  # input stream index -> (output stream, decoder?)
        for stream in self.input.streams.audio:
            name = stream.codec_context.name
            if _accepts(out, name, name):
                self.pairs[stream.index] = (out.add_stream_from_template(stream), None)
            else:  # the container cannot hold this codec: decode and re-encode
                codec = _FALLBACK_AUDIO.get(suffix, "aac")
                rate = stream.codec_context.sample_rate or 48000
                if codec == "libopus":
                    rate = 48000  # Opus takes 48/24/16/12/8 kHz only; the encoder resamples
                encoded = out.add_stream(codec, rate=rate)
                if stream.codec_context.layout:
                    encoded.layout = stream.codec_context.layout
                self.pairs[stream.index] = (encoded, stream)
        if self.first is not None:
            self.input.seek(int(self.first * 1_000_000), backward=True)
        self.packets = self.input.demux(*self.input.streams.audio)
        self.pending: Any = None
        self.done = False
        self.past_end: set[int] = set()

    def copy_until(self, seconds: float | None) -> None:
        """Mux every audio packet that starts before `seconds` on the output's clock (all the remaining
        ones, up to --end, for None)."""
        while not self.done:
            packet = self.pending or next(self.packets, None)
            self.pending = None
            if packet is None:
                self.done = True
                self._flush_encoders()
                return
            if packet.pts is None or packet.size == 0:
                continue
            absolute = float(packet.pts * packet.time_base)
            if self.last is not None and absolute >= self.last - 1e-6:
                self.past_end.add(packet.stream.index)  # after --end
                if len(self.past_end) == len(self.pairs):
                    self.done = True
                    self._flush_encoders()
                    return
                continue
            if seconds is not None and absolute - self.shift > seconds:
                self.pending = packet
                return
            if self.first is not None and absolute < self.first - 1e-6:
                continue  # before --start (without it, encoder priming at t < 0 is kept)
            self._mux(packet)

    def _mux(self, packet: Any) -> None:
        out_stream, decoder = self.pairs[packet.stream.index]
        if decoder is None:
            if self.shift:
                ticks = int(round(self.shift / packet.time_base))
                packet.pts -= ticks
                if packet.dts is not None:
                    packet.dts -= ticks
            packet.stream = out_stream
            self.out.mux(packet)
            return
        for frame in decoder.codec_context.decode(packet):
            frame.pts = None
            for encoded in out_stream.encode(frame):
                self.out.mux(encoded)

    def _flush_encoders(self) -> None:
        for out_stream, decoder in self.pairs.values():
            if decoder is not None:
                for encoded in out_stream.encode(None):
                    self.out.mux(encoded)

    def close(self) -> None:
        self.input.close()


# avformat_query_codec cannot tell for MPEG-TS (PyAV lists 8 codecs); these are the ones it carries.
_MPEGTS_CODECS = {"h264", "hevc", "mpeg2video", "mpeg1video", "aac", "mp3", "mp2", "ac3", "eac3", "opus"}


def _accepts(container: Any, encoder_name: str, codec_name: str) -> bool:
    """Whether the output container can hold this codec."""
    if container.format.name == "mpegts":
        return codec_name in _MPEGTS_CODECS
    supported = container.supported_codecs
    return encoder_name in supported or codec_name in supported


def _plain_mode(path: Path) -> None:
    """Temporary files are created 0600; the output gets the mode any new file would (0666 - umask)."""
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


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
    dst: Path, info: SourceInfo, options: EncodeOptions, width: int, height: int
) -> VideoSink | FolderSink:
    return FolderSink(dst) if is_folder_output(dst) else VideoSink(dst, info, options, width, height)


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


def check_encoder(dst: Path, options: EncodeOptions) -> None:
    """Refuse an unknown encoder, --preset or --pix-fmt, or a --crf out of the encoder's range, before any
    work: the encoder itself would refuse them only at the first frame ("Invalid argument")."""
    if is_folder_output(dst):
        return
    import av

    codec = options.codec or _DEFAULT_CODEC.get(dst.suffix.lower(), "libx264")
    try:
        encoder = av.codec.Codec(codec, "w")
    except Exception:  # noqa: BLE001 - PyAV raises several types for unknown codecs
        raise VideoError(f"unknown video encoder {codec!r} (try libx264, libx265, libvpx-vp9)") from None
    if encoder.type != "video":
        raise VideoError(f"{codec} is not a video encoder")
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


def write_error(dst: Path, exc: BaseException, frame: int) -> VideoError:
    """A failed write as one line; a full disk says so (ENOSPC), with the frame it happened at."""
    if getattr(exc, "errno", None) == errno.ENOSPC:
        return VideoError(
            f"disk full while writing {dst} (frame {frame}): free some space or write the output to "
            "another disk"
        )
    return VideoError(f"cannot write {dst} (frame {frame}): {_reason(exc)}")


def _write_png(path: Path, rgb: np.ndarray) -> None:
    """One PNG frame; errors as OSError with their errno (cv2.imwrite only says False)."""
    import cv2

    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise OSError(errno.EINVAL, f"cannot encode frame as PNG ({rgb.shape})")
    with open(path, "wb") as f:
        f.write(data.tobytes())
