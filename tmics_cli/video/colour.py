"""YUV <-> RGB conversion at the I/O edge, with the input's own colour matrix and range.

A frame that went in without rain must come out without a colour shift, so both directions use the same
matrix (BT.709, BT.601, ...) and range, taken from the stream's tags. Untagged streams get what players
assume: BT.709 from 720 lines up, BT.601 below, limited range. swscale's default conversion is biased
(about -1.2 levels per round trip on each channel) and re-subsampling the chroma blurs it (0.9 levels of
chroma error per round trip on a colourful texture). Lanczos chroma resampling with accurate rounding and
full chroma interpolation/input is, measured, unbiased and nearly exact: decode -> RGB -> encode gives back
the same 4:2:0 planes to within 0.005 levels.

colour_torch.yuv_to_rgb is the decode direction in torch, for a GPU pipeline (within one level of this
module's swscale output): a reader asked for planes hands a frame's YUVPlanes, unconverted, and the
Restorer converts them on its device (`tmics derain` on a GPU); the CPU path's pixels stay swscale's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
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


# 8-bit planar YUV that colour_torch converts: pix_fmt -> (vertical, horizontal) chroma subsampling
PLANAR_YUV = {
    "yuv420p": (2, 2),
    "yuvj420p": (2, 2),
    "yuv422p": (1, 2),
    "yuvj422p": (1, 2),
    "yuv444p": (1, 1),
    "yuvj444p": (1, 1),
}


@dataclass(frozen=True, eq=False)
class YUVPlanes:
    """A decoded frame left in YUV: Y (H, W), U and V (H / sy, W / sx) uint8, with the matrix and range
    (colour_torch's names) its RGB is to be made with, on a device or here (`rgb`: swscale, as
    frame_to_rgb gives it)."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    pix_fmt: str
    matrix: str
    range_name: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, 3): the shape of the RGB frame these planes make."""
        return (*self.y.shape, 3)

    @property
    def nbytes(self) -> int:
        return self.y.nbytes + self.u.nbytes + self.v.nbytes

    @property
    def format(self) -> PlaneFormat:
        return PlaneFormat(self.pix_fmt, self.matrix, self.range_name)

    @cached_property
    def rgb(self) -> np.ndarray:
        """(H, W, 3) uint8, converted on the host exactly as frame_to_rgb converts the decoded frame."""
        return _yuv_frame_to_rgb(self.frame(), self.matrix, self.range_name)

    def frame(self) -> Any:
        """A new av.VideoFrame in `pix_fmt` holding these planes (no chroma siting: see
        _without_chroma_siting)."""
        import av

        frame = av.VideoFrame(self.y.shape[1], self.y.shape[0], self.pix_fmt)
        for plane, data in zip(frame.planes, (self.y, self.u, self.v), strict=True):
            rows, cols = data.shape
            np.frombuffer(plane, np.uint8).reshape(rows, plane.line_size)[:, :cols] = data
        return frame


@dataclass(frozen=True)
class PlaneFormat:
    """What an encoder takes, for frames made into planes elsewhere (on a device): an 8-bit planar YUV
    pix_fmt of PLANAR_YUV with the matrix and range of colour_torch's names."""

    pix_fmt: str
    matrix: str
    range_name: str

    @property
    def subsampling(self) -> tuple[int, int]:
        return PLANAR_YUV[self.pix_fmt]

    @classmethod
    def of(cls, pix_fmt: str, tags: ColourTags, width: int, height: int) -> PlaneFormat | None:
        """The planes of a `pix_fmt` frame of this size and stream (what frame_planes hands on, what
        rgb_to_frame makes for an encoder), or None for another layout (RGB, palettes, grey, more bits,
        semi-planar) or a size its chroma does not evenly subsample."""
        sub = PLANAR_YUV.get(pix_fmt)
        if sub is None or height % sub[0] or width % sub[1]:
            return None
        return cls(pix_fmt, tags.matrix(height), tags.range_name(pix_fmt))


def frame_planes(frame: Any, tags: ColourTags) -> YUVPlanes | None:
    """The planes of a decoded 8-bit planar YUV frame (copied out of the decoder's padded rows; a plane
    without padding is a view that keeps the frame alive), or None for any other layout (RGB, palettes,
    grey, semi-planar, more than 8 bits) and for subsampled frames of odd size, whose chroma sites
    colour_torch does not place as swscale does: those are converted here."""
    fmt = PlaneFormat.of(frame.format.name, tags, frame.width, frame.height)
    if fmt is None:
        return None
    planes = []
    for plane in frame.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        planes.append(np.ascontiguousarray(rows[:, : plane.width]))
    return YUVPlanes(*planes, fmt.pix_fmt, fmt.matrix, fmt.range_name)


def frame_to_rgb(frame: Any, tags: ColourTags) -> np.ndarray:
    """Decoded frame -> (H, W, 3) uint8 RGB, converted with the stream's matrix and range."""
    name = frame.format.name
    if name == "rgb24":
        return frame.to_ndarray()
    if frame.format.is_rgb or frame.format.has_palette or name.startswith("gray"):
        return frame.reformat(format="rgb24").to_ndarray()
    return _yuv_frame_to_rgb(_without_chroma_siting(frame), tags.matrix(frame.height), tags.range_name(name))


def _yuv_frame_to_rgb(frame: Any, matrix: str, range_name: str) -> np.ndarray:
    """A YUV VideoFrame -> (H, W, 3) uint8 RGB by swscale, with this matrix and range."""
    converted = frame.reformat(
        format="rgb24",
        src_colorspace=matrix,
        src_color_range=range_name,
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
