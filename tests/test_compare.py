"""--compare on rotated video: the input is shown on the left, whatever the display rotation."""

from pathlib import Path

import numpy as np
import pytest

from tests.videos import decode, make_video
from tmics_cli.derain import derain_video
from tmics_cli.video.compare import panel_size, shown_rotation, side_by_side
from tmics_cli.video.files import CONTAINER_SUFFIXES, UNROTATED_SUFFIXES


def test_panels_are_placed_so_the_input_shows_on_the_left() -> None:
    a, b = np.zeros((2, 3, 3), np.uint8), np.ones((2, 3, 3), np.uint8)
    assert side_by_side(a, b, 0)[:, :3].max() == 0 and side_by_side(a, b, 0).shape == (2, 6, 3)
    assert side_by_side(a, b, 180)[:, 3:].max() == 0  # turned upside down: the right comes to the left
    assert side_by_side(a, b, 90)[:2].max() == 0 and side_by_side(a, b, 90).shape == (4, 3, 3)
    assert side_by_side(a, b, -90)[2:].max() == 0  # -90 is 270
    assert panel_size(3, 2, 270) == (3, 4) and panel_size(3, 2, 180) == (6, 2)
    assert shown_rotation(Path("x.ts"), 90, False) == 0 and shown_rotation(Path("x.mp4"), 90, True) == 0
    assert shown_rotation(Path("x.MOV"), -90, False) == 270


@pytest.mark.parametrize("suffix", CONTAINER_SUFFIXES)
def test_the_containers_said_to_drop_a_rotation_are_those_that_do(tmp_path: Path, suffix: str) -> None:
    import av

    path = tmp_path / f"r{suffix}"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libvpx-vp9" if suffix == ".webm" else "mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 16, "yuv420p"
        stream.set_display_rotation(90)
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 32, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame.reformat(format="yuv420p")), *stream.encode(None)]:
            out.mux(packet)
    assert (decode(path)[3] == 0) == (suffix in UNROTATED_SUFFIXES)


@pytest.mark.parametrize(("rotation", "suffix", "input_at"), [(90, ".mp4", "top"), (-90, ".mkv", "bottom"),
                                                              (90, ".ts", "left")])  # fmt: skip
def test_a_rotated_clip_compares_side_by_side_as_shown(
    tmp_path: Path, tiny_weights: Path, rotation: int, suffix: str, input_at: str
) -> None:
    """A phone clip (display rotation 90) came out with the input above the derained frame as shown."""
    src = make_video(tmp_path / "in.mp4", frames=4, w=64, h=48, rotation=rotation)
    dst = tmp_path / f"out{suffix}"
    derain_video(src, dst, weights=tiny_weights, device="cpu", compare=True)
    rainy = decode(src)[0]
    frames = decode(dst)[0]
    assert len(frames) == 4
    stacked = input_at in ("top", "bottom")
    assert frames[0].shape[:2] == ((96, 64) if stacked else (48, 128))
    for i, frame in enumerate(frames):
        halves = (frame[:48], frame[48:]) if stacked else (frame[:, :64], frame[:, 64:])
        shown, other = halves if input_at in ("top", "left") else halves[::-1]
        near = np.abs(shown.astype(int) - rainy[i]).mean()
        assert near < 3 < np.abs(other.astype(int) - rainy[i]).mean(), (i, near)
