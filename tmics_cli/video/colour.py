"""YUV <-> RGB conversion at the I/O edge, with the input's own colour matrix and range.

A frame that went in without rain must come out without a colour shift, so both directions use the same
matrix (BT.709, BT.601, ...) and range, taken from the stream's tags. Untagged streams get what players
assume: BT.709 from 720 lines up, BT.601 below, limited range. swscale's default conversion is biased
(about -1.2 levels per round trip on each channel) and re-subsampling the chroma blurs it (0.9 levels of
chroma error per round trip on a colourful texture). Lanczos chroma resampling with accurate rounding and
full chroma interpolation/input is, measured, unbiased and nearly exact: decode -> RGB -> encode gives back
the same 4:2:0 planes to within 0.005 levels.

colour_torch.yuv_to_rgb is the decode direction in torch, for a GPU pipeline (within one level of this
module's swscale output; not used by the CPU path, whose pixels stay these).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# AVColorSpace values (libavutil/pixfmt.h) -> the swscale matrix PyAV names.
_MATRIX = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
_UNSPECIFIED = 2
_RANGE = {1: "MPEG", 2: "JPEG"}


def _flags(to_yuv: bool) -> Any:  # the swscale flags of an unbiased, nearly lossless round trip
    from av.video.reformatter import Interpolation as I  # noqa: E741

    full_chroma = I.FULL_CHR_H_INP if to_yuv else I.FULL_CHR_H_INT
    return I.LANCZOS | I.ACCURATE_RND | full_chroma


@dataclass(frozen=True)
class ColourTags:
    """The colour description of a stream, as AVColorSpace / AVColorRange / primaries / trc integers
    (0 or 2 = unspecified: then the output stays untagged too, so players guess as they did for the
    input)."""

    colorspace: int = _UNSPECIFIED
    color_range: int = 0
    primaries: int = _UNSPECIFIED
    trc: int = _UNSPECIFIED

    @classmethod
    def of_frame(cls, frame: Any) -> ColourTags:  # frame: av.VideoFrame
        return cls(
            int(frame.colorspace), int(frame.color_range), int(frame.color_primaries), int(frame.color_trc)
        )

    def matrix(self, height: int) -> str:
        return _MATRIX.get(self.colorspace) or ("ITU709" if height >= 720 else "ITU601")

    def range_name(self, pix_fmt: str = "") -> str:
        if self.color_range in _RANGE:
            return _RANGE[self.color_range]
        return "JPEG" if pix_fmt.startswith("yuvj") else "MPEG"


def frame_to_rgb(frame: Any, tags: ColourTags) -> np.ndarray:
    """Decoded frame -> (H, W, 3) uint8 RGB, converted with the stream's matrix and range."""
    name = frame.format.name
    if name == "rgb24":
        return frame.to_ndarray()
    if frame.format.is_rgb or frame.format.has_palette or name.startswith("gray"):
        return frame.reformat(format="rgb24").to_ndarray()
    frame = _without_chroma_siting(frame)
    converted = frame.reformat(
        format="rgb24",
        src_colorspace=tags.matrix(frame.height),
        src_color_range=tags.range_name(name),
        dst_color_range="JPEG",
        interpolation=_flags(to_yuv=False),
    )
    return converted.to_ndarray()


def _without_chroma_siting(frame: Any) -> Any:
    """The same pixels in a fresh frame. Decoders tag H.264 chroma as left-sited, frames we encode are
    centre-sited: converting with both sitings shifts the chroma by a quarter pixel per round trip
    (measured: 0.96 levels of chroma error); read and written alike, the planes come back unchanged."""
    import av

    try:
        return av.VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
    except (ValueError, TypeError, av.error.FFmpegError):  # layouts PyAV cannot rebuild: keep the tags
        return frame


def rgb_to_frame(rgb: np.ndarray, pix_fmt: str, tags: ColourTags) -> Any:
    """(H, W, 3) uint8 RGB -> a VideoFrame in `pix_fmt`, with the same matrix and range as the input."""
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    if pix_fmt.startswith(("rgb", "bgr", "gbr")):
        return frame.reformat(format=pix_fmt)
    return frame.reformat(
        format=pix_fmt,
        dst_colorspace=tags.matrix(rgb.shape[0]),
        src_color_range="JPEG",
        dst_color_range=tags.range_name(pix_fmt),
        interpolation=_flags(to_yuv=True),
    )
