"""YUV <-> RGB in torch, on whatever device the frames are on: colour.py's conversions (the stream's own
matrix and range) for a GPU pipeline.

    yuv_to_rgb(y, u, v, matrix, range_name)     uint8 planes (..., H, W), (..., Hc, Wc) x 2 -> (..., H, W, 3)
                                                float levels
    yuv_to_rgb_uint8(...)                       the same, rounded and clamped to uint8 (colour.py's output)
    rgb_to_yuv_uint8(rgb, matrix, range_name, subsampling)
                                                uint8 (..., H, W, 3) -> uint8 planes for an encoder

Matrices are colour.py's names (ITU601, ITU709, BT2020, FCC, SMPTE240M), ranges MPEG (limited: Y 16-235,
chroma 16-240) and JPEG (full). Chroma planes may be 4:2:0, 4:2:2 or 4:4:4; subsampled chroma is resampled
as swscale does for colour.py: Lanczos-3 between centre-sited samples, edges held (stretched by the factor
when subsampling), each axis one matrix product (`resampling_matrix`).

Measured against colour.py's swscale on the CPU (tests/test_colour_torch.py): decoding, every pixel within
one level (the float result within 0.5 + swscale's own fixed-point error with 4:4:4 or flat chroma; on
the sample clips 99.5% of pixels equal); encoding, every sample within one level, 95-99.7% equal. swscale's
integer coefficients round differently from the exact matrix, so equality is not exact, and the CPU path's
pixels stay swscale's. With `colour` device (the default on GPUs: derain.colour_on_device) the reader hands
a frame's planes (colour.YUVPlanes, 1.5 bytes a pixel for 4:2:0 instead of 3), the Restorer uploads and
converts them on the device (`upload_pixels`), and makes the derained frames into the encoder's planes
there (`restore_windows(planes=)`), which the video sink encodes as they are.
"""

from __future__ import annotations

import functools

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
    """Indices (out, 2a * stretch) into a line of `size` centre-sited samples and their Lanczos-`a` weights
    (normalised to sum 1; indices past the ends held at the end sample), for `out` output samples. To
    fewer samples (chroma subsampled for encoding) the kernel is stretched by size / out, as swscale's."""
    taps, weights = _lanczos_rows(size, out, a)
    return taps.clamp(0, size - 1).long(), weights


def _lanczos_rows(size: int, out: int, a: int = LANCZOS_A) -> tuple[torch.Tensor, torch.Tensor]:
    """`_lanczos_taps` before the edges are held: tap positions (out, taps) float64, which may lie past
    either end, and their weights."""
    stretch = max(1, -(-size // out))  # a whole number: the subsampling factor (1 when upsampling)
    scale = max(1.0, size / out)
    pos = (torch.arange(out, dtype=torch.float64) + 0.5) * (size / out) - 0.5
    base = pos.floor()
    taps = base[:, None] + torch.arange(-a * stretch + 1, a * stretch + 1, dtype=torch.float64)[None]
    d = (pos[:, None] - taps) / scale
    weights = torch.sinc(d) * torch.sinc(d / a)
    return taps, weights / weights.sum(1, keepdim=True)


@functools.lru_cache(maxsize=32)
def _bands(size: int, out: int) -> tuple[int, int, tuple[tuple[int, int, tuple[float, ...]], ...]] | None:
    """For a whole-number ratio (chroma up or down by 2): (padding before, padding after, one (first tap,
    step, weights) per output phase), the rows of `_lanczos_taps` being periodic so; None otherwise."""
    if out > size and out % size == 0:
        period, step = out // size, 1
    elif size > out and size % out == 0:
        period, step = 1, size // out
    else:
        return None
    positions, weights = _lanczos_rows(size, out)
    starts = positions[:, 0].long()
    taps = weights.shape[1]
    phases = []
    for phase in range(period):
        rows = torch.arange(phase, out, period)
        expected = starts[phase] + torch.arange(len(rows)) * step
        if not torch.equal(starts[rows], expected) or not torch.allclose(weights[rows], weights[phase]):
            return None
        phases.append((int(starts[phase]), step, tuple(weights[phase].tolist())))
    before = max(0, -int(starts.min()))
    after = max(0, int(starts.max()) + taps - 1 - (size - 1))
    return before, after, tuple(phases)


def _resample_last(x: torch.Tensor, out: int) -> torch.Tensor:
    """(..., size) float -> (..., out) along the last axis with `_lanczos_taps`' weights, edges held: for
    chroma's 2x a few scaled adds of shifted slices per output phase (exact float32 arithmetic, memory of
    the output's size), else one product with `resampling_matrix`."""
    size = x.shape[-1]
    if size == out:
        return x
    bands = _bands(size, out)
    if bands is None:
        return x @ resampling_matrix(size, out, x.device).T
    before, after, phases = bands
    lead = x.shape[:-1]
    padded = torch.cat([x[..., :1].expand(*lead, before), x, x[..., -1:].expand(*lead, after)], -1)
    count = out // len(phases)
    parts = []
    for start, step, weights in phases:
        acc = None
        for t, w in enumerate(weights):
            first = start + before + t
            line = padded[..., first : first + step * (count - 1) + 1 : step]
            acc = line * w if acc is None else acc.add_(line, alpha=w)
        parts.append(acc)
    if len(parts) == 1:
        return parts[0]
    return torch.stack(parts, -1).reshape(*lead, out)  # phases interleaved


def _resample(plane: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(..., h, w) float -> (..., height, width), each axis resampled on its own (`_resample_last`)."""
    if plane.shape[-1] != width:
        plane = _resample_last(plane, width)
    if plane.shape[-2] != height:
        plane = _resample_last(plane.transpose(-1, -2).contiguous(), height).transpose(-1, -2)
    return plane


def resampling_matrix(size: int, out: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(out, size) float32: row i holds the Lanczos-3 weights (`_lanczos_taps`) of output sample i over the
    `size` input samples, the weights of taps past the ends added to the end samples (edges held). A line
    resampled is `line @ matrix.T` (ratios other than chroma's whole numbers; the reference of the banded
    resampling in tests). Kept per size and device, a few at a time."""
    return _resampling_matrix(size, out, str(torch.device(device)))


@functools.lru_cache(maxsize=4)
def _resampling_matrix(size: int, out: int, device: str) -> torch.Tensor:
    index, weights = _lanczos_taps(size, out)
    matrix = torch.zeros(out, size, dtype=torch.float64)
    matrix.scatter_add_(1, index, weights)
    return matrix.to(device, torch.float32)


@functools.lru_cache(maxsize=32)
def _colour_matrix(matrix: str, to_rgb: bool, device: str) -> torch.Tensor:
    """rgb_from_yuv_matrix (to_rgb) or yuv_from_rgb_matrix, float32 on `device`, made once."""
    m = rgb_from_yuv_matrix(matrix) if to_rgb else yuv_from_rgb_matrix(matrix)
    return m.to(torch.float32).to(device)


def yuv_to_rgb(
    y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, matrix: str, range_name: str
) -> torch.Tensor:
    """uint8 planes Y (..., H, W), U and V (..., Hc, Wc) -> (..., H, W, 3) RGB float32 in levels (0-255,
    unrounded, unclamped), on the planes' device."""
    if range_name not in RANGES:
        raise ValueError(f"unknown range {range_name!r}; known: {', '.join(RANGES)}")
    height, width = y.shape[-2:]
    yf = y.float()
    uf = _resample(u.float(), height, width)
    vf = _resample(v.float(), height, width)
    if range_name == "MPEG":
        yf, uf, vf = (yf - 16) / 219, (uf - 128) / 224, (vf - 128) / 224
    else:
        yf, uf, vf = yf / 255, (uf - 128) / 255, (vf - 128) / 255
    m = _colour_matrix(matrix, True, str(y.device)) * 255
    ycc = torch.stack([yf, uf, vf], -1)  # (..., H, W, 3)
    return ycc @ m.T


def yuv_from_rgb_matrix(matrix: str) -> torch.Tensor:
    """(3, 3): (Y, Cb, Cr) = M @ (R, G, B), the inverse of rgb_from_yuv_matrix."""
    return torch.linalg.inv(rgb_from_yuv_matrix(matrix))


def rgb_to_yuv_uint8(
    rgb: torch.Tensor, matrix: str, range_name: str, subsampling: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 RGB (..., H, W, 3) -> uint8 planes Y (..., H, W), U and V (..., H / sy, W / sx) for
    `subsampling` (sy, sx) = (2, 2) 4:2:0, (1, 2) 4:2:2, (1, 1) 4:4:4, on the frames' device: colour.py's
    encoding (swscale with full chroma input and Lanczos chroma subsampling) in torch, within a level of it
    on video (tests/test_colour_torch.py). H and W must be multiples of the subsampling."""
    if range_name not in RANGES:
        raise ValueError(f"unknown range {range_name!r}; known: {', '.join(RANGES)}")
    height, width = rgb.shape[-3:-1]
    sy, sx = subsampling
    if height % sy or width % sx:
        raise ValueError(f"{width}x{height} cannot be subsampled {sx}x{sy}")
    m = _colour_matrix(matrix, False, str(rgb.device)) / 255
    ycc = rgb.float() @ m.T  # (..., H, W, 3): Y in [0, 1], chroma in [-0.5, 0.5]
    y, u, v = ycc.unbind(-1)
    u = _resample(u, height // sy, width // sx)
    v = _resample(v, height // sy, width // sx)
    if range_name == "MPEG":
        y, u, v = y * 219 + 16, u * 224 + 128, v * 224 + 128
    else:  # swscale's full-range chroma sits half a level below 128 + 255 C (measured: 99% equal so)
        y, u, v = y * 255, u * 255 + 127.5, v * 255 + 127.5
    return tuple(p.add_(0.5).clamp_(0, 255).to(torch.uint8) for p in (y, u, v))  # type: ignore[return-value]


def yuv_to_rgb_uint8(
    y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, matrix: str, range_name: str
) -> torch.Tensor:
    """As `yuv_to_rgb`, rounded to the nearest level and clamped: (H, W, 3) uint8, as colour.frame_to_rgb."""
    return yuv_to_rgb(y, u, v, matrix, range_name).add_(0.5).clamp_(0, 255).to(torch.uint8)
