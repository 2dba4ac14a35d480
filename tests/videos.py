"""Small videos generated with PyAV for the I/O and derain tests."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np


def moving_texture(index: int, h: int, w: int) -> np.ndarray:
    """(H, W, 3) uint8: a smooth colourful pattern drifting 2 pixels per frame (flow can follow it)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x = xx + 2 * index
    r = 128 + 90 * np.sin(x / 7) * np.cos(yy / 9)
    g = 120 + 70 * np.cos((x - yy) / 11)
    b = 100 + 50 * np.sin(yy / 5 + x / 13)
    return np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8)


def make_video(
    path: Path,
    frames: int = 10,
    w: int = 64,
    h: int = 48,
    pts: list[int] | None = None,
    time_base: Fraction = Fraction(1, 1000),
    fps: int = 25,
    audio: bool = False,
    rotation: int = 0,
    pix_fmt: str = "yuv420p",
    colorspace: int | None = None,
    sample_rate: int = 16000,
    offset: float = 0.0,
    audio_offset: float = 0.0,
    audio_gap: tuple[float, float] | None = None,
    gop: int | None = None,
) -> Path:
    """An H.264 video; `pts` (in `time_base` units) makes it variable frame rate; `audio_offset`: seconds
    the audio starts after the video's first frame (as in a capture whose sound starts late); `audio_gap`:
    (from, to) seconds of the audio left silent, no packets (a recording paused); `gop`: frames from one
    keyframe to the next (default: x264's, 250)."""
    import av

    pts = pts if pts is not None else [round(i / fps / time_base) for i in range(frames)]
    pts = [p + round(offset / time_base) for p in pts]  # a stream that starts late (as TS captures do)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        stream.options = {"crf": "12", "preset": "ultrafast", **({"g": str(gop)} if gop else {})}
        if colorspace is not None:
            ctx = stream.codec_context
            ctx.colorspace, ctx.color_range, ctx.color_primaries, ctx.color_trc = (
                colorspace,
                1,
                colorspace,
                colorspace,
            )
        if rotation:
            stream.set_display_rotation(rotation)
        sound = container.add_stream("aac", rate=sample_rate, layout="mono") if audio else None
        matrix = {1: "ITU709", 6: "ITU601"}.get(colorspace or 0, "ITU601")
        for i, p in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(moving_texture(i, h, w), format="rgb24")
            frame = frame.reformat(format=pix_fmt, dst_colorspace=matrix, dst_color_range="MPEG")
            frame.pts, frame.time_base = p, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if sound is not None:
            seconds = ((pts[-1] - pts[0]) * time_base) + Fraction(1, fps)  # as long as the video
            samples = int(sample_rate * seconds)
            t = np.arange(samples, dtype=np.float32) / sample_rate
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, samples, 1024):
                if audio_gap and audio_gap[0] <= start / sample_rate < audio_gap[1]:
                    continue
                chunk = wave[start : start + 1024][None]
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = start + round((offset + audio_offset) * sample_rate)
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode(None):
                container.mux(packet)
    return path


def encode_clip(
    path: Path,
    codec: str,
    pix_fmt: str,
    frames: int = 4,
    w: int = 64,
    h: int = 48,
    options: dict[str, str] | None = None,
    setup: Callable[[Any], None] | None = None,
    alpha: int | None = None,
) -> Path:
    """`frames` moving-texture frames encoded by `codec` in `pix_fmt` at 25 fps, one tick each, for the
    cases make_video's H.264 does not cover; `setup(stream)` sets what else the case needs (colour tags,
    aspect ratio, tags), `alpha` adds an alpha plane of that value."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        stream.options = options or {}
        if setup is not None:
            setup(stream)
        for i in range(frames):
            rgb = moving_texture(i, h, w)
            if alpha is None:
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            else:
                frame = av.VideoFrame.from_ndarray(
                    np.dstack([rgb, np.full((h, w), alpha, np.uint8)]), format="rgba"
                )
            frame = frame.reformat(format=pix_fmt)
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def joined_ts(path: Path, frames: tuple[int, ...] = (20, 20), gop: int | None = None) -> Path:
    """Recordings of `frames` frames each (at 25 fps) and their audio joined as `cat a.ts b.ts` joins them:
    each one's clock starts again where the first one's did. The parts stay beside it (part0.ts, ...)."""
    parts = [
        make_video(path.with_name(f"part{i}.ts"), n, audio=True, time_base=Fraction(1, 90000), gop=gop)
        for i, n in enumerate(frames)
    ]
    path.write_bytes(b"".join(part.read_bytes() for part in parts))
    return path


def decode(path: Path) -> tuple[list[np.ndarray], list[int], list[float], int]:
    """(RGB frames, pts, times in seconds, rotation) of the first video stream."""
    import av

    from tmics_cli.video.colour import ColourTags, frame_to_rgb

    images, pts, times, rotation = [], [], [], 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            images.append(frame_to_rgb(frame, ColourTags.of_frame(frame)))
            pts.append(frame.pts)
            times.append(float(frame.time))
            rotation = int(frame.rotation or 0)
    return images, pts, times, rotation


def audio_seconds(path: Path) -> float:
    """End time of the last audio packet, in seconds."""
    import av

    with av.open(str(path)) as container:
        ends = [float((p.pts + p.duration) * p.time_base) for p in container.demux(audio=0) if p.size]
    return max(ends)


def audio_start(path: Path) -> float:
    """Time of the first audio packet, in seconds."""
    return audio_times(path)[0]


def audio_times(path: Path) -> list[float]:
    """Times of the audio packets, in seconds."""
    import av

    with av.open(str(path)) as container:
        return sorted(float(p.pts * p.time_base) for p in container.demux(audio=0) if p.size)


def audio_packets(path: Path) -> list[bytes]:
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return []
        return [bytes(p) for p in container.demux(audio=0) if p.size]
