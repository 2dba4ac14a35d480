"""YUV -> RGB in torch, on whatever device the planes are on: colour.py's conversion (the stream's own
matrix and range) for a GPU pipeline.

    yuv_to_rgb(y, u, v, matrix, range_name)     uint8 planes (H, W), (Hc, Wc) x 2 -> (H, W, 3) float levels
    yuv_to_rgb_uint8(...)                       the same, rounded and clamped to uint8 (colour.py's output)

Matrices are colour.py's names (ITU601, ITU709, BT2020, FCC, SMPTE240M), ranges MPEG (limited: Y 16-235,
chroma 16-240) and JPEG (full). Chroma planes may be 4:2:0, 4:2:2 or 4:4:4; subsampled chroma is brought
to full size as swscale does for colour.py: Lanczos-3 between centre-sited samples, edges held.

Measured against colour.frame_to_rgb on the CPU (tests/test_colour_torch.py): with 4:4:4 planes, and with
subsampled planes of flat chroma, every pixel within one level of swscale, the float result within 0.5 +
swscale's own fixed-point error of it; swscale's integer coefficients round differently from the exact
matrix, so equality is not exact and this is not wired into the CPU path, whose pixels stay swscale's.

How the GPU path will use it: the decode thread hands the frame's Y, U and V planes (frame.to_ndarray()
of a planar frame, no swscale) instead of RGB, 1.5 bytes a pixel for 4:2:0 instead of 3; the Restorer
uploads the planes (pinned, non-blocking) and converts them on the device with the stream's ColourTags
(`tags.matrix(height)`, `tags.range_name(pix_fmt)`), rounding to uint8 levels first where the output must
match the CPU path's frames.
"""

from __future__ import annotations

import torch

# (Kr, Kb) of each matrix: R'G'B' -> Y' = Kr R' + (1 - Kr - Kb) G' + Kb B'
COEFFICIENTS = {
    "ITU601": (0.299, 0.114),
    "ITU709": (0.2126, 0.0722),
    "BT2020": (0.2627, 0.0593),
    "FCC": (0.30, 0.11),
    "SMPTE240M": (0.212, 0.087),
}
RANGES = ("MPEG", "JPEG")
LANCZOS_A = 3  # swscale's default Lanczos parameter


def rgb_from_yuv_matrix(matrix: str) -> torch.Tensor:
    """(3, 3): (R, G, B) = M @ (Y, Cb, Cr) for Y in [0, 1] and chroma centred on 0 in [-0.5, 0.5]."""
    if matrix not in COEFFICIENTS:
        raise ValueError(f"unknown matrix {matrix!r}; known: {', '.join(COEFFICIENTS)}")
    kr, kb = COEFFICIENTS[matrix]
    kg = 1 - kr - kb
    return torch.tensor(
        [
            [1.0, 0.0, 2 * (1 - kr)],
            [1.0, -2 * kb * (1 - kb) / kg, -2 * kr * (1 - kr) / kg],
            [1.0, 2 * (1 - kb), 0.0],
        ],
        dtype=torch.float64,
    )


def _lanczos_taps(size: int, out: int, a: int = LANCZOS_A) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (out, 2a) into a line of `size` centre-sited samples and their Lanczos-`a` weights
    (normalised to sum 1; indices past the ends held at the end sample), for `out` output samples."""
    pos = (torch.arange(out, dtype=torch.float64) + 0.5) * (size / out) - 0.5
    base = pos.floor()
    taps = base[:, None] + torch.arange(-a + 1, a + 1, dtype=torch.float64)[None]
    d = pos[:, None] - taps
    weights = torch.sinc(d) * torch.sinc(d / a)
    weights = weights / weights.sum(1, keepdim=True)
    return taps.clamp(0, size - 1).long(), weights


def _upsample(plane: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(Hc, Wc) float -> (H, W): separable Lanczos-3 between centre-sited samples, edges held (swscale's
    LANCZOS with full chroma interpolation, as colour.py asks for; its 14-bit filter coefficients differ
    from these by well under a level)."""
    for axis, size in ((1, width), (0, height)):
        if plane.shape[axis] == size:
            continue
        index, weights = _lanczos_taps(plane.shape[axis], size)
        index, weights = index.to(plane.device), weights.to(plane.device, plane.dtype)
        line = plane if axis == 1 else plane.T
        line = (line[:, index] * weights).sum(-1)  # (lines, size, taps) -> (lines, size)
        plane = line if axis == 1 else line.T
    return plane


def yuv_to_rgb(
    y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, matrix: str, range_name: str
) -> torch.Tensor:
    """uint8 planes Y (H, W), U and V (Hc, Wc) -> (H, W, 3) RGB float32 in levels (0-255, unrounded,
    unclamped), on the planes' device."""
    if range_name not in RANGES:
        raise ValueError(f"unknown range {range_name!r}; known: {', '.join(RANGES)}")
    height, width = y.shape
    yf = y.float()
    uf = _upsample(u.float(), height, width)
    vf = _upsample(v.float(), height, width)
    if range_name == "MPEG":
        yf, uf, vf = (yf - 16) / 219, (uf - 128) / 224, (vf - 128) / 224
    else:
        yf, uf, vf = yf / 255, (uf - 128) / 255, (vf - 128) / 255
    m = rgb_from_yuv_matrix(matrix).to(torch.float32).to(y.device) * 255
    ycc = torch.stack([yf, uf, vf], -1)  # (H, W, 3)
    return ycc @ m.T


def yuv_to_rgb_uint8(
    y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, matrix: str, range_name: str
) -> torch.Tensor:
    """As `yuv_to_rgb`, rounded to the nearest level and clamped: (H, W, 3) uint8, as colour.frame_to_rgb."""
    return yuv_to_rgb(y, u, v, matrix, range_name).add_(0.5).clamp_(0, 255).to(torch.uint8)
