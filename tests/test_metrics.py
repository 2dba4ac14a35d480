import math

import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tmics_cli.metrics import luma, psnr_y, ssim_y, temporal_error


def _pair(seed: int = 0, h: int = 48, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    noisy = np.clip(clean.astype(int) + rng.integers(-25, 26, (h, w, 3)), 0, 255).astype(np.uint8)
    return noisy, clean


def _reference_y(img: np.ndarray) -> np.ndarray:
    return np.round(rgb2ycbcr(img)[..., 0])  # MATLAB returns uint8 Y for uint8 input


def test_luma_matches_matlab_rgb2ycbcr() -> None:
    img, _ = _pair()
    np.testing.assert_allclose(luma(img).numpy(), _reference_y(img), atol=1e-9)
    assert (
        luma(np.zeros((4, 4, 3), np.uint8)).max() == 16
        and luma(np.full((4, 4, 3), 255, np.uint8)).min() == 235
    )
    f = torch.rand(3, 5, 6, dtype=torch.float64)
    np.testing.assert_allclose(luma(f).numpy(), rgb2ycbcr(f.permute(1, 2, 0).numpy())[..., 0], atol=1e-9)


def test_psnr_matches_scikit_image() -> None:
    a, b = _pair(1)
    expected = peak_signal_noise_ratio(_reference_y(b), _reference_y(a), data_range=255)
    assert abs(psnr_y(a, b) - expected) < 1e-4
    assert psnr_y(b, b) == math.inf
    assert abs(psnr_y(torch.from_numpy(a).permute(2, 0, 1), b) - expected) < 1e-4  # (3, H, W) tensors too


def test_ssim_matches_scikit_image_gaussian_protocol() -> None:
    for seed in range(3):
        a, b = _pair(seed)
        expected = structural_similarity(
            _reference_y(a),
            _reference_y(b),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
        )
        assert abs(ssim_y(a, b) - expected) < 1e-4
    assert abs(ssim_y(b, b) - 1) < 1e-12


def test_metric_input_errors() -> None:
    with pytest.raises(ValueError, match="3 colour channels"):
        psnr_y(np.zeros((8, 8, 4)), np.zeros((8, 8, 4)))
    with pytest.raises(ValueError, match="11x11"):
        ssim_y(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))


def test_temporal_error_is_zero_for_a_constant_offset_and_sees_flicker() -> None:
    rng = np.random.default_rng(0)
    gt = [rng.random((3, 16, 16)) for _ in range(4)]
    shifted = [np.clip(g + 0.02, 0, 1.02) for g in gt]
    assert temporal_error(shifted, gt) < 1e-9
    flicker = [g + (0.05 if t % 2 else 0) for t, g in enumerate(gt)]
    assert temporal_error(flicker, gt) == pytest.approx(0.05 * (65.481 + 128.553 + 24.966), rel=1e-6)


def _noisy_pair() -> tuple[np.ndarray, np.ndarray]:
    from tests.videos import moving_texture

    clean = moving_texture(0, 96, 128)
    rng = np.random.default_rng(0)
    noisy = np.clip(clean.astype(int) + rng.integers(-20, 21, clean.shape), 0, 255).astype(np.uint8)
    return noisy, clean


def test_fsim_and_vif_match_an_independent_implementation() -> None:
    # Reference values from piq 0.8.0 (piq.fsim(chromatic=False), piq.vif_p; data_range 1, float64) on
    # this exact pair: an implementation written apart from ours, following the same MATLAB code.
    from tmics_cli.metrics import fsim, vif

    noisy, clean = _noisy_pair()
    assert fsim(noisy, clean) == pytest.approx(0.8627163732, abs=1e-4)
    assert vif(noisy, clean) == pytest.approx(0.4236763036, abs=1e-6)
    assert fsim(clean, clean) == pytest.approx(1.0) and vif(clean, clean) == pytest.approx(1.0)


def test_fsim_downsampling_is_matlab_conv2_same_then_every_f_th_pixel() -> None:
    from tmics_cli.metrics import _box_then_subsample

    image = np.random.default_rng(1).random((7, 9))
    for f in (2, 3):
        # MATLAB: the full 2-D convolution with ones(f)/f^2, of which 'same' keeps the central part
        # starting at ceil((f - 1) / 2); then every f-th row and column from the first.
        full = np.zeros((7 + f - 1, 9 + f - 1))
        for a in range(f):
            for b in range(f):
                full[a : a + 7, b : b + 9] += image / f**2
        start = -(-(f - 1) // 2)
        same = full[start : start + 7, start : start + 9]
        assert np.allclose(_box_then_subsample(image, f), same[::f, ::f])
