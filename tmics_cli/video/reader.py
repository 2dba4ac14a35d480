"""Streaming frame sources: a video file (PyAV) or a folder of frames, one RGB uint8 frame at a time.

`open_source(path)` probes the input (size, frame rate, time base, frame count or an estimate, display
rotation, colour tags, audio streams) and fails with a one-line `VideoError` on anything it cannot read.
Iterating it decodes lazily, so memory does not depend on the video's length.

Damage is never accepted silently: packets the demuxer flags corrupt, packets the decoder rejects, frames
it flags corrupt, a video that stops clearly short of the frame count or duration its container states, and
image frames whose file is cut short (see `images.image_damage`) are each reported in one line naming the
file and the frame, as a `VideoWarning` (decoding goes on), or with `strict=True` as a `VideoError`.
Inputs that cannot be seeked in (a pipe, stdin, a socket, a character device) are refused up front by
`check_input`, without opening them.
"""

from __future__ import annotations

import functools
import math
import os
import stat
import sys
import warnings
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .colour import ColourTags, YUVPlanes, frame_planes, frame_to_rgb
from .files import IMAGE_SUFFIXES, list_images
from .images import image_depth, read_rgb
from .timeline import Timeline, may_jump

FRAME_SUFFIXES = IMAGE_SUFFIXES  # the files a folder of frames is made of
MAX_FRAME_REPORTS = 5  # damaged frames named one by one; the rest are counted in one closing line
_JOIN_FLAG_PACKETS = 2  # a demuxer's flag this many video packets before a jump in the clock is the join's
MIN_SHORTFALL_S = 0.1  # a video this much short of its stated end can be rounding; more is damage
MIXED_SLACK_S = 0.5  # the same when only the container's duration (of all its streams) is known
SEEK_HINT = "tmics needs a file it can seek in; save it to a file first"


class VideoError(Exception):
    """Input or output video that cannot be used; the message is one line meant for the user."""


class VideoWarning(UserWarning):
    """Something the user should know about an input or output (a damaged frame, a stream that cannot be
    kept) that does not stop the work; the message is one line. The CLI prints it as `warning: ...`."""


class Damage:
    """Reports damage found in one input: a `VideoError` when strict, else a `VideoWarning` per damaged
    frame (the first `MAX_FRAME_REPORTS`; `finish` counts the rest in one line)."""

    def __init__(self, path: Path, strict: bool) -> None:
        self.path, self.strict, self.frames = path, strict, 0

    def frame(self, message: str) -> None:
        self.frames += 1
        if self.strict:
            raise VideoError(message)
        if self.frames <= MAX_FRAME_REPORTS:
            warnings.warn(message, VideoWarning, stacklevel=2)

    def whole(self, message: str) -> None:
        if self.strict:
            raise VideoError(message)
        warnings.warn(message, VideoWarning, stacklevel=2)

    def finish(self) -> None:
        if self.frames > MAX_FRAME_REPORTS:
            warnings.warn(
                f"{self.path}: {self.frames} damaged frames in all "
                f"(the first {MAX_FRAME_REPORTS} named above)",
                VideoWarning,
                stacklevel=2,
            )


@dataclass(frozen=True)
class SourceFrame:
    index: int  # 0-based position in the output
    # (H, W, 3) uint8 RGB; or, from a source opened with planes=True, a YUV frame's planes unconverted
    pixels: np.ndarray | YUVPlanes
    pts: int  # presentation timestamp in the source's time base (shifted so that --start is 0)

    @property
    def rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 (planes converted here, as the reader converts frames)."""
        return self.pixels if isinstance(self.pixels, np.ndarray) else self.pixels.rgb


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
    other_streams: tuple[str, ...] = ()  # the type of every stream besides the video (audio, subtitle, ...)
    start: float = 0.0  # seconds skipped at the start (--start), counted from `origin`
    end: float | None = None  # where the output stops (--end), counted from `origin`
    origin: float = 0.0  # the stream's own start time in seconds (TS captures often start at 10 s or more)
    pixel_aspect: Fraction | None = None  # a pixel's width over its height where not square (anamorphic)
    interlaced: bool = False  # the first frame is interlaced (two fields)
    bits: int = 8  # bits per sample of the decoded frames (10 for yuv420p10le)
    hdr_metadata: tuple[str, ...] = ()  # HDR side data of the first frame ("mastering display", ...)
    alpha: bool = False  # the frames have an alpha channel (transparency), decoded or tagged (WebM)

    @property
    def shift(self) -> float:
        """Seconds taken off every output timestamp (every stream's alike, so they stay in sync): the
        video's start, and the cut's when --start is given, so that the output's video starts at 0 as
        ffmpeg's does. A capture's clock seldom starts at 0 (MPEG-TS and camcorder files at 10 s, or an
        hour, or below zero where the clock wraps in its first minute), and kept, that start became an
        empty edit in MP4 (a player showed an hour of nothing) and a long duration in Matroska; no output
        keeps a video's negative times either (MP4's edit list cuts its frames, Matroska moves the video
        alone)."""
        return self.origin + self.start


def parse_time(text: str | float | None) -> float | None:
    """Seconds from '12.5', '1:02.5' or '1:00:02'; None stays None."""
    if text is None or isinstance(text, int | float):
        return None if text is None else float(text)
    parts = text.strip().split(":")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise VideoError(f"cannot read time {text!r}: give seconds (12.5) or [hh:]mm:ss") from None
    if len(values) > 3 or any(v < 0 for v in values[1:]) or any(v >= 60 for v in values[1:]):
        raise VideoError(f"cannot read time {text!r}: give seconds (12.5) or [hh:]mm:ss")
    seconds = 0.0
    for value in values:
        seconds = seconds * 60 + value
    if seconds < 0 or text.strip().startswith("-"):  # -0:00.2: -0 * 60 + 0.2 is positive
        raise VideoError(f"time {text!r} is negative")
    return seconds


class VideoFileSource:
    """Frames of the video stream of a file PyAV opens (main_video: the first that is not cover art),
    with their timestamps."""

    def __init__(
        self,
        path: Path,
        start: float | None = None,
        end: float | None = None,
        strict: bool = False,
        span: tuple[int, int | None] | None = None,
        planes: bool = False,
    ) -> None:
        import av

        self.path, self.start, self.end = path, start or 0.0, end
        self.planes = planes  # hand 8-bit planar YUV frames on as YUVPlanes (converted elsewhere)
        # a part of the stream (a segment with its context): raw timestamps from span[0] up to span[1]
        # (exclusive; None: to the end), found by seeking; --start and --end still shift the timestamps
        self.span = span
        self.damage = Damage(path, strict)
        try:
            self._container = open_media(path)
        except av.error.InvalidDataError as exc:
            raise VideoError(f"{path} is not a video PyAV can read ({_reason(exc)})") from None
        except av.error.FFmpegError as exc:
            raise VideoError(f"cannot open {path}: {_reason(exc)}") from None
        stream = main_video(self._container)
        if stream is None:
            only = " (only cover art)" if self._container.streams.video else ""
            self._container.close()
            raise VideoError(f"{path} has no video stream{only}")
        self._stream = stream
        stream.thread_type = "AUTO"
        # an MPEG-TS/PS whose clock may jump is read on one continuous clock (a segment's span comes from an
        # index, made only where nothing jumps)
        tracked = span is None and bool(stream.time_base) and may_jump(self._container)
        self._timeline = Timeline(stream.time_base) if tracked else None
        # times given by the user count from the stream's first timestamp, not the container's zero
        self.origin = (
            float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
        )
        self._frames = self._decode()
        try:
            first = next(self._frames)
        except StopIteration:
            self._container.close()
            what = "no video frames"
            if start or end is not None:
                what += f" from {self.start:g} s" if end is None else f" from {self.start:g} s to {end:g} s"
            raise VideoError(f"{path} has {what}") from None
        except BaseException:
            self._container.close()
            raise
        self._first = first
        stream = self._stream  # decoding a segment may have opened the file again
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(25)
        own = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        tagged = tagged_end(stream)
        begin = (self._container.start_time or 0) / 1_000_000
        duration = own
        if duration is None and tagged is not None:
            # counted from zero (or, to be safe, from the container's start: the earlier end)
            duration = min(tagged, begin + tagged) - self.origin
        if duration is None and self._container.duration:
            duration = self._container.duration / 1_000_000
        # what the container states, to tell a video that stops short: its frame count, and where the
        # video stream ends (from the stream's duration or its muxer's tag, else the container's, which
        # may be the audio's: then only a larger shortfall counts)
        self._stated_frames = stream.frames or None
        self._stated_end, self._slack = None, 0.0
        if own is not None:
            self._stated_end = own
        elif tagged is not None:
            self._stated_end = duration
        elif self._container.duration:
            # counted from the container's start, or (Matroska) from zero: the earlier end, so as never to
            # expect frames the file does not promise
            length = self._container.duration / 1_000_000
            self._stated_end = min(length, begin + length) - self.origin
            if len(self._container.streams) > 1:
                self._slack = max(MIXED_SLACK_S, 0.05 * (self._stated_end - self.start))
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
            other_streams=tuple(s.type for s in self._container.streams if s is not stream),
            start=self.start,
            end=end,
            origin=self.origin,
            pixel_aspect=_pixel_aspect(stream),
            interlaced=bool(getattr(first, "interlaced_frame", False)),
            bits=max((c.bits for c in first.format.components), default=8),
            hdr_metadata=_hdr_metadata(first),
            alpha=len(first.format.components) in (2, 4)
            or any(k.lower() == "alpha_mode" and v == "1" for k, v in stream.metadata.items()),
        )

    def _decode(self) -> Iterator[Any]:
        """The stream's frames from --start to --end, packet by packet, so that damage is seen (and named)
        where it happens and decoding goes on after a bad packet."""
        import av

        span = self.span
        if span is not None:
            self._seek_before(span[0])
        elif self.start and self._stream.time_base:
            cut = self.origin + self.start
            if self._timeline is None or not jumps(self.path):  # else read from the start
                self._seek_before(int(cut / self._stream.time_base))
        stream = self._stream  # taken after the seek, which may have opened the file again
        tb = stream.time_base
        timeline = self._timeline
        moved: deque[tuple[int | None, int]] = deque(maxlen=64)  # (raw pts, offset) of packets not yet shown
        decoded, first, last = 0, None, None  # frames handed on; times of the first and the last
        pending: str | None = None  # a bad packet, reported once the stream goes on after it
        flagged, held = False, 0  # whether the pending line is the demuxer's flag alone; packets since
        stopped: str | None = None  # why the demuxer stopped early
        packets = self._container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                stopped = _reason(exc)
                break
            clock = packet.pts  # on the continuous clock, where it jumps
            joined = False  # whether this packet starts a part (its clock jumped)
            if timeline is not None and packet.size:
                before = timeline.part
                joined = timeline.feed(packet) != before
                moved.append((packet.pts, timeline.offset))
                clock = None if packet.pts is None else packet.pts + timeline.offset
            if pending is not None and packet.size:
                # where recordings were joined, the stream's packet count breaks and the demuxer flags one of
                # the last packets before the join (its parser holds one back), whole or not: it cannot
                # tell, as it cannot at the end of a file. Its flag is held for the packets after it.
                held += 1
                if flagged and joined:
                    pending, flagged = None, False
                elif not flagged or held >= _JOIN_FLAG_PACKETS:
                    self.damage.frame(pending)
                    pending, flagged = None, False
            where = self._where(decoded, clock, tb)
            # a bad packet before --start (decoded only to reach it) shows in the frames it spoils
            early = clock is not None and tb and float(clock * tb) - self.origin < self.start - 1e-6
            if packet.is_corrupt and not early:
                if pending is not None:  # a flag held before it
                    self.damage.frame(pending)
                pending = f"{self.path}: {where} is damaged (the demuxer flagged its data corrupt)"
                flagged, held = True, 0
            try:
                frames = stream.decode(packet)  # an empty packet (the last) flushes the decoder
            except av.error.InvalidDataError as exc:
                if not early:
                    pending = pending or f"{self.path}: {where} cannot be decoded ({_reason(exc)}); left out"
                    flagged = False  # the decoder found it bad too
                continue
            except av.error.FFmpegError as exc:
                raise VideoError(
                    f"{self.path}: corrupt video stream after {decoded} frames ({_reason(exc)})"
                ) from None
            for frame in frames:
                if timeline is not None and frame.pts is not None:
                    frame.pts += _offset_of(moved, frame.pts, timeline.offset)
                if span is not None and frame.pts is not None:
                    if frame.pts < span[0]:
                        continue
                    if span[1] is not None and frame.pts >= span[1]:
                        self._finish(pending)
                        return
                time = None if frame.time is None else frame.time - self.origin
                if time is not None and time < self.start - 1e-6:
                    continue
                if self.end is not None and time is not None and time >= self.end - 1e-6:
                    self._finish(pending)
                    return
                if frame.is_corrupt:
                    pending = None  # this line covers a bad packet before it
                    self.damage.frame(
                        f"{self.path}: {self._where(decoded, frame.pts, tb)} is damaged "
                        "(the decoder flagged it corrupt)"
                    )
                decoded += 1
                if time is not None:
                    first = time if first is None else first
                    last = time
                yield frame
        # (see frame_index; where the clock jumped, what the container states of its length means nothing)
        jumped = timeline is not None and timeline.part > 0
        short = None if span is not None or jumped else self._shortfall(decoded, first, last)
        if short or stopped:
            because = f"{stopped}; " if stopped else ""
            self.damage.whole(
                f"{self.path}: the video stops {short or f'after {decoded} frames'} "
                f"({because}the file is truncated or damaged)"
            )
            pending = None  # the cut explains a bad last packet
        self._finish(pending)

    def _seek_before(self, pts: int) -> None:
        """Seek to a keyframe at or before `pts` from which decoding reaches `pts` exactly as a pass from
        the start does. Demuxers seek by decode time and a keyframe's leading frames may need the frames
        before it, so the first frame decoded after the seek must be a keyframe shown at or before `pts`;
        else the seek goes back further (1 s, then 2 s, 4 s, ... and at last to the start)."""
        import av

        stream, container = self._stream, self._container
        tb = stream.time_base
        back = max(1, int(round(1 / tb))) if tb else 1
        begin = stream.start_time if stream.start_time is not None else 0
        target = pts
        while True:
            if target <= begin:
                self._reopen()
                return
            container.seek(target, stream=stream, backward=True, any_frame=False)
            first = None
            try:
                for packet in container.demux(stream):
                    try:
                        frames = stream.decode(packet)
                    except av.error.FFmpegError:
                        continue
                    if frames:
                        first = frames[0]
                        break
            except av.error.FFmpegError:
                pass
            if first is not None and first.pts is not None and first.pts <= pts and first.key_frame:
                container.seek(target, stream=stream, backward=True, any_frame=False)
                return
            target -= back
            back *= 2

    def _reopen(self) -> None:
        """Open the file again, so that its first packet comes next whatever its timestamps: a seek by time
        to the start is not exact everywhere (in an MPEG-TS whose clock wraps in its first seconds it lands
        past the first keyframe, and nothing decodes)."""
        self._container.close()
        self._container = open_media(self.path)
        self._stream = main_video(self._container)
        self._stream.thread_type = "AUTO"

    def frame_index(self) -> list[int] | None:
        """The raw timestamps of the stream's frames from --start to --end, in presentation order, read from
        the packets without decoding (a fast pass over the file), so that parts of the stream can be decoded
        on their own (`span`). None when timestamps are missing or repeat, or the stream stops clearly short
        of what its container states: then only one whole pass is exact (and tells the damage)."""
        tb = self._stream.time_base
        if not tb:
            return None
        if self.start and self._timeline is not None and jumps(self.path):
            return None  # read from a seek on, the packets would not show a jump before it
        times = _packet_times(self.path, int((self.origin + self.start) / tb) if self.start else None)
        if times is None or len(set(times)) != len(times):
            return None
        times.sort()

        def kept(pts: int) -> bool:
            t = float(pts * tb) - self.origin
            return t >= self.start - 1e-6 and (self.end is None or t < self.end - 1e-6)

        times = [t for t in times if kept(t)]
        if not times:
            return None
        first, last = (float(t * tb) - self.origin for t in (times[0], times[-1]))
        if self._shortfall(len(times), first, last):
            return None  # cut short: one whole pass tells (and with --strict refuses) it as it reads
        return times

    def _where(self, decoded: int, pts: int | None, tb: Fraction | None) -> str:
        """'frame 12 (0.44 s)': the frame about to be handed on, 1-based, and the packet's time."""
        if pts is None or not tb:
            return f"frame {decoded + 1}"
        return f"frame {decoded + 1} ({float(pts * tb) - self.origin:.2f} s)"

    def _finish(self, pending: str | None) -> None:
        if pending is not None:
            self.damage.frame(pending)
        self.damage.finish()

    def _shortfall(self, decoded: int, first: float | None, last: float | None) -> str | None:
        """'after 10 of 24 frames' when the video stopped clearly before what its container states; None
        when it did not, or the container states nothing to compare with.

        Both the frame count and the stream's end must fall short where both are known: an AVI counts
        dropped frames as empty entries (and may state 1000 fps for 25), a variable frame rate makes
        duration x rate a poor count, but a cut-off file misses both. The stream's end is compared with
        the last frame's time plus one frame (the frames' mean spacing, or 1 / frame rate). The tolerance
        (2 frames, 0.5% of them, and 0.1 s) absorbs the frame or two that edit lists, decoder delay and
        rounding make normal files differ by."""
        if not decoded:
            return None  # the caller says the video has no frames
        rate = float(self.info.fps) or 25.0
        step = 1 / rate
        if first is not None and last is not None and decoded > 1:
            step = max(step, (last - first) / (decoded - 1))
        count = None if (self.start or self.end is not None) else self._stated_frames
        count_short = count is not None and count - decoded > _tolerance(count)
        time_short = None
        if self._stated_end is not None and last is not None:
            end = self._stated_end if self.end is None else min(self.end, self._stated_end)
            reached = last + step
            expected = (end - self.start) / step
            missing = end - reached
            time_short = missing > max(_tolerance(expected) * step, MIN_SHORTFALL_S, self._slack)
        if count is not None:
            return f"after {decoded} of {count} frames" if count_short and time_short is not False else None
        if time_short:
            return f"after {decoded} of about {round(expected)} frames, at {reached:.2f} s of {end:.2f} s"
        return None

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
            pixels = frame_planes(frame, info.colour) if self.planes else None
            yield SourceFrame(index, frame_to_rgb(frame, info.colour) if pixels is None else pixels, int(pts))
            index += 1

    def close(self) -> None:
        self._container.close()


def _offset_of(moved: deque[tuple[int | None, int]], pts: int, current: int) -> int:
    """The offset of the part a decoded frame's packet was in (packets come in decode order, frames in
    presentation order: a few apart); `current` for a frame of no packet seen."""
    for i, (raw, offset) in enumerate(moved):
        if raw == pts:
            del moved[i]
            return offset
    return current


_HDR_SIDE_DATA = {  # frame side data of HDR10 (static metadata), by PyAV's type name
    "MASTERING_DISPLAY_METADATA": "mastering display",
    "CONTENT_LIGHT_LEVEL": "content light level",
}


def _hdr_metadata(frame: Any) -> tuple[str, ...]:
    """The HDR side data a decoded frame carries (HDR10's static metadata), by name."""
    names = [_HDR_SIDE_DATA.get(getattr(getattr(sd, "type", None), "name", "")) for sd in frame.side_data]
    return tuple(dict.fromkeys(n for n in names if n))


def _pixel_aspect(stream: Any) -> Fraction | None:
    """The stream's sample (pixel) aspect ratio, from the container or the bitstream; None for square
    pixels or none stated."""
    for ratio in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio):
        if ratio and ratio.numerator > 0 and ratio.denominator > 0:
            return None if ratio == 1 else Fraction(ratio)
    return None


def tagged_end(stream: Any) -> float | None:
    """Matroska stores one duration, the file's (perhaps the audio's); its muxers (ffmpeg, mkvmerge) write
    each stream's end, from zero, as a DURATION tag ("00:01:02.500000000"): that, in seconds, or None."""
    for key, value in stream.metadata.items():
        if key.upper().split("-")[0] == "DURATION":
            parts = value.strip().split(":")
            try:
                seconds = sum(float(part) * 60**i for i, part in enumerate(reversed(parts)))
            except ValueError:
                return None
            return seconds if len(parts) == 3 and seconds > 0 and math.isfinite(seconds) else None
    return None


def _packet_times(path: Path, target: int | None) -> list[int] | None:
    """The presentation times of the main video stream's packets, in decode order: all of them, or those
    from a keyframe at or before `target` (its time base) on. A demuxer's seek is not exact everywhere (an
    MPEG-TS one may land on a frame between keyframes, or past the target where its clock wraps): a seek
    whose first packet is not such a keyframe goes back further (1 s, 2 s, 4 s, ... and at last to the
    start), as `VideoFileSource._seek_before` does. None when a packet has no time, or where the clock
    jumps (an MPEG-TS of joined recordings: its times alone do not tell a place in the file)."""
    import av

    back = None
    seek = target
    while True:
        container = open_media(path)
        try:
            video = main_video(container)
            tb = video.time_base
            begin = video.start_time if video.start_time is not None else 0
            if back is None:
                back = max(1, int(round(1 / tb))) if tb else 1
            from_start = seek is None or seek <= begin
            if not from_start:
                container.seek(seek, stream=video, backward=True)
            times: list[int] = []
            timeline = Timeline(tb) if tb and may_jump(container) else None
            try:
                for packet in container.demux(video):
                    if not packet.size:
                        continue
                    if packet.pts is None:
                        return None
                    if timeline is not None and timeline.feed(packet):
                        return None
                    if not times and not from_start and (not packet.is_keyframe or packet.pts > target):
                        break  # landed wrong: further back
                    times.append(packet.pts)
            except av.error.FFmpegError:
                pass  # a cut-off file: the frames before the cut are indexed; the caller tells the shortfall
            if from_start or times:
                return times
        finally:
            container.close()
        seek -= back
        back *= 2


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


class FrameFolderSource:
    """A folder of frames (png, jpg, ...) in natural order, played at `fps`."""

    def __init__(
        self,
        path: Path,
        fps: float = 25.0,
        start: float | None = None,
        end: float | None = None,
        strict: bool = False,
        span: tuple[int, int | None] | None = None,
    ):
        self.path = path
        self.span = span  # frames span[0] up to span[1] (exclusive; None: the last) of those in range
        self.damage = Damage(path, strict)
        files = list_images(path)
        if fps <= 0:
            raise VideoError(f"--fps must be positive, got {fps}")
        rate = Fraction(fps).limit_denominator(1001)
        first_index = int(round((start or 0) * rate))
        last_index = len(files) if end is None else min(len(files), int(round(end * rate)))
        self.files = files[first_index:last_index]
        if not self.files:
            what = "no frames" if files else f"no frames ({', '.join(FRAME_SUFFIXES)})"
            raise VideoError(f"{path} holds {what}" + (" in the range asked for" if files else ""))
        self._offset = span[0] if span is not None else 0
        if span is not None:
            self.files, all_files = self.files[span[0] : span[1]], self.files
            if not self.files:
                raise VideoError(f"{path}: no frames from frame {span[0] + 1} on (of {len(all_files)})")
        self._first: np.ndarray | None = self._read(self.files[0], self._offset)  # read (and checked) once
        h, w = self._first.shape[:2]
        bits, alpha = image_depth(self.files[0])
        self.info = SourceInfo(
            path=path,
            kind="frames",
            width=w,
            height=h,
            fps=rate,
            time_base=1 / rate,
            frames=len(self.files) if span is None else len(all_files),
            frames_exact=True,
            duration=(len(self.files) if span is None else len(all_files)) / float(rate),
            pix_fmt={(8, False): "rgb24", (8, True): "rgba"}.get(
                (bits, alpha), "rgba64le" if alpha else "rgb48le"
            ),
            start=float(start or 0),
            end=end,
            bits=bits,
            alpha=alpha,
        )

    def _read(self, path: Path, index: int) -> np.ndarray:
        rgb, problem = read_rgb(path)
        if rgb is None:
            raise VideoError(f"cannot read frame {path}" + (f" ({problem})" if problem else ""))
        if problem:
            self.damage.frame(f"{path} (frame {index + 1}): {problem}, decoded with missing data")
        return rgb

    def frame_index(self) -> list[int]:
        """The frames' positions, which stand for timestamps in a folder (see VideoFileSource.frame_index)."""
        return list(range(self.info.frames or 0))

    def __iter__(self) -> Iterator[SourceFrame]:
        for index, file in enumerate(self.files, self._offset):
            if index == self._offset and self._first is not None:
                rgb, self._first = self._first, None
            else:
                rgb = self._read(file, index)
            if rgb.shape[:2] != (self.info.height, self.info.width):
                raise VideoError(
                    f"{file} is {rgb.shape[1]}x{rgb.shape[0]}, the first frame {self.info.width}x"
                    f"{self.info.height}: all frames of a folder must have one size"
                )
            yield SourceFrame(index, rgb, index)
        self.damage.finish()

    def close(self) -> None:
        pass


_STREAM_KINDS = (
    (stat.S_ISFIFO, "a pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _stream_kind(mode: int, fd: int | None = None) -> str:
    if fd is not None and stat.S_ISCHR(mode) and os.isatty(fd):
        return "a terminal"
    return next((kind for test, kind in _STREAM_KINDS if test(mode)), "something that is not a file")


def check_input(path: str | Path) -> Path:
    """The input as a Path, after refusing (one-line `VideoError`) what cannot be read as a video file or
    frame folder: stdin (`-`) unless it is redirected from a file, and pipes, sockets and devices (also
    `/dev/stdin` fed by a pipe). Only stat is used: a FIFO is never opened, so this cannot block. A path
    that does not exist is returned as it is (the caller says so)."""
    if str(path) == "-":
        return _stdin_file()
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return path
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return path
    raise VideoError(f"cannot read video from {_stream_kind(mode)} ({path}): {SEEK_HINT}")


def _stdin_file() -> Path:
    """`-`: the file stdin is redirected from (`tmics derain - < in.mp4`); anything else is refused."""
    named = " (for a file named -, write ./-)" if Path("-").exists() else ""
    try:
        fd = sys.stdin.fileno()
        info = os.fstat(fd)
    except (AttributeError, ValueError, OSError):  # no stdin, or one that is not a file descriptor
        raise VideoError(f"cannot read video from stdin: {SEEK_HINT}{named}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = _stream_kind(info.st_mode, fd)
        raise VideoError(f"cannot read video from {kind} (stdin): {SEEK_HINT}{named}")
    real = Path(os.path.realpath(f"/proc/self/fd/{fd}"))
    try:
        if os.path.samestat(os.stat(real), info):
            return real
    except OSError:
        pass
    raise VideoError(f"cannot tell which file stdin is redirected from: give its path instead of -{named}")


# a short file of these is missed by FFmpeg's probe (a few MPEG-TS packets, e.g. 2 or 3 frames, read as
# "End of file"): where probing fails, it is read as its name says
_FORMAT_BY_SUFFIX = {".ts": "mpegts", ".mts": "mpegts", ".m2ts": "mpegts"}


def main_video(container: Any) -> Any:
    """The video stream tmics derains: the first that is not an attached picture (cover art, which MP4
    and MKV may store before the video), or None."""
    import av

    cover = int(av.stream.Disposition.attached_pic)
    for stream in container.streams.video:
        if not int(stream.disposition) & cover:
            return stream
    return None


def open_media(path: str | Path) -> Any:
    """`av.open(path)` for reading, and where FFmpeg's probe fails on a file named as MPEG-TS, that file
    read as MPEG-TS (an input, or a piece or output tmics wrote, of a few frames)."""
    import av

    try:
        return av.open(str(path))
    except av.error.FFmpegError:
        fmt = _FORMAT_BY_SUFFIX.get(Path(path).suffix.lower())
        if fmt is None:
            raise
        try:
            return av.open(str(path), format=fmt)
        except av.error.FFmpegError:
            pass  # not MPEG-TS either (a .ts of TypeScript, say): the probe's error is the one to tell
        raise


def open_source(
    path: str | Path,
    fps: float = 25.0,
    start: float | None = None,
    end: float | None = None,
    strict: bool = False,
    span: tuple[int, int | None] | None = None,
    planes: bool = False,
) -> VideoFileSource | FrameFolderSource:
    """Probe `path` (a video file or a folder of frames) and return a source to iterate once. Damage found
    while iterating is a `VideoWarning`, or with `strict` a `VideoError`. `span`: only the frames from raw
    timestamp span[0] up to span[1] (exclusive, None: the end), as `frame_index` lists them. `planes`: a
    video's 8-bit planar YUV frames come as YUVPlanes, for conversion on a device (others as RGB)."""
    path = check_input(path)
    if end is not None and start is not None and end <= start:
        raise VideoError(f"--end ({end:g} s) must come after --start ({start:g} s)")
    if not path.exists():
        raise VideoError(f"{path} does not exist")
    if path.is_dir():
        return FrameFolderSource(path, fps, start, end, strict, span)
    return VideoFileSource(path, start, end, strict, span, planes)


def _tolerance(frames: float) -> float:
    """Frames a video may fall short of its container's statement without being called damaged."""
    return max(2.0, math.ceil(0.005 * frames))


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def jumps(path: Path | str) -> bool:
    """Whether the main video stream's timestamps jump anywhere in the file (read from its packets alone;
    remembered for the file as it is). A seek to a time is only meaningful where they do not: the same
    time may name a place in each part."""
    status = os.stat(path)
    return _jumps(str(path), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _jumps(path: str, size: int, mtime_ns: int) -> bool:
    import av

    with open_media(path) as container:
        if not may_jump(container):
            return False
        video = main_video(container)
        if video is None or not video.time_base:
            return False
        timeline = Timeline(video.time_base)
        try:
            for packet in container.demux(video):
                if timeline.feed(packet):
                    return True
        except av.error.FFmpegError:
            pass  # a cut-off file: no jump up to the cut
    return False
