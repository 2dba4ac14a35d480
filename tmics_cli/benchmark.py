"""`tmics benchmark`: the paper's evaluation protocol on a paired rainy / clean set, for several methods.

Per video, each method derains every frame (5-frame windows reflected at the ends, exactly as `tmics
derain`); the frames the set's protocol scores are compared with the ground truth on luma, MATLAB style
(tmics_cli.metrics): Y-PSNR and SSIM averaged over the video's scored frames, then over videos. Also a
temporal figure that needs no flow network: mean |(O_t - O_t-1) - (G_t - G_t-1)| on Y over consecutive
scored frames (lower is steadier), and frames per second of the method alone.

Sets: the public ones by name (RainSynLight25, RainSynComplex25, NTURain, LasVR) under --data or
$TMICS_DATA/NAME, any paired folder by path (layouts detected by tmics_cli.data.datasets), and the built-in
`synthetic-light` / `synthetic-heavy`: rain from tmics' renderer over the clean clip that ships in the
package, fixed seeds and frozen preset versions, so they need nothing downloaded; and the model card's
frozen sets (`card-light-v1`, `card-light-hazy-v1`, `card-heavy-v1`, `card-drizzle-v1`,
`card-dense-drizzle-v1`, `card-near-v1`: CARD_SETS), rendered over the held-out clean clip `walk` of the
shared data (--data), which reproduce the numbers of weights/README.md.

Methods: `input` (no processing), `median` (temporal median of the 5 frames aligned by DIS optical flow),
`median-unaligned`, the shipped weights `light` and `heavy`, and any weights file.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.datasets import DataError, LayoutNotFound, find_paired_videos, read_image
from .inference import Restorer, frames_to_uint8, stream_windows, windows_to_tensor
from .metrics import fsim, luma, psnr_y, ssim_y, vif
from .model.align import DISFlow, align_frames, estimate_flows
from .outputs import PendingOutput, write_failed, write_text
from .video.reader import VideoWarning

BENCHMARK_FORMAT = "tmics-benchmark/1"
BASELINES = ("input", "median", "median-unaligned")
EXTRA_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"fsim": fsim, "vif": vif}


@dataclass(frozen=True)
class KnownSet:
    layout: str
    protocol: str  # "j4r": frames 3..N-2 (3..29 of 31); "all"
    where: str


KNOWN_SETS: dict[str, KnownSet] = {
    "RainSynLight25": KnownSet(
        "J4R: <root>/<video>/rfc-<n>.jpg + gtc-<n>.jpg",
        "j4r",
        "J4R-Net, Liu et al., CVPR 2018 (github.com/flyywh/J4RNet-Deep-Video-Deraining-CVPR-2018)",
    ),
    "RainSynComplex25": KnownSet(
        "J4R: <root>/<video>/rfc-<n>.jpg + gtc-<n>.jpg",
        "j4r",
        "J4R-Net, Liu et al., CVPR 2018 (github.com/flyywh/J4RNet-Deep-Video-Deraining-CVPR-2018)",
    ),
    "NTURain": KnownSet(
        "NTURain: <root>/<name>_Rain/ + <root>/<name>_GT/",
        "all",
        "SPAC-CNN, Chen et al., CVPR 2018 (github.com/hotndy/SPAC-SupplementaryMaterials)",
    ),
    "LasVR": KnownSet(
        "generic: <root>/<video>/rain/ + <root>/<video>/gt/ (rearrange LasVR's test videos so)",
        "all",
        "Liu, Xu and Wang, ICME 2019 (github.com/stayhungry1/Video-Rain-Removal)",
    ),
}
# built-in sets over the packaged clip, each drawn from one frozen rain preset version (tmics_cli.data.rain)
SYNTHETIC_SETS = {"synthetic-light": "light-v9", "synthetic-heavy": "heavy-v2"}
SYNTHETIC_VIDEOS, SYNTHETIC_LENGTH, SYNTHETIC_SEED = 3, 20, 2026


@dataclass(frozen=True)
class CardSet:
    """A frozen synthetic set of the model card (weights/README.md): `windows` 5-frame windows of the clean
    clip `clip` (held out of training; under --data or $TMICS_DATA/clean), rain from one preset version,
    drawn as the training data is (RainyClipDataset, stride 1, whole frames, `seed`). Each window is one
    video whose centre frame is scored, as the card scores it."""

    preset: str  # a version in tmics_cli.data.rain.PRESET_VERSIONS, never an alias
    about: str
    windows: int = 8
    seed: int = 1234
    clip: str = "walk"


# Never edit one: a changed set is a new name (-v2).
CARD_SETS: dict[str, CardSet] = {
    "card-light-v1": CardSet("light-v3", "light rain of the 4th-7th rounds: streaks, fine, slanted"),
    "card-light-hazy-v1": CardSet("light-v2", "card-light-v1's windows with its styles' haze"),
    "card-heavy-v1": CardSet("heavy-v2", "heavy rain: streaks, fine, slanted, dense, hazy"),
    "card-drizzle-v1": CardSet("drizzle-v1", "the drizzle style alone"),
    "card-dense-drizzle-v1": CardSet("dense-drizzle-v1", "the dense-drizzle style alone"),
    "card-near-v1": CardSet("near-v1", "card-light-v1's clips with a near-camera layer in every clip"),
}
CLEAN_CLIP = Path(__file__).resolve().parent / "assets" / "sample-clean.mp4"


@dataclass
class BenchVideo:
    name: str
    count: int
    rain: Callable[[], Iterator[np.ndarray]]  # (H, W, 3) uint8 frames, in order
    gt: Callable[[int], np.ndarray]  # ground truth of frame i
    scored: list[int]


@dataclass
class BenchSet:
    name: str
    source: str
    protocol: str
    videos: list[BenchVideo]


def protocol_frames(protocol: str, count: int) -> list[int]:
    """0-based indices the protocol scores: J4R sets score frames 3..N-2 of N (3..29 of 31)."""
    if protocol == "j4r":
        return list(range(2, count - 2)) if count > 4 else list(range(count))
    return list(range(count))


def _size(image: np.ndarray) -> str:
    return f"{image.shape[1]}x{image.shape[0]}"


def size_mismatch(video: str, frame: int, rain: np.ndarray, gt: np.ndarray) -> DataError:
    """The error for a rainy frame and its ground truth of different sizes (`frame` counts from 1)."""
    return DataError(
        f"video {video} frame {frame}: the rainy frame is {_size(rain)} but its ground truth is {_size(gt)}; "
        "both must have one size"
    )


def _on_disk(path: Path, protocol: str | None, strict: bool = False) -> BenchSet:
    layout, videos = find_paired_videos(path)
    protocol = protocol or ("j4r" if layout == "j4r" else "all")
    bench = []
    for v in videos:
        rain, gt = list(v.rain), list(v.gt)
        with warnings.catch_warnings():  # damage is told once, when the frames are scored
            warnings.simplefilter("ignore", VideoWarning)
            first, first_gt = read_image(rain[0]), read_image(gt[0])  # checked before any work
        if first.shape != first_gt.shape:
            raise size_mismatch(v.name, 1, first, first_gt)
        bench.append(
            BenchVideo(
                v.name,
                len(rain),
                lambda rain=rain: (read_image(p, strict) for p in rain),
                lambda i, gt=gt: read_image(gt[i], strict),
                protocol_frames(protocol, len(rain)),
            )
        )
    return BenchSet(path.name, str(path), protocol, bench)


def synthetic_set(name: str) -> BenchSet:
    """Rain from the renderer over the packaged clean clip: 3 videos of 20 frames, fixed seeds."""
    from .data.rain import add_rain, sample_style
    from .video.reader import open_source

    preset = SYNTHETIC_SETS[name]
    family = preset.rsplit("-v", 1)[0]
    source = open_source(CLEAN_CLIP)
    clean = [item.rgb.astype(np.float32) / 255 for item in source]
    source.close()
    videos = []
    for i in range(SYNTHETIC_VIDEOS):
        part = clean[i * SYNTHETIC_LENGTH : (i + 1) * SYNTHETIC_LENGTH]
        rng = np.random.default_rng([SYNTHETIC_SEED, i, 0 if family == "light" else 1])
        rainy, target = add_rain(part, sample_style(preset, rng), rng)
        rain_u8 = [(np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8) for f in rainy]
        gt_u8 = [(np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8) for f in target]
        videos.append(
            BenchVideo(
                f"bikes-{i + 1}",
                len(rain_u8),
                lambda frames=rain_u8: iter(frames),
                lambda j, frames=gt_u8: frames[j],
                list(range(len(rain_u8))),
            )
        )
    return BenchSet(name, f"built in: {CLEAN_CLIP.name} + {preset} rain", "all", videos)


def _card_clip(name: str, spec: CardSet, data: str | Path | None) -> Path:
    """A card set's clean clip: DATA/<clip>, DATA/clean/<clip> or DATA itself (no DATA: $TMICS_DATA)."""
    if data is None:
        root = os.environ.get("TMICS_DATA")
        if not root:
            raise DataError(
                f"{name} renders rain over the clean clip {spec.clip!r} (shared data: clean/{spec.clip}); "
                "where is it? pass --data DIR or set $TMICS_DATA"
            )
        data = root
    path = Path(data)
    for candidate in (path / spec.clip, path / "clean" / spec.clip):
        if candidate.is_dir():
            return candidate
    if path.is_dir() and path.name == spec.clip:
        return path
    raise DataError(f"no clean clip {spec.clip!r} at {path}, {path}/{spec.clip} or {path}/clean/{spec.clip}")


def card_set(name: str, data: str | Path | None = None) -> BenchSet:
    """A model card set (CARD_SETS): its windows rendered exactly as the card's numbers were."""
    from .data.datasets import RainyClipDataset, load_clips

    spec = CARD_SETS[name]
    clip = _card_clip(name, spec, data)
    ds = RainyClipDataset(
        load_clips([clip]), spec.preset, crop=None, seed=spec.seed, clean_probability=0.0, max_stride=1
    )
    videos = []
    for i in range(spec.windows):
        sample = ds[i]
        rain_u8 = [frames_to_uint8(f[None])[0] for f in sample["frames"]]
        gt = frames_to_uint8(sample["target"][None])[0]
        videos.append(
            BenchVideo(
                f"{spec.clip}-window-{i + 1}",
                len(rain_u8),
                lambda frames=rain_u8: iter(frames),
                lambda j, gt=gt: gt,
                [2],  # the centre frame: the card scores one frame per window
            )
        )
    source = f"built in: {clip} + {spec.preset} rain, {spec.windows} windows, seed {spec.seed}"
    return BenchSet(name, source, "centre", videos)


def load_set(name: str, data: str | Path | None = None, strict: bool = False) -> BenchSet:
    """A benchmark set by name (known public set, built-in synthetic set) or by path. Its frames are read
    as the benchmark runs: a damaged one (a truncated JPEG/PNG) is a warning, with `strict` a DataError."""
    if name in SYNTHETIC_SETS:
        return synthetic_set(name)
    if name in CARD_SETS:
        return card_set(name, data)
    known = KNOWN_SETS.get(name)
    if known is None and data is None:
        path = Path(name)
        if not path.exists():
            names = ", ".join([*KNOWN_SETS, *SYNTHETIC_SETS, *CARD_SETS])
            raise DataError(f"unknown set {name!r}: give one of {names}, or a path to a paired folder")
        return _on_disk(path, None, strict)
    if data is None:
        root = os.environ.get("TMICS_DATA")
        if not root:
            raise DataError(
                f"where is {name}? pass --data DIR or set $TMICS_DATA (then $TMICS_DATA/{name}); "
                f"expected layout {known.layout}; published with {known.where}"
            )
        data = Path(root) / name
    path = Path(data)
    if known is None:
        return _on_disk(path, None, strict)
    if not path.is_dir():
        raise DataError(f"no {name} at {path}: expected layout {known.layout}; published with {known.where}")
    try:
        bench = _on_disk(path, known.protocol, strict)
    except LayoutNotFound:
        raise DataError(
            f"{path} does not look like {name}: expected layout {known.layout}; published with {known.where}"
        ) from None
    bench.name = name
    return bench


# --- methods ----------------------------------------------------------------------------------------------


@dataclass
class Method:
    """A named way of turning 5-frame windows into frames; `run` returns one (H, W, 3) uint8 per window,
    or a dict of named outputs (a weights file gives its fused output and the DNA alone)."""

    name: str
    run: Callable[[np.ndarray], dict[str, np.ndarray]]  # (B, 5, H, W, 3) uint8 -> {row name: (B, H, W, 3)}
    rows: list[str]


def aligned_median(frames: torch.Tensor, preset: str = "medium") -> torch.Tensor:
    """(B, 5, 3, H, W) -> (B, 3, H, W): median of the DIS-aligned frames (outside pixels: the centre's)."""
    aligned, valid = align_frames(frames, estimate_flows(DISFlow(preset), frames))
    centre = frames[:, 2:3].expand_as(aligned)
    return torch.where(valid > 0, aligned, centre).median(1).values


def baseline(name: str) -> Method:
    if name == "input":
        return Method(name, lambda w: {name: w[:, 2].copy()}, [name])
    if name == "median":
        return Method(name, lambda w: {name: frames_to_uint8(aligned_median(windows_to_tensor(w)))}, [name])
    if name == "median-unaligned":
        return Method(name, lambda w: {name: np.median(w, axis=1).astype(np.uint8)}, [name])
    raise ValueError(f"unknown baseline {name!r}")


def model_method(name: str, restorer: Restorer, ablate: bool) -> Method:
    dna_row = f"{name} DNA only (TMICS_S)"

    def run(windows: np.ndarray) -> dict[str, np.ndarray]:
        if not ablate:  # the DNA-only output stays on the device
            return {name: frames_to_uint8(restorer.restore(windows_to_tensor(windows)))}
        fused, dna = restorer.restore_all(windows_to_tensor(windows))
        return {name: frames_to_uint8(fused), dna_row: frames_to_uint8(dna)}

    return Method(name, run, [name, dna_row] if ablate else [name])


# --- scoring ----------------------------------------------------------------------------------------------


@dataclass
class VideoScore:
    extra: tuple[str, ...] = ()  # optional metrics: "fsim", "vif"
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    temporal: list[float] = field(default_factory=list)
    others: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    frames: int = 0
    _previous: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def add(self, index: int, output: np.ndarray, target: np.ndarray) -> None:
        self.psnr.append(psnr_y(output, target))
        self.ssim.append(ssim_y(output, target))
        for name in self.extra:
            self.others.setdefault(name, []).append(EXTRA_METRICS[name](output, target))
        y_out, y_gt = luma(output), luma(target)
        if self._previous is not None and self._previous[0] == index - 1:
            _, p_out, p_gt = self._previous
            self.temporal.append(float(torch.mean(torch.abs((y_out - p_out) - (y_gt - p_gt)))))
        self._previous = (index, y_out, y_gt)

    def summary(self) -> dict[str, float | int | None]:
        return {
            "psnr": float(np.mean(self.psnr)),
            "ssim": float(np.mean(self.ssim)),
            "temporal": float(np.mean(self.temporal)) if self.temporal else None,
            "fps": self.frames / self.seconds if self.seconds > 0 else None,
            "frames_scored": len(self.psnr),
            **{name: float(np.mean(values)) for name, values in self.others.items()},
        }


@dataclass
class BenchmarkResult:
    set: BenchSet
    methods: list[str]
    device: str
    per_video: dict[str, dict[str, dict]] = field(default_factory=dict)  # row -> video -> summary
    complete: bool = False

    def means(self) -> dict[str, dict[str, float | None]]:
        out = {}
        for row, videos in self.per_video.items():
            if not videos:
                continue
            rows = list(videos.values())
            temporal = [r["temporal"] for r in rows if r["temporal"] is not None]
            frames = sum(r["frames"] for r in rows)
            seconds = sum(r["seconds"] for r in rows)
            out[row] = {
                "psnr": float(np.mean([r["psnr"] for r in rows])),
                "ssim": float(np.mean([r["ssim"] for r in rows])),
                "temporal": float(np.mean(temporal)) if temporal else None,
                "fps": frames / seconds if seconds > 0 else None,
                "videos": len(rows),
                **{m: float(np.mean([r[m] for r in rows])) for m in EXTRA_METRICS if m in rows[0]},
            }
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "format": BENCHMARK_FORMAT,
            "set": self.set.name,
            "source": self.set.source,
            "protocol": self.set.protocol,
            "videos": len(self.set.videos),
            "device": self.device,
            "complete": self.complete,
            "methods": {
                row: {**mean, "per_video": self.per_video[row]} for row, mean in self.means().items()
            },
        }

    def write_json(self, path: Path, overwrite: bool = False) -> None:
        """The results as JSON (atomically; an existing file is replaced only with `overwrite`; "-" is
        standard output)."""
        text = json.dumps(self.to_json(), indent=2) + "\n"
        if str(path) == "-":
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        write_text(path, text, overwrite=overwrite)

    def write_csv(self, path: Path, overwrite: bool = False) -> None:
        """Per-video rows, then each method's mean (atomically, as write_json)."""
        if str(path) == "-":
            self._csv_rows(sys.stdout)
            sys.stdout.flush()
            return
        pending = PendingOutput(path, overwrite=overwrite)
        with pending, pending.path.open("w", newline="") as f:
            self._csv_rows(f)
        pending.commit()

    def _csv_rows(self, f: Any) -> None:
        means = self.means()
        extra = [m for m in EXTRA_METRICS if any(m in mean for mean in means.values())]
        writer = csv.writer(f)
        writer.writerow(["method", "video", "psnr", "ssim", "temporal", "fps", "frames_scored", *extra])
        for row, videos in self.per_video.items():
            for video, r in videos.items():
                values = [r["psnr"], r["ssim"], r["temporal"], r["fps"], r["frames_scored"]]
                writer.writerow([row, video, *values, *(r.get(m) for m in extra)])
        for row, mean in means.items():
            values = [mean["psnr"], mean["ssim"], mean["temporal"], mean["fps"], ""]
            writer.writerow([row, "mean", *values, *(mean.get(m) for m in extra)])


def score_video(
    video: BenchVideo,
    method: Method,
    batch: int = 2,
    save_frames: Path | None = None,
    on_frame: Callable[[], None] | None = None,
    extra: tuple[str, ...] = (),
) -> dict[str, VideoScore]:
    """Run one method over one video (streaming, `batch` windows at a time) and score its output rows.
    With `save_frames`, each row's frames go to save_frames/ROW/VIDEO, written in a hidden folder beside it
    and moved into place when the video is done: an interrupted or failed video leaves none of its frames."""
    scored = set(video.scored)
    scores = {row: VideoScore(extra) for row in method.rows}
    folders: dict[str, tuple[Path, Path]] = {}  # row -> (frames being written, where they go when done)
    if save_frames is not None:
        for row in method.rows:
            final = save_frames / _safe(row) / _safe(video.name)
            folders[row] = (final.with_name(f".{final.name}.tmics-partial"), final)
    try:
        _score(video, method, batch, scored, scores, folders, on_frame)
    except BaseException:
        for partial, _ in folders.values():
            shutil.rmtree(partial, ignore_errors=True)
        raise
    for partial, final in folders.values():
        if partial.exists():
            partial.rename(final)
    return scores


def _score(
    video: BenchVideo,
    method: Method,
    batch: int,
    scored: set[int],
    scores: dict[str, VideoScore],
    folders: dict[str, tuple[Path, Path]],
    on_frame: Callable[[], None] | None,
) -> None:
    index = 0
    windows = (np.stack(window) for _, window in stream_windows(_one_size(video)))
    while True:
        chunk = list(islice(windows, batch))
        if not chunk:
            return
        start = time.perf_counter()
        outputs = method.run(np.stack(chunk))
        share = (time.perf_counter() - start) / len(chunk)
        for k in range(len(chunk)):
            i = index + k
            target = video.gt(i) if i in scored else None
            if target is not None and target.shape != chunk[k][2].shape:
                raise size_mismatch(video.name, i + 1, chunk[k][2], target)
            for row, frames in outputs.items():
                scores[row].seconds += share
                scores[row].frames += 1
                if target is not None:
                    scores[row].add(i, frames[k], target)
                if row in folders:
                    _save(folders[row][0] / f"{i + 1:05d}.png", frames[k])
            if on_frame is not None:
                on_frame()
        index += len(chunk)


def _one_size(video: BenchVideo) -> Iterator[np.ndarray]:
    """The video's rainy frames, refusing one whose size differs from the first's."""
    first = None
    for i, frame in enumerate(video.rain()):
        if first is None:
            first = frame
        elif frame.shape != first.shape:
            raise DataError(
                f"video {video.name} frame {i + 1} is {_size(frame)} but frame 1 is {_size(first)}; "
                "all frames of a video must have one size"
            )
        yield frame


def run_benchmark(
    bench: BenchSet,
    methods: list[Method],
    device: str = "cpu",
    batch: int = 2,
    save_frames: Path | None = None,
    on_frame: Callable[[], None] | None = None,
    result: BenchmarkResult | None = None,
    extra: tuple[str, ...] = (),
) -> BenchmarkResult:
    """Score every method on every video of `bench`. Fills `result` as it goes (so that an interrupted
    run still has every finished video), marks it complete at the end."""
    result = result or BenchmarkResult(bench, [m.name for m in methods], device)
    for method in methods:
        for row in method.rows:
            result.per_video.setdefault(row, {})
    for video in bench.videos:
        for method in methods:
            scores = score_video(video, method, batch, save_frames, on_frame, extra)
            for row, score in scores.items():
                summary = {**score.summary(), "seconds": score.seconds, "frames": score.frames}
                result.per_video[row][video.name] = summary
    result.complete = True
    return result


def _safe(name: str) -> str:
    """A folder name for a method or video: unsafe characters become `_`, and then a short hash of the
    original name is added, so that two names never share one folder (`a b` and `a_b`)."""
    import hashlib

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    if safe == name and not name.startswith("."):
        return name
    return f"{safe.lstrip('.') or 'x'}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def _save(path: Path, rgb: np.ndarray) -> None:
    """One saved frame; a failed write (a full disk) raises OSError (cv2.imwrite only returns False)."""
    from .video.images import write_png

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_png(path, rgb)
    except OSError as exc:
        raise write_failed(path, exc, "the frame") from None
