"""Many inputs with one model: `derain_many` runs a `Derainer` over (input, output) targets in order and
yields one `InputResult` per input; `tmics derain` wraps it.

A bad input is reported and the others go on (`fail_fast` stops at the first); an output that is already
whole is skipped. With `workers` > 1, helper processes (each with its own model: one per GPU on a machine
with several, else the CPU cores split among them) take segments of the same jobs through the job folders'
claim files (`tmics_cli.jobs`), so no segment is done twice and the segment of a helper that died is
redone; this process prepares each job, takes segments too and joins each output when its segments are
done. A helper's out-of-memory steps (inference.OutOfMemoryWarning: it went on with a smaller batch or in
tiles) come to this process through a queue and are told as its own warnings; the helpers' other findings
are this process's too, told once, by it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .derain import Derainer, DerainSummary
from .report import InputResult, JobReport, error_line, unexpected_line


@dataclass(frozen=True)
class Target:
    source: Path
    output: Path
    folder: bool = False  # the output is a folder of PNG frames


@contextlib.contextmanager
def warnings_to(report: JobReport | None, source: Path) -> Iterator[None]:
    """Warnings raised while `source` is derained go to the report (one line each, as they happen)."""
    if report is None:
        yield
        return
    previous = warnings.showwarning

    def show(message: Warning | str, *args: Any, **kwargs: Any) -> None:
        report.warning(source, str(message))

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def expected_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message is for the user as it is (others are named by their type too)."""
    from .model.io import WeightsError
    from .video.reader import VideoError

    return (VideoError, WeightsError, ValueError, OSError, MemoryError, LookupError)


def derain_many(
    derainer: Derainer,
    targets: Sequence[Target],
    *,
    report: JobReport | None = None,
    fail_fast: bool = False,
    workers: int = 1,
    raise_errors: bool = False,
    on_output: Callable[[Target], None] | None = None,
) -> Iterator[InputResult]:
    """Derain every target in order; yields each input's result as it ends. `raise_errors`: an input's
    error is raised instead of reported (one input: the caller says it as the command's error). An
    interrupt (KeyboardInterrupt) always propagates, with the target it stopped in as `exc.target`."""
    helpers = _Helpers(derainer, targets, workers) if workers > 1 else None
    state = _State()
    try:
        for position, target in enumerate(targets):
            if on_output is not None:
                on_output(target)
            result = _derain_one(derainer, target, report, helpers, position, raise_errors, state)
            if helpers is not None:
                helpers.reached(position)
            if report is not None:
                report.input_finished(result)
            yield result
            if result.status == "failed" and fail_fast:
                return
    except KeyboardInterrupt as exc:
        exc.target = target  # type: ignore[attr-defined]
        raise
    finally:
        if helpers is not None:
            helpers.stop()


class _State:
    estimated = False  # the job's time was estimated from its first batch


def _derain_one(
    derainer: Derainer,
    target: Target,
    report: JobReport | None,
    helpers: _Helpers | None,
    position: int,
    raise_errors: bool,
    state: _State,
) -> InputResult:
    began = time.perf_counter()
    source, output = target.source, target.output
    with warnings_to(report, source):
        try:
            job = derainer.prepare(source, output, target.folder)
            if isinstance(job, DerainSummary):  # already whole
                if report is not None:
                    report.input_started(source, output, job.frames)
                return InputResult(source, output, "skipped", frames=job.frames, error="output exists")
            if helpers is not None:
                helpers.reached(position)
            frames = job.job.manifest.get("frames")
            if report is not None:
                resumed = (len(job.done), len(job.job.segments)) if job.done else None
                report.input_started(source, output, frames, resumed=resumed, note=job.note)
                earlier = sum(record.get("frames", 0) for record in job.done.values())
                if earlier:
                    report.frames_done(earlier, earlier=True)
            seen = [sum(record.get("frames", 0) for record in job.done.values())]
            first, working = seen[0], time.perf_counter()

            def on_frame(done: int) -> None:
                if helpers is not None:
                    helpers.tell(report, source)
                if report is None:
                    return
                if done > seen[0]:
                    report.frames_done(done - seen[0])
                seen[0] = max(seen[0], done)
                if not state.estimated and done - first >= derainer.batch:  # a measured first batch
                    state.estimated = True
                    report.estimate(done - first, time.perf_counter() - working)

            def on_segment(index: int, total: int, frames: int, seconds: float) -> None:
                if report is not None:
                    report.segment_done(source, index + 1, total, frames=frames, seconds=seconds)

            try:
                summary = derainer.run(job, on_frame, on_segment)
            finally:
                if helpers is not None:
                    helpers.tell(report, source)
            if summary.status == "skipped":
                return InputResult(source, output, "skipped", frames=frames, error="done by another run")
            return InputResult(
                source,
                output,
                "done",
                frames=summary.frames,
                seconds=time.perf_counter() - began,
                timings=summary.timings,
                rain_note=summary.rain_note,
                weights=Path(summary.weights).name,
            )
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if raise_errors:
                raise
            message = error_line(exc) if isinstance(exc, expected_errors()) else unexpected_line(exc)
            return InputResult(source, output, "failed", seconds=time.perf_counter() - began, error=message)


# --- helper worker processes ------------------------------------------------------------------------------


class _Helpers:
    """workers - 1 helper processes taking segments of the same jobs (see the module)."""

    def __init__(self, derainer: Derainer, targets: Sequence[Target], workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.cursor = context.Value("i", -1)  # the last target whose job this process has prepared (or ended)
        self.steps = context.SimpleQueue()  # the helpers' out-of-memory steps, as text
        self.told: set[str] = set()
        pairs = [(str(t.source), str(t.output)) for t in targets]
        devices = _devices(derainer, workers)
        threads = max(1, (os.cpu_count() or 1) // workers)
        if derainer.device.type == "cpu":
            import torch

            torch.set_num_threads(threads)  # this process is one of the workers
        self.processes = [
            context.Process(
                target=_helper_main,
                args=(derainer.kwargs, pairs, devices[k], threads, self.cursor, os.getpid(), self.steps),
                daemon=True,
                name=f"tmics-worker-{k + 1}",
            )
            for k in range(1, workers)
        ]
        for process in self.processes:
            process.start()

    def reached(self, position: int) -> None:
        with self.cursor.get_lock():
            self.cursor.value = max(self.cursor.value, position)

    def tell(self, report: JobReport | None, source: Path) -> None:
        """The helpers' out-of-memory steps that have come since the last call, as warnings of `source`
        (the input being derained here: the helpers work on its job, or on one before it)."""
        from .inference import OutOfMemoryWarning

        while not self.steps.empty():
            message = self.steps.get()
            if message in self.told:
                continue
            self.told.add(message)
            if report is not None:
                report.warning(source, message)
            else:
                warnings.warn(message, OutOfMemoryWarning, stacklevel=2)

    def stop(self) -> None:
        self.reached(1 << 30)
        for process in self.processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: a helper removes its unfinished piece and leaves
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()


def _devices(derainer: Derainer, workers: int) -> list[str]:
    """One device per worker: the GPUs in turn on a machine with several, else the same device."""
    device = derainer.device
    if device.type == "cuda":
        import torch

        count = torch.cuda.device_count()
        if count > 1:
            first = device.index or 0
            return [f"cuda:{(first + k) % count}" for k in range(workers)]
    return [str(device)] * workers


def _helper_main(
    kwargs: dict[str, Any],
    pairs: list[tuple[str, str]],
    device: str,
    threads: int,
    cursor: Any,
    parent: int,
    steps: Any,
) -> None:
    """A helper worker: for each target, once its job is prepared, the segments nobody holds."""
    from .outputs import Interrupted, handle_signals

    send_steps(steps)
    import torch

    torch.set_num_threads(threads)
    try:
        with handle_signals():
            derainer = Derainer(**{**kwargs, "device": device})
            for position, (src, dst) in enumerate(pairs):
                while cursor.value < position:
                    if os.getppid() != parent:
                        return  # the driver is gone
                    time.sleep(0.1)
                if os.getppid() != parent:
                    return
                with contextlib.suppress(Exception):
                    derainer.help(src, dst)
    except (Interrupted, KeyboardInterrupt):
        return


def send_steps(queue: Any) -> None:
    """In a helper: its out-of-memory steps go to `queue` (as text, for the driver to tell); every other
    warning is dropped (the input's findings are the driver's too: it says them once)."""
    from .inference import OutOfMemoryWarning

    warnings.simplefilter("ignore")
    warnings.simplefilter("always", OutOfMemoryWarning)

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, OutOfMemoryWarning):
            queue.put(str(message))

    warnings.showwarning = show


def probe_targets(
    derainer: Derainer, targets: Sequence[Target]
) -> tuple[list[int | None], list[tuple[int, int]], bool]:
    """Each input's frame count (None where unknown or unreadable: it fails later with its own message),
    the frame sizes, and whether some count is an estimate (from a duration, not counted), for the job's
    first line; damage is told when the input is derained, not here."""
    from .video.reader import open_source

    frames: list[int | None] = []
    sizes: list[tuple[int, int]] = []
    estimated = False
    for target in targets:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                source = open_source(target.source, fps=derainer.fps, start=derainer.start, end=derainer.end)
                source.close()
        except Exception:  # noqa: BLE001 - reported when its turn comes
            frames.append(None)
            continue
        frames.append(source.info.frames)
        sizes.append((source.info.width, source.info.height))
        estimated = estimated or not source.info.frames_exact
    return frames, sizes, estimated
