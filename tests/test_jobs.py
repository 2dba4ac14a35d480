"""Resumable segmented derains (tmics_cli.jobs, Derainer) and many inputs (batch, `tmics derain`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner
from videos import (
    audio_packets,
    audio_start,
    audio_times,
    decode,
    joined_ts,
    make_video,
    moving_texture,
)

from tmics_cli.cli import app
from tmics_cli.derain import Derainer, derain_video
from tmics_cli.jobs import Job, JobGone, JobMismatch, job_folder, plan_segments, read_manifest
from tmics_cli.model import build_model, save_model
from tmics_cli.outputs import OutputError
from tmics_cli.video.reader import VideoError, open_source

REPO = Path(__file__).resolve().parent.parent


def gop_video(
    path: Path, frames: int = 30, w: int = 48, h: int = 32, keyint: int = 7, audio: bool = False
) -> Path:
    """H.264 with B-frames and a keyframe every `keyint` frames, so that segments start between keyframes
    and a seek lands on a keyframe whose leading frames come before it; optional AAC audio."""
    import av

    tb = Fraction(1, 12800)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = stream.codec_context.time_base = tb
        stream.options = {"crf": "20", "preset": "fast", "g": str(keyint), "keyint_min": "1", "bf": "3"}
        sound = container.add_stream("aac", rate=16000, layout="mono") if audio else None
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(moving_texture(i, h, w), format="rgb24").reformat(
                format="yuv420p"
            )
            frame.pts, frame.time_base = i * 512, tb
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if sound is not None:
            samples = int(16000 * frames / 25)
            wave = (0.3 * np.sin(np.arange(samples) / 16000 * 2 * np.pi * 440)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(
                    wave[start : start + 1024][None], format="fltp", layout="mono"
                )
                chunk.sample_rate, chunk.pts = 16000, start
                for packet in sound.encode(chunk):
                    container.mux(packet)
            for packet in sound.encode(None):
                container.mux(packet)
    return path


def yuv_frames(path: Path) -> tuple[list[np.ndarray], list[int]]:
    """The decoded planes and timestamps of the first video stream (lossless outputs compare exactly)."""
    import av

    planes, pts = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            planes.append(frame.to_ndarray(format="yuv420p"))
            pts.append(frame.pts)
    return planes, pts


def _same(a: Path, b: Path) -> None:
    fa, pa = yuv_frames(a)
    fb, pb = yuv_frames(b)
    assert len(fa) == len(fb) and pa == pb
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb, strict=True))


def _cli(*args: object):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, result.output.strip().splitlines()


# --- segments -------------------------------------------------------------------------------------------


def test_plan_segments_cover_every_frame_once_with_two_frames_of_context() -> None:
    times = [10 * i for i in range(23)]
    segments = plan_segments(times, 5)
    assert [s.first for s in segments] == [0, 5, 10, 15, 20] and sum(s.count for s in segments) == 23
    assert (segments[0].lo, segments[0].lead, segments[0].hi) == (0, 0, 70)  # frames 0..6 decoded
    assert (segments[1].lo, segments[1].lead, segments[1].hi) == (30, 2, 120)  # frames 3..11
    assert segments[-1].hi is None and segments[-1].count == 3
    assert plan_segments(None, 5)[0].count is None  # no timestamps: one segment of everything


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_segments_derain_to_exactly_the_frames_of_one_pass(
    tmp_path: Path, tiny_weights: Path, suffix: str
) -> None:
    src = gop_video(tmp_path / "in.mp4", audio=True)
    one, cut = tmp_path / f"one{suffix}", tmp_path / f"cut{suffix}"
    derain_video(src, one, weights=tiny_weights, device="cpu", crf=0, segment_frames=1000)
    summary = derain_video(src, cut, weights=tiny_weights, device="cpu", crf=0, segment_frames=4)
    assert summary.segments == 8 and summary.frames == 30
    _same(one, cut)  # no frame repeated or missing, timestamps the input's, pixels bit for bit
    assert audio_packets(cut) == audio_packets(one) == audio_packets(src)  # audio muxed once, whole
    assert not job_folder(cut).exists() and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["in.mp4", one.name, cut.name]
    )


@pytest.mark.parametrize("suffix", [".mkv", ".webm", ".ts", ".mp4", ".mov", ".avi"])
def test_lossy_segments_join_in_every_container_with_the_times_of_one_pass(
    tmp_path: Path, tiny_weights: Path, suffix: str
) -> None:
    """B-frames in the pieces (the default CRF): Matroska stores no decode times, so a piece's first packets
    come back without them; MPEG-TS would shift only the first piece (it starts below zero) and cannot probe
    a piece of 2 frames (the last one here). Each joins to the frames and times of one pass, audio whole."""
    src = gop_video(tmp_path / "in.mp4", audio=True)
    one, cut = tmp_path / f"one{suffix}", tmp_path / f"cut{suffix}"
    derain_video(src, one, weights=tiny_weights, device="cpu", segment_frames=1000)
    summary = derain_video(src, cut, weights=tiny_weights, device="cpu", segment_frames=4)
    assert summary.segments == 8 and summary.frames == 30
    (a, times_a), (b, times_b) = yuv_frames(one), yuv_frames(cut)
    assert len(a) == len(b) == 30 and times_a == times_b
    # lossy pieces differ from one pass a little, a frame out of place by far more
    assert max(np.abs(x.astype(int) - y).mean() for x, y in zip(a, b, strict=True)) < 4
    assert audio_packets(cut) == audio_packets(one) != []
    assert not job_folder(cut).exists()


@pytest.mark.parametrize("variable", [False, True])
def test_avi_segments_join_to_the_frame_numbers_of_one_pass(
    tmp_path: Path, tiny_weights: Path, variable: bool
) -> None:
    """AVI numbers frames: a last piece of one frame reads back as frame 1, and a variable-rate input's
    piece may start on the number the one before ended on; both join as one pass numbers them."""
    steps = [33 if i % 3 else 50 for i in range(25)] if variable else [40] * 25
    src = make_video(tmp_path / "in.mp4", frames=25, pts=[sum(steps[:i]) for i in range(25)])
    one, cut = tmp_path / "one.avi", tmp_path / "cut.avi"
    derain_video(src, one, weights=tiny_weights, device="cpu", segment_frames=1000)
    assert derain_video(src, cut, weights=tiny_weights, device="cpu", segment_frames=4).segments == 7
    assert yuv_frames(cut)[1] == yuv_frames(one)[1] and len(yuv_frames(cut)[1]) == 25


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
def test_an_mpeg_ts_whose_clock_wraps_in_its_first_second_derains_whole_and_in_sync(
    tmp_path: Path, tiny_weights: Path, suffix: str
) -> None:
    """MPEG-TS counts time modulo 2**33 ticks (26.5 h), and libavformat reads a capture begun in the last
    minute before the wrap with negative times. A segment that began there decoded nothing (a seek by time
    landed past the only keyframe: "no video frames", or a crash), MP4 cut the frames before 0 (its edit
    list) and Matroska moved the video alone. Now the video starts at 0 with every frame, the audio as far
    ahead of it as in the input (AAC's priming; WebM's Opus adds its 6.5 ms pre-skip)."""
    begun = 2**33 / 90000 - 0.4  # seconds
    src = make_video(tmp_path / "in.ts", frames=20, time_base=Fraction(1, 90000), audio=True, offset=begun)
    times = decode(src)[2]
    assert times[0] == pytest.approx(-0.4)  # as libavformat reads it
    lead = audio_start(src) - times[0]
    for segment_frames in (1000, 6):
        out = tmp_path / f"out-{segment_frames}{suffix}"
        derain_video(src, out, weights=tiny_weights, device="cpu", segment_frames=segment_frames)
        frames, _, after, _ = decode(out)
        assert len(frames) == 20 and after[-1] - after[0] == pytest.approx(times[-1] - times[0], abs=1e-3)
        assert audio_start(out) - after[0] == pytest.approx(lead, abs=0.01), segment_frames


@pytest.mark.parametrize("suffix", [".mkv", ".mp4", ".webm"])
def test_an_mpeg_ts_whose_clock_starts_again_midway_is_read_on_one_clock(
    tmp_path: Path, tiny_weights: Path, suffix: str
) -> None:
    """Joined recordings (or a spliced broadcast): the times jump back where the second part begins. The
    derain failed there ("Invalid argument": audio muxed back in time) and the frames after the jump were
    stacked a tick apart. Now the second part follows on from the first, the audio moved with its video,
    and cuts count on that one clock."""
    src = joined_ts(tmp_path / "in.ts")
    single = tmp_path / "part0.ts"  # one of the two recordings as it was
    lead = audio_start(single) - decode(single)[2][0]  # the audio's start against the video's, in a part
    source = open_source(src)
    try:
        assert source.frame_index() is None  # no segments: their times would name two places
    finally:
        source.close()
    out = tmp_path / f"out{suffix}"
    derain_video(src, out, weights=tiny_weights, device="cpu")
    times = decode(out)[2]
    steps = np.diff(times)
    assert len(times) == 40 and np.allclose(steps, 0.04, atol=1e-3)
    audio = np.array(audio_times(out))  # sorted
    assert audio[0] - times[0] == pytest.approx(lead, abs=0.01)
    assert audio[-1] > times[-1] - 0.1 and np.diff(audio).max() < 0.1  # both parts, no gap, no pile-up
    cut = tmp_path / f"cut{suffix}"
    derain_video(src, cut, weights=tiny_weights, device="cpu", start=0.5, end=1.2)  # across the jump
    cut_times = decode(cut)[2]
    assert len(cut_times) == 17 and np.allclose(np.diff(cut_times), 0.04, atol=1e-3)
    assert audio_times(cut)[-1] - cut_times[0] == pytest.approx(0.7, abs=0.12)  # its last frame's start


def test_a_cut_of_joined_mpeg_ts_recordings_is_found_on_their_one_clock(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """A cut past the join of two recordings (0.8 s and 2.4 s): the frame index sought it by raw time,
    landed in the second recording at a raw 2.0 s where the cut (2.0 s on the one clock) is its 1.2 s, saw
    no jump from there on, and planned segments of the wrong frames (10 where there are 15)."""
    src = joined_ts(tmp_path / "in.ts", frames=(20, 60), gop=5)
    out, alone = tmp_path / "out.mkv", tmp_path / "alone.mkv"
    derain_video(src, out, weights=tiny_weights, device="cpu", crf=0, start=2.0, end=2.6, segment_frames=4)
    derain_video(tmp_path / "part1.ts", alone, weights=tiny_weights, device="cpu", crf=0, start=1.2, end=1.8)
    frames, _, times, _ = decode(out)
    assert len(times) == 15 and np.allclose(np.diff(times), 0.04, atol=1e-3)
    assert np.array_equal(np.stack(frames), np.stack(decode(alone)[0]))  # the same frames of the recording


def test_an_mpeg_ts_cut_by_start_gives_every_frame_from_there_read_whole_or_indexed(tmp_path: Path) -> None:
    """An MPEG-TS seek by time lands on a frame between keyframes: a reader cut at --start lost the frames
    up to the next keyframe (all of them here from 2.2 s: "no video frames"). Seeks are now checked."""
    src = make_video(tmp_path / "in.ts", frames=60, fps=25, gop=10, time_base=Fraction(1, 90000))
    for start in (0.5, 1.3, 2.2):
        expected = sum(1 for i in range(60) if i / 25 >= start - 1e-6)
        source = open_source(src, start=start)
        try:
            index = source.frame_index()
            assert index is not None and len(index) == expected and sum(1 for _ in source) == expected, start
        finally:
            source.close()


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_mp4_pieces_at_29_97_fps_keep_their_times_to_the_tick(
    tmp_path: Path, tiny_weights: Path, suffix: str
) -> None:
    """A piece starts late: MP4 holds that in an edit list in the movie's timescale, which at the muxer's
    default (ms) cut 8008/30000 s to 7980/30000; at the stream's own it is exact."""
    src = make_video(
        tmp_path / "in.mp4", frames=24, time_base=Fraction(1, 30000), pts=[i * 1001 for i in range(24)]
    )
    one, cut = tmp_path / f"one{suffix}", tmp_path / f"cut{suffix}"
    derain_video(src, one, weights=tiny_weights, device="cpu", segment_frames=1000)
    derain_video(src, cut, weights=tiny_weights, device="cpu", segment_frames=8)
    assert yuv_frames(cut)[1] == yuv_frames(one)[1] == [i * 1001 for i in range(24)]


def test_a_job_names_the_lateness_of_its_mpeg_ts_pieces_and_an_older_one_is_not_resumed(
    tmp_path: Path, tiny_weights: Path
) -> None:
    src = gop_video(tmp_path / "in.mp4")
    derainer = Derainer(weights=tiny_weights, device="cpu", segment_frames=4)
    ts, mkv = derainer.prepare(src, tmp_path / "out.ts"), derainer.prepare(src, tmp_path / "out.mkv")
    assert ts.job.manifest["settings"]["piece_late_s"] == 10
    assert "piece_late_s" not in mkv.job.manifest["settings"]  # as in jobs made before: they still resume
    manifest = json.loads((ts.job.folder / "manifest.json").read_text())
    del manifest["settings"]["piece_late_s"]  # a job begun by a tmics that wrote its pieces on time
    (ts.job.folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(JobMismatch, match="piece_late_s none -> 10"):
        derainer.prepare(src, tmp_path / "out.ts")


def test_an_mpeg_ts_file_too_short_for_ffmpegs_probe_is_read_as_its_name_says(tmp_path: Path) -> None:
    import av

    from tmics_cli.video.reader import open_media

    path = tmp_path / "two.ts"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(np.full((32, 48, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(av.error.FFmpegError):  # what FFmpeg's probe makes of it ("End of file")
        av.open(str(path))
    with open_media(path) as container:
        assert sum(1 for p in container.demux(video=0) if p.size) == 2

    source = open_source(path)  # as an input too
    try:
        assert sum(1 for _ in source) == 2
    finally:
        source.close()
    text = tmp_path / "code.ts"  # TypeScript, not MPEG-TS: the probe's own error is told
    text.write_text("export const x = 1;\n")
    with pytest.raises(VideoError, match="is not a video PyAV can read"):
        open_source(text)


def test_an_mpeg_ts_output_of_two_frames_is_written_and_then_known_whole(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=2)
    out = tmp_path / "out.ts"
    from tmics_cli.video.reader import open_media

    assert derain_video(src, out, weights="light", device="cpu").frames == 2
    with open_media(out) as container:  # (FFmpeg's probe alone cannot tell it is MPEG-TS)
        assert sum(1 for _ in container.decode(video=0)) == 2
    again = Derainer(weights="light", device="cpu").prepare(src, out)  # no --overwrite: whole, so skipped
    assert getattr(again, "status", None) == "skipped"


def test_frames_folder_output_in_segments(tmp_path: Path, tiny_weights: Path) -> None:
    src = gop_video(tmp_path / "in.mp4", frames=12)
    derain_video(src, tmp_path / "one", weights=tiny_weights, device="cpu", segment_frames=100)
    derain_video(src, tmp_path / "cut", weights=tiny_weights, device="cpu", segment_frames=5)
    names = sorted(os.listdir(tmp_path / "cut"))
    assert (
        names == sorted(os.listdir(tmp_path / "one")) and len([n for n in names if n.endswith(".png")]) == 12
    )
    for name in names:
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def _derain_command(src: Path, dst: Path, weights: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "tmics_cli", "derain", str(src), "-o", str(dst), "--weights", str(weights),
        "--device", "cpu", "--crf", "0", "--segment-frames", "3", "--threads", "1", *extra,
    ]  # fmt: skip


def _records(dst: Path) -> int:
    folder = job_folder(dst)
    return len(list(folder.glob("piece-*.json"))) if folder.is_dir() else 0


def test_resume_after_sigkill_at_three_points_gives_the_uninterrupted_frames(
    tmp_path: Path, tiny_weights: Path
) -> None:
    src = gop_video(tmp_path / "in.mp4", frames=60, w=96, h=64, keyint=9, audio=True)
    whole = tmp_path / "whole.mkv"
    derain_video(src, whole, weights=tiny_weights, device="cpu", crf=0, segment_frames=1000)
    dst = tmp_path / "out.mkv"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    kills = 0
    for at in (2, 7, 13):  # of 20 segments
        process = subprocess.Popen(_derain_command(src, dst, tiny_weights), env=env, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while _records(dst) < at and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        assert not dst.exists() or process.returncode == 0
    assert kills >= 2, "the runs ended before they could be killed: the clip is too short for this machine"
    done = _records(dst)
    run = subprocess.run(_derain_command(src, dst, tiny_weights), env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"resuming {dst}: {done} of 20 segments done" in run.stderr
    _same(whole, dst)
    assert audio_packets(dst) == audio_packets(src)
    assert not job_folder(dst).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mkv", "whole.mkv"]  # nothing left


def _half_done(src: Path, dst: Path, weights: Path, **kw: object) -> Job:
    """A job of `dst` with its first segment done, as a run killed after it leaves it."""
    derainer = Derainer(weights=weights, device="cpu", segment_frames=4, **kw)
    prepared = derainer.prepare(src, dst)
    job = prepared.job
    assert job.claim(0)
    from tmics_cli.segments import SegmentRunner

    SegmentRunner(derainer, job, src, prepared.info, prepared.restorer, False, None, 0).one(job.segments[0])
    return job


def test_a_job_made_with_other_settings_is_never_mixed_in(tmp_path: Path, tiny_weights: Path) -> None:
    src = gop_video(tmp_path / "in.mp4", frames=12)
    dst = tmp_path / "out.mp4"
    _half_done(src, dst, tiny_weights)
    with pytest.raises(JobMismatch, match=r"crf 18 -> 0.*1 finished segment is not mixed in.*--overwrite"):
        derain_video(src, dst, weights=tiny_weights, device="cpu", segment_frames=4, crf=0)
    result, lines = _cli("derain", src, "-o", dst, "--weights", tiny_weights, "--device", "cpu", "--crf", "0")
    assert result.exit_code == 2 and len(lines) == 1 and "does not match this run" in lines[0]
    assert len(Job(job_folder(dst), json.loads((job_folder(dst) / "manifest.json").read_text())).done()) == 1
    # the input changed: also refused
    os.utime(src, ns=(1, 1))
    with pytest.raises(JobMismatch, match="the input changed"):
        derain_video(src, dst, weights=tiny_weights, device="cpu", segment_frames=4)
    summary = derain_video(src, dst, weights=tiny_weights, device="cpu", segment_frames=4, overwrite=True)
    assert summary.resumed is None and summary.frames == 12 and not job_folder(dst).exists()


def test_matching_job_resumes_and_says_so(tmp_path: Path, tiny_weights: Path) -> None:
    src = gop_video(tmp_path / "in.mp4", frames=12)
    dst = tmp_path / "out.mp4"
    _half_done(src, dst, tiny_weights, crf=0)
    told = []
    summary = derain_video(
        src,
        dst,
        weights=tiny_weights,
        device="cpu",
        segment_frames=4,
        crf=0,
        on_resume=lambda *a: told.append(a),
    )
    assert told == [(1, 3)] and summary.resumed == (1, 3) and summary.frames == 12
    derain_video(src, tmp_path / "plain.mp4", weights=tiny_weights, device="cpu", crf=0)
    _same(dst, tmp_path / "plain.mp4")


def test_interrupt_keeps_finished_segments_and_says_how_to_resume(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tmics_cli.segments import SegmentRunner

    src = gop_video(tmp_path / "in.mp4", frames=12)
    dst = tmp_path / "out.mp4"
    original = SegmentRunner.one
    calls = []

    def one(self, segment):  # noqa: ANN001
        calls.append(segment.index)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, segment)

    monkeypatch.setattr(SegmentRunner, "one", one)
    result, lines = _cli(
        "derain", src, "-o", dst, "--weights", tiny_weights, "--device", "cpu", "--segment-frames", "4"
    )
    assert result.exit_code == 130
    kept = f"2 of 3 segments of {dst} are kept: run the same command again to resume"
    assert lines[-1] == f"error: interrupted (SIGINT); {kept}"
    assert not dst.exists() and len(list(job_folder(dst).glob("piece-*.json"))) == 2
    assert not [p for p in job_folder(dst).iterdir() if "partial" in p.name]


def test_two_workers_share_a_job_without_doing_a_segment_twice(tmp_path: Path, tiny_weights: Path) -> None:
    from tmics_cli.batch import Target, derain_many

    audits = []

    class Auditing(Derainer):
        def finish(self, job, timings=None):  # noqa: ANN001, ANN202 - reads the job's audit log before the join
            lines = (job.job.folder / "segments.log").read_text().splitlines()
            audits.append([json.loads(line) for line in lines])
            return super().finish(job, timings)

    sources = [gop_video(tmp_path / f"in{i}.mp4", frames=24, w=64, h=48) for i in range(2)]
    derainer = Auditing(weights=tiny_weights, device="cpu", segment_frames=2, crf=0)
    targets = [Target(s, tmp_path / f"{s.stem}.mkv") for s in sources]
    results = list(derain_many(derainer, targets, workers=2))
    assert [r.status for r in results] == ["done", "done"]
    for audit in audits:  # every segment derained exactly once, whichever worker did it
        assert sorted(entry["index"] for entry in audit) == list(range(12))
    for s in sources:
        derain_video(s, tmp_path / f"{s.stem}-one.mkv", weights=tiny_weights, device="cpu", crf=0)
        _same(tmp_path / f"{s.stem}.mkv", tmp_path / f"{s.stem}-one.mkv")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_overwrite_is_refused_while_another_run_works_in_the_job(tmp_path: Path, tiny_weights: Path) -> None:
    """A second run with other weights and --overwrite removed the job folder a live run still worked in;
    the live run went on claiming segments in the new job, and the output mixed both models' segments.
    Now the second run is refused while a live process holds a claim, and a run whose job was replaced
    stops without recording anything in the new one."""
    import socket

    src = gop_video(tmp_path / "in.mp4", frames=8)
    dst = tmp_path / "o.mp4"
    first = Derainer(weights=tiny_weights, device="cpu", segment_frames=4).prepare(src, dst).job
    other = tmp_path / "other.safetensors"
    torch.manual_seed(1)
    save_model(build_model("light", "tiny"), other)
    again = Derainer(weights=other, device="cpu", segment_frames=4, overwrite=True)
    claim = first.folder / "piece-000001.claim"
    claim.write_text(f"{socket.gethostname()} {os.getppid()}\n")  # a live process of this machine holds it
    with pytest.raises(OutputError, match="being derained by another run now"):
        again.prepare(src, dst)
    assert read_manifest(first.folder) == first.manifest
    pid = [sys.executable, "-c", "import os; print(os.getpid())"]
    dead = subprocess.run(pid, capture_output=True, text=True)
    claim.write_text(f"{socket.gethostname()} {dead.stdout.strip()}\n")  # its holder died: a fresh start
    second = again.prepare(src, dst).job
    assert first.gone() and not second.gone() and first.lost(0)
    with pytest.raises(JobGone, match="started afresh by another run"):
        first.claim(0)
    with pytest.raises(JobGone):
        first.finish(0, {"frames": 4})
    assert not list(second.folder.glob("piece-*.json"))  # nothing of the first run recorded in it


def test_a_run_whose_output_another_run_finished_meanwhile_is_skipped(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """Two runs of one command share the job; the one that joins removes the folder. The other then
    failed with "[Errno 2] No such file or directory: ...claim..." (exit 2) for an output made whole."""
    src = gop_video(tmp_path / "in.mp4", frames=8)
    dst = tmp_path / "o.mp4"
    derainer = Derainer(weights=tiny_weights, device="cpu", segment_frames=4)
    late = derainer.prepare(src, dst)
    derain_video(src, dst, weights=tiny_weights, device="cpu", segment_frames=4)  # the other run, whole
    with pytest.raises(JobGone):
        derainer.work(late)
    assert derainer.finished_elsewhere(late) and derainer.skipped(late).status == "skipped"
    assert len(decode(dst)[0]) == 8 and not job_folder(dst).exists()


def test_claims_are_exclusive_and_a_dead_holders_claim_is_taken_over(
    tmp_path: Path, tiny_weights: Path
) -> None:
    src = gop_video(tmp_path / "in.mp4", frames=8)
    prepared = Derainer(weights=tiny_weights, device="cpu", segment_frames=4).prepare(src, tmp_path / "o.mp4")
    job = prepared.job
    claim = job.folder / "piece-000001.claim"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    import socket

    claim.write_text(f"{socket.gethostname()} {os.getppid()}\n")  # a live process of this machine holds it
    assert not job.claim(1)
    claim.write_text(f"{socket.gethostname()} {dead.stdout.strip()}\n")  # one that died
    assert job.claim(1) and claim.read_text().split()[1] == str(os.getpid())
    assert job.claim(0) and not job.claim(0)  # held by this process already


def test_a_claim_of_another_machine_is_taken_over_only_once_it_stops_changing(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tmics_cli.jobs as jobs

    src = gop_video(tmp_path / "in.mp4", frames=8)
    job = Derainer(weights=tiny_weights, device="cpu", segment_frames=4).prepare(src, tmp_path / "o.mp4").job
    claim = job.folder / "piece-000001.claim"
    claim.write_text("other-host 1234 0123456789abcdef boot1-4026531836\n")
    os.utime(claim, ns=(1, 1))  # its clock says 1970: never compared, only whether it changes
    monkeypatch.setattr(jobs, "STALE_SECONDS", 0.3)
    assert not job.claim(1)  # first seen now: alive until it stays unchanged for STALE_SECONDS
    time.sleep(0.15)
    os.utime(claim, ns=(2, 2))  # its holder's heartbeat
    time.sleep(0.2)
    assert not job.claim(1)  # changed since last seen: alive, seen anew
    time.sleep(0.15)
    assert not job.claim(1)  # unchanged for 0.15 s only
    other = Job(job.folder, job.manifest)  # a second worker judging the same claim
    assert not other.claim(1)
    time.sleep(0.35)
    marker = job.folder / "piece-000001.takeover-0123456789abcdef"
    marker.write_text("")  # the second worker is taking it over: this one must not
    assert not job.claim(1) and claim.read_text().startswith("other-host")
    marker.unlink()
    assert job.claim(1)
    host, pid, token, machine = claim.read_text().split()
    assert (pid, len(token), machine) == (str(os.getpid()), 16, jobs._MACHINE) and not marker.exists()
    assert not other.claim(1)  # the new holder is this process, alive
    job.release(1)
    assert not claim.exists()


def test_an_empty_claim_and_a_left_takeover_file_are_stale_once_they_settle(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tmics_cli.jobs as jobs

    src = gop_video(tmp_path / "in.mp4", frames=8)
    job = Derainer(weights=tiny_weights, device="cpu", segment_frames=4).prepare(src, tmp_path / "o.mp4").job
    monkeypatch.setattr(jobs, "SETTLE_SECONDS", 0.2)
    claim = job.folder / "piece-000000.claim"
    claim.write_text("")  # its maker was killed between creating and writing it
    assert not job.claim(0)  # might still be being written
    time.sleep(0.25)
    marker = job.folder / "piece-000000.takeover-empty"
    marker.write_text("")  # a worker killed while taking it over left this
    assert not job.claim(0) and not job.claim(0)
    time.sleep(0.25)
    assert not job.claim(0) and not marker.exists()  # the left takeover file settled: removed
    assert job.claim(0) and claim.read_text().split()[1] == str(os.getpid())
    job.release(0)


def test_claims_of_old_tmics_elsewhere_are_never_judged_and_reused_pids_here_are(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import tmics_cli.jobs as jobs

    src = gop_video(tmp_path / "in.mp4", frames=8)
    job = Derainer(weights=tiny_weights, device="cpu", segment_frames=4).prepare(src, tmp_path / "o.mp4").job
    monkeypatch.setattr(jobs, "STALE_SECONDS", 0.1)
    old = job.folder / "piece-000000.claim"
    old.write_text("other-host 1234\n")  # a tmics before heartbeats: it never touches its claims
    reused = job.folder / "piece-000001.claim"
    reused.write_text(
        f"{socket.gethostname()} {os.getppid()} 0123456789abcdef {jobs._MACHINE}\n"
    )  # live, silent
    assert not job.claim(0) and not job.claim(1)
    time.sleep(0.15)
    with pytest.warns(UserWarning, match="without heartbeats.*remove the file"):
        assert not job.claim(0)  # never judged by another machine; said once it has been silent
    assert job.claim(1)  # a live pid whose claim went silent: another process by now
    assert sorted(p.name for p in job.folder.glob("piece-*.claim*")) == [old.name, reused.name]


def test_a_claim_taken_over_is_neither_touched_nor_removed_and_its_segment_is_dropped(
    tmp_path: Path, tiny_weights: Path
) -> None:
    from tmics_cli.jobs import HEARTBEAT
    from tmics_cli.segments import SegmentRunner

    src = gop_video(tmp_path / "in.mp4", frames=8)
    derainer = Derainer(weights=tiny_weights, device="cpu", segment_frames=4)
    prepared = derainer.prepare(src, tmp_path / "o.mp4")
    job = prepared.job
    assert job.claim(0) and job.holds(0) and not job.lost(0)
    claim = job.folder / "piece-000000.claim"
    claim.write_text("taker 42 fedcba9876543210 boot2-1\n")  # judged stale elsewhere and taken over
    os.utime(claim, ns=(1, 1))
    assert job.lost(0) and not job.holds(0)
    HEARTBEAT.beat()
    time.sleep(0.2)
    assert claim.stat().st_mtime_ns == 1  # the taker's claim is not kept alive by this process
    runner = SegmentRunner(derainer, job, src, prepared.info, prepared.restorer, False, None, 0)
    runner.one(job.segments[0])
    assert not job.is_done(0) and not job.piece(0).exists()  # the taker's piece is the one to keep
    assert claim.read_text().startswith("taker")  # and its claim is left alone
    assert runner.frames == 0


def test_pids_are_asked_about_only_in_this_pid_namespace_and_unknown_own_claims_are_judged(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import tmics_cli.jobs as jobs

    src = gop_video(tmp_path / "in.mp4", frames=8)
    job = Derainer(weights=tiny_weights, device="cpu", segment_frames=4).prepare(src, tmp_path / "o.mp4").job
    monkeypatch.setattr(jobs, "STALE_SECONDS", 0.2)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = socket.gethostname()
    # a container with this host name: its pid means nothing here, however dead it looks
    other = job.folder / "piece-000000.claim"
    other.write_text(f"{host} {dead.stdout.strip()} 00000000000000aa another-namespace\n")
    # this pid, a token this process does not hold (a link reported failed that was made)
    unknown = job.folder / "piece-000001.claim"
    unknown.write_text(f"{host} {os.getpid()} 00000000000000bb {jobs._MACHINE}\n")
    assert not job.claim(0) and not job.claim(1)
    time.sleep(0.25)
    assert job.claim(0) and job.claim(1)  # both judged by their silence instead
    job.release(0)
    job.release(1)


def test_a_claim_link_reported_failed_but_made_is_the_claimers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import tmics_cli.jobs as jobs

    real_link = os.link

    def flaky(src: str, dst: str) -> None:  # a network file system's retried LINK: made, then "failed"
        real_link(src, dst)
        raise OSError(errno.EIO, "retried")

    monkeypatch.setattr(os, "link", flaky)
    claim = tmp_path / "piece-000000.claim"
    assert jobs._create_claim(claim, "h 1 t m\n") and claim.read_text() == "h 1 t m\n"
    assert not jobs._create_claim(claim, "h 2 u m\n")  # there is one: not ours
    assert sorted(p.name for p in tmp_path.iterdir()) == [claim.name]  # no temporary left


def test_a_claim_on_a_full_disk_fails_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import tmics_cli.jobs as jobs

    real_write = Path.write_text

    def full(self: Path, text: str, *args: object, **kwargs: object) -> int:
        real_write(self, text[:1])  # part of it, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError, match="No space"):
        jobs._create_claim(tmp_path / "piece-000000.claim", "h 1 t m\n")
    assert list(tmp_path.iterdir()) == []


def test_a_segment_done_meanwhile_is_left_alone_and_a_piece_made_twice_is_replaced(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tmics_cli.segments import SegmentRunner

    src = gop_video(tmp_path / "in.mp4", frames=8)
    derainer = Derainer(weights=tiny_weights, device="cpu", segment_frames=4, crf=0)
    prepared = derainer.prepare(src, tmp_path / "o.mkv")
    job = prepared.job
    runner = SegmentRunner(derainer, job, src, prepared.info, prepared.restorer, False, None, 0)
    runner.one(job.segments[0])
    first = job.piece(0).stat()
    runner.one(job.segments[0])  # done meanwhile (by another worker): not derained again
    assert job.piece(0).stat().st_mtime_ns == first.st_mtime_ns and runner.frames == 4
    # another worker's piece lands after this one cleared the way and before it commits its own
    job._record(0).unlink()
    monkeypatch.setattr(job, "pending_piece", lambda index: None)
    runner.one(job.segments[0])
    assert job.is_done(0) and runner.frames == 8  # replaced, not refused
    assert sorted(p.name for p in job.folder.glob("piece-000000*")) == [
        "piece-000000.json",
        "piece-000000.mkv",
    ]


def test_held_claims_are_touched_by_a_heartbeat_and_dropped_when_released(
    tmp_path: Path, tiny_weights: Path
) -> None:
    from tmics_cli.jobs import HEARTBEAT

    src = gop_video(tmp_path / "in.mp4", frames=8)
    job = Derainer(weights=tiny_weights, device="cpu", segment_frames=4).prepare(src, tmp_path / "o.mp4").job
    assert job.claim(0)
    claim = job.folder / "piece-000000.claim"
    assert claim in HEARTBEAT.held()
    os.utime(claim, ns=(1, 1))
    HEARTBEAT.beat()
    deadline = time.monotonic() + 5
    while claim.stat().st_mtime_ns == 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert claim.stat().st_mtime_ns > 1, "the heartbeat did not touch the held claim"
    job.release(0)
    assert claim not in HEARTBEAT.held() and not claim.exists()


def test_a_run_waits_out_a_silent_claim_of_another_machine_then_finishes_the_job(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tmics_cli.jobs as jobs

    src = gop_video(tmp_path / "in.mp4", frames=12)
    dst = tmp_path / "out.mkv"
    derainer = Derainer(weights=tiny_weights, device="cpu", segment_frames=4, crf=0)
    prepared = derainer.prepare(src, dst)
    (prepared.job.folder / "piece-000001.claim").write_text("a-host-that-died 99 feedfacefeedface boot3-1\n")
    monkeypatch.setattr(jobs, "STALE_SECONDS", 0.5)
    began = time.monotonic()
    derainer.work(prepared)
    derainer.finish(prepared)
    assert time.monotonic() - began >= 0.5  # segment 1 was left to its holder until its claim went silent
    derain_video(src, tmp_path / "whole.mkv", weights=tiny_weights, device="cpu", crf=0)
    _same(tmp_path / "whole.mkv", dst)
    assert not job_folder(dst).exists()


# --- many inputs through the command ---------------------------------------------------------------------


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.name.startswith("."))


def test_many_inputs_mirrored_skipped_when_whole_and_a_bad_one_among_them(
    tmp_path: Path, tiny_weights: Path
) -> None:
    footage = tmp_path / "footage"
    (footage / "day2").mkdir(parents=True)
    make_video(footage / "a.mp4", frames=6)
    make_video(footage / "day2" / "b.mkv", frames=5)
    frames = footage / "day2" / "shots"
    frames.mkdir()
    import cv2

    for i in range(4):
        cv2.imwrite(str(frames / f"{i}.png"), moving_texture(i, 32, 48))
    common = ("--weights", tiny_weights, "--device", "cpu", "--progress-every", "0")
    result, lines = _cli(
        "derain", footage, "-r", "-o", tmp_path / "clean", *common, "--json", tmp_path / "s.json"
    )
    assert result.exit_code == 0, result.output
    assert _tree(tmp_path / "clean") == ["a.mp4", "day2", "day2/b.mkv", "day2/shots"] + [
        f"day2/shots/{n:06d}.png" for n in range(1, 5)
    ]
    assert any(line.startswith("progress: ") for line in lines)  # plain progress: not a terminal
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["schema"] == 1 and summary["ok"] is True
    assert [(Path(i["input"]).name, i["result"], i["frames"]) for i in summary["inputs"]] == [
        ("a.mp4", "done", 6), ("b.mkv", "done", 5), ("shots", "done", 4)
    ]  # fmt: skip
    assert {"decode", "model", "encode", "join"} <= set(summary["inputs"][0]["timings"])
    # the same command again: every output is whole, so every input is skipped
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "clean").rglob("*")}
    result, lines = _cli("derain", footage, "-r", "-o", tmp_path / "clean", *common)
    assert result.exit_code == 0 and sum("skipped" in line for line in lines) >= 3
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "clean").rglob("*")}
    # a damaged input among good ones: reported, the others go on, exit 2 naming it
    (footage / "broken.mp4").write_bytes(b"not a video")
    result, lines = _cli("derain", footage, *common)
    assert result.exit_code == 2
    assert lines[-1] == f"error: 1 of 2 inputs failed: {footage / 'broken.mp4'}"
    assert (footage / "a.derained.mp4").exists() and not (footage / "broken.derained.mp4").exists()
    named = [line for line in lines if line.startswith(f"error: {footage / 'broken.mp4'}")]
    assert len(named) == 1 and named[0].count(str(footage / "broken.mp4")) == 1, lines  # named once


def test_fail_fast_stops_at_the_first_bad_input(tmp_path: Path, tiny_weights: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"junk")
    make_video(tmp_path / "b.mp4", frames=4)
    result, lines = _cli(
        "derain",
        tmp_path / "a.mp4",
        tmp_path / "b.mp4",
        "--weights",
        tiny_weights,
        "--device",
        "cpu",
        "--fail-fast",
    )
    assert result.exit_code == 2 and not (tmp_path / "b.derained.mp4").exists()


def test_log_appends_json_lines_per_event(tmp_path: Path, tiny_weights: Path) -> None:
    make_video(tmp_path / "a.mp4", frames=4)
    log = tmp_path / "job.log"
    for _ in range(2):
        result, _ = _cli(
            "derain", tmp_path / "a.mp4", "--weights", tiny_weights, "--device", "cpu", "--log", log, "-q"
        )
        assert result.exit_code == 0, result.output
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events.count("run_started") == 2 and events.count("finished") == 2
    assert events[:2] == ["run_started", "input_started"] and "input_finished" in events
