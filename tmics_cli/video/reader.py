"""Streaming frame sources: a video file (PyAV) or a folder of frames, one RGB uint8 frame at a time.

`open_source(path)` probes the input (size, frame rate, time base, frame count or an estimate, display
rotation, colour tags, audio streams) and fails with a one-line `VideoError` on anything it cannot read.
Iterating it decodes lazily, so memory does not depend on the video's length.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .colour import ColourTags, frame_to_rgb

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class VideoError(Exception):
    """Input or output video that cannot be used; the message is one line meant for the user."""


class VideoWarning(UserWarning):
    """Something the user should know about an input or output (a damaged frame, a stream that cannot be
    kept) that does not stop the work; the message is one line. The CLI prints it as `warning: ...`."""


@dataclass(frozen=True)
class SourceFrame:
    index: int  # 0-based position in the output
    rgb: np.ndarray  # (H, W, 3) uint8
    pts: int  # presentation timestamp in the source's time base (shifted so that --start is 0)


@dataclass
class SourceInfo:
    path: Path
    kind: str  # "video" or "frames"
    width: int
    height: int
    fps: Fraction  # average frame rate (folders: the --fps given)
    time_base: Fraction
    frames: int | None  # frame count; None when neither the container nor the duration tells
    frames_exact: bool  # False when `frames` is an estimate from duration x frame rate
    duration: float | None  # seconds
    rotation: int = 0  # display rotation in degrees, counter-clockwise
    colour: ColourTags = field(default_factory=ColourTags)
    codec: str = ""
    pix_fmt: str = ""
    audio_streams: int = 0
    start: float = 0.0  # seconds skipped at the start (--start), counted from `origin`
    end: float | None = None  # where the output stops (--end), counted from `origin`
    origin: float = 0.0  # the stream's own start time in seconds (TS captures often start at 10 s or more)

    @property
    def shift(self) -> float:
        """Seconds taken off every output timestamp: the cut's start when --start is given, else 0 (the
        input's timestamps are kept as they are)."""
        return self.origin + self.start if self.start else 0.0


def natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def parse_time(text: str | float | None) -> float | None:
    """Seconds from '12.5', '1:02.5' or '1:00:02'; None stays None."""
    if text is None or isinstance(text, int | float):
        return None if text is None else float(text)
    try:
        seconds = 0.0
        for part in text.strip().split(":"):
            seconds = seconds * 60 + float(part)
    except ValueError:
        raise VideoError(f"cannot read time {text!r}: give seconds (12.5) or [hh:]mm:ss") from None
    if seconds < 0:
        raise VideoError(f"time {text!r} is negative")
    return seconds


class VideoFileSource:
    """Frames of the first video stream of a file PyAV opens, with their timestamps."""

    def __init__(self, path: Path, start: float | None = None, end: float | None = None) -> None:
        import av

        self.path, self.start, self.end = path, start or 0.0, end
        try:
            self._container = av.open(str(path))
        except av.error.InvalidDataError as exc:
            raise VideoError(f"{path} is not a video PyAV can read ({_reason(exc)})") from None
        except av.error.FFmpegError as exc:
            raise VideoError(f"cannot open {path}: {_reason(exc)}") from None
        if not self._container.streams.video:
            self._container.close()
            raise VideoError(f"{path} has no video stream")
        self._stream = stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        # times given by the user count from the stream's first timestamp, not the container's zero
        self.origin = (
            float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
        )
        self._frames = self._decode()
        try:
            first = next(self._frames)
        except StopIteration:
            self._container.close()
            what = "no video frames" if not start else f"no video frames after {self.start:g} s"
            raise VideoError(f"{path} has {what}") from None
        except BaseException:
            self._container.close()
            raise
        self._first = first
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(25)
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration:
            duration = self._container.duration / 1_000_000
        count, exact = (stream.frames or None), bool(stream.frames)
        if start or end:
            span = (min(end, duration) if end is not None and duration else end or duration or 0) - self.start
            count, exact = (max(1, round(span * float(rate))) if span > 0 else None), False
        elif count is None and duration:
            count = max(1, round(duration * float(rate)))
        ctx = stream.codec_context
        self.info = SourceInfo(
            path=path,
            kind="video",
            width=first.width,
            height=first.height,
            fps=Fraction(rate),
            time_base=stream.time_base or Fraction(1, int(rate) or 25),
            frames=count,
            frames_exact=exact,
            duration=duration,
            rotation=int(round(first.rotation or 0)),
            colour=ColourTags.of_frame(first),
            codec=ctx.name or "",
            pix_fmt=first.format.name,
            audio_streams=len(self._container.streams.audio),
            start=self.start,
            end=end,
            origin=self.origin,
        )

    def _decode(self) -> Iterator[Any]:
        import av

        stream = self._stream
        tb = stream.time_base
        if self.start and tb:
            target = int((self.origin + self.start) / tb)
            self._container.seek(target, stream=stream, backward=True, any_frame=False)
        decoded = 0
        try:
            for frame in self._container.decode(stream):
                time = None if frame.time is None else frame.time - self.origin
                if time is not None and time < self.start - 1e-6:
                    continue
                if self.end is not None and time is not None and time >= self.end - 1e-6:
                    return
                decoded += 1
                yield frame
        except av.error.FFmpegError as exc:
            raise VideoError(
                f"{self.path}: corrupt video stream after {decoded} frames ({_reason(exc)})"
            ) from None

    def __iter__(self) -> Iterator[SourceFrame]:
        info, tb = self.info, self.info.time_base
        offset = int(round(info.shift / tb))
        step = 1 / (info.fps * tb) if info.fps else 1
        last = None
        frames = self._frames
        first, self._first = self._first, None
        if first is None:
            raise RuntimeError("a VideoFileSource can be iterated once")
        index = 0
        for frame in _chain(first, frames):
            pts = frame.pts
            if pts is None:  # no timestamp (some AVI files): derive one from the frame rate
                pts = offset + round(index * step)
            pts -= offset
            if last is not None and pts <= last:  # never hand the encoder a non-increasing timestamp
                pts = last + 1
            last = pts
            yield SourceFrame(index, frame_to_rgb(frame, info.colour), int(pts))
            index += 1

    def close(self) -> None:
        self._container.close()


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


class FrameFolderSource:
    """A folder of frames (png, jpg, ...) in natural order, played at `fps`."""

    def __init__(self, path: Path, fps: float = 25.0, start: float | None = None, end: float | None = None):

        self.path = path
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES), key=natural_key)
        if fps <= 0:
            raise VideoError(f"--fps must be positive, got {fps}")
        rate = Fraction(fps).limit_denominator(1001)
        first_index = int(round((start or 0) * rate))
        last_index = len(files) if end is None else min(len(files), int(round(end * rate)))
        self.files = files[first_index:last_index]
        if not self.files:
            what = "no frames" if files else f"no frames ({', '.join(FRAME_SUFFIXES)})"
            raise VideoError(f"{path} holds {what}" + (" in the range asked for" if files else ""))
        first = self._read(self.files[0])
        h, w = first.shape[:2]
        self.info = SourceInfo(
            path=path,
            kind="frames",
            width=w,
            height=h,
            fps=rate,
            time_base=1 / rate,
            frames=len(self.files),
            frames_exact=True,
            duration=len(self.files) / float(rate),
            pix_fmt="rgb24",
            start=float(start or 0),
            end=end,
        )

    @staticmethod
    def _read(path: Path) -> np.ndarray:
        import cv2

        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise VideoError(f"cannot read frame {path}")
        return np.ascontiguousarray(image[..., ::-1])

    def __iter__(self) -> Iterator[SourceFrame]:
        for index, file in enumerate(self.files):
            rgb = self._read(file)
            if rgb.shape[:2] != (self.info.height, self.info.width):
                raise VideoError(
                    f"{file} is {rgb.shape[1]}x{rgb.shape[0]}, the first frame {self.info.width}x"
                    f"{self.info.height}: all frames of a folder must have one size"
                )
            yield SourceFrame(index, rgb, index)

    def close(self) -> None:
        pass


def open_source(
    path: str | Path, fps: float = 25.0, start: float | None = None, end: float | None = None
) -> VideoFileSource | FrameFolderSource:
    """Probe `path` (a video file or a folder of frames) and return a source to iterate once."""
    path = Path(path)
    if end is not None and start is not None and end <= start:
        raise VideoError(f"--end ({end:g} s) must come after --start ({start:g} s)")
    if not path.exists():
        raise VideoError(f"{path} does not exist")
    if path.is_dir():
        return FrameFolderSource(path, fps, start, end)
    return VideoFileSource(path, start, end)


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
