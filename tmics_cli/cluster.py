"""`tmics derain --ray`: the segments of every input derained by workers on a Ray cluster.

    driver (this process)                                  Ray workers (one per GPU, or per CPU core)
    prepare job 1 ─ segments ──▶ queue ──▶ worker.segment(src, dst, i) ──▶ piece-i + its record
    prepare job 2 ...                       (model loaded once per worker, kept for every segment)
    all of job 1's segments done ──▶ join onto output 1, yield its InputResult

The driver prepares each input's job (`Derainer.prepare`: the job folder beside the output, as without
Ray) when the workers have room for more, hands each unfinished segment to a worker, and joins an output
(`Derainer.finish`) as soon as all its segments are recorded, so inputs overlap. Results are yielded in the
order the inputs end (completion order), not necessarily the order given. A bad input is a failed result
and the others go on (`fail_fast`: stop at the first); a segment that fails for good fails its input and
its job folder is kept, so rerunning the same command resumes at its first unfinished segment.

Storage: every input, output and --weights file must be at the same path on every node (a shared or network
filesystem): the workers read the inputs and write the segments into the job folder themselves, and only
paths travel through Ray. tmics (with the same weights) must be installed on every node.

Devices: with `--device auto` the segments run on GPUs when the cluster reports any
(`ray.cluster_resources()["GPU"] > 0`), else on CPUs; `--device cpu` or `cuda` asks for one. The jobs'
device, precision (auto: fp16 on GPUs; on CPUs bf16 where this machine's CPU has it natively, else fp32:
give --precision for CPU workers of another kind) and default batch are those of the workers, not of this
machine, which needs no GPU: it only prepares and joins (`Derainer(job_device=...)`).

Workers are Ray actors, each holding one model: one per GPU (`num_gpus=1`), or per `cpus_per_task` CPU cores
on CPU clusters, at most as many as the cluster holds, started as the work needs them. Actors rather than
plain tasks because Ray does not reuse a GPU task's process (max_calls=1), so each segment would load CUDA
and the model afresh, and a reused one could not follow a GPU reassigned to it (CUDA_VISIBLE_DEVICES is read
once, when CUDA starts). A worker whose process dies (killed, out of memory, its node lost) is restarted, up
to 3 times, and its segment retried, up to 3 times; a segment that raises is retried only for failures that
may not repeat (OSError, e.g. shared storage, and RuntimeError, e.g. CUDA faults: `TransientError`), never
for the input's own (VideoError, ValueError, ...). Ctrl-C kills the workers, keeps the finished segments and
re-raises with `exc.target` set, as `batch.derain_many` does.

Ray is imported only when `--ray` is given (`check_ray`): it is an optional extra, `pip install "tmics[ray]"`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .batch import Target, expected_errors, warnings_to
from .derain import Derainer, DerainSummary, Prepared
from .inference import OutOfMemoryWarning
from .report import InputResult, JobReport, error_line, unexpected_line
from .segments import TIMINGS
from .video.reader import VideoError, VideoWarning

MIN_RAY = (2, 9)
INSTALL = 'pip install "tmics[ray]"'
CPUS_PER_TASK = 1  # cores per CPU worker: segments parallelise fully, threads within one model do not
QUEUED = 2  # segments handed to a worker at once: one running, one waiting, so it never waits on the driver
RESTARTS = 3  # a worker process that dies is started again this often
RETRIES = 3  # a segment is retried this often (its worker died, or a TransientError)
WAIT = 1.0  # seconds per ray.wait, so that Ctrl-C is noticed


class RayUnavailable(Exception):
    """Ray is not installed (or too old); the message says how to install it."""


class TransientError(RuntimeError):
    """A segment failed in a way that may not happen again (I/O on shared storage, a CUDA fault): retried."""


def check_ray() -> None:
    """Raise RayUnavailable (one line naming the install command) unless Ray >= 2.9 can be imported."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"--ray needs Ray, which is not installed: {INSTALL}") from None
    found = tuple(int(part) for part in re.findall(r"\d+", getattr(ray, "__version__", "0"))[:2])
    if found < MIN_RAY:
        raise RayUnavailable(f"--ray needs Ray 2.9 or later (found {ray.__version__}): {INSTALL}")


def _transient(exc: BaseException) -> BaseException:
    """The error a worker raises for `exc`: the input's own (the same on every try) as it is, else a
    TransientError (retried)."""
    if isinstance(exc, VideoError | ValueError | LookupError | MemoryError):
        return exc
    if isinstance(exc, OSError | RuntimeError):
        return TransientError(unexpected_line(exc))
    return exc  # anything else is a bug: the same every time


class SegmentWorker:
    """One Ray worker (an actor: a process holding one model for all the segments it is given)."""

    def __init__(self, kwargs: dict[str, Any], threads: int) -> None:
        self.kwargs, self.threads = kwargs, threads
        self.derainer: Derainer | None = None  # made at the first segment, so its errors are the segment's

    def segment(self, src: str, dst: str, index: int) -> dict[str, Any]:
        """Derain segment `index` of the job of `dst`: its record, the input's warnings found and the model's
        out-of-memory steps (told once per worker: it keeps the smaller steps for the rest)."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", VideoWarning)
            warnings.simplefilter("always", OutOfMemoryWarning)
            try:
                if self.derainer is None:
                    import torch

                    torch.set_num_threads(self.threads)
                    self.derainer = Derainer(**self.kwargs)
                record = self.derainer.segment(src, dst, index)
            except Exception as exc:
                raised = _transient(exc)
                if raised is exc:
                    raise
                raise raised from exc
        found = [str(w.message) for w in caught if issubclass(w.category, VideoWarning)]
        memory = [str(w.message) for w in caught if issubclass(w.category, OutOfMemoryWarning)]
        return {"record": record, "warnings": list(dict.fromkeys(found)), "memory": memory}


def job_device(derainer: Derainer, resources: dict[str, float]) -> str:
    """The kind of device the segments run on: "cuda" or "cpu" (see the module)."""
    asked = str(derainer.kwargs["device"])
    gpus = resources.get("GPU", 0) > 0
    if asked == "auto":
        return "cuda" if gpus else "cpu"
    kind = asked.split(":")[0]
    if kind == "cuda" and not gpus:
        raise ValueError(f"--device {asked}: the Ray cluster has no GPUs; give --device auto or cpu")
    if kind not in ("cuda", "cpu"):
        raise ValueError(f"--device {asked}: on Ray give auto, cuda or cpu (Ray schedules GPUs and CPUs)")
    return kind


def _absolute_weights(weights: Any) -> Any:
    """A --weights file as an absolute path (the workers' working folder is not this one); names stay."""
    from .weights import REGISTRY

    if weights is None or str(weights) in REGISTRY:
        return weights
    return str(Path(weights).expanduser().absolute())


def _message(exc: BaseException) -> str:
    """An error in one line, as derain_many says them; a Ray error by its cause."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    if isinstance(exc, (*expected_errors(), TransientError)):
        return error_line(exc)
    return unexpected_line(exc)


@dataclass
class _Worker:
    handle: Any
    running: int = 0
    alive: bool = True


@dataclass
class _Input:
    """A prepared input whose segments are being derained."""

    position: int
    target: Target
    began: float
    job: Prepared
    left: set[int]  # segments not done yet
    running: int = 0  # handed to workers
    frames: int = 0  # derained by this run
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TIMINGS, 0.0))
    failed: str | None = None
    told: set[str] = field(default_factory=set)  # warnings said

    @property
    def total(self) -> int:
        return len(self.job.job.segments)


def _connect(ray: Any, address: str) -> bool:
    """ray.init for --ray ADDRESS: "local" starts a one-machine cluster here, "auto" joins the cluster this
    machine belongs to, anything else is an address (ray://HEAD:10001 or HEAD:6379). False: Ray was
    initialised already (by the caller), so it is left as it is."""
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"logging_level": logging.WARNING}
    if address == "local":
        options["include_dashboard"] = False
    handlers = _signal_handlers()
    try:
        ray.init(address=address, **options)
    except Exception as exc:  # noqa: BLE001 - said as one line: where the cluster was looked for
        hint = "start one with `ray start --head`, or give --ray local" if address == "auto" else ""
        raise ConnectionError(
            f"no Ray cluster at --ray {address}{f' ({hint})' if hint else ''}: {error_line(exc)}"
        ) from None
    finally:
        _restore(handlers)  # ray.init installs its own SIGTERM handler: tmics' clean-up stays in charge
    return True


def _signal_handlers() -> dict[int, Any]:
    import signal

    found = {}
    for signum in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            with contextlib.suppress(ValueError, OSError):
                found[signum] = signal.getsignal(signum)
    return found


def _restore(handlers: dict[int, Any]) -> None:
    import signal

    for signum, handler in handlers.items():
        with contextlib.suppress(ValueError, OSError, TypeError):
            if handler is not None:
                signal.signal(signum, handler)


def derain_on_ray(
    derainer: Derainer,
    targets: Sequence[Target],
    address: str,
    *,
    report: JobReport | None = None,
    fail_fast: bool = False,
    cpus_per_task: int = CPUS_PER_TASK,
) -> Iterator[InputResult]:
    """Derain every target on the Ray cluster at `address` ("local", "auto" or an address; see `_connect`)
    with `derainer`'s settings; yields each input's result as it ends (completion order). Inputs, outputs and
    weights must be on storage every node sees at the same paths (see the module). An interrupt
    (KeyboardInterrupt) propagates with the first unfinished target as `exc.target`."""
    if cpus_per_task < 1:
        raise ValueError(f"cpus_per_task must be at least 1, got {cpus_per_task}")
    if not targets:
        return
    check_ray()
    import ray

    started = _connect(ray, address)
    driver = None
    try:
        driver = _Driver(ray, derainer, targets, report, cpus_per_task)
        yield from driver.run(fail_fast)
    finally:
        if driver is not None:
            driver.stop()
            driver.abandon()
        if started:
            ray.shutdown()


class _Driver:
    """This process's side of derain_on_ray: prepare, hand out segments, collect, join (see the module)."""

    def __init__(
        self,
        ray: Any,
        derainer: Derainer,
        targets: Sequence[Target],
        report: JobReport | None,
        cpus_per_task: int,
    ) -> None:
        self.ray, self.targets, self.report = ray, targets, report
        resources = ray.cluster_resources()
        kind = job_device(derainer, resources)
        # this process prepares and joins on its CPU, for the workers' kind of device
        self.prep = Derainer(**{**derainer.kwargs, "device": "cpu", "job_device": kind})
        kwargs = {
            **derainer.kwargs,
            "device": kind,  # a GPU worker's one GPU is cuda:0 (Ray sets CUDA_VISIBLE_DEVICES)
            "precision": self.prep.precision,  # what the jobs record, resolved for the workers' device
            "batch": self.prep.batch,
            "weights": _absolute_weights(derainer.kwargs["weights"]),
        }
        if kind == "cuda":
            self.slots = max(1, int(resources.get("GPU", 0)))
            options: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1}
            threads = 1
        else:
            self.slots = max(1, int(resources.get("CPU", 1)) // cpus_per_task)
            options = {"num_cpus": cpus_per_task}
            threads = cpus_per_task
        self.actor = ray.remote(max_restarts=RESTARTS, max_task_retries=RETRIES, **options)(SegmentWorker)
        self.worker_args = (kwargs, threads)
        self.workers: list[_Worker] = []
        self.inflight: dict[Any, tuple[_Input, int, _Worker]] = {}  # ObjectRef -> its segment
        self.active: dict[int, _Input] = {}  # prepared inputs not ended, by position
        self.preparing: Target | None = None

    # --- the loop ---

    def run(self, fail_fast: bool) -> Iterator[InputResult]:
        pending = deque(enumerate(self.targets))
        queue: deque[tuple[_Input, int]] = deque()
        try:
            while True:
                while self._room():
                    if queue:
                        item, index = queue.popleft()
                        if item.failed is None:
                            self._submit(item, index)
                        continue
                    if not pending:
                        break
                    position, target = pending.popleft()
                    prepared = self._prepare(position, target)
                    if isinstance(prepared, _Input) and prepared.left:
                        queue.extend((prepared, index) for index in sorted(prepared.left))
                        continue
                    result = prepared if isinstance(prepared, InputResult) else self._end(prepared)
                    yield self._told(result)
                    if result.status == "failed" and fail_fast:
                        return
                if not self.inflight:
                    if queue or pending:  # cannot be: with nothing running, a worker has room
                        raise RuntimeError("segments are left but no Ray worker can take them")
                    return
                ready, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=WAIT)
                for ref in ready:
                    item = self._collect(ref)
                    if item.running == 0 and (item.failed is not None or not item.left):
                        result = self._told(self._end(item))
                        yield result
                        if result.status == "failed" and fail_fast:
                            return
        except KeyboardInterrupt as exc:
            self.stop()
            unfinished = [self.active[p].target for p in sorted(self.active)]
            exc.target = unfinished[0] if unfinished else self.preparing  # type: ignore[attr-defined]
            raise

    def _room(self) -> bool:
        """Whether a worker could take another segment (a new one may be started)."""
        alive = [w for w in self.workers if w.alive]
        return len(alive) < self.slots or any(w.running < QUEUED for w in alive)

    def _worker(self) -> _Worker:
        """An idle worker, else a new one while the cluster has room, else the least busy."""
        alive = [w for w in self.workers if w.alive]
        idle = [w for w in alive if w.running == 0]
        if idle:
            return idle[0]
        if len(alive) < self.slots:
            worker = _Worker(self.actor.remote(*self.worker_args))
            self.workers.append(worker)
            return worker
        return min(alive, key=lambda w: w.running)

    def _submit(self, item: _Input, index: int) -> None:
        worker = self._worker()
        method = worker.handle.segment.options(retry_exceptions=[TransientError])
        ref = method.remote(str(item.job.src.absolute()), str(item.job.dst.absolute()), index)
        self.inflight[ref] = (item, index, worker)
        worker.running += 1
        item.running += 1

    def _prepare(self, position: int, target: Target) -> _Input | InputResult:
        """Start or resume the job of a target (its failure or skip as a result)."""
        began = time.perf_counter()
        source, output, report = target.source, target.output, self.report
        self.preparing = target
        with warnings_to(report, source):
            try:
                job = self.prep.prepare(source, output, target.folder)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                return InputResult(
                    source, output, "failed", seconds=time.perf_counter() - began, error=_message(exc)
                )
        if isinstance(job, DerainSummary):  # already whole
            if report is not None:
                report.input_started(source, output, job.frames)
            return InputResult(source, output, "skipped", frames=job.frames, error="output exists")
        if report is not None:
            resumed = (len(job.done), len(job.job.segments)) if job.done else None
            report.input_started(
                source, output, job.job.manifest.get("frames"), resumed=resumed, note=job.note
            )
            earlier = sum(record.get("frames", 0) for record in job.done.values())
            if earlier:
                report.frames_done(earlier, earlier=True)
        left = {segment.index for segment in job.job.segments} - set(job.done)
        item = _Input(position, target, began, job, left)
        self.active[position] = item
        return item

    def _collect(self, ref: Any) -> _Input:
        """A segment's outcome: counted and reported, or its input failed."""
        item, index, worker = self.inflight.pop(ref)
        worker.running -= 1
        item.running -= 1
        try:
            out = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            if isinstance(exc, self.ray.exceptions.ActorDiedError):
                worker.alive = False  # its restarts are spent: another is started if work is left
            where = f"segment {index + 1} of {item.total}: " if item.total > 1 else ""
            if item.failed is None:
                item.failed = f"{where}{_message(exc)}"
            return item
        record = out["record"]
        frames = int(record.get("frames", 0))
        item.frames += frames
        item.left.discard(index)
        for key in item.timings:
            item.timings[key] += float(record.get(key, 0.0))
        source = item.target.source
        if self.report is not None:
            self.report.frames_done(frames)
            self.report.segment_done(
                source, index + 1, item.total, frames=frames, seconds=float(record.get("seconds", 0.0))
            )
        found = [(m, VideoWarning) for m in out["warnings"]]
        found += [(m, OutOfMemoryWarning) for m in out.get("memory", [])]  # none from an older tmics
        for message, category in found:
            if message not in item.told:
                item.told.add(message)
                if self.report is not None:
                    self.report.warning(source, message)
                else:
                    warnings.warn(message, category, stacklevel=2)
        return item

    def _end(self, item: _Input) -> InputResult:
        """An input whose segments have all ended: joined onto its output, or failed (job folder kept when
        a segment was finished)."""
        self.active.pop(item.position, None)
        source, output = item.target.source, item.target.output
        if item.failed is None:
            with warnings_to(self.report, source):
                try:
                    summary = self.prep.finish(item.job, item.timings)
                except Exception as exc:  # noqa: BLE001 - the input's failure; its segments stay
                    item.failed = f"joining its segments: {_message(exc)}"
                else:
                    return InputResult(
                        source,
                        output,
                        "done",
                        frames=summary.frames,
                        seconds=time.perf_counter() - item.began,
                        timings=summary.timings,
                        rain_note=summary.rain_note,
                    )
        if not item.job.job.done():
            item.job.job.remove()  # nothing finished: leave nothing behind
        return InputResult(
            source,
            output,
            "failed",
            frames=item.frames,
            seconds=time.perf_counter() - item.began,
            timings=dict(item.timings),
            error=item.failed,
        )

    def _told(self, result: InputResult) -> InputResult:
        if self.report is not None:
            self.report.input_finished(result)
        return result

    def abandon(self) -> None:
        """The inputs not ended (interrupted, or --fail-fast): job folders with a finished segment are kept
        for a rerun, the others removed (nothing finished: nothing left behind)."""
        for item in self.active.values():
            if not item.job.job.done():
                with contextlib.suppress(OSError):
                    item.job.job.remove()
        self.active.clear()

    def stop(self) -> None:
        """Kill the workers (their running segments are lost; finished ones stay in the job folders)."""
        for worker in self.workers:
            if worker.alive:
                with contextlib.suppress(Exception):
                    self.ray.kill(worker.handle, no_restart=True)
                worker.alive = False
        self.inflight.clear()
