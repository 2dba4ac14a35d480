"""Out of memory on the device (simulated on the CPU): the model call, the window buffer, the uploads and the
output frames each go on in smaller steps, once per size, with every frame kept and a warning naming the
option that starts there; what cannot fit even one window at a time is one MemoryError."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from tmics_cli.inference import OutOfMemoryWarning, Restorer, derain_stream
from tmics_cli.model import build_model

RNG = np.random.default_rng(5)
FRAMES = [RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(13)]


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    torch.manual_seed(0)
    return build_model("light", "tiny")


def _oom() -> torch.OutOfMemoryError:
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """The same frame: equal here, where the batch does not change a window's pixels; within a level allowed
    for a CPU whose kernels round otherwise per batch size (a frame out of place differs by far more)."""
    return a.shape == b.shape and int(np.abs(a.astype(int) - b).max()) <= 1


def _calls_of_at_most(restorer: Restorer, windows: int) -> list[int]:
    """Make `restorer`'s model calls of more than `windows` windows run out of memory; the list of the
    windows of every call, filled as they come."""
    forward = restorer._forward
    sizes: list[int] = []

    def at_most(frames: torch.Tensor, tile: int | None):  # noqa: ANN202
        sizes.append(len(frames))
        if len(frames) > windows:
            raise _oom()
        return forward(frames, tile)

    restorer._forward = at_most  # type: ignore[method-assign]
    return sizes


def _run(restorer: Restorer, batch: int, planes=None) -> tuple[list, list[str]]:  # noqa: ANN001
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = list(derain_stream(FRAMES, restorer, batch, planes=planes))
    return out, [str(w.message) for w in caught if issubclass(w.category, OutOfMemoryWarning)]


@pytest.mark.parametrize("as_planes", [False, True])
def test_windows_that_do_not_fit_go_on_in_halves_with_a_batch_in_flight(model, as_planes: bool) -> None:
    """The second batch's window buffer does not fit while the first is in flight (pipelined: one of the two
    download buffers is still unread): the batch goes in two halves, the rest of the run in halves too, and
    every frame is the one a plain run gives."""
    from tmics_cli.video.colour import PlaneFormat

    fmt = PlaneFormat("yuv420p", "ITU709", "MPEG") if as_planes else None
    plain, _ = _run(Restorer(model, torch.device("cpu"), pipeline=False), 4, fmt)
    restorer = Restorer(model, torch.device("cpu"), pipeline=True)
    assemble = restorer.assemble
    sizes: list[int] = []

    def second_call_too_big(frames: list[torch.Tensor]) -> torch.Tensor:
        sizes.append(len(frames) // 5)
        if len(sizes) == 2 and len(frames) > 2 * 5:
            raise _oom()
        return assemble(frames)

    launch = restorer.launch_windows
    pipelined: list[bool | None] = []

    def recorded(windows: torch.Tensor, planes=None, pipeline=None):  # noqa: ANN001, ANN202
        pipelined.append(pipeline)
        return launch(windows, planes, pipeline)

    restorer.assemble = second_call_too_big  # type: ignore[method-assign]
    restorer.launch_windows = recorded  # type: ignore[method-assign]
    got, told = _run(restorer, 4, fmt)
    assert sizes == [4, 4, 2, 2, 2, 2, 1]  # one failed attempt, never the full batch again
    # the halves of the failed batch one after the other; the batches after it pipelined again
    assert pipelined == [None, False, False, None, None, None]
    assert restorer._windows is not None and restorer._windows.numel() == 2 * 5 * 24 * 32 * 3  # made anew
    assert restorer.batch_limit == 2 and restorer.retries == 1
    assert told == ["out of memory on cpu with 4 windows per call: going on with 2 (--batch 2)"]
    assert len(got) == len(plain) == 13
    for a, b in zip(got, plain, strict=True):
        pairs = zip((a.y, a.u, a.v), (b.y, b.u, b.v), strict=True) if as_planes else [(a, b)]
        assert all(_same(x, y) for x, y in pairs)


def test_uploads_that_do_not_fit_go_in_smaller_groups(model) -> None:
    plain, _ = _run(Restorer(model, torch.device("cpu")), 4)
    restorer = Restorer(model, torch.device("cpu"))
    upload = restorer.upload_pixels
    uploaded: list[int] = []

    def at_most_four(frames: list) -> list[torch.Tensor]:  # the first batch needs frames 0-5
        uploaded.append(len(frames))
        if len(frames) > 4:
            raise _oom()
        return upload(frames)

    restorer.upload_pixels = at_most_four  # type: ignore[method-assign]
    got, told = _run(restorer, 4)
    assert uploaded[:3] == [6, 4, 2] and restorer.batch_limit == 2 and len(told) == 1
    assert len(got) == 13 and all(_same(a, b) for a, b in zip(got, plain, strict=True))


def test_making_the_output_frames_out_of_memory_goes_on_with_fewer_windows(model) -> None:
    plain, _ = _run(Restorer(model, torch.device("cpu")), 4)
    restorer = Restorer(model, torch.device("cpu"))
    launch = restorer.launch_windows
    calls: list[int] = []

    def big_outputs_fail(windows: torch.Tensor, planes=None, pipeline=None):  # noqa: ANN001, ANN202
        calls.append(len(windows))
        if len(windows) > 1:
            raise RuntimeError("MPS backend out of memory (simulated)")
        return launch(windows, planes, pipeline)

    restorer.launch_windows = big_outputs_fail  # type: ignore[method-assign]
    got, told = _run(restorer, 4)
    assert calls[:3] == [4, 2, 1] and set(calls[3:]) == {1} and restorer.batch_limit == 1
    assert len(told) == 2 and told[-1].endswith("2 windows per call: going on with 1 (--batch 1)")
    assert all(_same(a, b) for a, b in zip(got, plain, strict=True)) and len(got) == 13


def test_a_model_call_out_of_memory_lowers_the_batch_for_the_rest_of_the_run(model) -> None:
    restorer = Restorer(model, torch.device("cpu"))
    sizes = _calls_of_at_most(restorer, 2)
    plain, _ = _run(Restorer(model, torch.device("cpu")), 8)
    got, told = _run(restorer, 8)
    assert sizes[:3] == [8, 4, 2] and max(sizes[3:]) == 2  # each size fails once, not once per batch
    assert restorer.batch_limit == 2 and len(told) == 2
    assert restorer._windows is not None and restorer._windows.numel() == 2 * 5 * 24 * 32 * 3  # made anew
    assert all(_same(a, b) for a, b in zip(got, plain, strict=True)) and len(got) == 13


def test_restore_called_again_starts_from_the_batch_that_fitted(model) -> None:
    restorer = Restorer(model, torch.device("cpu"))
    sizes = _calls_of_at_most(restorer, 2)
    windows = (
        torch.from_numpy(np.stack(FRAMES[:5]))
        .permute(0, 3, 1, 2)
        .float()
        .div(255)[None]
        .repeat(4, 1, 1, 1, 1)
    )
    with pytest.warns(OutOfMemoryWarning):
        first = restorer.restore(windows)
    second = restorer.restore(windows)
    assert sizes == [4, 2, 2, 2, 2] and torch.equal(first, second) and first.shape == (4, 3, 24, 32)


def test_the_switch_to_tiles_is_told_once_with_the_tile_size(model) -> None:
    frames = [RNG.integers(0, 256, (64, 128, 3), dtype=np.uint8) for _ in range(5)]
    restorer = Restorer(model, torch.device("cpu"), tile_overlap=8)
    forward = restorer._forward

    def tiles_only(frames: torch.Tensor, tile: int | None):  # noqa: ANN202
        if len(frames) > 1 or not tile or tile > 64:
            raise _oom()
        return forward(frames, tile)

    restorer._forward = tiles_only  # type: ignore[method-assign]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = list(derain_stream(frames, restorer, 2))
    assert len(got) == 5 and restorer.tile == 64 and restorer.batch_limit == 1
    assert [str(w.message) for w in caught if issubclass(w.category, OutOfMemoryWarning)] == [
        "out of memory on cpu with 2 windows per call: going on with 1 (--batch 1)",
        "out of memory on cpu with whole 128x64 frames: going on in 64-pixel tiles, blended at the seams "
        "(--tile 64)",
    ]


def test_one_window_that_does_not_fit_is_one_memory_error(model) -> None:
    restorer = Restorer(model, torch.device("cpu"))

    def never(frames: list[torch.Tensor]) -> torch.Tensor:
        raise _oom()

    restorer.assemble = never  # type: ignore[method-assign]
    with pytest.raises(MemoryError, match="even for one window at a time"):
        _run(restorer, 4)
    assert restorer.batch_limit == 1


def test_other_runtime_errors_are_not_taken_for_out_of_memory(model) -> None:
    restorer = Restorer(model, torch.device("cpu"))

    def broken(frames: list[torch.Tensor]) -> torch.Tensor:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    restorer.assemble = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="illegal memory access"):
        _run(restorer, 4)
    assert restorer.batch_limit is None and restorer.retries == 0


def test_the_command_says_what_it_went_on_with_and_keeps_every_frame(
    tmp_path, tiny_weights, monkeypatch: pytest.MonkeyPatch
) -> None:
    av = pytest.importorskip("av")
    from typer.testing import CliRunner
    from videos import make_video

    from tmics_cli.cli import app

    src = make_video(tmp_path / "in.mp4", frames=7, w=48, h=32)
    assemble = Restorer.assemble

    def one_window_only(self: Restorer, frames: list[torch.Tensor]) -> torch.Tensor:
        if len(frames) > 5:
            raise _oom()
        return assemble(self, frames)

    monkeypatch.setattr(Restorer, "assemble", one_window_only)
    args = ["derain", str(src), "--weights", str(tiny_weights), "--device", "cpu", "--batch", "3"]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "out.mkv")])
    assert result.exit_code == 0, result.output
    assert (
        "warning: out of memory on cpu with 3 windows per call: going on with 1 (--batch 1)" in result.output
    )
    with av.open(str(tmp_path / "out.mkv")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 7

    def never(self: Restorer, frames: list[torch.Tensor]) -> torch.Tensor:
        raise _oom()

    monkeypatch.setattr(Restorer, "assemble", never)
    failed = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "never.mkv")])
    assert failed.exit_code != 0 and "Traceback" not in failed.output
    assert "error: out of memory on cpu even for one window at a time" in failed.output
    assert not (tmp_path / "never.mkv").exists()


def test_every_restorer_tells_its_own_steps(model) -> None:
    """Under Python's default filters a text is shown once per place: a second model going the same way (a
    later input's, e.g. --rain auto's other level) would be silent without OutOfMemoryWarning's filter."""
    with warnings.catch_warnings(record=True) as caught:  # the filters as they are: no simplefilter here
        for _ in range(2):
            restorer = Restorer(model, torch.device("cpu"))
            assemble = restorer.assemble

            def one_window_only(frames: list[torch.Tensor], assemble=assemble) -> torch.Tensor:  # noqa: ANN001
                if len(frames) > 5:
                    raise _oom()
                return assemble(frames)

            restorer.assemble = one_window_only  # type: ignore[method-assign]
            assert len(list(derain_stream(FRAMES[:4], restorer, 2))) == 4
    told = [str(w.message) for w in caught if issubclass(w.category, OutOfMemoryWarning)]
    assert told == ["out of memory on cpu with 2 windows per call: going on with 1 (--batch 1)"] * 2


def test_a_helper_process_sends_its_steps_and_the_driver_tells_each_once(model) -> None:
    """--workers: a helper's out-of-memory steps go through a queue (batch.send_steps; its other warnings
    are dropped: the driver finds them too) and the driver tells them as warnings of its input."""
    import multiprocessing
    from pathlib import Path

    from tmics_cli.batch import _Helpers, send_steps
    from tmics_cli.video.reader import VideoWarning

    queue = multiprocessing.get_context("spawn").SimpleQueue()
    with warnings.catch_warnings():  # as in a helper process (the filters and showwarning put back after)
        send_steps(queue)
        restorer = Restorer(model, torch.device("cpu"))
        _calls_of_at_most(restorer, 1)
        assert len(list(derain_stream(FRAMES[:6], restorer, 2))) == 6
        warnings.warn("frame 3 is damaged", VideoWarning, stacklevel=1)

    class Report:
        def __init__(self) -> None:
            self.told: list[tuple[str, str]] = []

        def warning(self, source: Path, message: str) -> None:
            self.told.append((source.name, message))

    helpers = _Helpers.__new__(_Helpers)  # its queue and record of what was told, no processes
    helpers.steps, helpers.told = queue, set()
    report = Report()
    helpers.tell(report, Path("in.mp4"))
    queue.put("out of memory on cpu with 2 windows per call: going on with 1 (--batch 1)")  # another helper's
    helpers.tell(report, Path("in.mp4"))
    assert report.told == [
        ("in.mp4", "out of memory on cpu with 2 windows per call: going on with 1 (--batch 1)")
    ]
