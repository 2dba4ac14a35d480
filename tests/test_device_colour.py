"""YUV frames converted on the device (`colour` device, the default on GPUs): the reader hands planes,
the Restorer uploads and converts them (colour_torch), and the output stays within reach of the host's
swscale path; jobs name the conversion. Run on the CPU, forcing the device path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from videos import make_video

from tmics_cli.derain import Derainer, colour_on_device, derain_video
from tmics_cli.inference import Restorer, derain_stream
from tmics_cli.jobs import JobMismatch, job_folder
from tmics_cli.model import build_model
from tmics_cli.video.colour import ColourTags, YUVPlanes, frame_planes, frame_to_rgb
from tmics_cli.video.colour_torch import yuv_to_rgb_uint8
from tmics_cli.video.reader import open_source

av = pytest.importorskip("av")


def _decoded(path: Path) -> list:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def test_planes_of_a_decoded_frame_make_the_readers_rgb_exactly(tmp_path: Path) -> None:
    for fmt in ("yuv420p", "yuv444p"):
        src = make_video(tmp_path / f"{fmt}.mp4", frames=3, w=48, h=32, pix_fmt=fmt, colorspace=1)
        for frame in _decoded(src):
            tags = ColourTags.of_frame(frame)
            planes = frame_planes(frame, tags)
            assert isinstance(planes, YUVPlanes) and planes.pix_fmt == fmt and planes.shape == (32, 48, 3)
            assert (planes.matrix, planes.range_name) == ("ITU709", "MPEG")
            sub = 2 if fmt == "yuv420p" else 1
            assert planes.u.shape == planes.v.shape == (32 // sub, 48 // sub)
            assert np.array_equal(planes.rgb, frame_to_rgb(frame, tags))  # the host path, pixel for pixel
            assert planes.nbytes == 48 * 32 * (1.5 if sub == 2 else 3)


def test_layouts_the_device_does_not_convert_stay_rgb(tmp_path: Path) -> None:
    odd = av.VideoFrame(33, 17, "yuv420p")  # subsampled with odd sides: chroma sited otherwise
    assert frame_planes(odd, ColourTags()) is None
    for fmt in ("rgb24", "yuv420p10le", "nv12", "gray"):
        assert frame_planes(av.VideoFrame(32, 16, fmt), ColourTags()) is None, fmt


def test_a_reader_asked_for_planes_hands_yuv_frames_as_planes_and_the_rest_as_rgb(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=6, w=48, h=32)
    with_planes = list(open_source(src, planes=True))
    host = list(open_source(src))
    assert all(isinstance(f.pixels, YUVPlanes) for f in with_planes)
    assert all(isinstance(f.pixels, np.ndarray) for f in host)
    for a, b in zip(with_planes, host, strict=True):
        assert (a.index, a.pts) == (b.index, b.pts)
        assert np.array_equal(a.rgb, b.rgb)  # .rgb of planes: converted on the host, as the reader does
    folder = tmp_path / "frames"
    folder.mkdir()
    import cv2

    for i, f in enumerate(host):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f.rgb[..., ::-1])
    assert all(isinstance(f.pixels, np.ndarray) for f in open_source(folder, planes=True))


def test_derain_stream_converts_planes_on_the_device_as_colour_torch_does() -> None:
    h, w = 32, 48
    planes = []
    for i in range(7):  # moving luma, smooth chroma (as video has it: on sample clips 99.5% of pixels exact)
        yy, xx = np.mgrid[0:h, 0:w]
        y = ((xx * 3 + yy * 2 + i * 5) % 220 + 16).astype(np.uint8)
        cy, cx = np.mgrid[0 : h // 2, 0 : w // 2]
        u = (128 + 60 * np.sin(cx / 5 + cy / 7 + i)).astype(np.uint8)
        v = (128 + 60 * np.cos(cx / 6 - cy / 4 - i)).astype(np.uint8)
        planes.append(YUVPlanes(y, u, v, "yuv420p", "ITU601", "MPEG"))
    torch.manual_seed(0)
    restorer = Restorer(build_model("light", "tiny"), torch.device("cpu"))
    rgb = [
        yuv_to_rgb_uint8(*(torch.from_numpy(a) for a in (p.y, p.u, p.v)), p.matrix, p.range_name).numpy()
        for p in planes
    ]
    mixed = [p if i % 2 else r for i, (p, r) in enumerate(zip(planes, rgb, strict=True))]  # both kinds
    expected = list(derain_stream(rgb, restorer, batch=3))
    for frames in (planes, mixed):
        got = list(derain_stream(frames, restorer, batch=3))
        assert len(got) == 7 and all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
    # the host's swscale conversion of the same planes is within a level of the device's
    assert max(np.abs(p.rgb.astype(int) - r).max() for p, r in zip(planes, rgb, strict=True)) <= 1


def test_colour_choice_follows_the_device() -> None:
    assert not colour_on_device("auto", torch.device("cpu"))
    assert colour_on_device("auto", torch.device("cuda")) and colour_on_device("auto", torch.device("mps"))
    assert colour_on_device("device", torch.device("cpu"))
    assert not colour_on_device("host", torch.device("cuda"))
    with pytest.raises(ValueError, match="unknown colour conversion 'gpu'"):
        Derainer(device="cpu", colour="gpu")


def test_a_derain_with_colour_on_the_device_is_close_to_the_hosts_and_its_job_says_so(
    tmp_path: Path, tiny_weights: Path
) -> None:
    src = make_video(tmp_path / "in.mp4", frames=8, w=64, h=48)
    host, device = tmp_path / "host.mkv", tmp_path / "device.mkv"
    derain_video(src, host, weights=tiny_weights, device="cpu", crf=0)
    derain_video(src, device, weights=tiny_weights, device="cpu", crf=0, colour="device")
    a = np.stack([f.to_ndarray(format="rgb24") for f in _decoded(host)]).astype(int)
    b = np.stack([f.to_ndarray(format="rgb24") for f in _decoded(device)]).astype(int)
    assert a.shape == b.shape == (8, 48, 64, 3)
    assert 0 < np.abs(a - b).mean() < 0.5 and np.abs(a - b).max() <= 12  # inputs a level apart at most

    # a job half done with the device's conversion is not resumed with the host's
    derainer = Derainer(weights=tiny_weights, device="cpu", segment_frames=4, colour="device")
    prepared = derainer.prepare(src, tmp_path / "job.mkv")
    manifest = json.loads((job_folder(tmp_path / "job.mkv") / "manifest.json").read_text())
    assert manifest["settings"]["colour"] == "device"
    assert prepared.job is not None
    with pytest.raises(JobMismatch, match="colour device -> none"):
        Derainer(weights=tiny_weights, device="cpu", segment_frames=4).prepare(src, tmp_path / "job.mkv")
    host_job = Derainer(weights=tiny_weights, device="cpu", segment_frames=4)
    assert "colour" not in host_job.settings(*host_job.model("custom"), prepared.info, "custom")


def test_derain_stream_hands_the_encoders_planes_made_on_the_device() -> None:
    from tmics_cli.video.colour import PlaneFormat
    from tmics_cli.video.colour_torch import rgb_to_yuv_uint8

    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(6)]
    torch.manual_seed(0)
    restorer = Restorer(build_model("light", "tiny"), torch.device("cpu"))
    rgb = list(derain_stream(frames, restorer, batch=4))
    fmt = PlaneFormat("yuv420p", "ITU709", "MPEG")
    planes = list(derain_stream(frames, restorer, batch=4, planes=fmt))
    assert len(planes) == 6 and all(isinstance(p, YUVPlanes) for p in planes)
    for p, r in zip(planes, rgb, strict=True):
        want = rgb_to_yuv_uint8(torch.from_numpy(r), "ITU709", "MPEG", (2, 2))
        assert (p.pix_fmt, p.matrix, p.range_name) == ("yuv420p", "ITU709", "MPEG")
        assert all(np.array_equal(a, b.numpy()) for a, b in zip((p.y, p.u, p.v), want, strict=True))


def test_a_video_sink_encodes_planes_as_they_are(tmp_path: Path) -> None:
    from tmics_cli.video.writer import EncodeOptions, open_sink

    src = make_video(tmp_path / "in.mp4", frames=3, w=48, h=32, colorspace=1)
    info = open_source(src).info
    sink = open_sink(tmp_path / "out.mkv", info, EncodeOptions(crf=0), 48, 32, others=False)
    fmt = sink.plane_format()
    assert fmt is not None and (fmt.pix_fmt, fmt.matrix, fmt.range_name) == ("yuv420p", "ITU709", "MPEG")
    decoded = [frame_planes(f, ColourTags.of_frame(f)) for f in _decoded(src)]
    other = YUVPlanes(decoded[2].y, decoded[2].u, decoded[2].v, "yuv420p", "ITU601", "MPEG")  # another matrix
    for i, planes in enumerate([*decoded[:2], other]):
        sink.write(planes, i * 40)
    sink.commit()
    out = [frame_planes(f, ColourTags.of_frame(f)) for f in _decoded(tmp_path / "out.mkv")]
    for a, b in zip(out[:2], decoded[:2], strict=True):  # lossless x264: the very planes written
        assert all(np.array_equal(x, y) for x, y in zip((a.y, a.u, a.v), (b.y, b.u, b.v), strict=True))
    # planes of another matrix go through RGB (converted with theirs, encoded with the sink's)
    assert not np.array_equal(out[2].u, decoded[2].u)
    error = np.abs(out[2].rgb.astype(int) - other.rgb)  # a round trip through 4:2:0 chroma
    assert error.mean() < 0.6 and error.max() <= 4


def test_derain_stream_keeps_one_batch_in_flight_and_hands_frames_on_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On CUDA a batch's download is waited for only once the next batch is queued; here the same order of
    calls is checked with a Restorer whose results are made late, and the frames are those of a plain run."""
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(11)]
    torch.manual_seed(0)
    restorer = Restorer(build_model("light", "tiny"), torch.device("cpu"))
    expected = list(derain_stream(frames, restorer, batch=4))
    events: list[str] = []
    launch = Restorer.launch_windows

    def late(self: Restorer, windows: torch.Tensor, planes=None, pipeline=None):  # noqa: ANN001, ANN202
        n = sum(e.startswith("launch") for e in events)
        events.append(f"launch {n}")
        copy = windows.clone()  # the windows' buffer is reused by the next batch, as on a GPU stream

        def result():  # noqa: ANN202
            events.append(f"result {n}")
            return launch(self, copy, planes, pipeline=False)()

        return result

    monkeypatch.setattr(Restorer, "launch_windows", late)
    got = list(derain_stream(frames, restorer, batch=4))
    assert len(got) == 11 and all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
    assert events == ["launch 0", "launch 1", "result 0", "launch 2", "result 1", "result 2"]


def test_iter_derained_converts_on_the_device_when_asked(tmp_path: Path, tiny_weights: Path) -> None:
    from tmics_cli.derain import iter_derained

    src = make_video(tmp_path / "in.mp4", frames=6, w=48, h=32)
    host = list(iter_derained(src, weights=tiny_weights, device="cpu"))
    device = list(iter_derained(src, weights=tiny_weights, device="cpu", colour="device"))
    assert len(host) == len(device) == 6
    for (a, out_a), (b, out_b) in zip(host, device, strict=True):
        assert isinstance(a.pixels, np.ndarray) and isinstance(b.pixels, YUVPlanes)
        assert np.array_equal(a.rgb, b.rgb)  # the input as the reader converts it, either way
        assert out_b.shape == (32, 48, 3) and np.abs(out_a.astype(int) - out_b).mean() < 1


@pytest.mark.parametrize("as_planes", [False, True])
def test_the_pipelined_download_gives_the_frames_of_the_plain_one(as_planes: bool) -> None:
    """pipeline=True on the CPU takes the CUDA path's steps (two download buffers used in turn, results
    copied out of them when asked for) synchronously: the frames must be those of the plain path."""
    from tmics_cli.video.colour import PlaneFormat

    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(13)]
    fmt = PlaneFormat("yuv420p", "ITU709", "MPEG") if as_planes else None
    torch.manual_seed(0)
    model = build_model("light", "tiny")
    plain = list(derain_stream(frames, Restorer(model, torch.device("cpu"), pipeline=False), 3, planes=fmt))
    piped = Restorer(model, torch.device("cpu"), pipeline=True)
    got = list(derain_stream(frames, piped, 3, planes=fmt))
    assert len(got) == len(plain) == 13 and len(piped._downloads) == 2
    for a, b in zip(got, plain, strict=True):
        pairs = zip((a.y, a.u, a.v), (b.y, b.u, b.v), strict=True) if as_planes else [(a, b)]
        assert all(np.array_equal(x, y) for x, y in pairs)


def test_the_command_takes_colour(tmp_path: Path, tiny_weights: Path) -> None:
    from typer.testing import CliRunner

    from tmics_cli.cli import app

    src = make_video(tmp_path / "in.mp4", frames=6, w=48, h=32)
    common = [str(src), "--weights", str(tiny_weights), "--device", "cpu", "--crf", "0"]
    runner = CliRunner()
    device = runner.invoke(app, ["derain", *common, "-o", str(tmp_path / "device.mkv"), "--colour", "device"])
    host = runner.invoke(app, ["derain", *common, "-o", str(tmp_path / "host.mkv"), "--colour", "host"])
    assert device.exit_code == host.exit_code == 0, device.output + host.output
    a = np.stack([f.to_ndarray(format="rgb24") for f in _decoded(tmp_path / "device.mkv")]).astype(int)
    b = np.stack([f.to_ndarray(format="rgb24") for f in _decoded(tmp_path / "host.mkv")]).astype(int)
    assert a.shape == b.shape and np.abs(a - b).mean() < 1
    bad = runner.invoke(app, ["derain", *common, "-o", str(tmp_path / "x.mkv"), "--colour", "gpu"])
    assert bad.exit_code == 2 and "gpu" in bad.output and not (tmp_path / "x.mkv").exists()
