"""Hardware video encoders: which ones this PyAV build has, and (probed) which ones work on this machine.

Never assumed: a PyAV wheel can be built with NVENC / QSV / VAAPI / VideoToolbox and still fail to open
them on a machine without the driver or the device, so `hardware_encoders` says what the build has and,
with `probe`, what a one-frame encode found. tmics' default encoder stays libx264 (its output is what the
tests and the quality numbers are for); a hardware encoder is only ever used when asked for by --codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

HARDWARE_ENCODERS = ("h264_nvenc", "hevc_nvenc", "h264_videotoolbox", "h264_qsv", "h264_vaapi")


@dataclass(frozen=True)
class Encoder:
    name: str
    built: bool  # in this PyAV build (av.codecs_available, and an encoder by that name)
    works: bool | None = None  # a one-frame encode succeeded here (None: not probed)
    why: str = ""  # why the probe failed

    def __str__(self) -> str:
        if not self.built:
            return f"{self.name}: not in this PyAV build"
        if self.works is None:
            return f"{self.name}: in this PyAV build (not probed)"
        return f"{self.name}: {'works here' if self.works else 'in the build, fails here: ' + self.why}"


def _built(name: str) -> bool:
    import av

    if name not in av.codecs_available:
        return False
    try:
        return av.codec.Codec(name, "w").type == "video"
    except Exception:  # noqa: BLE001 - PyAV raises several types for unknown codecs
        return False


def _probe(name: str) -> str:
    """'' when one small frame encodes, else the error."""
    import av
    import numpy as np

    try:
        ctx = av.codec.CodecContext.create(name, "w")
        ctx.width, ctx.height = 256, 256
        ctx.time_base = Fraction(1, 25)
        formats = [f.name for f in (ctx.codec.video_formats or [])]
        ctx.pix_fmt = "nv12" if "nv12" in formats else (formats[0] if formats else "yuv420p")
        ctx.open()
        frame = av.VideoFrame.from_ndarray(np.zeros((256, 256, 3), np.uint8), format="rgb24")
        frame = frame.reformat(format=ctx.pix_fmt)
        frame.pts = 0
        ctx.encode(frame)
        ctx.encode(None)
        return ""
    except Exception as exc:  # noqa: BLE001 - a failed probe is an answer, whatever it raises
        return f"{type(exc).__name__}: {exc}".strip()[:200]


def hardware_encoders(probe: bool = False) -> list[Encoder]:
    """HARDWARE_ENCODERS, each as this PyAV build has it; with `probe`, each built one tried on one frame.
    Without PyAV: all not built."""
    try:
        import av  # noqa: F401
    except ImportError:
        return [Encoder(name, False) for name in HARDWARE_ENCODERS]
    out = []
    for name in HARDWARE_ENCODERS:
        built = _built(name)
        if not (built and probe):
            out.append(Encoder(name, built))
            continue
        why = _probe(name)
        out.append(Encoder(name, True, not why, why))
    return out
