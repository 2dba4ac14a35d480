"""tmics_cli.report: the progress lines, summary, JSON summary and log of a derain job, on a driven clock."""

import datetime
import hashlib
import io
import json
import re
import threading
from pathlib import Path

import pytest
from rich.console import Console

from tmics_cli import __version__
from tmics_cli.outputs import OutputError
from tmics_cli.report import InputResult, JobReport, describe_sizes, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _console(terminal: bool = False) -> Console:
    return Console(file=io.StringIO(), force_terminal=terminal, width=200)


def _lines(console: Console) -> list[str]:
    return console.file.getvalue().splitlines()


def _report(console: Console, clock: Clock, **kwargs) -> JobReport:
    return JobReport(console, clock=clock, **kwargs)


def _start(report: JobReport, frames=(1000,), sizes=((640, 480),), sha256="ab" * 32) -> None:
    report.run_started(
        "cuda:0", "fp16", Path("w/tmics-light.safetensors"), frames=frames, sizes=sizes, sha256=sha256
    )


def test_plain_progress_lines_come_every_progress_every_seconds() -> None:
    console, clock = _console(), Clock()
    report = _report(console, clock, progress_every=30)
    _start(report)
    report.input_started("in/clip01.mp4", "out/clip01.mp4", 1000)
    seen = []
    for _ in range(9):  # 100 frames every 10 s: 10 fps
        clock.now += 10
        report.frames_done(100)
        seen.append([line for line in _lines(console) if line.startswith("progress:")])
    assert [len(s) for s in seen] == [0, 0, 1, 1, 1, 2, 2, 2, 3]  # at 30, 60 and 90 s, not between
    assert seen[-1] == [
        "progress: 300 / 1,000 frames (30.0%), 10.0 fps, ETA 1 min 10 s, clip01.mp4",
        "progress: 600 / 1,000 frames (60.0%), 10.0 fps, ETA 40 s, clip01.mp4",
        "progress: 900 / 1,000 frames (90.0%), 10.0 fps, ETA 10 s, clip01.mp4",
    ]


def test_progress_every_zero_gives_a_line_per_update() -> None:
    console, clock = _console(), Clock()
    report = _report(console, clock, progress_every=0)
    _start(report, frames=(4,))
    report.input_started("clip.mp4", "out.mp4", 4)
    for _ in range(4):
        clock.now += 1
        report.frames_done()
    progress = [line for line in _lines(console) if line.startswith("progress:")]
    assert progress[0] == "progress: 1 / 4 frames (25.0%), 1.0 fps, ETA 3.0 s, clip.mp4"
    assert len(progress) == 4
    assert progress[-1] == "progress: 4 / 4 frames (100.0%), 1.0 fps, clip.mp4"  # nothing left: no ETA


def test_no_eta_before_there_is_a_rate() -> None:
    console, clock = _console(), Clock()
    report = _report(console, clock, progress_every=0)
    _start(report, frames=(100,))
    report.input_started("clip.mp4", "out.mp4", 100, resumed=(1, 2))
    report.frames_done(10)  # derained, but in no measurable time: no rate yet
    assert _lines(console)[-1] == "progress: 10 / 100 frames (10.0%), clip.mp4"
    clock.now += 5
    report.frames_done(40, earlier=True)  # an earlier run's frames: done, but no speed
    assert report.rate() == pytest.approx(2.0)  # 10 derained frames in 5 s; the 40 do not make it faster
    assert _lines(console)[-1] == "progress: 50 / 100 frames (50.0%), 2.0 fps, ETA 25 s, clip.mp4"


def test_no_rate_from_an_earlier_runs_frames_alone() -> None:
    console, clock = _console(), Clock()
    report = _report(console, clock, progress_every=0)
    _start(report, frames=(100,))
    report.input_started("clip.mp4", "out.mp4", 100, resumed=(1, 2))
    clock.now += 5
    report.frames_done(50, earlier=True)
    assert report.rate() is None and report.eta() is None
    assert _lines(console)[-1] == "progress: 50 / 100 frames (50.0%), clip.mp4"


def test_unknown_totals_show_frames_done_without_percentage_or_eta() -> None:
    console, clock = _console(), Clock()
    report = _report(console, clock, progress_every=0)
    _start(report, frames=(100, None))
    assert _lines(console) == []  # the run line waits for the first input, so a refused one says only why
    report.input_started("clip.mp4", "out.mp4", None)
    assert "frames unknown" in _lines(console)[0]
    clock.now += 10
    report.frames_done(1200)
    assert _lines(console)[-1] == "progress: 1,200 frames, 120.0 fps, clip.mp4"
    assert report.eta() is None


def test_quiet_prints_errors_warnings_and_the_summary_only() -> None:
    console, clock = _console(), Clock()
    report = _report(console, clock, progress_every=0, quiet=True)
    _start(report, frames=(10, 10))
    report.estimate(5, 1.0)
    report.input_started("a.mp4", "a-out.mp4", 10, resumed=(1, 3), note="rain auto: light")
    clock.now += 1
    report.frames_done(10)
    report.warning("a.mp4", "a.mp4: frame 3 is damaged")
    report.input_finished(InputResult("a.mp4", "a-out.mp4", "done", 10, 1.0))
    report.input_started("b.mp4", "b-out.mp4", 10)
    report.input_finished(InputResult("b.mp4", "b-out.mp4", "failed", 0, 0.5, error="cannot decode"))
    report.finish()
    lines = _lines(console)
    assert not [line for line in lines if re.match(r"(progress|run|estimated|resuming|started|done)\b", line)]
    assert "rain auto: light" not in lines
    assert lines[:2] == ["warning: a.mp4: frame 3 is damaged", "error: b.mp4: cannot decode"]
    assert lines[2].split() == ["input", "frames", "time", "fps", "result"]
    assert lines[-1].startswith("2 inputs: 1 done, 1 failed;")


def test_quiet_and_a_terminal_show_no_bar_and_no_progress_lines() -> None:
    console, clock = _console(terminal=True), Clock()
    report = _report(console, clock, progress_every=0, quiet=True)
    _start(report, frames=(10,))
    report.input_started("a.mp4", "a-out.mp4", 10)
    clock.now += 1
    report.frames_done(10)
    report.input_finished(InputResult("a.mp4", "a-out.mp4", "done", 10, 1.0))
    report.finish()
    assert console.file.getvalue().splitlines() == [
        "10 frames in 1.0 s (10.00 fps) on cuda:0, fp16, weights tmics-light.safetensors -> a-out.mp4"
    ]


def test_a_terminal_gets_a_bar_not_lines() -> None:
    console, clock = _console(terminal=True), Clock()
    report = _report(console, clock, progress_every=0)
    _start(report, frames=(100,))
    report.input_started("clip.mp4", "out.mp4", 100)
    for _ in range(5):
        clock.now += 1
        report.frames_done(10)
    report._progress.refresh()
    text = console.file.getvalue()
    assert "progress:" not in text
    assert "50/100" in text and "10.0 fps" in text and "ETA 5.0 s" in text and "clip.mp4" in text
    report.close()
    assert report._progress is None


def test_run_line_and_estimate(tmp_path: Path) -> None:
    weights = tmp_path / "mine.safetensors"
    weights.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    console, clock = _console(), Clock()
    report = _report(console, clock)
    sizes = [(640, 480), (1920, 1080), (1280, 720), (640, 480)]
    report.run_started("cuda:0", "fp16", weights, frames=[6000, 6000, 3000, 3000], sizes=sizes)
    report.estimate(100, 4.2)
    assert _lines(console) == [
        f"run: cuda:0, fp16, weights mine.safetensors (sha256 {digest[:12]}); 4 inputs, 18,000 frames, "
        "3 sizes, largest 1920x1080",
        "estimated: 12 min 36 s for 18,000 frames (0.042 s per frame, measured)",
    ]
    assert report.summary()["weights"] == {"name": "mine.safetensors", "path": str(weights), "sha256": digest}


def test_words_for_sizes_and_durations() -> None:
    assert describe_sizes([(640, 480), (640, 480)]) == "640x480"
    assert describe_sizes([(1920, 1080), (640, 480), (720, 1280)]) == "3 sizes, largest 1920x1080"
    assert describe_sizes([]) == "size unknown"
    assert [format_duration(s) for s in (4.24, 45, 750, 3600, 5400, 5430)] == [
        "4.2 s",
        "45 s",
        "12 min 30 s",
        "1 h",
        "1 h 30 min",
        "1 h 30 min",
    ]


def test_resume_line_and_note() -> None:
    console, clock = _console(), Clock()
    report = _report(console, clock)
    _start(report, frames=(42,))
    report.input_started("in.mp4", "out.mp4", 42, resumed=(17, 42), note="rain auto: 3.1% of pixels -> heavy")
    assert _lines(console)[1:] == [
        "resuming out.mp4: 17 of 42 segments done",
        "rain auto: 3.1% of pixels -> heavy",
    ]


def test_verbose_prints_segments_which_the_log_always_holds(tmp_path: Path) -> None:
    for verbose in (False, True):
        console, clock = _console(), Clock()
        log = tmp_path / f"{verbose}.jsonl"
        report = _report(console, clock, verbose=verbose, log_path=log)
        _start(report, frames=(500,))
        report.input_started("in/clip.mp4", "out.mp4", 500)
        report.segment_done("in/clip.mp4", 3, 42, frames=250, seconds=10.0)
        report.close()
        segments = [line for line in _lines(console) if "segment" in line]
        assert segments == (["clip.mp4: segment 3/42, 250 frames in 10 s (25.0 fps)"] if verbose else [])
        events = [json.loads(line) for line in log.read_text().splitlines()]
        assert events[-1]["event"] == "segment_done" and events[-1]["segment"] == 3
    with pytest.raises(ValueError):
        JobReport(_console(), quiet=True, verbose=True)


def _job(report: JobReport, clock: Clock) -> None:
    """Three inputs: one done with a warning, one skipped, one failed."""
    _start(report, frames=(300, 100, 50), sizes=[(64, 48)])
    report.input_started("in/a.mp4", "out/a.mp4", 300)
    clock.now += 10
    report.frames_done(300)
    report.warning("in/a.mp4", "in/a.mp4: frame 7 is damaged")
    report.input_finished(
        InputResult(
            "in/a.mp4",
            "out/a.mp4",
            "done",
            300,
            10.0,
            timings={"decode": 1.0, "model": 8.0, "encode": 0.5, "join": 0.25},
            rain_note="rain auto: light",
            warnings=["in/a.mp4: frame 7 is damaged", "in/a.mp4: ends early"],
        )
    )
    report.input_started("in/b.mp4", "out/b.mp4", 100)
    report.input_finished(InputResult("in/b.mp4", "out/b.mp4", "skipped", error="out/b.mp4 exists"))
    report.input_started("in/c.mp4", "out/c.mp4", 50)
    clock.now += 2
    report.frames_done(20)
    report.input_finished(
        InputResult("in/c.mp4", "out/c.mp4", "failed", 20, 2.0, error="cannot decode frame 21")
    )


def test_the_json_summary_has_its_schema(tmp_path: Path) -> None:
    console, clock = _console(), Clock()
    path = tmp_path / "job.json"
    report = _report(console, clock, json_path=path, settings={"crf": 18, "output": tmp_path, "tile": None})
    _job(report, clock)
    returned = report.finish()
    written = json.loads(path.read_text())
    assert written == returned
    assert set(written) == {
        "schema",
        "tmics",
        "weights",
        "device",
        "precision",
        "settings",
        "inputs",
        "warnings",
        "frames",
        "seconds",
        "ok",
    }
    assert written["schema"] == 1 and written["tmics"] == __version__
    assert written["weights"] == {
        "name": "tmics-light.safetensors",
        "path": "w/tmics-light.safetensors",
        "sha256": "ab" * 32,
    }
    assert (written["device"], written["precision"]) == ("cuda:0", "fp16")
    assert written["settings"] == {"crf": 18, "output": str(tmp_path), "tile": None}
    assert written["ok"] is False  # one input failed
    assert written["frames"] == 320 and written["seconds"] == 12.0
    keys = {
        "input",
        "output",
        "result",
        "frames",
        "seconds",
        "fps",
        "timings",
        "rain",
        "weights",
        "warnings",
        "error",
    }
    assert all(set(entry) == keys for entry in written["inputs"])
    a, b, c = written["inputs"]
    assert (a["input"], a["output"], a["result"], a["frames"]) == ("in/a.mp4", "out/a.mp4", "done", 300)
    assert isinstance(a["seconds"], float) and a["fps"] == 30.0
    assert a["timings"] == {"decode": 1.0, "model": 8.0, "encode": 0.5, "join": 0.25}
    assert a["rain"] == "rain auto: light" and a["error"] is None
    assert a["warnings"] == ["in/a.mp4: frame 7 is damaged", "in/a.mp4: ends early"]  # told once, not twice
    assert (b["result"], b["fps"], b["error"]) == ("skipped", None, "out/b.mp4 exists")
    assert (c["result"], c["frames"], c["error"]) == ("failed", 20, "cannot decode frame 21")


def test_json_ok_only_when_every_input_finished_and_none_failed() -> None:
    clock = Clock()
    report = _report(_console(), clock)
    _start(report, frames=(10, 10))
    report.input_started("a.mp4", "a-out.mp4", 10)
    report.input_finished(InputResult("a.mp4", "a-out.mp4", "done", 10, 1.0))
    assert report.summary()["ok"] is False  # b.mp4 never ran (an interrupted job)
    report.input_started("b.mp4", "b-out.mp4", 10)
    report.input_finished(InputResult("b.mp4", "b-out.mp4", "skipped"))
    assert report.summary()["ok"] is True


def test_json_dash_goes_to_stdout_and_the_rest_to_the_console(capsys: pytest.CaptureFixture[str]) -> None:
    console, clock = _console(), Clock()
    report = _report(console, clock, json_path="-")
    _job(report, clock)
    returned = report.finish()
    out = capsys.readouterr().out
    assert json.loads(out) == returned
    assert "input" in console.file.getvalue() and "{" not in console.file.getvalue()


def test_json_file_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text("earlier\n")
    clock = Clock()
    report = _report(_console(), clock, json_path=path)
    _start(report, frames=(1,))
    with pytest.raises(OutputError):
        report.finish()
    assert path.read_text() == "earlier\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.1.json", "job.json"]  # this run's kept aside
    report = _report(_console(), clock, json_path=path, overwrite=True)
    _start(report, frames=(1,))
    report.finish()
    assert json.loads(path.read_text())["schema"] == 1


def test_log_is_appended_one_parseable_event_per_line_as_it_happens(tmp_path: Path) -> None:
    log = tmp_path / "job.jsonl"
    log.write_text('{"event": "from an earlier run"}\n')
    clock = Clock()
    report = _report(_console(), clock, log_path=log)
    _start(report, frames=(300, 100, 50))
    report.input_started("in/a.mp4", "out/a.mp4", 300)
    during = log.read_text().splitlines()  # before the job ends: flushed per line
    assert [json.loads(line)["event"] for line in during[1:]] == ["run_started", "input_started"]
    clock.now += 10
    report.frames_done(300)
    report.segment_done("in/a.mp4", 1, 1, frames=300, seconds=10.0)
    report.warning("in/a.mp4", "in/a.mp4: frame 7 is damaged")
    report.input_finished(InputResult("in/a.mp4", "out/a.mp4", "done", 300, 10.0))
    report.finish()
    lines = log.read_text().splitlines()
    assert lines[0] == '{"event": "from an earlier run"}'
    events = [json.loads(line) for line in lines[1:]]
    kinds = [e["event"] for e in events]
    assert kinds == ["run_started", "input_started", "segment_done", "warning", "input_finished", "finished"]
    for e in events:
        when = datetime.datetime.fromisoformat(e["time"])
        assert when.utcoffset() == datetime.timedelta(0)
        assert list(e)[:2] == ["time", "event"]
    assert events[0]["device"] == "cuda:0" and events[0]["frames"] == 450
    assert events[1]["input"] == "in/a.mp4" and events[1]["resumed"] is None
    assert events[3]["message"] == "in/a.mp4: frame 7 is damaged"
    assert events[4]["result"] == "done" and events[4]["warnings"] == ["in/a.mp4: frame 7 is damaged"]
    assert events[5]["ok"] is False  # two of the three inputs never ran
    # a second run appends
    report = _report(_console(), clock, log_path=log)
    _start(report, frames=(1,))
    report.close()
    assert len(log.read_text().splitlines()) == len(lines) + 1


def test_the_summary_lists_every_input_with_its_result() -> None:
    console, clock = _console(), Clock()
    report = _report(console, clock)
    _job(report, clock)
    report.finish()
    lines = _lines(console)
    start = lines.index(next(line for line in lines if line.split()[:1] == ["input"]))
    table = lines[start : start + 4]
    assert table[0].split() == ["input", "frames", "time", "fps", "result"]
    assert table[1].split() == ["in/a.mp4", "300", "10", "s", "30.0", "done", "(2", "warnings)"]
    assert table[2].split() == ["in/b.mp4", "0", "-", "-", "skipped"]
    assert table[3].split() == [
        "in/c.mp4",
        "20",
        "2.0",
        "s",
        "10.0",
        "failed:",
        "cannot",
        "decode",
        "frame",
        "21",
    ]
    assert lines[-1] == (
        "3 inputs: 1 done, 1 skipped, 1 failed; 320 frames in 12 s (26.7 fps) on cuda:0, fp16, "
        "weights tmics-light.safetensors"
    )
    assert "done in/a.mp4 -> out/a.mp4: 300 frames in 10 s (30.0 fps)" in lines
    assert "skipped in/b.mp4 -> out/b.mp4: out/b.mp4 exists" in lines
    assert "error: in/c.mp4: cannot decode frame 21" in lines


def test_the_plain_table_is_aligned() -> None:
    console, clock = _console(), Clock()
    report = _report(console, clock)
    _job(report, clock)
    report.finish()
    lines = _lines(console)
    start = next(i for i, line in enumerate(lines) if line.startswith("input "))
    header, *rows = lines[start : start + 4]
    frames_end, fps_end = header.index("frames") + len("frames"), header.index("fps") + len("fps")
    for row, frames, fps, result in zip(
        rows, ("300", "0", "20"), ("30.0", "-", "10.0"), ("done", "skipped", "failed"), strict=True
    ):
        assert (
            row[frames_end - len(frames) : frames_end] == frames
        )  # numbers right-aligned under their header
        assert row[fps_end - len(fps) : fps_end] == fps
        assert row.index(result) == header.index("result")  # the result column starts at one place


def test_a_terminal_gets_a_rich_table_listing_every_input() -> None:
    console, clock = _console(terminal=True), Clock()
    report = _report(console, clock)
    _job(report, clock)
    report.finish()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", console.file.getvalue())
    rows = {line.split("│")[1].strip(): line for line in plain.splitlines() if line.startswith("│")}
    assert set(rows) == {"in/a.mp4", "in/b.mp4", "in/c.mp4"}
    assert "done (2 warnings)" in rows["in/a.mp4"] and "skipped" in rows["in/b.mp4"]
    assert "failed: cannot decode frame 21" in rows["in/c.mp4"]


def test_one_input_gets_one_summary_line() -> None:
    console, clock = _console(), Clock()
    report = _report(console, clock, progress_every=1000)
    _start(report, frames=(100,))
    report.input_started("in/clip.mp4", "out.mp4", 100)
    clock.now += 4
    report.frames_done(100)
    report.input_finished(InputResult("in/clip.mp4", "out.mp4", "done", 100, 4.25))
    report.finish()
    assert _lines(console)[1:] == [
        "100 frames in 4.2 s (23.53 fps) on cuda:0, fp16, weights tmics-light.safetensors -> out.mp4"
    ]


def test_frames_done_from_many_threads_loses_none() -> None:
    clock = Clock()
    report = _report(_console(), clock, progress_every=0)
    _start(report, frames=(8000,))
    report.input_started("clip.mp4", "out.mp4", 8000)

    def work() -> None:
        for _ in range(1000):
            report.frames_done()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert report.done == report.derained == 8000


def test_frames_done_waits_for_the_reports_lock() -> None:
    """Counting and printing are one step under the lock: a worker's update never interleaves with another."""
    clock = Clock()
    report = _report(_console(), clock, progress_every=0)
    _start(report, frames=(10,))
    report.input_started("clip.mp4", "out.mp4", 10)
    worker = threading.Thread(target=report.frames_done, args=(5,))
    with report._lock:
        worker.start()
        worker.join(timeout=0.2)
        assert worker.is_alive() and report.done == 0
    worker.join(timeout=5)
    assert not worker.is_alive() and report.done == 5


def test_finish_once() -> None:
    report = _report(_console(), Clock())
    _start(report)
    report.finish()
    with pytest.raises(RuntimeError):
        report.finish()
