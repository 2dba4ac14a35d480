"""colour_torch.yuv_to_rgb (torch, any device) against colour.frame_to_rgb (swscale) on the CPU, for each
matrix, range and chroma layout colour.py supports."""

import numpy as np
import pytest
import torch

from tmics_cli.video.colour import ColourTags, frame_to_rgb
from tmics_cli.video.colour_torch import yuv_to_rgb, yuv_to_rgb_uint8

av = pytest.importorskip("av")

H, W = 24, 32
COLORSPACE = {"ITU601": 6, "ITU709": 1, "BT2020": 9, "FCC": 4, "SMPTE240M": 7}  # AVColorSpace
RANGE = {"MPEG": 1, "JPEG": 2}
SUBSAMPLING = {"yuv444p": (1, 1), "yuv422p": (1, 2), "yuv420p": (2, 2)}


def _planes(fmt: str, chroma: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sy, sx = SUBSAMPLING[fmt]
    y = rng.integers(0, 256, (H, W), dtype=np.uint8)  # every luma level, incl. outside the limited range
    hc, wc = H // sy, W // sx
    if chroma == "flat":
        u, v = (np.full((hc, wc), rng.integers(20, 236), np.uint8) for _ in range(2))
    else:  # smooth, but sharp enough that the chroma filter matters
        yy, xx = np.mgrid[0:hc, 0:wc]
        u = (128 + 60 * np.sin(xx / 5 + yy / 7)).astype(np.uint8)
        v = (128 + 60 * np.cos(xx / 6 - yy / 4)).astype(np.uint8)
    return y, u, v


def _swscale(planes, fmt: str, matrix: str, range_name: str) -> np.ndarray:
    frame = av.VideoFrame(W, H, fmt)
    for plane, data in zip(frame.planes, planes, strict=True):
        rows, cols = data.shape
        np.frombuffer(plane, np.uint8).reshape(rows, plane.line_size)[:, :cols] = data
    tags = ColourTags(COLORSPACE[matrix], RANGE[range_name])
    frame.colorspace, frame.color_range = tags.colorspace, tags.color_range
    return frame_to_rgb(frame, tags)


@pytest.mark.parametrize("fmt", list(SUBSAMPLING))
@pytest.mark.parametrize("matrix", list(COLORSPACE))
@pytest.mark.parametrize("range_name", list(RANGE))
@pytest.mark.parametrize("chroma", ["flat", "smooth"])
def test_yuv_to_rgb_matches_swscale(fmt: str, matrix: str, range_name: str, chroma: str) -> None:
    planes = _planes(fmt, chroma, seed=len(fmt) + len(matrix))
    expected = _swscale(planes, fmt, matrix, range_name).astype(np.float64)
    tensors = [torch.from_numpy(p) for p in planes]
    levels = yuv_to_rgb(*tensors, matrix, range_name).double().clamp(0, 255).numpy()
    rounded = yuv_to_rgb_uint8(*tensors, matrix, range_name).numpy().astype(np.float64)
    # Measured: 4:4:4 and flat chroma, the exact matrix within 0.515 of swscale's rounded fixed point
    # (0.5 of rounding + its coefficients' error); Lanczos-upsampled chroma within 0.92 (its filter
    # taps are 14-bit). Rounded, never more than one level apart.
    bound = 0.52 if fmt == "yuv444p" or chroma == "flat" else 0.95
    assert np.abs(levels - expected).max() <= bound
    assert np.abs(rounded - expected).max() <= 1
    exact = (rounded == expected).mean()
    assert exact >= (0.99 if bound < 0.9 else 0.85)


def test_yuv_to_rgb_runs_where_its_planes_are_and_checks_its_names() -> None:
    y, u, v = (torch.from_numpy(p) for p in _planes("yuv420p", "smooth", 0))
    out = yuv_to_rgb_uint8(y, u, v, "ITU709", "MPEG")
    assert out.shape == (H, W, 3) and out.dtype == torch.uint8 and out.device == y.device
    with pytest.raises(ValueError, match="matrix"):
        yuv_to_rgb(y, u, v, "BT999", "MPEG")
    with pytest.raises(ValueError, match="range"):
        yuv_to_rgb(y, u, v, "ITU709", "TV")


def _smooth_rgb(seed: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    phase = seed * 0.7
    return np.stack(
        [
            128 + 100 * np.sin(xx / 5 + yy / 9 + phase),
            128 + 90 * np.cos(xx / 7 - yy / 5 + phase),
            128 + 80 * np.sin(xx / 4 + yy / 3 - phase),
        ],
        -1,
    ).astype(np.uint8)


@pytest.mark.parametrize("fmt", list(SUBSAMPLING))
@pytest.mark.parametrize("matrix", ["ITU601", "ITU709", "BT2020"])
@pytest.mark.parametrize("range_name", list(RANGE))
@pytest.mark.parametrize("picture", ["smooth", "noise"])
def test_rgb_to_yuv_matches_swscales_encoding(fmt: str, matrix: str, range_name: str, picture: str) -> None:
    from tmics_cli.video.colour import rgb_to_frame
    from tmics_cli.video.colour_torch import rgb_to_yuv_uint8

    rng = np.random.default_rng(len(fmt))
    rgb = _smooth_rgb(len(matrix)) if picture == "smooth" else rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    frame = rgb_to_frame(rgb, fmt, ColourTags(COLORSPACE[matrix], RANGE[range_name]))
    expected = [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width] for p in frame.planes]
    got = rgb_to_yuv_uint8(torch.from_numpy(rgb), matrix, range_name, SUBSAMPLING[fmt])
    for want, have in zip(expected, got, strict=True):
        assert have.shape == want.shape and have.dtype == torch.uint8
        diff = np.abs(have.numpy().astype(int) - want)
        # measured: never more than a level, 96-99.7% of samples equal (full-range chroma too, with
        # swscale's half-level offset)
        assert diff.max() <= 1 and (diff == 0).mean() >= 0.95


def test_rgb_to_yuv_works_on_batches_and_refuses_sizes_it_cannot_subsample() -> None:
    from tmics_cli.video.colour_torch import rgb_to_yuv_uint8

    frames = torch.from_numpy(np.stack([_smooth_rgb(i) for i in range(3)]))
    y, u, v = rgb_to_yuv_uint8(frames, "ITU709", "MPEG", (2, 2))
    assert y.shape == (3, H, W) and u.shape == v.shape == (3, H // 2, W // 2)
    one = rgb_to_yuv_uint8(frames[1], "ITU709", "MPEG", (2, 2))
    assert all(torch.equal(a[1], b) for a, b in zip((y, u, v), one, strict=True))
    with pytest.raises(ValueError, match="cannot be subsampled"):
        rgb_to_yuv_uint8(frames[:, 1:], "ITU709", "MPEG", (2, 2))


@pytest.mark.parametrize(("size", "out"), [(24, 48), (17, 34), (48, 24), (34, 17), (30, 90), (7, 5)])
def test_banded_resampling_is_the_matrix_product(size: int, out: int) -> None:
    """Chroma's whole-number ratios take shifted slices, other ratios the dense matrix: the same numbers."""
    from tmics_cli.video import colour_torch

    x = torch.rand(2, 5, size, dtype=torch.float32) * 255
    reference = x @ colour_torch.resampling_matrix(size, out).T
    got = colour_torch._resample_last(x, out)
    assert got.shape == (2, 5, out)
    assert torch.allclose(got, reference, atol=2e-4)
    whole = out % size == 0 or size % out == 0
    assert (colour_torch._bands(size, out) is not None) == whole
