from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tmics_cli.data.datasets import (
    DataError,
    PairedWindowDataset,
    RainyClipDataset,
    find_paired_videos,
    load_clips,
)


def write_clip(
    folder: Path, frames: int = 8, h: int = 40, w: int = 56, seed: int = 0, prefix: str = ""
) -> None:
    """A textured scene panning right by 2 px per frame, as numbered JPEGs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (h // 4, w // 2, 3), dtype=np.uint8), (w + 2 * frames, h))
    for t in range(frames):
        cv2.imwrite(str(folder / f"{prefix}{t + 1:05d}.jpg"), base[:, 2 * t : 2 * t + w])


@pytest.fixture
def clean_root(tmp_path: Path) -> Path:
    for i, name in enumerate(["alpha", "beta", "gamma"]):
        write_clip(tmp_path / "clean" / name, seed=i)
    return tmp_path / "clean"


def test_clips_load_in_natural_order_and_holdout_is_excluded(clean_root: Path, tmp_path: Path) -> None:
    odd = tmp_path / "odd"
    write_clip(odd, frames=3)
    for f in sorted(odd.iterdir()):  # rename to 1.jpg, 2.jpg, 10.jpg: natural sort puts 10 last
        f.rename(odd / {"00001.jpg": "1.jpg", "00002.jpg": "2.jpg", "00003.jpg": "10.jpg"}[f.name])
    clip = load_clips([odd])[0]
    assert np.array_equal(clip.frames[2], cv2.imread(str(odd / "10.jpg"))[..., ::-1])
    names = [c.name for c in load_clips([clean_root], exclude=("beta",))]
    assert names == ["alpha", "gamma"]
    with pytest.raises(DataError, match="no clip"):
        load_clips([tmp_path / "nothing"])


def test_rainy_windows_shapes_ranges_and_determinism(clean_root: Path) -> None:
    ds = RainyClipDataset(load_clips([clean_root]), "heavy", crop=32, length=50, seed=3, clean_probability=0)
    a = ds[7]
    assert a["frames"].shape == (5, 3, 32, 32) and a["target"].shape == (3, 32, 32)
    assert a["frames"].dtype == torch.float32 and 0 <= a["frames"].min() and a["frames"].max() <= 1
    assert torch.equal(a["frames"], ds[7]["frames"]) and not torch.equal(a["frames"], ds[8]["frames"])
    assert (a["frames"][2] - a["target"]).mean() > 0  # rain brightens the centre frame


def test_rain_free_samples_have_input_equal_to_target(clean_root: Path) -> None:
    ds = RainyClipDataset(load_clips([clean_root]), "light", crop=32, clean_probability=1.0)
    s = ds[0]
    assert torch.equal(s["frames"][2], s["target"])


def test_small_clips_are_upscaled_to_fit_the_crop(tmp_path: Path) -> None:
    write_clip(tmp_path / "qcif", h=20, w=24)
    s = RainyClipDataset(load_clips([tmp_path / "qcif"]), "light", crop=32)[0]
    assert s["frames"].shape == (5, 3, 32, 32)


def test_layouts_are_detected(tmp_path: Path) -> None:
    j4r = tmp_path / "j4r" / "v1"
    write_clip(j4r, frames=4, prefix="rfc-")
    for f in list(j4r.glob("rfc-*")):
        (j4r / f.name.replace("rfc-", "gtc-")).write_bytes(f.read_bytes())
    layout, videos = find_paired_videos(tmp_path / "j4r")
    assert layout == "j4r" and len(videos[0].rain) == 4 and videos[0].gt[0].name.startswith("gtc-")

    write_clip(tmp_path / "ntu" / "a1_Rain", frames=3)
    write_clip(tmp_path / "ntu" / "a1_GT", frames=3)
    assert find_paired_videos(tmp_path / "ntu")[0] == "nturain"

    write_clip(tmp_path / "gen" / "rain", frames=3)
    write_clip(tmp_path / "gen" / "gt", frames=3)
    layout, videos = find_paired_videos(tmp_path / "gen")
    assert layout == "generic" and videos[0].name == "gen"
    sample = PairedWindowDataset(videos, crop=16)[0]
    assert sample["frames"].shape == (5, 3, 16, 16) and sample["target"].shape == (3, 16, 16)


def test_unknown_layout_names_the_expected_ones(tmp_path: Path) -> None:
    write_clip(tmp_path / "junk" / "frames", frames=2)
    with pytest.raises(
        DataError,
        match=r"matches no known paired layout; expected J4R .*rfc-<n>.jpg.*_Rain/.*rain/ \+ <root>/gt/",
    ):
        find_paired_videos(tmp_path / "junk")
    write_clip(tmp_path / "bad" / "rain", frames=3)
    write_clip(tmp_path / "bad" / "gt", frames=2)
    with pytest.raises(DataError, match="has 3 frames but"):
        find_paired_videos(tmp_path / "bad")


def test_training_reads_video_with_the_colours_derain_feeds_the_network(tmp_path: Path) -> None:
    from tests.videos import make_video
    from tmics_cli.data.datasets import read_video_frames
    from tmics_cli.video.reader import open_source

    clip = make_video(tmp_path / "bt709.mp4", frames=3, colorspace=1)  # BT.709, limited range
    source = open_source(clip)
    derain_sees = [item.rgb for item in source]
    source.close()
    trained_on = read_video_frames(clip)
    assert len(trained_on) == 3
    assert all(np.array_equal(a, b) for a, b in zip(trained_on, derain_sees, strict=True))
