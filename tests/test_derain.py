import time
import warnings
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.videos import (
    audio_packets,
    audio_seconds,
    audio_start,
    audio_times,
    decode,
    encode_clip,
    make_video,
    moving_texture,
)
from tmics_cli.cli import app
from tmics_cli.derain import SAMPLE_CLIP, derain_video
from tmics_cli.inference import (
    STAGES,
    OutOfMemoryWarning,
    Restorer,
    default_batch,
    derain_clip,
    derain_stream,
    rain_coverage_estimate,
    stream_windows,
)
from tmics_cli.metrics import psnr_y
from tmics_cli.model import load_model
from tmics_cli.outputs import OutputError
from tmics_cli.segments import TIMINGS
from tmics_cli.video.reader import VideoError, VideoWarning, open_source
from tmics_cli.video.windows import window_indices
from tmics_cli.video.writer import EncodeOptions, VideoSink
from tmics_cli.weights import resolve_weights


def _run(src: Path, dst: Path, weights: Path, **kw):
    return derain_video(src, dst, weights=weights, device="cpu", **kw)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


# --- windows ---


@pytest.mark.parametrize("length", [1, 2, 3, 4, 7])
def test_streamed_windows_match_the_reflected_windows_and_hold_few_frames(length: int) -> None:
    read = []

    def frames():
        for i in range(length):
            read.append(i)
            yield i

    for t, (centre, window) in enumerate(stream_windows(frames())):
        assert centre == t
        assert window == window_indices(t, length)
        assert len(read) <= t + 3  # never reads more than two frames ahead
    assert t == length - 1


def test_streaming_equals_the_in_memory_clip(tiny_weights: Path) -> None:
    model = load_model(tiny_weights)
    clip = np.stack([moving_texture(i, 32, 40) for i in range(6)])  # (T, H, W, 3) uint8
    streamed = np.stack(list(derain_stream(iter(clip), Restorer(model, torch.device("cpu")), batch=4)))
    frames = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255
    expected = (derain_clip(model, frames) * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    assert streamed.shape == clip.shape
    assert np.abs(streamed.astype(int) - expected.numpy().astype(int)).max() <= 1


@pytest.mark.parametrize("profile", [False, True])
def test_the_restorer_times_its_stages_and_they_sum_to_its_time(tiny_weights: Path, profile: bool) -> None:
    restorer = Restorer(load_model(tiny_weights), torch.device("cpu"), profile=profile)
    windows = np.stack([np.stack([moving_texture(i + d, 32, 40) for d in range(5)]) for i in range(3)])
    wall = 0.0
    for _ in range(2):
        start = time.perf_counter()
        restorer(windows)
        wall += time.perf_counter() - start
    assert set(restorer.timings) == set(STAGES)
    assert all(v >= 0 for v in restorer.timings.values())
    assert restorer.timings["flow"] > 0 and restorer.timings["network"] > 0  # the tiny light net has an OFM
    assert restorer.seconds == pytest.approx(sum(restorer.timings.values()))
    assert restorer.seconds <= wall  # each call charged within its own wall time


def test_derain_reports_every_stage_and_model_is_their_sum(tmp_path: Path, tiny_weights: Path) -> None:
    summary = _run(make_video(tmp_path / "in.mp4", frames=7), tmp_path / "out.mp4", tiny_weights)
    timings = summary.timings
    assert list(timings) == [*TIMINGS, "join"]  # decode, upload, flow, network, download, encode, model
    assert all(v >= 0 for v in timings.values()) and timings["decode"] > 0 and timings["encode"] > 0
    assert timings["join"] > 0
    assert timings["model"] == pytest.approx(sum(timings[s] for s in STAGES))
    assert timings["model"] <= summary.seconds


# --- the I/O path ---


@pytest.mark.parametrize(("colorspace", "h"), [(1, 48), (6, 48), (None, 48), (None, 720)])
def test_io_path_alone_keeps_colour(tmp_path: Path, colorspace: int | None, h: int) -> None:
    src = make_video(tmp_path / "in.mp4", frames=4, w=64, h=h, colorspace=colorspace)
    for crf, max_error in ((0, 0.1), (18, 3.0)):  # lossless: the conversion alone; default: + codec loss
        source = open_source(src)
        dst = tmp_path / f"out{crf}.mp4"
        sink = VideoSink(dst, source.info, EncodeOptions(crf=crf), source.info.width, source.info.height)
        for item in source:
            sink.write(item.rgb, item.pts)
        sink.commit()
        before, after = decode(src)[0], decode(dst)[0]
        error = np.mean([np.abs(a.astype(float) - b).mean() for a, b in zip(before, after, strict=True)])
        bias = np.mean([(a.astype(float) - b).mean((0, 1)) for a, b in zip(before, after, strict=True)], 0)
        assert error < max_error and np.abs(bias).max() < 0.3, (crf, error, bias)


def test_constant_frame_rate_count_and_timestamps_kept(tmp_path: Path, tiny_weights: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=9)
    summary = _run(src, tmp_path / "out.mkv", tiny_weights)
    _, _, times_in, _ = decode(src)
    frames, _, times_out, _ = decode(tmp_path / "out.mkv")
    assert summary.frames == len(frames) == 9
    assert np.allclose(times_out, times_in, atol=1e-3)


def test_variable_frame_rate_timestamps_kept(tmp_path: Path, tiny_weights: Path) -> None:
    pts = [0, 40, 80, 200, 230, 400, 440, 1000]  # ms: gaps and bursts
    src = make_video(tmp_path / "vfr.mp4", pts=pts)
    _run(src, tmp_path / "out.mp4", tiny_weights)
    _, _, times, _ = decode(tmp_path / "out.mp4")
    assert np.allclose(times, [p / 1000 for p in pts], atol=1e-3)


def test_audio_copied_bit_for_bit_and_rotation_kept(tmp_path: Path, tiny_weights: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=12, audio=True, rotation=90)
    _run(src, tmp_path / "out.mp4", tiny_weights)
    packets = audio_packets(src)
    assert len(packets) > 3 and audio_packets(tmp_path / "out.mp4") == packets
    assert decode(tmp_path / "out.mp4")[3] == 90
    _run(src, tmp_path / "silent.mp4", tiny_weights, audio=False)
    assert audio_packets(tmp_path / "silent.mp4") == []


def test_audio_reencoded_when_the_container_cannot_hold_it(tmp_path: Path, tiny_weights: Path) -> None:
    import av

    src = make_video(tmp_path / "in.mp4", frames=6, audio=True)  # AAC, which WebM cannot hold
    _run(src, tmp_path / "out.webm", tiny_weights)
    with av.open(str(tmp_path / "out.webm")) as container:
        assert container.streams.audio[0].codec_context.name == "opus"
        assert container.streams.video[0].codec_context.name == "vp9"
        assert sum(1 for _ in container.decode(video=0)) == 6


def test_a_late_audio_track_stays_late_when_reencoded(tmp_path: Path, tiny_weights: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=25, audio=True, audio_offset=0.3)
    late = audio_start(src)  # 0.236 s: 0.3 less the AAC encoder's priming
    _run(src, tmp_path / "out.webm", tiny_weights)  # AAC to Opus (whose 6.5 ms pre-skip comes first)
    assert audio_start(tmp_path / "out.webm") == pytest.approx(late, abs=0.01)  # was 0: 0.24 s early
    _run(src, tmp_path / "cut.webm", tiny_weights, start=0.1)
    assert audio_start(tmp_path / "cut.webm") == pytest.approx(late - 0.1, abs=0.01)
    assert audio_seconds(tmp_path / "cut.webm") == pytest.approx(audio_seconds(src) - 0.1, abs=0.03)


def test_a_gap_in_the_audio_stays_a_gap_when_reencoded(tmp_path: Path, tiny_weights: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=25, audio=True, audio_gap=(0.3, 0.6))  # sound stops 0.3 s
    before = audio_times(src)
    _run(src, tmp_path / "out.webm", tiny_weights)
    after = audio_times(tmp_path / "out.webm")
    jump = max(b - a for a, b in zip(before, before[1:], strict=False))  # 0.32 s + one 64 ms AAC frame
    steps = [b - a for a, b in zip(after, after[1:], strict=False)]
    assert max(steps) == pytest.approx(jump - 0.064 + 0.02, abs=0.025)  # 20 ms Opus frames around it
    assert after[-1] == pytest.approx(before[-1], abs=0.07)  # the sound after it is not pulled early


def _audio_changing_midway(path: Path) -> Path:
    """An MPEG-TS of 0.8 s whose MP2 audio (frames that say their own rate) turns from 48 kHz stereo to
    44.1 kHz mono at 0.4 s, as in a capture of joined broadcasts."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 32, 24, "yuv420p"
        video.options = {"preset": "ultrafast"}
        sound = out.add_stream("mp2", rate=48000, layout="stereo")
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(moving_texture(i, 24, 32), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        later = av.CodecContext.create("mp2", "w")
        later.sample_rate, later.layout, later.format = 44100, "mono", "s16"
        later.time_base = Fraction(1, 44100)
        later.open()
        for encoder, rate, layout, begin in ((sound, 48000, "stereo", 0.0), (later, 44100, "mono", 0.4)):
            for k in range(0, int(0.4 * rate), 1152):
                samples = np.full((1, 1152 * (2 if layout == "stereo" else 1)), 900, np.int16)
                frame = av.AudioFrame.from_ndarray(samples, "s16", layout)
                frame.sample_rate, frame.pts, frame.time_base = rate, k, Fraction(1, rate)
                for packet in encoder.encode(frame):
                    if encoder is later:  # into the one stream, on its clock
                        packet.pts = packet.dts = round((begin + packet.pts / rate) / sound.time_base)
                        packet.time_base, packet.stream = sound.time_base, sound
                    out.mux(packet)
    return path


def test_audio_that_changes_rate_and_layout_midway_is_reencoded_whole(tmp_path: Path, tiny_weights: Path):
    src = _audio_changing_midway(tmp_path / "in.ts")
    _run(src, tmp_path / "out.webm", tiny_weights)  # MP2 into Opus: was "Frame does not match ..."
    times = audio_times(tmp_path / "out.webm")
    assert times[-1] > 0.75 and max(b - a for a, b in zip(times, times[1:], strict=False)) < 0.03


def test_avi_names_an_audio_offset_it_cannot_hold(tmp_path: Path, tiny_weights: Path) -> None:
    late = make_video(tmp_path / "late.mp4", frames=10, audio=True, audio_offset=0.2)  # AAC from 0.136 s
    with pytest.warns(VideoWarning, match=r"the start of audio stream 1 \(0\.14 s after the video\)"):
        _run(late, tmp_path / "late.avi", tiny_weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # in step: nothing to say
        _run(make_video(tmp_path / "in.mp4", frames=10, audio=True), tmp_path / "in.avi", tiny_weights)
        _run(late, tmp_path / "cut.avi", tiny_weights, start=0.16)  # both start at the cut


def test_odd_sizes_and_frame_folders_in_and_out(tmp_path: Path, tiny_weights: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):  # natural order: 2 before 10
        cv2.imwrite(str(folder / f"f{[1, 2, 10, 11, 20][i]}.png"), moving_texture(i, 47, 63)[..., ::-1])
    summary = _run(folder, tmp_path / "out.mp4", tiny_weights, fps=10)
    frames, _, times, _ = decode(tmp_path / "out.mp4")
    assert summary.frames == 5 and frames[0].shape == (47, 63, 3)
    assert np.allclose(times, [0, 0.1, 0.2, 0.3, 0.4], atol=1e-3)
    _run(tmp_path / "out.mp4", tmp_path / "pngs", tiny_weights)
    pngs = sorted((tmp_path / "pngs").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(1, 6)]
    assert {p.name for p in (tmp_path / "pngs").iterdir()} - {p.name for p in pngs} == {".tmics-output.json"}
    assert cv2.imread(str(pngs[0])).shape == (47, 63, 3)


def test_compare_start_and_end(tmp_path: Path, tiny_weights: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=20)  # 25 fps: frame i at 0.04 i s
    summary = _run(src, tmp_path / "out.mp4", tiny_weights, compare=True, start="0.2", end="0.5")
    frames, _, times, _ = decode(tmp_path / "out.mp4")
    assert summary.frames == len(frames) == 8  # frames 5..12
    assert frames[0].shape == (48, 128, 3)
    assert times[0] == pytest.approx(0.0, abs=1e-3) and times[-1] == pytest.approx(0.28, abs=1e-3)
    left = decode(src)[0][5]
    assert np.abs(frames[0][:, :64].astype(float) - left).mean() < 3  # the input half is the input


# --- errors and safety ---


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "text.mp4").write_text("not a video at all\n" * 20)
    (tmp_path / "empty.mp4").write_bytes(b"")
    good = make_video(tmp_path / "good.mp4", frames=6)
    data = good.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (tmp_path / "noframes").mkdir()
    return {
        "missing": (tmp_path / "missing.mp4", "does not exist"),
        "text": (tmp_path / "text.mp4", "not a video"),
        "empty": (tmp_path / "empty.mp4", "not a video"),
        "truncated": (tmp_path / "truncated.mp4", ""),
        "no frames": (tmp_path / "noframes", "no videos or frames"),
    }


def test_bad_inputs_give_one_line_and_leave_no_output(tmp_path: Path, tiny_weights: Path) -> None:
    runner = CliRunner()
    for name, (src, words) in _bad_inputs(tmp_path).items():
        out = tmp_path / f"out-{name.replace(' ', '_')}.mp4"
        result = runner.invoke(
            app, ["derain", str(src), "-o", str(out), "--weights", str(tiny_weights), "-q"]
        )
        lines = result.output.strip().splitlines()
        assert result.exit_code != 0, name
        assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], (name, result.output)
        assert not out.exists(), name
    assert _leftovers(tmp_path) == []


def test_refuses_to_overwrite_the_input_or_an_existing_output(tmp_path: Path, tiny_weights: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=5)
    original = src.read_bytes()
    runner = CliRunner()
    result = runner.invoke(
        app, ["derain", str(src), "-o", str(src), "--weights", str(tiny_weights), "--overwrite"]
    )
    assert result.exit_code != 0 and "is the input" in result.output and src.read_bytes() == original
    existing = tmp_path / "old.mp4"
    existing.write_bytes(b"keep me")
    result = runner.invoke(app, ["derain", str(src), "-o", str(existing), "--weights", str(tiny_weights)])
    assert result.exit_code != 0 and "--overwrite" in result.output and existing.read_bytes() == b"keep me"
    result = runner.invoke(
        app, ["derain", str(src), "-o", str(existing), "--weights", str(tiny_weights), "--overwrite"]
    )
    assert result.exit_code == 0, result.output
    assert len(decode(existing)[0]) == 5
    for bad in (
        ["--weights", str(tmp_path / "nope.safetensors")],
        ["--rain", "drizzle"],
        ["--device", "cuda:7"],
    ):
        result = runner.invoke(app, ["derain", str(src), "-o", str(tmp_path / "x.mp4"), *bad])
        assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1, bad


def test_interrupted_run_leaves_no_partial_file(tmp_path: Path, tiny_weights: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=10)
    dst = tmp_path / "out.mp4"

    def interrupt(done: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(src, dst, tiny_weights, on_frame=interrupt)
    assert not dst.exists() and _leftovers(tmp_path) == []


def test_unknown_codec_and_unwritable_output(tmp_path: Path, tiny_weights: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=5)
    with pytest.raises(VideoError, match="unknown video encoder"):
        _run(src, tmp_path / "out.mp4", tiny_weights, codec="no-such-codec")
    with pytest.raises(OutputError, match="does not exist"):
        _run(src, tmp_path / "missing" / "out.mp4", tiny_weights)
    assert _leftovers(tmp_path) == []


# --- tiling, memory, rain level, weights, sample ---


def _rainy_clip(h: int = 96, w: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    from tmics_cli.data.rain import RainLayer, RainStyle, add_rain

    clean = [moving_texture(i, h, w).astype(np.float32) / 255 for i in range(5)]
    style = RainStyle(angle=5, layers=(RainLayer(0.01, 12, 0.0, 0.6),), jpeg_quality=None)
    rainy, clean = add_rain(clean, style, 3)
    to = lambda frames: torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)[None]  # noqa: E731
    return to(rainy), to(clean)[0, 2]


def test_tiled_output_within_half_a_db_of_whole_frames() -> None:
    model = load_model(resolve_weights("light"))
    rainy, clean = _rainy_clip()
    whole = Restorer(model, torch.device("cpu")).restore(rainy)
    tiled = Restorer(model, torch.device("cpu"), tile=64, tile_overlap=16).restore(rainy)
    tiled, whole = tiled[0], whole[0]
    assert abs(psnr_y(tiled, clean) - psnr_y(whole, clean)) < 0.5
    assert psnr_y(tiled, whole) > 35


def test_out_of_memory_retries_with_smaller_tiles_and_keeps_every_frame(monkeypatch) -> None:
    model = load_model(resolve_weights("light"))
    rainy, _ = _rainy_clip()
    windows = rainy.repeat(3, 1, 1, 1, 1)  # three windows
    restorer = Restorer(model, torch.device("cpu"))
    forward = restorer._forward

    def small_only(frames: torch.Tensor, tile: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        if frames.shape[0] > 1 or not tile or tile > 64:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(frames, tile)

    monkeypatch.setattr(restorer, "_forward", small_only)
    with pytest.warns(OutOfMemoryWarning) as told:
        out = restorer.restore(windows)
    assert [str(w.message).rsplit("(", 1)[1] for w in told] == ["--batch 1)", "--tile 64)"]
    assert out.shape == (3, 3, 96, 128) and restorer.tile == 64 and restorer.retries == 2
    monkeypatch.setattr(
        restorer, "_forward", lambda f, t: (_ for _ in ()).throw(torch.OutOfMemoryError("oom"))
    )
    with pytest.raises(MemoryError, match="64-pixel tiles"):
        restorer.restore(windows)


def test_rain_coverage_grows_with_rain() -> None:
    from tmics_cli.data.rain import RainLayer, RainStyle, add_rain

    clean = [moving_texture(i, 96, 128).astype(np.float32) / 255 for i in range(5)]
    coverage = []
    for density in (0.0, 0.004, 0.02):
        style = RainStyle(layers=(RainLayer(density, 12, 0.0, 0.6),), jpeg_quality=None)
        rainy, _ = add_rain(clean, style, 0)
        coverage.append(rain_coverage_estimate([(f * 255 + 0.5).astype(np.uint8) for f in rainy]))
    assert coverage[0] < 0.02 < coverage[1] < coverage[2]


def test_named_weights_resolve_with_the_user_cache_first(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("TMICS_HOME", raising=False)
    bundled = resolve_weights("heavy")
    assert bundled.name == "tmics-heavy.safetensors" and load_model(bundled).config.genotype is not None
    monkeypatch.setenv("TMICS_HOME", str(tmp_path))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "tmics-heavy.safetensors").write_bytes(bundled.read_bytes())
    assert resolve_weights("heavy") == tmp_path / "weights" / "tmics-heavy.safetensors"
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_weights(tmp_path / "nothing.safetensors")


def test_one_window_per_model_call_by_default_on_the_cpu() -> None:
    # batched windows were slower on the CPU (benchmarks/derain_speed.py --batch 1 against 2)
    assert default_batch(torch.device("cpu")) == 1 and default_batch(torch.device("cuda", 0)) == 8


def test_light_full_is_the_light_network_with_cells_at_full_resolution() -> None:
    light = load_model(resolve_weights("light")).config
    full = load_model(resolve_weights("light-full")).config
    assert full.genotype == light.genotype and full.width == light.width and full.flow == light.flow
    assert (light.scale, full.scale) == (2, 1)


def test_the_sample_clip_ships_and_is_small() -> None:
    assert SAMPLE_CLIP.is_file() and SAMPLE_CLIP.stat().st_size < 2_000_000
    source = open_source(SAMPLE_CLIP)
    assert source.info.frames >= 25 and source.info.width >= 320
    source.close()


def test_time_base_is_kept_for_folder_sources(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    cv2.imwrite(str(folder / "1.png"), moving_texture(0, 8, 8))
    source = open_source(folder, fps=30000 / 1001)
    assert source.info.fps == Fraction(30000, 1001) and source.info.frames == 1


def test_frame_iterator_yields_every_frame_in_order_with_its_timestamp(tmp_path: Path, tiny_weights: Path):
    from tmics_cli import iter_derained

    pts = [0, 40, 120, 160, 200, 320]
    src = make_video(tmp_path / "in.mp4", pts=pts)
    out = list(iter_derained(src, weights=tiny_weights, device="cpu", batch=4))
    assert [item.index for item, _ in out] == list(range(6))
    time_base = open_source(src).info.time_base
    assert [item.pts * time_base for item, _ in out] == [Fraction(p, 1000) for p in pts]
    assert all(frame.shape == (48, 64, 3) and frame.dtype == np.uint8 for _, frame in out)


def test_sample_with_auto_rain_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "demo.mp4"
    result = CliRunner().invoke(app, ["derain", "--sample", "--rain", "auto", "--end", "0.6", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "rain auto:" in result.output and "-> heavy" in result.output  # the sample's rain is heavy
    assert "15 frames" in result.output and len(decode(out)[0]) == 15


@pytest.mark.parametrize("suffix", [".ts", ".avi", ".mov"])
def test_other_containers_keep_every_frame_in_order(tmp_path: Path, tiny_weights: Path, suffix: str) -> None:
    src = make_video(tmp_path / "in.mp4", frames=7, audio=True)
    summary = _run(src, tmp_path / f"out{suffix}", tiny_weights)
    frames, _, times, _ = decode(tmp_path / f"out{suffix}")
    assert summary.frames == len(frames) == 7
    assert all(b > a for a, b in zip(times, times[1:], strict=False))


def test_end_cuts_the_audio_too_and_times_count_from_the_stream_start(tmp_path: Path, tiny_weights: Path):
    src = make_video(tmp_path / "in.mp4", frames=25, audio=True)  # 1 s of video and audio
    _run(src, tmp_path / "cut.mp4", tiny_weights, end=0.4)
    assert len(decode(tmp_path / "cut.mp4")[0]) == 10
    assert audio_seconds(tmp_path / "cut.mp4") < 0.5 < audio_seconds(src)
    late = make_video(tmp_path / "late.mkv", frames=20, offset=10.0)  # timestamps start at 10 s
    summary = _run(late, tmp_path / "late-cut.mp4", tiny_weights, start=0.2, end=0.4)
    frames, _, times, _ = decode(tmp_path / "late-cut.mp4")
    assert summary.frames == len(frames) == 5 and times[0] == pytest.approx(0.0, abs=1e-3)


def test_webm_takes_44k_audio_and_avi_keeps_the_frame_count(tmp_path: Path, tiny_weights: Path) -> None:
    import av

    src = make_video(tmp_path / "in.mp4", frames=8, audio=True, sample_rate=44100)
    _run(src, tmp_path / "out.webm", tiny_weights)
    assert audio_seconds(tmp_path / "out.webm") > 0.2
    _run(src, tmp_path / "out.avi", tiny_weights)
    with av.open(str(tmp_path / "out.avi")) as container:
        assert container.streams.video[0].frames <= 9  # was thousands of empty index entries
    assert len(decode(tmp_path / "out.avi")[0]) == 8


def test_frames_too_small_for_the_flow_are_refused_before_any_work(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """8x8 frames reached OpenCV's DIS flow, which failed with its own message ("error: error: OpenCV ...
    The input image must have either width or height >= 12")."""
    src = make_video(tmp_path / "in.mkv", frames=3, w=8, h=8, pix_fmt="yuv444p")
    with pytest.raises(VideoError, match="8x8: frames need at least 12 pixels on one side"):
        derain_video(src, tmp_path / "out.mkv", weights=tiny_weights, device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv"]


def test_interlaced_input_is_said_to_come_out_progressive(tmp_path: Path, tiny_weights: Path) -> None:
    """Broadcast video in two fields: derained as whole frames and written progressive, without a word."""
    fields = {"x264-params": "interlaced=1:tff=1", "preset": "ultrafast"}
    src = encode_clip(tmp_path / "in.mp4", "libx264", "yuv420p", options=fields)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        derain_video(src, tmp_path / "out.mp4", weights=tiny_weights, device="cpu")
    messages = [str(w.message) for w in caught if issubclass(w.category, VideoWarning)]
    assert len(messages) == 1 and "is interlaced" in messages[0] and "progressive" in messages[0], messages


def test_deep_colour_and_hdr_metadata_are_said_to_be_lost(tmp_path: Path, tiny_weights: Path) -> None:
    """A 10-bit HDR10 clip comes out 8-bit without its mastering metadata: the warning names both."""
    params = (
        "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1):max-cll=1000,400"
    )

    def hdr10(stream) -> None:  # noqa: ANN001 - a PyAV stream
        ctx = stream.codec_context
        ctx.colorspace, ctx.color_primaries, ctx.color_trc = 9, 9, 16  # BT.2020, PQ

    options = {"x265-params": params + ":log-level=error", "preset": "ultrafast"}
    src = encode_clip(tmp_path / "hdr.mkv", "libx265", "yuv420p10le", frames=3, options=options, setup=hdr10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        derain_video(src, tmp_path / "out.mkv", weights=tiny_weights, device="cpu")
    messages = [str(w.message) for w in caught if issubclass(w.category, VideoWarning)]
    assert len(messages) == 1, messages
    for words in ("10-bit (yuv420p10le)", "8 bits", "transfer (PQ) stays tagged", "mastering display"):
        assert words in messages[0], (words, messages[0])


@pytest.mark.parametrize(
    ("source", "kept"), [("yuv444p", "yuv444p"), ("yuv422p", "yuv422p"), ("yuv420p", "yuv420p")]
)
def test_the_inputs_chroma_sampling_is_kept(
    tmp_path: Path, tiny_weights: Path, source: str, kept: str
) -> None:
    """A 4:4:4 master was written 4:2:0 by default, three quarters of its colour resolution gone."""
    import av

    src = make_video(tmp_path / "in.mkv", frames=3, pix_fmt=source)
    derain_video(src, tmp_path / "out.mp4", weights=tiny_weights, device="cpu")
    with av.open(str(tmp_path / "out.mp4")) as done:
        assert done.streams.video[0].codec_context.pix_fmt == kept


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_capture_whose_clock_starts_late_comes_out_starting_at_zero(
    tmp_path: Path, tiny_weights: Path, suffix: str
) -> None:
    """A DVR's MPEG-TS starts its clock at an hour: the MP4 began with an hour-long empty edit (players
    showed 1:00:01 of nothing first), the MKV lasted an hour. The output starts at 0, audio in step."""
    import av

    src = make_video(tmp_path / "dvr.ts", frames=10, time_base=Fraction(1, 90000), audio=True, offset=3600.0)
    times = decode(src)[2]
    lead = audio_start(src) - times[0]
    out = tmp_path / f"out{suffix}"
    derain_video(src, out, weights=tiny_weights, device="cpu")
    after = decode(out)[2]
    assert len(after) == 10 and 0 <= after[0] < 0.1  # Matroska puts the AAC priming, not the video, at 0
    with av.open(str(out)) as done:
        assert done.duration is not None and done.duration / av.time_base < 1.0
    assert audio_start(out) - after[0] == pytest.approx(lead, abs=0.03)


def test_a_negative_time_in_minutes_is_refused() -> None:
    from tmics_cli.video.reader import parse_time

    for text in ("-0:00.2", "-0:01", " -0.5"):
        with pytest.raises(VideoError, match="is negative"):
            parse_time(text)  # -0:00.2 was read as +0.2 s
    assert parse_time("1:02.5") == 62.5


@pytest.mark.parametrize(("codec", "suffix"), [("mpeg2video", ".mkv"), ("mjpeg", ".avi")])
def test_codecs_with_a_frame_clock_or_full_range_encode(
    tmp_path: Path, tiny_weights: Path, codec: str, suffix: str
) -> None:
    """--codec mpeg2video failed at frame 1 with "Invalid argument" (MPEG-2 counts time in frames of its
    rates, the input's 1/1000 time base is none) and mjpeg too (JPEG is full range only)."""
    src = make_video(tmp_path / "in.mp4", frames=6)
    out = tmp_path / f"out{suffix}"
    derain_video(src, out, weights=tiny_weights, device="cpu", codec=codec, compare=True)
    rainy, frames = decode(src)[0], decode(out)[0]
    assert len(frames) == 6
    for before, after in zip(rainy, frames, strict=True):  # the input's panel: no range or colour shift
        assert abs(float(after[:, :64].mean()) - float(before.mean())) < 1.5


def test_a_frame_rate_mpeg1_cannot_take_is_refused_before_any_work(
    tmp_path: Path, tiny_weights: Path
) -> None:
    src = make_video(tmp_path / "in.mp4", pts=[i * 80 for i in range(5)])  # 12.5 fps
    with pytest.raises(VideoError, match="mpeg1video takes only the frame rates .*25.*; this video is 1"):
        derain_video(src, tmp_path / "out.mkv", weights=tiny_weights, device="cpu", codec="mpeg1video")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_segmented_mpeg2_in_mpeg_ts_keeps_the_audio_in_step(tmp_path: Path, tiny_weights: Path) -> None:
    """TS pieces are written 10 s late; on MPEG-2's frame clock (1001/30000) that was 10.01 s, and the
    join took back 10: the video ran 10 ms behind its audio."""
    ntsc = [i * 1001 for i in range(12)]  # 29.97 fps
    src = make_video(tmp_path / "in.mp4", pts=ntsc, audio=True, fps=30, time_base=Fraction(1, 30000))
    lead = audio_start(src) - decode(src)[2][0]
    out = tmp_path / "out.ts"
    derain_video(src, out, weights=tiny_weights, device="cpu", codec="mpeg2video", segment_frames=4)
    times = decode(out)[2]
    assert len(times) == 12 and audio_start(out) - times[0] == pytest.approx(lead, abs=0.004)


def test_the_default_pixel_format_follows_the_inputs_chroma() -> None:
    from tmics_cli.video.writer import EncodeOptions, choose_pix_fmt

    x264 = ["yuv420p", "yuvj420p", "yuv422p", "yuv444p"]
    cases = [("yuvj422p", "yuv422p"), ("rgb24", "yuv420p"), ("gray", "yuv420p"), ("", "yuv420p")]
    cases += [("pal8", "yuv420p"), ("yuv420p10le", "yuv420p"), ("yuv444p12le", "yuv444p")]
    for source, chosen in cases:
        assert choose_pix_fmt(EncodeOptions(), "libx264", x264, 64, 48, source) == chosen, source
    assert choose_pix_fmt(EncodeOptions(), "libx264", x264, 65, 48, "yuv420p") == "yuv444p"  # odd: x264
    assert choose_pix_fmt(EncodeOptions(), "libsvtav1", ["yuv420p"], 65, 48, "yuv444p") == "yuv420p"
    assert choose_pix_fmt(EncodeOptions(), "mjpeg", ["yuvj420p", "yuv420p"], 64, 48, "yuv420p") == "yuvj420p"
    assert choose_pix_fmt(EncodeOptions(pix_fmt="nv12"), "libx264", x264, 64, 48, "yuv444p") == "nv12"


def test_x265_prints_nothing_under_quiet(tmp_path: Path, tiny_weights: Path) -> None:
    """x265 wrote its banner and settings ("x265 [info]: ...") to stderr, -q or not."""
    import subprocess
    import sys

    src = make_video(tmp_path / "in.mp4", frames=3)
    args = [sys.executable, "-m", "tmics_cli", "derain", str(src), "-o", str(tmp_path / "out.mkv")]
    args += ["--weights", str(tiny_weights), "--device", "cpu", "--codec", "libx265", "-q"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "x265 [" not in done.stderr and done.stderr.count("\n") <= 1, done.stderr  # the summary line


def test_a_folder_of_16_bit_rgba_frames_is_said_to_lose_depth_and_alpha(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """Film scans in 16-bit PNG (and frames with transparency) were read at 8 bits, RGB, without a word."""
    folder = tmp_path / "scan"
    folder.mkdir()
    for i in range(3):
        rgba = (
            np.dstack([moving_texture(i, 48, 64), np.full((48, 64), 255, np.uint8)]).astype(np.uint16) * 257
        )
        cv2.imwrite(str(folder / f"{i:04d}.png"), rgba)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        derain_video(folder, tmp_path / "out.mkv", weights=tiny_weights, device="cpu")
    messages = [str(w.message) for w in caught if issubclass(w.category, VideoWarning)]
    assert any("16-bit" in m and "8 bits" in m for m in messages), messages
    assert any("alpha channel" in m for m in messages), messages


def test_an_empty_cut_names_the_cut_not_the_file(tmp_path: Path) -> None:
    """--end 0 said "X has no video frames", as if the file were empty."""
    src = make_video(tmp_path / "in.mp4", frames=5)
    with pytest.raises(VideoError, match="has no video frames from 0 s to 0 s"):
        open_source(src, end=0.0)
