"""One job's segments derained in this process: per segment a decode thread, the model here, an encode
thread, then its piece recorded as done (tmics_cli.jobs).

    BackgroundReader(iterable, size)    an iterable run in a thread, its items handed over a bounded queue
    BackgroundWriter(sink, size)        frames handed to a sink (VideoSink / FolderSink) in a thread
    model_pixels(frames, pending)       the frames' pixels for derain_stream, each kept until its output
    SegmentRunner(derainer, job, ...)   the unfinished segments of a job: claimed, derained, recorded

A Derainer (tmics_cli.derain) makes the runner; the runner reads the Derainer's settings (times, frame
rate, batch, encoder options, colour) and imports nothing of it.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .inference import STAGES, Restorer, derain_stream
from .jobs import Job, Segment
from .video.colour import YUVPlanes
from .video.compare import shown_rotation, side_by_side
from .video.reader import SourceFrame, SourceInfo, open_source
from .video.writer import open_sink

# seconds per stage in DerainSummary.timings: decode and encode are their threads' busy time, model (this
# thread's) is the sum of upload, flow, network and download (see Restorer)
TIMINGS = ("decode", *STAGES, "encode", "model")


class BackgroundReader:
    """Run `iterable` in a thread; iterate the items here (bounded queue; errors re-raised here)."""

    def __init__(self, iterable: Iterable[Any], size: int) -> None:
        self.queue: queue.Queue = queue.Queue(size)
        self.stop = threading.Event()
        self.busy = 0.0
        self.thread = threading.Thread(target=self._run, args=(iterable,), daemon=True)
        self.thread.start()

    def _run(self, iterable: Iterable[Any]) -> None:
        try:
            iterator = iter(iterable)
            while not self.stop.is_set():
                start = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    break
                self.busy += time.perf_counter() - start
                self._put(("item", item))
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
            self._put(("error", exc))
            return
        self._put(("end", None))

    def _put(self, message: tuple[str, Any]) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(message, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Any]:
        while True:
            kind, item = self.queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item

    def close(self) -> None:
        """Stop the thread and wait for it, so the source can be closed under it safely."""
        self.stop.set()
        while self.thread.is_alive():
            try:  # make room in case it waits to put
                self.queue.get_nowait()
            except queue.Empty:
                pass
            self.thread.join(timeout=0.05)


class BackgroundWriter:
    """Consume (rgb, pts) items in a thread and hand them to a sink; errors surface on put/finish."""

    def __init__(self, sink: Any, size: int) -> None:
        self.sink = sink
        self.queue: queue.Queue = queue.Queue(size)
        self.error: BaseException | None = None
        self.cancelled = threading.Event()
        self.busy = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None or self.cancelled.is_set():
                continue  # drain: after an error or a cancel nothing more reaches the sink
            try:
                start = time.perf_counter()
                self.sink.write(*item)
                self.busy += time.perf_counter() - start
            except BaseException as exc:  # noqa: BLE001 - handed to the producing thread
                self.error = exc

    def put(self, rgb: np.ndarray | YUVPlanes, pts: int) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((rgb, pts))

    def finish(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def cancel(self) -> None:
        """Stop writing; returns once the thread no longer touches the sink (so it may be closed)."""
        self.cancelled.set()
        self.queue.put(None)  # the thread drains the queue without writing, so this put cannot block long
        self.thread.join()


def model_pixels(
    frames: Iterable[SourceFrame], pending: list[SourceFrame]
) -> Iterator[np.ndarray | YUVPlanes]:
    """The frames' pixels for the model (RGB, or planes to convert on the device); each frame waits in
    `pending` until its output comes back."""
    for item in frames:
        pending.append(item)
        yield item.pixels


class SegmentRunner:
    """Derain the unfinished segments of one job in this process."""

    def __init__(
        self,
        derainer: Any,  # the Derainer (tmics_cli.derain) whose settings the segments follow
        job: Job,
        src: Path,
        info: SourceInfo,
        restorer: Restorer,
        folder_out: bool,
        on_frame: Callable[[int], None] | None,
        counted: int,
    ) -> None:
        self.d, self.job, self.src, self.info, self.restorer = derainer, job, src, info, restorer
        self.folder_out, self.on_frame, self.counted = folder_out, on_frame, counted
        self.frames = 0  # derained by this run
        self.on_segment: Callable[[int, int, int, float], None] | None = None
        self.timings = dict.fromkeys(TIMINGS, 0.0)

    def all(self, wait: bool = True) -> None:
        """Every segment not done: those claimed here are derained, those another live process holds are
        waited for (with `wait`), a dead holder's taken over."""
        while True:
            done = self.job.done()
            todo = [s for s in self.job.segments if s.index not in done]
            if not todo:
                return
            took = False
            for segment in todo:
                if self.job.is_done(segment.index):  # by another worker meanwhile
                    continue
                if self.job.claim(segment.index):
                    took = True
                    self.one(segment)
            if not took:
                if not wait:
                    return
                time.sleep(0.25)
                self._report()

    def _report(self) -> None:
        if self.on_frame is not None:
            frames = sum(record.get("frames", 0) for record in self.job.done().values())
            self.on_frame(max(frames, self.counted + self.frames))

    def one(self, segment: Segment) -> None:
        """Derain one claimed segment into its piece and record it."""
        job, d = self.job, self.d
        index = segment.index
        began = time.perf_counter()
        model_before = dict(self.restorer.timings)
        try:
            if job.is_done(index):  # by another worker meanwhile (this one suspended since its claim)
                return
            job.pending_piece(index)
            span = None if segment.lo is None else (segment.lo, segment.hi)
            planes = d.device_colour and not d.compare  # compare mode shows the input's RGB
            source = open_source(
                self.src, fps=d.fps, start=d.start, end=d.end, strict=d.strict, span=span, planes=planes
            )
            info = source.info
            try:
                shown = job.folder.parent / job.manifest["output"]
                turn = shown_rotation(shown, info.rotation, self.folder_out)
                out_w, out_h = d.frame_size(info, shown, self.folder_out)
                sink = open_sink(
                    job.piece(index),
                    info,
                    d.options,
                    out_w,
                    out_h,
                    folder=self.folder_out,
                    overwrite=True,  # a piece another worker made meanwhile: tmics' own, and the same frames
                    others=False,
                    piece_late=job.piece_late,
                    first=segment.first,
                    shown=shown,
                )
            except BaseException:
                source.close()
                raise
            reader = BackgroundReader(source, size=2 * d.batch + 6)
            writer = BackgroundWriter(sink, size=2 * d.batch + 2)
            pending: list[SourceFrame] = []
            count = 0
            try:
                # with the conversion on the device, frames also leave it as the encoder's planes
                made = sink.plane_format() if planes else None
                outputs = derain_stream(
                    model_pixels(reader, pending),
                    self.restorer,
                    d.batch,
                    first=segment.lead,
                    count=segment.count,
                    planes=made,
                )
                for out in outputs:
                    item = pending.pop(segment.lead)
                    writer.put(side_by_side(item.rgb, out, turn) if d.compare else out, item.pts)
                    count += 1
                    if self.on_frame is not None:
                        self.on_frame(self.counted + self.frames + count)
                writer.finish()
                if job.lost(index):  # taken over meanwhile (this claim judged stale): the taker's
                    sink.abort()  # piece is the one kept
                    return
                sink.commit()
            except BaseException:
                writer.cancel()
                reader.close()
                sink.abort()
                raise
            finally:
                reader.close()
                source.close()
            spent = {stage: self.restorer.timings[stage] - model_before[stage] for stage in STAGES}
            spent.update(decode=reader.busy, encode=writer.busy, model=sum(spent.values()))
            for key, value in spent.items():
                self.timings[key] += value
            job.finish(
                index,
                {
                    "frames": count,
                    "seconds": round(time.perf_counter() - began, 3),
                    **{key: round(spent[key], 3) for key in TIMINGS},
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                },
            )
            self.frames += count
            if self.on_segment is not None:
                self.on_segment(index, len(job.segments), count, time.perf_counter() - began)
        finally:
            job.release(index)
