"""Damaged inputs are reported (a warning, or with --strict an error), never silently accepted; good inputs
give no warning at all; a pipe is refused before anything is read from it."""

import os
import sys
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.videos import decode, joined_ts, make_video, moving_texture
from tmics_cli.cli import app
from tmics_cli.video.images import image_damage
from tmics_cli.video.reader import (
    MAX_FRAME_REPORTS,
    VideoError,
    VideoWarning,
    check_input,
    open_source,
)

ASSETS = Path(__file__).resolve().parent.parent / "tmics_cli" / "assets"
posix_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
linux_fds = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")


def _derain(src: Path | str, out: Path, weights: Path, *extra: str):
    args = ["derain", str(src), "-o", str(out), "--weights", str(weights), "--device", "cpu", "-q", *extra]
    return CliRunner().invoke(app, args)


def _lines(result, prefix: str) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith(prefix)]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


def _faststart(src: Path, dst: Path) -> Path:
    """`src` remuxed with the index (moov) first, as cameras and web tools write mp4: cut short, such a
    file still opens, and its index still states every frame."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "+faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dst


def _truncated_clip(tmp_path: Path) -> Path:
    full = _faststart(make_video(tmp_path / "full.mp4", frames=24), tmp_path / "fs.mp4")
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    return cut


def _read_all(path: Path, **kw) -> tuple[int, list[str]]:
    """(frames decoded, VideoWarning messages) for one pass over `path`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = open_source(path, **kw)
        try:
            count = sum(1 for _ in source)
        finally:
            source.close()
    return count, [str(w.message) for w in caught if issubclass(w.category, VideoWarning)]


def _frames_folder(folder: Path, count: int = 6, suffix: str = ".jpg") -> Path:
    folder.mkdir()
    for i in range(count):
        cv2.imwrite(str(folder / f"{i + 1:06d}{suffix}"), moving_texture(i, 48, 64)[..., ::-1])
    return folder


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# --- a truncated video ---


def test_truncated_video_warns_with_the_frame_counts(tmp_path: Path, tiny_weights: Path) -> None:
    src = _truncated_clip(tmp_path)
    out = tmp_path / "out.mp4"
    result = _derain(src, out, tiny_weights)
    assert result.exit_code == 0, result.output
    kept = len(decode(out)[0])
    assert 0 < kept < 24
    warned = _lines(result, "warning:")
    assert warned == [
        f"warning: {src}: the video stops after {kept} of 24 frames (the file is truncated or damaged)"
    ], result.output


def test_truncated_video_with_strict_fails_and_leaves_no_output(tmp_path: Path, tiny_weights: Path) -> None:
    src = _truncated_clip(tmp_path)
    out = tmp_path / "out.mp4"
    result = _derain(src, out, tiny_weights, "--strict")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith(f"error: {src}: the video stops after "), result.output
    assert "of 24 frames" in lines[0]
    assert not out.exists() and _leftovers(tmp_path) == []


def test_truncated_video_without_a_frame_count_is_caught_by_its_duration(tmp_path: Path) -> None:
    full = make_video(tmp_path / "full.mkv", frames=48)  # Matroska states a duration, not a count
    data = full.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    count, messages = _read_all(cut)
    assert 0 < count < 40
    assert len(messages) == 1 and f"stops after {count} of about 48 frames" in messages[0], messages
    with pytest.raises(VideoError, match="truncated or damaged"):
        _read_all(cut, strict=True)


def test_damaged_frames_are_named_and_counted(tmp_path: Path) -> None:
    src = make_video(tmp_path / "good.mp4", frames=48, w=160, h=120)
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(1)
    start = data.find(b"mdat") + 5000
    for at in rng.integers(start, len(data) - 3000, 40):
        data[at] ^= 0xFF  # bit rot in the coded frames
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    count, messages = _read_all(bad)
    assert count == 48  # decoding goes on
    named = [m for m in messages if m.startswith(f"{bad}: frame ") and "damaged" in m]
    assert 1 <= len(named) <= MAX_FRAME_REPORTS, messages
    if len(messages) > len(named):  # more than the named ones: one closing line counts them all
        assert len(messages) == len(named) + 1 and "damaged frames in all" in messages[-1]
    with pytest.raises(VideoError, match=r"bad\.mp4: frame \d+ .*damaged"):
        _read_all(bad, strict=True)


def test_a_join_of_mpeg_ts_recordings_is_not_damage_but_a_packet_lost_in_one_is(tmp_path: Path) -> None:
    """`cat a.ts b.ts`: each stream's packet count (the TS continuity counter) breaks where b begins, so the
    demuxer flags a's last video packet corrupt, whole as it is. That was told as a damaged frame, and
    --strict refused every such file. A video packet lost inside a recording is still damage."""
    src = joined_ts(tmp_path / "in.ts")
    assert _read_all(src, strict=True) == (40, [])
    data = src.read_bytes()
    packets = [data[at : at + 188] for at in range(0, len(data), 188)]
    pids = [(p[1] & 0x1F) << 8 | p[2] for p in packets]
    video = max(set(pids), key=pids.count)  # the video's packets are most of the file
    inner = [i for i, p in enumerate(packets) if pids[i] == video and not p[1] & 0x40]  # mid-frame
    lost = inner[len(inner) // 4]  # in the first recording, far from the join
    bad = tmp_path / "lost.ts"
    bad.write_bytes(b"".join(p for i, p in enumerate(packets) if i != lost))
    count, messages = _read_all(bad)
    assert count == 40 and messages and all(m.startswith(f"{bad}: frame ") for m in messages), messages
    assert "damaged (the demuxer flagged its data corrupt)" in messages[0]  # (the decoder may add its own)
    with pytest.raises(VideoError, match="demuxer flagged"):
        _read_all(bad, strict=True)


# --- a frame folder with a truncated JPEG ---


def test_truncated_jpeg_warns_naming_the_file(tmp_path: Path, tiny_weights: Path) -> None:
    folder = _frames_folder(tmp_path / "frames")
    _truncate(folder / "000004.jpg")
    out = tmp_path / "out.mp4"
    result = _derain(folder, out, tiny_weights)
    assert result.exit_code == 0, result.output
    assert _lines(result, "warning:") == [
        f"warning: {folder / '000004.jpg'} (frame 4): truncated JPEG, decoded with missing data"
    ], result.output
    assert len(decode(out)[0]) == 6


def test_truncated_jpeg_with_strict_fails_and_leaves_no_output(tmp_path: Path, tiny_weights: Path) -> None:
    folder = _frames_folder(tmp_path / "frames")
    _truncate(folder / "000005.jpg")
    out = tmp_path / "out.mp4"
    result = _derain(folder, out, tiny_weights, "--strict")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "000005.jpg (frame 5)" in lines[0]
    assert "truncated JPEG" in lines[0]
    assert not out.exists() and _leftovers(tmp_path) == []


def test_first_frame_damage_is_told_once(tmp_path: Path) -> None:
    folder = _frames_folder(tmp_path / "frames", count=3)
    _truncate(folder / "000001.jpg")  # read when the folder is opened (for its size) and not again
    count, messages = _read_all(folder)
    assert count == 3
    assert messages == [f"{folder / '000001.jpg'} (frame 1): truncated JPEG, decoded with missing data"]


def test_truncated_png_is_an_error_that_says_why(tmp_path: Path, tiny_weights: Path) -> None:
    folder = _frames_folder(tmp_path / "frames", count=5, suffix=".png")
    _truncate(folder / "000003.png")  # OpenCV cannot decode it at all
    result = _derain(folder, tmp_path / "out.mp4", tiny_weights)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "000003.png" in lines[0] and "truncated PNG" in lines[0]


def test_image_structure_check(tmp_path: Path) -> None:
    image = moving_texture(0, 48, 64)[..., ::-1]
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    png = cv2.imencode(".png", image)[1].tobytes()
    thumb = cv2.imencode(".jpg", image[::8, ::8])[1].tobytes()
    exif = b"Exif\0\0" + thumb  # a thumbnail inside APP1: its end marker is not the image's
    with_thumb = jpeg[:2] + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif + jpeg[2:]
    cases = {
        "good.jpg": (jpeg, None),
        "good.png": (png, None),
        "trailer.jpg": (jpeg + b"camera data after the image" * 10, None),
        "thumb.jpg": (with_thumb, None),
        "cut.jpg": (jpeg[: len(jpeg) // 2], "truncated JPEG"),
        "cut-eoi.jpg": (jpeg[:-2], "truncated JPEG"),
        "cut-thumb.jpg": (with_thumb[: len(with_thumb) - len(jpeg) // 3], "truncated JPEG"),
        "cut.png": (png[: len(png) // 2], "truncated PNG"),
        "cut-iend.png": (png[:-12], "truncated PNG"),
    }
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert image_damage(tmp_path / name) == expected, name
    assert cv2.imread(str(tmp_path / "thumb.jpg")).shape == (48, 64, 3)  # the decoder reads it too


def test_benchmark_warns_about_a_damaged_frame_and_strict_stops(tmp_path: Path) -> None:
    root = tmp_path / "set"
    for part in ("rain", "gt"):
        (root / part).mkdir(parents=True)
        for i in range(5):
            cv2.imwrite(str(root / part / f"{i + 1}.jpg"), moving_texture(i, 40, 48)[..., ::-1])
    _truncate(root / "rain" / "3.jpg", keep=0.8)  # past the headers of these small images
    runner = CliRunner()
    result = runner.invoke(app, ["benchmark", str(root), "-m", "input", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    warned = _lines(result, "warning:")
    assert warned == [f"warning: {root / 'rain' / '3.jpg'}: truncated JPEG, decoded with missing data"]
    result = runner.invoke(app, ["benchmark", str(root), "-m", "input", "--device", "cpu", "--strict"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and lines[-1].startswith("error: ") and "3.jpg" in lines[-1], result.output


# --- good inputs: no false alarm ---


def test_good_clips_and_cuts_of_them_give_no_warning(tmp_path: Path, tiny_weights: Path) -> None:
    clips = {
        "plain": make_video(tmp_path / "plain.mp4", frames=8),
        "cut": make_video(tmp_path / "long.mp4", frames=20, audio=True),
        "vfr": make_video(tmp_path / "vfr.mp4", pts=[0, 40, 80, 200, 230, 400, 440, 1000]),
    }
    for name, src in clips.items():
        cut = ["--start", "0.2", "--end", "0.48"] if name == "cut" else []
        out = tmp_path / f"out-{name}.mp4"
        result = _derain(src, out, tiny_weights, "--strict", *cut)
        assert result.exit_code == 0, (name, result.output)
        assert _lines(result, "warning:") == _lines(result, "error:") == [], (name, result.output)
        assert len(decode(out)[0]) == {"plain": 8, "cut": 7, "vfr": 8}[name]


CONTAINERS = (".mp4", ".mkv", ".mov", ".avi", ".ts")
CUTS = ((None, None), (0.2, None), (None, 0.5), (0.2, 0.5), (0.1, 100.0), (0.5, 0.9))


@pytest.mark.parametrize("suffix", CONTAINERS)
def test_no_false_alarm_across_containers_rates_and_cuts(tmp_path: Path, suffix: str) -> None:
    made = [
        make_video(tmp_path / f"plain{suffix}", frames=24),
        make_video(tmp_path / f"audio{suffix}", frames=24, audio=True),
        make_video(tmp_path / f"vfr{suffix}", pts=[0, 40, 80, 200, 230, 400, 440, 1000]),
        make_video(tmp_path / f"vfr-audio{suffix}", pts=[0, 40, 120, 160, 200, 320], audio=True),
        make_video(tmp_path / f"late{suffix}", frames=20, offset=10.0),
        make_video(tmp_path / f"one{suffix}", frames=1),
    ]
    for src in made:
        for start, end in CUTS:
            try:
                count, messages = _read_all(src, start=start, end=end, strict=True)
            except VideoError as exc:
                # a cut that holds no frame (past the end; AVI: before a late start), not an alarm
                assert "has no video frames" in str(exc), (src.name, start, end, exc)
                continue
            assert count > 0 and messages == [], (src.name, start, end, messages)


@pytest.mark.parametrize("name", ["sample-clean.mp4", "sample-rain.mp4"])
def test_shipped_samples_give_no_warning(name: str) -> None:
    for cut in ({}, {"start": 0.5, "end": 1.5}, {"end": 10.0}):
        count, messages = _read_all(ASSETS / name, strict=True, **cut)
        assert count > 0 and messages == [], (cut, messages)
    assert _read_all(ASSETS / name)[0] == 60


# --- pipes and stdin ---


@posix_fifo
def test_a_fifo_is_refused_without_being_opened(tmp_path: Path, tiny_weights: Path) -> None:
    fifo = tmp_path / "in.mp4"
    os.mkfifo(fifo)
    # should tmics open the FIFO after all, this writer lets the open return (at EOF) instead of hanging
    writer = threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True)
    writer.start()
    try:
        out = tmp_path / "out.mp4"
        result = _derain(fifo, out, tiny_weights)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2, result.output
        assert lines == [
            f"error: cannot read video from a pipe ({fifo}): tmics needs a file it can seek in; "
            "save it to a file first"
        ]
        assert not out.exists() and _leftovers(tmp_path) == []
        assert writer.is_alive()  # still waiting for a reader: nothing opened the FIFO
    finally:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # release the writer
        writer.join(5)
        os.close(fd)


@posix_fifo
def test_dash_reads_no_pipe(tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out.mp4"
    result = _derain("-", out, tiny_weights)  # the runner's stdin is no file descriptor at all
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: cannot read video from stdin") and "does not exist" not in lines[0]
    assert not out.exists()
    read, write = os.pipe()
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        monkeypatch.setattr(sys, "stdin", pipe)
        with pytest.raises(VideoError, match=r"cannot read video from a pipe \(stdin\): tmics needs a file"):
            check_input("-")


@linux_fds
def test_dash_and_dev_stdin_redirected_from_a_file_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    src = make_video(tmp_path / "in.mp4", frames=5)
    with open(src, "rb") as file:
        monkeypatch.setattr(sys, "stdin", file)
        assert check_input("-") == src.resolve()  # `tmics derain - < in.mp4`: the file itself
    saved = os.dup(0)
    try:
        read, write = os.pipe()
        os.dup2(read, 0)  # `... | tmics derain /dev/stdin`
        os.close(read)
        os.close(write)
        with pytest.raises(VideoError, match=r"cannot read video from a pipe \(/dev/stdin\)"):
            check_input("/dev/stdin")
        with open(src, "rb") as file:
            os.dup2(file.fileno(), 0)  # `tmics derain /dev/stdin < in.mp4`
        assert _read_all(Path("/dev/stdin")) == (5, [])
    finally:
        os.dup2(saved, 0)
        os.close(saved)


def test_library_calls_warn_by_default_and_raise_when_strict(tmp_path: Path, tiny_weights: Path) -> None:
    from tmics_cli import iter_derained

    src = _truncated_clip(tmp_path)
    with pytest.warns(VideoWarning, match=r"the video stops after \d+ of 24 frames"):
        frames = list(iter_derained(src, weights=tiny_weights, device="cpu"))
    assert 0 < len(frames) < 24
    with pytest.raises(VideoError, match=r"stops after \d+ of 24 frames"):
        list(iter_derained(src, weights=tiny_weights, device="cpu", strict=True))
    with pytest.raises(VideoError, match="stops after"):  # --rain auto reads the first frames first
        list(iter_derained(src, rain="auto", device="cpu", strict=True))


def test_strict_is_in_the_help() -> None:
    result = CliRunner().invoke(app, ["derain", "--help"])
    assert result.exit_code == 0 and "--strict" in result.output and "damaged" in result.output


def test_libjpeg_says_nothing_of_a_truncated_frame_tmics_warns_of(tmp_path: Path) -> None:
    """libjpeg printed "Premature end of JPEG file" to stderr beside tmics' own warning of the frame."""
    import subprocess
    import sys

    import cv2

    image = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    (tmp_path / "cut.jpg").write_bytes(data.tobytes()[: len(data) // 2])
    code = (
        "import sys; from pathlib import Path; from tmics_cli.video.images import read_rgb; "
        f"rgb, problem = read_rgb(Path({str(tmp_path / 'cut.jpg')!r})); print(problem, rgb is None); "
        "print('after', file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "truncated JPEG False" and done.stderr == "after\n", done.stderr
