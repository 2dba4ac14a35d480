"""The progress and report of one derain job (one or many inputs), for the CLI and for library users.

`JobReport` is told what happens, in this order, and says it on a Rich console (stderr) given by the caller:

    report = JobReport(console, json_path=..., log_path=..., settings={...})
    report.run_started(device, precision, weights_file, frames=[...], sizes=[...])
    report.estimate(frames, seconds)            # optional: the measured first batch
    for each input:
        report.input_started(source, output, frames, resumed=(done, total) | None, note="")
        report.frames_done(n)                   # any thread; frames_done(n, earlier=True) for resumed ones
        report.segment_done(source, number, total, frames=..., seconds=...)   # optional
        report.warning(source, message)         # as they happen
        report.input_finished(InputResult(...))
    summary = report.finish()

What is printed:

- a run line (device, precision, weights and the first 12 hex digits of their sha256, inputs, frames,
  sizes) and, from `estimate`, one `estimated: ...` line;
- on an interactive terminal, a live bar over the whole job: frames done / total, fps, ETA, the current
  file; elsewhere (a log file, CI, nohup) no bar but a `progress: ...` line every `progress_every` seconds
  of the `clock` (0: after every update);
- per input: a start line (a `resuming OUTPUT: D of T segments done` line for a resumed one, and the
  input's note), a finished line (when the job has more than one input), `error: SOURCE: message` for a
  failed one, `warning: message` for each warning (as `tmics_cli.cli._show_warning` prints them);
  with `verbose` also one line per segment;
- at the end a table (input, frames, time, fps, result; a Rich table on a terminal, plain aligned text
  elsewhere) when the job has more than one input, else one summary line as `DerainSummary.line()`.

`quiet` keeps errors, warnings and the summary: it hides progress, not problems (as `tmics derain -q`
always did: its warnings were printed with or without -q). Nothing is guessed: no ETA before frames were
derained over measurable time, no percentage where a total is unknown.

The JSON summary (`json_path`: a file written atomically by tmics_cli.outputs, an existing one replaced only
with `overwrite`; "-" for standard output), schema 1:

    {
      "schema": 1,
      "tmics": "0.2.0",                     # the version that ran
      "weights": {"name": str, "path": str, "sha256": str | null},
      "device": str, "precision": str,
      "settings": {...},                    # as given to JobReport (paths as strings)
      "inputs": [                           # one per input_finished, in that order
        {"input": str, "output": str, "result": "done" | "skipped" | "failed",
         "frames": int, "seconds": float, "fps": float | null,
         "timings": {"decode": float, "model": float, "encode": float, "join": float, ...},
                                            # seconds; model's split too: upload, flow, network, download
         "rain": str,                       # why --rain auto chose what it chose ("" otherwise)
         "weights": str,                    # the weights file that ran on this input
         "warnings": [str, ...], "error": str | null}
      ],
      "warnings": [str, ...],               # warnings of no one input
      "frames": int,                        # frames derained by this run, all inputs
      "seconds": float,                     # the job's time, first input_started to finish
      "ok": bool,                           # every input announced finished, none failed
      "error": str                          # only where the job itself ended with an error (one input's
    }                                       # failure, an interruption): the error line tmics printed

The log (`log_path`) is appended to (an existing log grows: one file can hold many runs), one JSON object
per line, written and flushed whole as each event happens, so `tail -f` shows the job and a job that dies
leaves every line before it readable. Each object has `time` (ISO 8601, UTC) and `event`: run_started,
estimated, input_started, segment_done, warning, input_finished (the input's entry above), finished.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from rich.console import Console

from .outputs import write_text
from .version import __version__

SCHEMA = 1
Status = Literal["done", "skipped", "failed"]
PathLike = str | os.PathLike[str]


def error_line(exc: BaseException) -> str:
    """An expected error as one line in the user's terms: its message's first line (errors re-raised from
    data-loader workers carry a traceback after it), a KeyError's key unquoted, and the error's type
    where the message alone is one bare word (PyAV's UnknownCodecError("libfoo"), KeyError("k")) or
    empty."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    lines = text.strip().splitlines()
    line = lines[0].strip() if lines else ""
    if not line:
        return type(exc).__name__
    if " " not in line:  # a bare name says nothing without its type
        return f"{type(exc).__name__}: {line}"
    return line


def unexpected_line(exc: BaseException) -> str:
    """An unexpected error (a CUDA or codec failure) as one line that names its type, once: OpenCV's
    cv2.error says "OpenCV(4.x) ..." itself, where its type name would read "error: error: ..."."""
    line = error_line(exc)
    name = type(exc).__name__
    if line.startswith(f"{name}:") or (name == "error" and line.startswith("OpenCV")):
        return line
    return f"{name}: {line}"


@dataclass
class InputResult:
    """How one input of a job ended."""

    source: PathLike
    output: PathLike
    status: Status
    frames: int = 0  # frames derained by this run (a failed input: those before it failed)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds in decode / model / encode / join
    rain_note: str = ""  # why --rain auto chose what it chose
    warnings: list[str] = field(default_factory=list)  # more to record than those given to warning()
    error: str | None = None  # why it failed (or, for a skipped input, why it was skipped)
    weights: str = ""  # the weights file that ran on it, when not the job's (--rain auto chooses per input)

    @property
    def fps(self) -> float | None:
        return self.frames / self.seconds if self.seconds > 0 and self.frames else None


# --- words for numbers ---------------------------------------------------------------------------------
def format_duration(seconds: float) -> str:
    """`4.2 s`, `45 s`, `12 min 30 s`, `1 h 30 min`: as precise as a person reads a time."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def describe_sizes(sizes: Iterable[tuple[int, int]]) -> str:
    """(width, height) of each input in words: `640x480`, or `3 sizes, largest 1920x1080`."""
    distinct = sorted(set(sizes), key=lambda s: (s[0] * s[1], s))
    if not distinct:
        return "size unknown"
    width, height = distinct[-1]
    return f"{width}x{height}" if len(distinct) == 1 else f"{len(distinct)} sizes, largest {width}x{height}"


def _fps(rate: float) -> str:
    return f"{rate:.2f}" if rate < 1 else f"{rate:.1f}"


def _per_frame(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds >= 0.01 else f"{seconds:.2g}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _plain(value: Any) -> Any:
    """Settings as JSON holds them: paths as strings, tuples and sets as lists."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return value


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


class JobReport:
    """The progress and report of one derain job; see the module's docstring. Thread-safe."""

    def __init__(
        self,
        console: Console,
        *,
        quiet: bool = False,
        verbose: bool = False,
        progress_every: float = 30.0,
        json_path: PathLike | None = None,
        log_path: PathLike | None = None,
        overwrite: bool = False,
        settings: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`json_path` is replaced only with `overwrite` (the caller checks beforehand that it may be
        written: tmics_cli.outputs.check_output); `log_path` is opened now, for appending."""
        if quiet and verbose:
            raise ValueError("quiet and verbose exclude each other: give one")
        if progress_every < 0:
            raise ValueError(f"progress_every must be 0 or more seconds, got {progress_every}")
        self.console, self.quiet, self.verbose = console, quiet, verbose
        self.progress_every = progress_every
        self.json_path, self.overwrite = json_path, overwrite
        self.settings = _plain(dict(settings or {}))
        self.clock = clock
        self.live = console.is_interactive and not quiet  # a bar; else plain progress lines
        self._lock = threading.RLock()
        self.log_path = log_path
        self._log: IO[str] | None = open(log_path, "a", encoding="utf-8") if log_path is not None else None
        # the run
        self.device = self.precision = ""
        self.weights: dict[str, str | None] = {"name": "", "path": "", "sha256": None}
        self.inputs = 0
        self.total: int | None = None  # frames of the whole job; None: unknown
        # the progress
        self.started: float | None = None  # clock at the first input_started
        self.done = 0  # frames done: derained by this run, and `earlier` ones
        self.derained = 0  # frames derained by this run: the rate rests on these only
        self.current = ""  # the file being derained
        self._last_line = 0.0
        self._progress: Any = None
        self._task: Any = None
        # the results
        self.results: list[InputResult] = []
        self._warnings: dict[str, list[str]] = {}  # per input (str(source)); "" for the job
        self._finished = False
        self._run_line: str | None = None  # the run line, until the first input starts

    # --- the run ---------------------------------------------------------------------------------------
    def run_started(
        self,
        device: str,
        precision: str,
        weights: PathLike,
        *,
        frames: Iterable[int | None],
        sizes: Iterable[tuple[int, int]] = (),
        sha256: str | None = None,
        label: str | None = None,
        estimated: bool = False,
    ) -> None:
        """The job begins: `weights` is the file that runs (its sha256 is read unless given), `frames` the
        frame count of each input (None where unknown; the job's total is then unknown; `estimated`: some
        are reckoned from a duration, and the line says "about"), `sizes` each input's (width, height);
        `label` names the weights in the run line instead of the file (e.g. for --rain auto, which
        chooses per input)."""
        counts = list(frames)
        sizes = list(sizes)
        path = Path(weights)
        if sha256 is None and path.is_file():
            from .weights import sha256_of

            sha256 = sha256_of(path)
        with self._lock:
            self.device, self.precision = str(device), str(precision)
            self.weights = {"name": path.name, "path": str(path), "sha256": sha256}
            self.inputs = len(counts)
            self.total = None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
            frames_text = "frames unknown" if self.total is None else _plural(self.total, "frame")
            if estimated and self.total is not None:
                frames_text = f"about {frames_text}"
            digest = f" (sha256 {sha256[:12]})" if sha256 and not label else ""
            # said when the first input starts (or ends, or the job does): an input refused before any work
            # gets its one error line and nothing else
            self._run_line = (
                f"run: {self.device}, {self.precision}, weights {label or path.name}{digest}; "
                f"{_plural(self.inputs, 'input')}, {frames_text}, {describe_sizes(sizes)}"
            )
            self._event(
                "run_started",
                tmics=__version__,
                device=self.device,
                precision=self.precision,
                weights=self.weights,
                inputs=self.inputs,
                frames=self.total,
                frames_estimated=estimated,
                sizes=[list(s) for s in sizes],
                settings=self.settings,
            )

    def estimate(self, frames: int, seconds: float) -> None:
        """The time the job will take, from `frames` derained in `seconds` (a measured first batch)."""
        if frames <= 0 or seconds <= 0:
            return  # nothing measured: nothing to say
        per_frame = seconds / frames
        with self._lock:
            self._say_run()
            left = None if self.total is None else max(0, self.total - (self.done - self.derained))
            if left is None:
                self._say(f"estimated: {_per_frame(per_frame)} s per frame (measured); total frames unknown")
            else:
                self._say(
                    f"estimated: {format_duration(left * per_frame)} for {_plural(left, 'frame')} "
                    f"({_per_frame(per_frame)} s per frame, measured)"
                )
            self._event(
                "estimated",
                frames=left,
                seconds=None if left is None else round(left * per_frame, 3),
                seconds_per_frame=per_frame,
                measured_frames=frames,
                measured_seconds=seconds,
            )

    # --- per input -------------------------------------------------------------------------------------
    def input_started(
        self,
        source: PathLike,
        output: PathLike,
        frames: int | None,
        resumed: tuple[int, int] | None = None,
        note: str = "",
    ) -> None:
        """An input begins: its frame count (None: unknown), `resumed` = (segments done, segments) when an
        earlier run's work on it is kept, `note` a line to show (e.g. what --rain auto chose)."""
        with self._lock:
            self._say_run()
            if self.started is None:
                self.started = self._last_line = self.clock()
            self.current = Path(source).name
            if resumed is not None:
                self._say(f"resuming {output}: {resumed[0]} of {resumed[1]} segments done")
            elif self.inputs > 1:
                count = "frame count unknown" if frames is None else _plural(frames, "frame")
                self._say(f"started {source} -> {output} ({count})")
            if note:
                self._say(note)
            self._event(
                "input_started",
                input=str(source),
                output=str(output),
                frames=frames,
                resumed=None if resumed is None else {"done": resumed[0], "total": resumed[1]},
                note=note,
            )
            self._start_bar()
            self._update(line=False)

    def frames_done(self, n: int = 1, *, earlier: bool = False) -> None:
        """`n` more frames are done (from any thread). `earlier`: frames an earlier run finished (a resumed
        input's kept segments): they count towards done, not towards the speed."""
        with self._lock:
            self.done += n
            if not earlier:
                self.derained += n
            self._update(line=True)

    def segment_done(
        self,
        source: PathLike,
        number: int,
        total: int | None = None,
        *,
        frames: int = 0,
        seconds: float = 0.0,
    ) -> None:
        """Segment `number` (from 1) of `total` of an input is written; a line with `verbose`."""
        with self._lock:
            if self.verbose:
                of = f"/{total}" if total is not None else ""
                speed = f" ({_fps(frames / seconds)} fps)" if seconds > 0 and frames else ""
                took = f" in {format_duration(seconds)}" if seconds > 0 else ""
                self._say(
                    f"{Path(source).name}: segment {number}{of}, {_plural(frames, 'frame')}{took}{speed}"
                )
            self._event(
                "segment_done",
                input=str(source),
                segment=number,
                segments=total,
                frames=frames,
                seconds=seconds,
            )

    def warning(self, source: PathLike | None, message: str) -> None:
        """A warning about `source` (None: the job): recorded for the summary, logged, and printed as a
        `warning: ...` line. Warnings told here should not also reach `warnings.showwarning`."""
        with self._lock:
            self._warnings.setdefault("" if source is None else str(source), []).append(str(message))
            self._print(f"warning: {message}")
            self._event("warning", input=None if source is None else str(source), message=str(message))

    def input_finished(self, result: InputResult) -> None:
        """An input ended (done, skipped or failed); its warnings are those told by `warning()` and then
        those in `result.warnings` not told."""
        with self._lock:
            self._say_run()
            told = self._warnings.pop(str(result.source), [])
            result.warnings = told + [w for w in result.warnings if w not in told]
            self.results.append(result)
            if result.status == "failed":
                what = result.error or "failed"
                named = what.startswith((f"{result.source} ", f"{result.source}:"))  # "X is not a video ..."
                self._print(f"error: {what}" if named else f"error: {result.source}: {what}")
            elif self.inputs > 1 and result.status == "skipped":
                why = f": {result.error}" if result.error else ""
                self._say(f"skipped {result.source} -> {result.output}{why}")
            elif self.inputs > 1:
                speed = f" ({_fps(result.fps)} fps)" if result.fps else ""
                self._say(
                    f"done {result.source} -> {result.output}: {_plural(result.frames, 'frame')} in "
                    f"{format_duration(result.seconds)}{speed}"
                )
            if self.verbose and result.timings:
                parts = ", ".join(f"{k} {format_duration(v)}" for k, v in result.timings.items())
                self._say(f"{Path(result.source).name}: {parts}")
            self._event("input_finished", **self._entry(result))

    # --- the end ---------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The JSON summary (see the module's docstring) of what was told so far."""
        with self._lock:
            seconds = 0.0 if self.started is None else self.clock() - self.started
            failed = any(r.status == "failed" for r in self.results)
            return {
                "schema": SCHEMA,
                "tmics": __version__,
                "weights": dict(self.weights),
                "device": self.device,
                "precision": self.precision,
                "settings": self.settings,
                "inputs": [self._entry(r) for r in self.results],
                "warnings": list(self._warnings.get("", [])),
                "frames": sum(r.frames for r in self.results),
                "seconds": round(seconds, 3),
                "ok": not failed and len(self.results) == self.inputs,
            }

    def finish(self) -> dict[str, Any]:
        """Stop the bar, print the summary, log `finished`, write the JSON summary; returns the summary.
        An OutputError or OSError from writing the JSON file is raised after all else is done."""
        with self._lock:
            if self._finished:
                raise RuntimeError("this job's report is finished already")
            self._finished = True
            self._stop_bar()
            self._say_run()
            summary = self.summary()
            try:
                self._print_summary(summary)
                counts = {s: sum(r.status == s for r in self.results) for s in ("done", "skipped", "failed")}
                self._event(
                    "finished",
                    ok=summary["ok"],
                    frames=summary["frames"],
                    seconds=summary["seconds"],
                    **counts,
                )
            finally:
                self.close()
            self._write_json(summary)
            return summary

    def _write_json(self, summary: dict[str, Any]) -> None:
        if self.json_path is not None:
            text = json.dumps(summary, indent=2) + "\n"
            if os.fspath(self.json_path) == "-":
                sys.stdout.write(text)
                sys.stdout.flush()
            else:
                write_text(self.json_path, text, overwrite=self.overwrite)

    def abandon(
        self, error: str, source: PathLike | None = None, output: PathLike | None = None
    ) -> dict[str, Any]:
        """The job ended with `error` (an input, `source` -> `output` where known, failed with it, or the
        run was interrupted): the input's entry (failed) unless it was told, `finished` logged with the
        error, the JSON summary written (ok false, "error") and the log closed; nothing is printed (the
        caller says the error). Does nothing once the job is finished."""
        with self._lock:
            if self._finished:
                return {}
            self._finished = True
            self._stop_bar()
            if source is not None and all(str(r.source) != str(source) for r in self.results):
                told = self._warnings.pop(str(source), [])
                failed = InputResult(Path(source), Path(output or ""), "failed", error=error, warnings=told)
                self.results.append(failed)
            else:
                failed = None
            summary = {**self.summary(), "ok": False, "error": error}
            try:
                if self._log is None and self.log_path is not None:  # closed before the error line
                    self._log = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115
                if failed is not None:
                    self._event("input_finished", **self._entry(failed))
                self._event("finished", ok=False, error=error, frames=summary["frames"])
            finally:
                self.close()
            self._write_json(summary)
            return summary

    def close(self) -> None:
        """Stop the bar and close the log (idempotent); for a job that ends without `finish()`."""
        with self._lock:
            self._stop_bar()
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> JobReport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- inside ----------------------------------------------------------------------------------------
    def _say_run(self) -> None:
        if self._run_line is not None:
            line, self._run_line = self._run_line, None
            self._say(line)

    def _say(self, line: str) -> None:
        """A line of progress: not with `quiet`."""
        if not self.quiet:
            self._print(line)

    def _print(self, line: str) -> None:
        """A line as it is (file names are not markup), unwrapped, for any console."""
        self.console.print(line, soft_wrap=True, markup=False, highlight=False)

    def _event(self, event: str, **fields: Any) -> None:
        if self._log is None:
            return
        line = json.dumps({"time": _now(), "event": event, **fields}, default=str)
        self._log.write(line + "\n")  # one write per line: a reader never sees half an event
        self._log.flush()

    def _entry(self, r: InputResult) -> dict[str, Any]:
        return {
            "input": str(r.source),
            "output": str(r.output),
            "result": r.status,
            "frames": r.frames,
            "seconds": round(r.seconds, 3),
            "fps": None if r.fps is None else round(r.fps, 3),
            "timings": {k: round(v, 3) for k, v in r.timings.items()},
            "rain": r.rain_note,
            "weights": r.weights or self.weights["name"],
            "warnings": list(r.warnings),
            "error": r.error,
        }

    def rate(self) -> float | None:
        """Frames derained per second of the job so far; None before there is one."""
        with self._lock:
            if self.started is None or self.derained == 0:
                return None
            elapsed = self.clock() - self.started
            return self.derained / elapsed if elapsed > 0 else None

    def eta(self) -> float | None:
        """Seconds left, from the rate so far; None without a rate or a known total."""
        with self._lock:
            rate = self.rate()
            if rate is None or self.total is None or self.total - self.done <= 0:
                return None
            return (self.total - self.done) / rate

    def _numbers(self) -> tuple[str, str, str]:
        """(frames done [of total, percent], fps, ETA) in words; empty where there is nothing to say."""
        rate, eta = self.rate(), self.eta()
        if self.total:
            total = max(self.total, self.done)
            count = f"{self.done:,} / {total:,} frames ({100 * self.done / total:.1f}%)"
        else:
            count = f"{self.done:,} frames"
        return (
            count,
            "" if rate is None else f"{_fps(rate)} fps",
            "" if eta is None else f"ETA {format_duration(eta)}",
        )

    def _update(self, line: bool) -> None:
        """The bar, or (`line`: after frames) a plain progress line when `progress_every` has passed."""
        if self.quiet or self.started is None:
            return
        if self._progress is not None:
            _, speed, eta = self._numbers()
            total = None if self.total is None else max(self.total, self.done)
            self._progress.update(
                self._task, completed=self.done, total=total, speed=speed, eta=eta, name=self.current
            )
            return
        now = self.clock()
        if line and now - self._last_line >= self.progress_every:
            self._last_line = now
            parts = [p for p in (*self._numbers(), self.current) if p]
            self._say("progress: " + ", ".join(parts))

    def _start_bar(self) -> None:
        if not self.live or self._progress is not None or self._finished:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        columns = (
            TextColumn("derain"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]}"),
            TextColumn("{task.fields[eta]}"),
            TextColumn("{task.fields[name]}", markup=False),
        )
        self._progress = Progress(*columns, console=self.console, transient=False)
        self._task = self._progress.add_task("derain", total=self.total, speed="", eta="", name="")
        self._progress.start()

    def _stop_bar(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _print_summary(self, summary: dict[str, Any]) -> None:
        if self.inputs == 1 and len(self.results) == 1:
            r = self.results[0]
            if r.status == "done":
                self._print(
                    f"{r.frames} frames in {r.seconds:.1f} s ({r.fps or 0.0:.2f} fps) on {self.device}, "
                    f"{self.precision}, weights {r.weights or self.weights['name']} -> {r.output}"
                )
            elif r.status == "skipped":
                why = f": {r.error}" if r.error else ""
                self._print(f"skipped {r.source} -> {r.output}{why}")
            return  # a failed one said so in its error line
        rows = [self._row(r) for r in self.results]
        header = ("input", "frames", "time", "fps", "result")
        if self.console.is_terminal:
            from rich.table import Table
            from rich.text import Text

            table = Table()
            for name in header:
                table.add_column(name, justify="right" if name in ("frames", "time", "fps") else "left")
            for row in rows:
                table.add_row(*(Text(cell) for cell in row))  # file names are not markup
            self.console.print(table)
        else:
            widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
            for row in (header, *rows):
                cells = [
                    c.rjust(w) if i in (1, 2, 3) else c.ljust(w)
                    for i, (c, w) in enumerate(zip(row, widths, strict=True))
                ]
                self._print("  ".join(cells).rstrip())
        counts = [
            f"{n} {s}"
            for s in ("done", "skipped", "failed")
            if (n := sum(r.status == s for r in self.results))
        ]
        missing = self.inputs - len(self.results)
        if missing > 0:
            counts.append(f"{missing} not finished")
        frames, seconds = summary["frames"], summary["seconds"]
        speed = f" ({_fps(frames / seconds)} fps)" if seconds > 0 and frames else ""
        self._print(
            f"{_plural(self.inputs, 'input')}: {', '.join(counts) or 'none finished'}; "
            f"{_plural(frames, 'frame')} in {format_duration(seconds)}{speed} on {self.device}, "
            f"{self.precision}, weights {self.weights['name']}"
        )

    @staticmethod
    def _row(r: InputResult) -> tuple[str, str, str, str, str]:
        result: str = r.status
        if r.warnings:
            result += f" ({_plural(len(r.warnings), 'warning')})"
        if r.status == "failed" and r.error:
            result += f": {r.error}"
        timed = r.status != "skipped"
        return (
            str(r.source),
            f"{r.frames:,}",
            format_duration(r.seconds) if timed else "-",
            _fps(r.fps) if r.fps else "-",
            result,
        )
