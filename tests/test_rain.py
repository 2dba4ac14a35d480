from dataclasses import replace

import numpy as np
import pytest

from tmics_cli.data.rain import (
    PRESETS,
    RainLayer,
    RainStyle,
    add_rain,
    degrade,
    degrade_clip,
    h264_roundtrip,
    rain_coverage,
    sample_style,
    streak_kernel,
)


def _scene(h: int = 96, w: int = 128, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.1, 0.6, (h, w, 3)).astype(np.float32)
    return [base.copy() for _ in range(5)]


def _coverage(preset: str, n: int = 12) -> float:
    rng = np.random.default_rng(1)
    values = []
    for _ in range(n):
        style = sample_style(preset, rng)
        rainy, clean = add_rain(_scene()[:1], style, rng)
        values.append(rain_coverage(rainy[0], clean[0]))
    return float(np.mean(values))


def test_heavy_rain_covers_more_than_light() -> None:
    light, heavy = _coverage("light"), _coverage("heavy")
    assert 0.01 < light < heavy < 0.95


def test_same_seed_same_rain_other_seed_other_rain() -> None:
    style = sample_style("heavy", np.random.default_rng(3))
    a, _ = add_rain(_scene(), style, 7)
    b, _ = add_rain(_scene(), style, 7)
    c, _ = add_rain(_scene(), style, 8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_streaks_change_from_frame_to_frame() -> None:
    style = RainStyle(layers=(RainLayer(0.01, 12, 0.0, 0.6),), jpeg_quality=None)
    rainy, clean = add_rain(_scene(), style, 0)
    assert np.array_equal(clean[0], clean[1])  # the scene is static
    assert np.abs(rainy[0] - rainy[1]).mean() > 0.005  # the rain is not


def _orientation(rainy: np.ndarray, clean: np.ndarray) -> float:
    """Dominant streak angle from vertical (degrees, positive leaning right at the top): principal axis of
    the rain residual's autocorrelation peak (elongated along the streaks)."""
    r = np.clip((rainy - clean).mean(-1), 0, None)
    r = r - r.mean()
    spectrum = np.fft.fft2(r)
    auto = np.fft.fftshift(np.real(np.fft.ifft2(spectrum * np.conj(spectrum))))
    h, w = auto.shape
    ys, xs = np.mgrid[0:h, 0:w]
    ys, xs = ys - h // 2, xs - w // 2
    near = (np.abs(ys) <= 12) & (np.abs(xs) <= 12)
    weight = np.clip(auto, 0, None) * near
    cxx, cyy, cxy = (weight * xs * xs).sum(), (weight * ys * ys).sum(), (weight * xs * ys).sum()
    axis = 0.5 * np.arctan2(2 * cxy, cxx - cyy)  # principal axis angle from the x axis, y pointing down
    # a streak leaning right at the top runs along (sin a, -cos a): its axis is at -(90 - a) degrees
    return float((np.degrees(axis) + 90 + 90) % 180 - 90)


@pytest.mark.parametrize("angle", [-30.0, -10.0, 0.0, 10.0, 25.0, 40.0])
def test_streak_orientation_follows_the_angle(angle: float) -> None:
    style = RainStyle(
        angle=angle, angle_spread=0.0, layers=(RainLayer(0.004, 25, 0.0, 0.8),), drift=0.0, jpeg_quality=None
    )
    rainy, clean = add_rain([np.full((256, 256, 3), 0.3, np.float32)], style, 0)
    assert abs(_orientation(rainy[0], clean[0]) - angle) < 3


def test_streak_kernel_peak_and_length() -> None:
    k = streak_kernel(15, 0.0, 0.0)
    assert k.max() == pytest.approx(1.0)
    rows = np.nonzero(k.max(1) > 0.5)[0]
    assert 13 <= len(rows) <= 17 and np.count_nonzero(k.max(0) > 0.5) == 1


def test_compression_is_applied_to_target_and_input_alike() -> None:
    style = RainStyle(layers=(RainLayer(0.0, 10, 0.0, 0.0),), jpeg_quality=40, noise=0.0)
    rainy, clean = add_rain(_scene(), style, 0)  # no streaks: input must equal target
    assert np.array_equal(rainy[2], clean[2])
    assert not np.array_equal(clean[2], _scene()[2])  # and both are compressed
    assert np.abs(degrade(_scene()[0], style) - clean[0]).max() == 0


def _textured(h: int, w: int, t: int = 5) -> list[np.ndarray]:
    """A smooth moving gradient with texture: something a video codec compresses realistically."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for i in range(t):
        r = 0.5 + 0.3 * np.sin((xx + 2 * i) / 7) * np.cos(yy / 9)
        g = 0.5 + 0.2 * np.cos((xx - yy + i) / 11)
        b = 0.4 + 0.1 * np.sin(yy / 5)
        frames.append(np.stack([r, g, b], -1).astype(np.float32))
    return frames


def test_h264_roundtrip_keeps_size_is_lossy_and_deterministic() -> None:
    frames = _textured(37, 50)  # odd height: padded for 4:2:0 and cropped back
    fine = h264_roundtrip(frames, 18)
    coarse = h264_roundtrip(frames, 40)
    assert [f.shape for f in fine] == [f.shape for f in frames]
    assert all(f.dtype == np.float32 and 0 <= f.min() and f.max() <= 1 for f in fine)
    err_fine = np.mean([np.abs(a - b).mean() for a, b in zip(fine, frames, strict=True)])
    err_coarse = np.mean([np.abs(a - b).mean() for a, b in zip(coarse, frames, strict=True)])
    assert 0 < err_fine < err_coarse < 0.1
    again = h264_roundtrip(frames, 40)
    assert all(np.array_equal(a, b) for a, b in zip(coarse, again, strict=True))


def test_h264_compresses_input_and_target_alike() -> None:
    style = RainStyle(layers=(RainLayer(0.0, 10, 0.0, 0.0),), jpeg_quality=None, h264_crf=30)
    rainy, clean = add_rain(_textured(48, 64), style, 0)  # no rain: input and target must be identical
    assert all(np.array_equal(a, b) for a, b in zip(rainy, clean, strict=True))
    assert np.abs(clean[2] - _textured(48, 64)[2]).mean() > 0  # and really compressed
    assert all(
        np.array_equal(a, b) for a, b in zip(degrade_clip(_textured(48, 64), style), clean, strict=True)
    )


def test_presets_mix_h264_and_jpeg_without_changing_the_rest_of_the_style() -> None:
    with_h264 = replace(PRESETS["heavy"], h264_probability=0.5)
    without = replace(PRESETS["heavy"], h264_probability=0.0)
    styles = [sample_style(with_h264, np.random.default_rng(seed)) for seed in range(40)]
    plain = [sample_style(without, np.random.default_rng(seed)) for seed in range(40)]
    coded = [s for s in styles if s.h264_crf is not None]
    assert 5 < len(coded) < 35
    assert all(s.jpeg_quality is None and not s.chroma_420 for s in coded)
    assert all(18 <= s.h264_crf <= 32 for s in coded)
    for a, b in zip(styles, plain, strict=True):  # the codec draw leaves the streaks' random stream alone
        assert (a.angle, a.layers, a.haze, a.noise) == (b.angle, b.layers, b.haze, b.noise)


def test_near_camera_layer_is_long_wide_and_leaves_the_rest_of_the_style_alone() -> None:
    light = replace(PRESETS["light"], haze_probability=0.0)  # its spawned generator follows the near one's
    without = replace(light, near_probability=0.0)
    styles = [sample_style(light, np.random.default_rng(seed)) for seed in range(80)]
    plain = [sample_style(without, np.random.default_rng(seed)) for seed in range(80)]
    with_near = [s for s, q in zip(styles, plain, strict=True) if len(s.layers) > len(q.layers)]
    assert 20 < len(with_near) < 60  # about half the clips, as the preset says
    for s, q in zip(styles, plain, strict=True):  # the near draw leaves every other draw as it was
        assert s.layers[: len(q.layers)] == q.layers
        assert replace(s, layers=()) == replace(q, layers=())
    widest_other = max(layer.width for q in plain for layer in q.layers)
    for s in with_near:
        near = s.layers[-1]
        assert near.width > widest_other * 0.85 and near.length >= light.near_length[0]
    # rendered, the near layer adds bright pixels in bars several pixels wide
    style = replace(with_near[0], layers=with_near[0].layers[-1:], jpeg_quality=None, h264_crf=None)
    rainy, clean = add_rain([np.full((240, 320, 3), 0.2, np.float32)] * 2, replace(style, noise=0.0), 1)
    lifted = (rainy[0] - clean[0]).mean(-1) > 10 / 255
    assert lifted.any()
    widths = lifted.sum(1)[lifted.any(1)]  # lifted pixels per row, where a row has any
    assert np.median(widths) >= 2


def _dark_ringing(style: RainStyle) -> float:
    """Share of pixels that rain and compression leave over 10 levels below the compressed clean frame."""
    rainy, clean = add_rain(_textured(96, 128), replace(style, noise=0.0), 3)
    return float(np.mean([(r - c < -10 / 255).mean() for r, c in zip(rainy, clean, strict=True)]))


def test_light_preset_h264_rings_no_more_than_its_jpeg() -> None:
    light = PRESETS["light"]
    styles = [sample_style(light, np.random.default_rng(seed)) for seed in range(60)]
    crfs = {s.h264_crf for s in styles if s.h264_crf is not None}
    assert crfs and all(light.h264_crf[0] <= c <= light.h264_crf[1] for c in crfs)
    streaks = (RainLayer(0.01, 10, 0.5, 0.6),)
    worst_jpeg = _dark_ringing(RainStyle(layers=streaks, jpeg_quality=light.jpeg_quality[0]))
    worst_h264 = _dark_ringing(RainStyle(layers=streaks, jpeg_quality=None, h264_crf=light.h264_crf[1]))
    old_worst_h264 = _dark_ringing(RainStyle(layers=streaks, jpeg_quality=None, h264_crf=32))
    assert worst_h264 <= 1.5 * worst_jpeg < old_worst_h264


def test_light_rain_has_little_accumulation_and_heavy_rain_much() -> None:
    preset = PRESETS["light"]
    no_haze = replace(preset, haze_probability=0.0)
    light = [sample_style(preset, np.random.default_rng(seed)) for seed in range(200)]
    heavy = [sample_style("heavy", np.random.default_rng(seed)) for seed in range(30)]
    hazy = [seed for seed, s in enumerate(light) if s.haze > 0]
    assert 0.15 * len(light) < len(hazy) < 0.35 * len(light)  # about a quarter of the clips
    assert all(light[seed].haze <= preset.haze_range[1] for seed in hazy)
    # whatever the style (a clip's style is its generator's first draw), even those with no haze of their own
    kinds = {preset.styles[np.random.default_rng(seed).integers(len(preset.styles))] for seed in hazy}
    assert {"streaks", "drizzle", "dense-drizzle"} <= kinds
    assert sum(s.haze > 0.05 for s in heavy) >= 10
    # the haze draw has its own generator: every other draw of a clip is what it is without it
    for seed in range(40):
        with_haze = sample_style(preset, np.random.default_rng(seed))
        without = sample_style(no_haze, np.random.default_rng(seed))
        assert without.haze == 0 and replace(with_haze, haze=0.0) == without
    # without haze, no pixel is lifted unless a streak covers it: most of a light-rain frame is untouched
    frames = _textured(96, 128)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        style = replace(
            sample_style(no_haze, rng), jpeg_quality=None, h264_crf=None, chroma_420=False, noise=0.0
        )
        rainy, clean = add_rain(frames, style, rng)
        assert np.median(rainy[2] - clean[2]) < 0.5 / 255  # untouched once quantised to 8 bits


def test_h264_falls_back_to_jpeg_where_pyav_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from tmics_cli.data.rain import compression as rain

    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    monkeypatch.setattr(rain, "_warned_no_pyav", False)
    style = RainStyle(layers=(RainLayer(0.0, 10, 0.0, 0.0),), jpeg_quality=None, h264_crf=30)
    with pytest.warns(UserWarning, match="PyAV is not installed"):
        rainy, clean = add_rain(_textured(48, 64), style, 0)
    assert all(np.array_equal(a, b) for a, b in zip(rainy, clean, strict=True))  # still alike
    assert np.abs(clean[2] - _textured(48, 64)[2]).mean() > 0  # and still compressed


def test_weights_cache_without_platformdirs(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import sys

    from tmics_cli import weights

    monkeypatch.delenv("TMICS_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "platformdirs", None)
    assert weights.cache_dir() == tmp_path / "tmics" / "weights"
    assert weights.resolve_weights("light") == weights.bundled_path("light")


def test_drizzle_is_sparse_short_and_near_vertical() -> None:
    """The light preset's drizzle style: fainter and sparser than the `streaks` style, short,
    within a few degrees of vertical."""
    light = replace(PRESETS["light"], near_probability=0.0, haze_probability=0.0)
    only = {k: replace(light, styles=(k,)) for k in ("drizzle", "streaks")}
    coverage = {}
    for kind, preset in only.items():
        rng = np.random.default_rng(5)
        values = []
        for _ in range(10):
            style = replace(sample_style(preset, rng), jpeg_quality=None, h264_crf=None, noise=0.0)
            if kind == "drizzle":
                assert abs(style.angle) <= 6 and style.haze == 0
                assert all(layer.length <= 14 and layer.width < 1 for layer in style.layers)
            rainy, clean = add_rain([np.full((128, 128, 3), 0.3, np.float32)], style, rng)
            values.append(rain_coverage(rainy[0], clean[0]))
        coverage[kind] = float(np.mean(values))
    assert 0.005 < coverage["drizzle"] < 0.7 * coverage["streaks"]


def test_blend_gamma_fades_rain_faster_over_bright_backgrounds() -> None:
    dark, bright = np.full((64, 64, 3), 0.1, np.float32), np.full((64, 64, 3), 0.8, np.float32)
    ratio = {}
    for gamma in (1.0, 2.0):
        style = RainStyle(layers=(RainLayer(0.01, 10, 0.0, 0.6),), jpeg_quality=None, blend_gamma=gamma)
        lifts = []
        for scene in (dark, bright):  # the same seed: the same streaks over both
            rainy, clean = add_rain([scene], style, 3)
            lifts.append(float((rainy[0] - clean[0]).sum()))
        ratio[gamma] = lifts[0] / lifts[1]
    assert ratio[1.0] == pytest.approx(0.9 / 0.2, rel=1e-3)  # the screen blend: (1 - 0.1) / (1 - 0.8)
    assert ratio[2.0] == pytest.approx((0.9 / 0.2) ** 2, rel=1e-3)


def test_light_preset_draws_dense_drizzle_matched_by_background() -> None:
    """dense-drizzle: drizzle's streak shapes, denser, fading as (1 - B)^2 over bright backgrounds."""
    assert "dense-drizzle" in PRESETS["light"].styles and "dense-drizzle" not in PRESETS["heavy"].styles
    only = {k: replace(PRESETS["light"], styles=(k,)) for k in ("drizzle", "dense-drizzle")}
    scene = np.full((96, 128, 3), 0.15, np.float32)
    scene[:, 64:] = 0.7
    dark, bright = {}, {}
    for kind, preset in only.items():
        rng = np.random.default_rng(2)
        d, b = [], []
        for _ in range(8):
            style = replace(sample_style(preset, rng), jpeg_quality=None, h264_crf=None, noise=0.0)
            assert style.blend_gamma == (2.0 if kind == "dense-drizzle" else 1.0)
            rainy, clean = add_rain([scene], style, rng)
            diff = (rainy[0] - clean[0]).mean(-1)
            d.append(diff[:, :60].mean())
            b.append(diff[:, 68:].mean())
        dark[kind], bright[kind] = float(np.mean(d)), float(np.mean(b))
    assert dark["dense-drizzle"] > 2 * dark["drizzle"]  # much more rain behind dark objects
    assert dark["dense-drizzle"] / bright["dense-drizzle"] > 1.5 * dark["drizzle"] / bright["drizzle"]
