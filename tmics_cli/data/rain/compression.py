"""Footage damage applied after the rain (to the clean target too): noise, per-frame JPEG (optionally 4:2:0)
or the whole clip through H.264 with PyAV (JPEG when PyAV is missing)."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np

from .style import Frame, RainStyle


def degrade(frame: Frame, style: RainStyle, rng: np.random.Generator | None = None) -> Frame:
    """Compression as in footage from the wild (and mild noise when `rng` is given)."""
    out = frame
    if style.chroma_420:
        ycc = cv2.cvtColor(out, cv2.COLOR_RGB2YCrCb)
        h, w = ycc.shape[:2]
        for c in (1, 2):
            half = cv2.resize(ycc[..., c], ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)
            ycc[..., c] = cv2.resize(half, (w, h), interpolation=cv2.INTER_LINEAR)
        out = cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)
    if rng is not None and style.noise > 0:
        out = out + rng.normal(0, style.noise, out.shape).astype(np.float32)
    if style.jpeg_quality is not None:
        u8 = (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(style.jpeg_quality)])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255
    return np.clip(out, 0, 1).astype(np.float32)


def h264_roundtrip(frames: list[Frame], crf: int) -> list[Frame]:
    """Encode a clip with libx264 (4:2:0, the given CRF, one thread: deterministic) and decode it again,
    as footage from phones, dashcams and the web has been. Odd sizes are padded for the encoder.

    Where PyAV is missing (the lent GPU machines), the clip gets 4:2:0 chroma and per-frame JPEG at a
    quality of similar strength instead, with a warning once: training must not stop for it."""
    try:
        import av  # lazy: training on frame folders must run where PyAV is missing
    except ImportError:
        return _jpeg_instead_of_h264(frames, crf)

    h, w = frames[0].shape[:2]
    ph, pw = h % 2, w % 2
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = w + pw, h + ph, "yuv420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"crf": str(int(crf)), "preset": "veryfast", "threads": "1", "tune": "zerolatency"}
    packets = []
    for i, frame in enumerate(frames):
        u8 = (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)
        if ph or pw:
            u8 = np.pad(u8, ((0, ph), (0, pw), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(u8, format="rgb24")
        video_frame.pts = i
        packets += encoder.encode(video_frame)
    packets += encoder.encode(None)
    decoder = av.CodecContext.create("h264", "r")
    decoded = [f for packet in [*packets, None] for f in decoder.decode(packet)]
    if len(decoded) != len(frames):
        raise RuntimeError(f"H.264 round trip returned {len(decoded)} of {len(frames)} frames")
    return [f.to_ndarray(format="rgb24")[:h, :w].astype(np.float32) / 255 for f in decoded]


_warned_no_pyav = False


def _jpeg_instead_of_h264(frames: list[Frame], crf: int) -> list[Frame]:
    global _warned_no_pyav
    if not _warned_no_pyav:
        import warnings

        warnings.warn(
            "PyAV is not installed: H.264 compression of rendered rain falls back to JPEG", stacklevel=3
        )
        _warned_no_pyav = True
    quality = int(round(np.interp(crf, [18, 32], [92, 55])))
    style = RainStyle(layers=(), jpeg_quality=quality, chroma_420=True)
    return [degrade(f, style) for f in frames]


def degrade_clip(
    frames: list[Frame], style: RainStyle, rng: np.random.Generator | None = None
) -> list[Frame]:
    """`degrade` on every frame, then the clip-level H.264 round trip when the style asks for one."""
    out = [degrade(f, style, rng) for f in frames]
    return h264_roundtrip(out, style.h264_crf) if style.h264_crf is not None else out
