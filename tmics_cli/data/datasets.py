"""Training and evaluation data: clean clips with rain rendered on the fly, and paired rainy/clean sets.

Clean clips come from folders of frames (png/jpg, natural sort) or video files (decoded with PyAV, imported
only then, so frame folders work where PyAV is missing). A `RainyClipDataset` sample is a random 5-frame
window (random temporal stride), a random crop, random flips, and rain from the renderer:

    frames (5, 3, h, w) rainy, in [0, 1]     target (3, h, w) the clean centre frame

Sample i is drawn from its own generator seeded by (seed, i), so a data set is a fixed, reproducible
sequence: resuming training at step s just continues at index s * batch.

Paired sets, in the public layouts:
    J4R (RainSynLight25 / RainSynComplex25):  <root>/<video>/rfc-<n>.jpg with gtc-<n>.jpg beside it
    NTURain:                                   <root>/<name>_Rain/*.jpg with <root>/<name>_GT/*.jpg
    generic:                                   <root>/rain/* with <root>/gt/* (one video), or
                                               <root>/<video>/rain/* with <root>/<video>/gt/*
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..video.files import VIDEO_SUFFIXES, list_images, natural_key
from ..video.images import read_rgb
from ..video.reader import VideoWarning
from ..video.windows import reflect_index, window_indices
from .rain import PRESETS, add_rain, degrade_clip, sample_style

LAYOUT_HELP = (
    "expected J4R <root>/<video>/rfc-<n>.jpg + gtc-<n>.jpg (RainSynLight25, RainSynComplex25), "
    "NTURain <root>/<name>_Rain/ + <root>/<name>_GT/, or generic <root>/rain/ + <root>/gt/ "
    "(or <root>/<video>/rain/ + gt/)"
)


class DataError(ValueError):
    """Data that cannot be read or does not follow a known layout; the message says what is expected."""


class LayoutNotFound(DataError):
    """A folder that holds none of the paired layouts (it may still hold clean clips)."""


def read_image(path: Path, strict: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 RGB. A file cut short (see video.images.image_damage) that OpenCV still decodes,
    with the missing part grey, is a `VideoWarning`, or with `strict` a `DataError`."""
    rgb, problem = read_rgb(path)
    if rgb is None:
        raise DataError(f"cannot read image {path}" + (f" ({problem})" if problem else ""))
    if problem:
        message = f"{path}: {problem}, decoded with missing data"
        if strict:
            raise DataError(message)
        warnings.warn(message, VideoWarning, stacklevel=2)
    return rgb


def read_video_frames(path: Path) -> list[np.ndarray]:
    """All frames of a video file as (H, W, 3) uint8 RGB (for short training clips), converted with the
    stream's own colour matrix and range exactly as `tmics derain` reads them (video.reader), so that the
    network trains on the colours it will be fed."""
    try:
        from ..video.reader import VideoError, open_source
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise DataError(f"reading {path} needs PyAV (pip install av); frame folders work without it") from exc
    try:
        source = open_source(path)
    except (VideoError, ImportError) as exc:
        raise DataError(f"cannot decode video {path}: {exc}") from None
    try:
        return [item.rgb for item in source]
    except VideoError as exc:
        raise DataError(f"cannot decode video {path}: {exc}") from None
    finally:
        source.close()


@dataclass
class Clip:
    name: str
    frames: list[np.ndarray]  # each (H, W, 3) uint8 RGB


def load_clips(sources: list[str | Path], exclude: tuple[str, ...] = ()) -> list[Clip]:
    """Clean clips from each source: a video file, a folder of frames, or a folder of such (one level)."""
    clips: list[Clip] = []
    for source in map(Path, sources):
        if source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES:
            candidates = [source]
        elif source.is_dir() and list_images(source):
            candidates = [source]
        elif source.is_dir():
            candidates = sorted(
                (
                    p
                    for p in source.iterdir()
                    if (p.is_dir() and list_images(p)) or p.suffix.lower() in VIDEO_SUFFIXES
                ),
                key=natural_key,
            )
        else:
            raise DataError(f"no clip at {source}: expected a video file or a folder of frames")
        for path in candidates:
            name = path.stem if path.is_file() else path.name
            if name in exclude:
                continue
            frames = read_video_frames(path) if path.is_file() else [read_image(p) for p in list_images(path)]
            if len(frames) < 2:
                raise DataError(f"clip {path} has {len(frames)} frame(s); at least 2 are needed")
            clips.append(Clip(name, frames))
    if not clips:
        raise DataError(f"no clips found in {', '.join(map(str, sources))}")
    return clips


def to_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    """(T, H, W, 3) uint8 or float frames -> (T, 3, H, W) float32 in [0, 1]."""
    arr = np.stack(frames)
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
    return t.float() / 255 if arr.dtype == np.uint8 else t.float()


def _crop_window(frames: list[np.ndarray], crop: int | None, rng: np.random.Generator) -> list[np.ndarray]:
    if crop is None:
        return frames
    h, w = frames[0].shape[:2]
    if h < crop or w < crop:  # upscale small clips (e.g. QCIF) so a crop fits
        s = crop / min(h, w)
        size = (max(crop, round(w * s)), max(crop, round(h * s)))
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in frames]
        h, w = frames[0].shape[:2]
    y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    return [f[y : y + crop, x : x + crop] for f in frames]


def _flip(frames: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    if rng.random() < 0.5:
        frames = [f[:, ::-1] for f in frames]
    if rng.random() < 0.5:
        frames = [f[::-1] for f in frames]
    return [np.ascontiguousarray(f) for f in frames]


class RainyClipDataset(Dataset):
    """Random windows of clean clips with rain rendered on the fly (see the module docstring).

    `clean_probability` of the samples get no rain (only the same compression on input and target), so the
    network learns to leave rain-free detail alone. `max_stride` picks the temporal stride uniformly from
    1..max_stride (faster apparent motion). `length` is the number of distinct samples (an epoch).
    """

    def __init__(
        self,
        clips: list[Clip],
        preset: str = "heavy",
        crop: int | None = 128,
        length: int = 100_000,
        seed: int = 0,
        max_stride: int = 2,
        clean_probability: float = 0.08,
    ) -> None:
        if preset not in PRESETS:
            raise ValueError(f"unknown rain preset {preset!r}; known: {', '.join(PRESETS)}")
        self.clips, self.preset, self.crop, self.length = clips, preset, crop, length
        self.seed, self.max_stride, self.clean_probability = seed, max_stride, clean_probability
        sizes = np.sqrt([len(c.frames) for c in clips])  # long clips count more, but not in proportion
        self.clip_weights = sizes / sizes.sum()

    def __len__(self) -> int:
        return self.length

    def window(self, index: int) -> tuple[list[np.ndarray], np.random.Generator]:
        rng = np.random.default_rng([self.seed, index])
        clip = self.clips[int(rng.choice(len(self.clips), p=self.clip_weights))]
        n = len(clip.frames)
        stride = int(rng.integers(1, self.max_stride + 1))
        stride = max(1, min(stride, (n - 1) // 4)) if n > 4 else 1
        centre = int(rng.integers(0, n))
        picks = [reflect_index(centre + stride * d, n) for d in range(-2, 3)]  # reflected at the ends
        frames = [clip.frames[p] for p in picks]
        if rng.random() < 0.5:
            frames = frames[::-1]  # time reversal: rain does not care about the direction of time
        frames = _flip(_crop_window(frames, self.crop, rng), rng)
        return frames, rng

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        frames, rng = self.window(index)
        floats = [f.astype(np.float32) / 255 for f in frames]
        style = sample_style(self.preset, rng)
        if rng.random() < self.clean_probability:
            clean = degrade_clip(floats, style)
            rainy = clean
        else:
            rainy, clean = add_rain(floats, style, rng)
        return {"frames": to_tensor(rainy), "target": to_tensor([clean[2]])[0]}


# --- paired sets --------------------------------------------------------------------------------------------


@dataclass
class PairedVideo:
    name: str
    rain: list[Path]
    gt: list[Path]


def _j4r_videos(root: Path) -> list[PairedVideo]:
    videos = []
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), key=natural_key):
        rain = sorted(folder.glob("rfc-*.*"), key=natural_key)
        if rain:
            gt = [p.with_name(p.name.replace("rfc-", "gtc-", 1)) for p in rain]
            missing = [p.name for p in gt if not p.exists()]
            if missing:
                raise DataError(
                    f"{folder}: ground truth missing for {len(missing)} frame(s), e.g. {missing[0]}"
                )
            videos.append(PairedVideo(folder.name, rain, gt))
    return videos


def _nturain_videos(root: Path) -> list[PairedVideo]:
    videos = []
    for rain_dir in sorted(root.glob("*_Rain"), key=natural_key):
        gt_dir = rain_dir.with_name(rain_dir.name[: -len("_Rain")] + "_GT")
        if rain_dir.is_dir() and gt_dir.is_dir():
            videos.append(_pair_folders(rain_dir.name[: -len("_Rain")], rain_dir, gt_dir))
    return videos


def _pair_folders(name: str, rain_dir: Path, gt_dir: Path) -> PairedVideo:
    rain, gt = list_images(rain_dir), list_images(gt_dir)
    if len(rain) != len(gt) or not rain:
        raise DataError(f"{rain_dir} has {len(rain)} frames but {gt_dir} has {len(gt)}")
    return PairedVideo(name, rain, gt)


def _generic_videos(root: Path) -> list[PairedVideo]:
    if (root / "rain").is_dir() and (root / "gt").is_dir():
        return [_pair_folders(root.name, root / "rain", root / "gt")]
    return [
        _pair_folders(p.name, p / "rain", p / "gt")
        for p in sorted(root.iterdir(), key=natural_key)
        if p.is_dir() and (p / "rain").is_dir() and (p / "gt").is_dir()
    ]


LAYOUTS = {"j4r": _j4r_videos, "nturain": _nturain_videos, "generic": _generic_videos}


def find_paired_videos(root: str | Path) -> tuple[str, list[PairedVideo]]:
    """Detect the layout of a paired set and list its videos: (layout name, videos)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"no data set folder at {root}; {LAYOUT_HELP}")
    for name, finder in LAYOUTS.items():
        videos = finder(root)
        if videos:
            return name, videos
    raise LayoutNotFound(f"{root} matches no known paired layout; {LAYOUT_HELP}")


class PairedWindowDataset(Dataset):
    """Random 5-frame windows (reflected at the ends) of paired videos, random crops and flips."""

    def __init__(
        self, videos: list[PairedVideo], crop: int | None = 128, length: int = 100_000, seed: int = 0
    ):
        self.videos, self.crop, self.length, self.seed = videos, crop, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        video = self.videos[int(rng.integers(len(self.videos)))]
        n = len(video.rain)
        centre = int(rng.integers(0, n))
        picks = window_indices(centre, n)
        images = [read_image(video.rain[p]) for p in picks] + [read_image(video.gt[centre])]
        images = _flip(_crop_window(images, self.crop, rng), rng)
        return {"frames": to_tensor(images[:5]), "target": to_tensor(images[5:])[0]}
