"""The batched device path (frames uploaded once as uint8, windows gathered on the device) against the
per-window host path it replaced: bit for bit on the CPU."""

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.videos import moving_texture
from tmics_cli.inference import Restorer, derain_stream, stream_windows
from tmics_cli.model import load_model

CLIP = np.stack([moving_texture(i, 24, 32) for i in range(7)])  # (7, H, W, 3) uint8


def _per_window(
    frames: Iterable[np.ndarray], restorer: Restorer, batch: int, first: int = 0, count: int | None = None
) -> Iterator[np.ndarray]:
    """derain_stream as it was: each batch's windows stacked on the host, (B, 5, H, W, 3) uint8."""
    pending: list[list[np.ndarray]] = []
    for position, (_, window) in enumerate(stream_windows(frames)):
        if position < first or (count is not None and position >= first + count):
            continue
        pending.append(window)
        if len(pending) == batch:
            yield from restorer(np.stack([np.stack(w) for w in pending]))
            pending = []
    if pending:
        yield from restorer(np.stack([np.stack(w) for w in pending]))


class _Calls(Restorer):
    """A Restorer that records the windows of every model call, as (B, 5, 3, H, W) float."""

    def _forward(self, frames: torch.Tensor, tile: int | None):  # type: ignore[override]
        self.calls.append(frames.detach().clone())
        return super()._forward(frames, tile)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    from tmics_cli.model import build_model, save_model

    torch.manual_seed(0)
    path: Path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_model(build_model("light", "tiny"), path)
    return load_model(path)


@pytest.mark.parametrize("batch", [1, 3, 4])
@pytest.mark.parametrize(("first", "count"), [(0, None), (2, 3)])
def test_frames_uploaded_once_give_the_per_window_outputs_bit_for_bit(
    model, batch: int, first: int, count: int | None
) -> None:
    old = _Calls(model, torch.device("cpu"))
    new = _Calls(model, torch.device("cpu"))
    old.calls, new.calls = [], []
    expected = np.stack(list(_per_window(iter(CLIP), old, batch, first, count)))
    got = np.stack(list(derain_stream(iter(CLIP), new, batch, first, count)))
    assert got.shape == expected.shape == (count or len(CLIP), *CLIP.shape[1:])
    assert np.array_equal(got, expected)
    # the same windows in the same batches, laid out alike (so the same kernels run)
    assert [c.shape for c in new.calls] == [c.shape for c in old.calls]
    for a, b in zip(new.calls, old.calls, strict=True):
        assert a.stride() == b.stride() and torch.equal(a, b)
    assert set(new.timings) == set(old.timings) and new.timings["upload"] > 0


def test_restore_frames_is_the_restorer_on_the_gathered_windows(model) -> None:
    restorer = Restorer(model, torch.device("cpu"))
    index = np.array([[2, 1, 0, 1, 2], [0, 1, 2, 3, 4], [4, 5, 6, 5, 4]])  # reflections at both ends
    assert np.array_equal(restorer.restore_frames(CLIP, index), restorer(CLIP[index]))


def test_short_clips_reflect_as_before(model) -> None:
    for length in (1, 2, 3):
        clip = CLIP[:length]
        restorer = Restorer(model, torch.device("cpu"))
        expected = np.stack(list(_per_window(iter(clip), restorer, 4)))
        assert np.array_equal(np.stack(list(derain_stream(iter(clip), restorer, 4))), expected)


def test_restore_leaves_the_dna_output_behind_and_restore_all_still_gives_it(model) -> None:
    restorer = Restorer(model, torch.device("cpu"))
    windows = torch.from_numpy(CLIP[[[0, 1, 2, 3, 4]]]).permute(0, 1, 4, 2, 3).float() / 255
    fused, dna = restorer.restore_all(windows)
    assert torch.equal(restorer.restore(windows), fused)
    assert dna.shape == fused.shape and not torch.equal(dna, fused)
    assert restorer._restore(windows, dna=False, to_host=True)[1] is None
