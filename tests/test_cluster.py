"""tmics derain --ray (tmics_cli.cluster): the same pixels as a plain run, and one line without Ray.

The tests that start a Ray cluster are skipped when Ray is not installed (`pip install "tmics[ray]"`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.videos import decode, make_video
from tmics_cli.batch import Target
from tmics_cli.cli import app
from tmics_cli.cluster import job_device
from tmics_cli.derain import Derainer
from tmics_cli.jobs import job_folder, read_manifest
from tmics_cli.outputs import OutputError
from tmics_cli.video.reader import VideoError


def _derain(*args: str) -> Any:
    return CliRunner().invoke(app, ["derain", *args])


def test_ray_init_leaves_the_signal_handlers_as_they_were() -> None:
    ray = pytest.importorskip("ray")
    import signal

    from tmics_cli.cluster import _connect

    if ray.is_initialized():
        pytest.skip("a Ray session of another test is running")
    before = signal.getsignal(signal.SIGTERM)
    assert _connect(ray, "local")
    try:
        assert signal.getsignal(signal.SIGTERM) == before  # tmics' clean-up on SIGTERM stays in charge
    finally:
        ray.shutdown()


def test_ray_missing_is_one_error_line_naming_the_extra(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_video(tmp_path / "in.mp4", frames=3)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    result = _derain(
        str(src), "-o", str(tmp_path / "out.mp4"), "--weights", str(tiny_weights), "--ray", "auto"
    )
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:") and 'pip install "tmics[ray]"' in lines[0]
    assert not (tmp_path / "out.mp4").exists() and not job_folder(tmp_path / "out.mp4").exists()


def test_tmics_does_not_import_ray() -> None:
    code = "import sys, tmics_cli.cli, tmics_cli.cluster; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_job_device_is_the_clusters() -> None:
    auto = Derainer(device="cpu")  # as the CLI builds it on a driver without a GPU
    auto.kwargs["device"] = "auto"
    assert job_device(auto, {"CPU": 8.0, "GPU": 2.0}) == "cuda"
    assert job_device(auto, {"CPU": 8.0}) == "cpu"
    assert job_device(Derainer(device="cpu"), {"CPU": 8.0, "GPU": 2.0}) == "cpu"
    cuda = Derainer(device="cpu")
    cuda.kwargs["device"] = "cuda:1"
    assert job_device(cuda, {"CPU": 8.0, "GPU": 2.0}) == "cuda"
    with pytest.raises(ValueError, match="no GPUs"):
        job_device(cuda, {"CPU": 8.0})


def test_a_cpu_driver_prepares_a_job_for_gpu_workers(tmp_path: Path, tiny_weights: Path) -> None:
    src, dst = make_video(tmp_path / "in.mp4", frames=6), tmp_path / "out.mp4"
    driver = Derainer(weights=tiny_weights, device="cpu", job_device="cuda", segment_frames=4)
    assert (driver.precision, driver.batch, driver.device.type) == ("fp16", 8, "cpu")
    job = driver.prepare(src, dst)
    settings = read_manifest(job_folder(dst))["settings"]
    assert (settings["device"], settings["precision"], settings["batch"]) == ("cuda", "fp16", 8)
    assert job.restorer.dtype.is_floating_point and str(job.restorer.dtype) == "torch.float32"
    for refused in (lambda: driver.work(job), lambda: driver.segment(src, dst, 0)):
        with pytest.raises(ValueError, match="derains nothing"):
            refused()
    # the same job device as its own: a plain Derainer works the job a job_device="cpu" one prepared
    job.job.remove()
    job = Derainer(weights=tiny_weights, device="cpu", job_device="cpu", segment_frames=4).prepare(src, dst)
    record = Derainer(weights=tiny_weights, device="cpu", segment_frames=4).segment(src, dst, 0)
    assert record["frames"] == 4


def test_only_failures_that_may_not_repeat_are_retried() -> None:
    from tmics_cli.cluster import TransientError, _transient

    for exc in (OSError(116, "Stale file handle"), RuntimeError("CUDA error: unspecified launch failure")):
        assert isinstance(_transient(exc), TransientError) and type(exc).__name__ in str(_transient(exc))
    for exc in (
        VideoError("bad frame"),
        ValueError("x"),
        OutputError("x"),
        MemoryError("x"),
        TypeError("bug"),
    ):
        assert _transient(exc) is exc


def test_a_worker_hands_its_out_of_memory_steps_to_the_driver_once(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tmics_cli.cluster import SegmentWorker
    from tmics_cli.inference import Restorer

    src, dst = make_video(tmp_path / "in.mp4", frames=8), tmp_path / "out.mp4"
    kwargs = {"weights": str(tiny_weights), "device": "cpu", "segment_frames": 4, "batch": 2}
    Derainer(**kwargs).prepare(src, dst)
    assemble = Restorer.assemble

    def one_window_only(self: Restorer, frames: list[torch.Tensor]) -> torch.Tensor:
        if len(frames) > 5:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return assemble(self, frames)

    monkeypatch.setattr(Restorer, "assemble", one_window_only)
    worker = SegmentWorker(kwargs, threads=1)
    first, second = worker.segment(str(src), str(dst), 0), worker.segment(str(src), str(dst), 1)
    assert first["memory"] == ["out of memory on cpu with 2 windows per call: going on with 1 (--batch 1)"]
    assert second["memory"] == [] and first["record"]["frames"] == second["record"]["frames"] == 4
    assert first["warnings"] == second["warnings"] == []  # the input's own: none


# --- on a Ray cluster (this machine) ------------------------------------------------------------------


def test_ray_local_gives_the_pixels_of_a_plain_run(tmp_path: Path, tiny_weights: Path) -> None:
    pytest.importorskip("ray")
    src = make_video(tmp_path / "in.mp4", frames=10)
    common = ["--weights", str(tiny_weights), "--crf", "0", "--segment-frames", "4", "--device", "cpu"]
    plain = _derain(str(src), "-o", str(tmp_path / "plain.mp4"), *common)
    assert plain.exit_code == 0, plain.output
    log = tmp_path / "log.jsonl"
    ray = _derain(str(src), "-o", str(tmp_path / "ray.mp4"), *common, "--ray", "local", "--log", str(log))
    assert ray.exit_code == 0, ray.output
    a, b = decode(tmp_path / "plain.mp4")[0], decode(tmp_path / "ray.mp4")[0]
    assert len(a) == len(b) == 10 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    events = [json.loads(line) for line in log.read_text().splitlines()]
    segments = sorted(e["segment"] for e in events if e["event"] == "segment_done")
    assert segments == [1, 2, 3] and sum(e["frames"] for e in events if e["event"] == "segment_done") == 10
    assert not job_folder(tmp_path / "ray.mp4").exists()


@pytest.fixture(scope="module")
def cluster() -> Any:
    """A local Ray cluster with 2 CPUs and one GPU that is not there: GPU tasks fail on it."""
    ray = pytest.importorskip("ray")
    from tmics_cli.cluster import _restore, _signal_handlers

    handlers = _signal_handlers()
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="warning")
    _restore(handlers)  # as the driver does: Ray's SIGTERM handler would outlive this module's tests
    yield ray
    ray.shutdown()


class _Report:
    """What derain_on_ray tells a JobReport, recorded; `stop_after` frames: Ctrl-C."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.events: list[tuple[str, Any]] = []
        self.frames, self.stop_after = 0, stop_after

    def input_started(
        self, source: Any, output: Any, frames: Any, resumed: Any = None, note: str = ""
    ) -> None:
        self.events.append(("started", Path(source).name))

    def frames_done(self, n: int = 1, *, earlier: bool = False) -> None:
        self.frames += n
        if self.stop_after is not None and self.frames >= self.stop_after:
            raise KeyboardInterrupt

    def segment_done(self, source: Any, number: int, total: Any = None, **kw: Any) -> None:
        self.events.append(("segment", number))

    def warning(self, source: Any, message: str) -> None:
        self.events.append(("warning", message))

    def input_finished(self, result: Any) -> None:
        self.events.append(("finished", result.status))


def test_gpu_segments_that_fail_fail_their_input_and_a_bad_input_is_reported(
    cluster: Any, tmp_path: Path, tiny_weights: Path
) -> None:
    from tmics_cli.cluster import derain_on_ray

    src, bad = make_video(tmp_path / "in.mp4", frames=10), tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    derainer = Derainer(weights=tiny_weights, device="auto", segment_frames=4)  # the cluster says: a GPU
    targets = [Target(bad, tmp_path / "bad.out.mp4"), Target(src, tmp_path / "out.mp4")]
    report = _Report()
    results = {Path(r.source).name: r for r in derain_on_ray(derainer, targets, "local", report=report)}
    assert results["bad.mp4"].status == "failed"
    failed = results["in.mp4"]
    assert failed.status == "failed" and "no CUDA GPU" in failed.error and failed.error.startswith("segment ")
    assert not (tmp_path / "out.mp4").exists() and not job_folder(tmp_path / "out.mp4").exists()
    assert cluster.is_initialized()  # a cluster the caller started is left running
    assert [r.status for r in derain_on_ray(derainer, targets, "local", fail_fast=True)] == ["failed"]
    assert not job_folder(tmp_path / "out.mp4").exists()


def test_an_interrupt_keeps_finished_segments_and_names_its_target(
    cluster: Any, tmp_path: Path, tiny_weights: Path
) -> None:
    from tmics_cli.cluster import derain_on_ray

    src, dst = make_video(tmp_path / "in.mp4", frames=12), tmp_path / "out.mp4"
    derainer = Derainer(weights=tiny_weights, device="cpu", segment_frames=2, crf=0)
    with pytest.raises(KeyboardInterrupt) as caught:
        list(derain_on_ray(derainer, [Target(src, dst)], "local", report=_Report(stop_after=1)))
    assert caught.value.target.output == dst  # type: ignore[attr-defined]
    manifest = read_manifest(job_folder(dst))
    assert manifest is not None and not dst.exists()
    # the same run again resumes: only the unfinished segments are derained, and the output is whole
    report = _Report()
    [result] = derain_on_ray(derainer, [Target(src, dst)], "local", report=report)
    assert result.status == "done" and len(decode(dst)[0]) == 12
    assert 0 < len([e for e in report.events if e[0] == "segment"]) < 6


def test_light_rain_runs_tmics_light_full_on_gpus_and_tmics_light_on_the_cpu(tmp_path: Path) -> None:
    from tmics_cli.derain import level_weights, weights_sha256

    cpu, cuda, mps = (torch.device(d) for d in ("cpu", "cuda", "mps"))
    assert (level_weights("light", cpu), level_weights("heavy", cuda)) == ("light", "heavy")
    assert level_weights("light", cuda) == level_weights("light", mps) == "light-full"
    assert Derainer(device="cpu").weights_file().name == "tmics-light.safetensors"
    for_gpus = Derainer(device="cpu", job_device="cuda", segment_frames=4)
    assert for_gpus.weights_file().name == "tmics-light-full.safetensors"
    assert {p.name for p in Derainer(device="cpu", job_device="cuda", rain="auto").reads()} == {
        "tmics-light-full.safetensors",
        "tmics-heavy.safetensors",
    }
    # the job a CPU driver prepares for GPU workers names the weights those workers run
    src, dst = make_video(tmp_path / "in.mp4", frames=6), tmp_path / "out.mp4"
    for_gpus.prepare(src, dst)
    settings = read_manifest(job_folder(dst))["settings"]
    assert settings["weights_sha256"] == weights_sha256(for_gpus.weights_file())
