"""Preview synthetic rain next to the clean frame, for judging its realism by eye.

Takes the middle frame of a folder of clean frames, draws `--rows` rain styles of a preset over it (one row
each: clean | rainy, with the coverage and style printed) and, with `--reference`, a real rainy frame at the
bottom for comparison. Formerly `python -m tmics_cli.data.rain --preview ...`; it lives here so that the rain
renderer (tmics_cli/data/rain.py) need not import tmics_cli/data/datasets.py, which imports it.

    python tools/rain_preview.py --preview preview.png --clip ../shared/data/clean/walk --preset heavy
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from tmics_cli.data.datasets import DataError, read_image
from tmics_cli.data.rain import PRESETS, Frame, add_rain, rain_coverage, sample_style


def _read_rgb(path: Path) -> Frame:
    try:
        return read_image(path).astype(np.float32) / 255
    except DataError as exc:
        raise SystemExit(f"error: {exc}") from None


def preview(clip: Path, out: Path, preset: str, seed: int, count: int, reference: Path | None) -> None:
    files = sorted(p for p in clip.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not files:
        raise SystemExit(f"error: no frames in {clip}")
    frame = _read_rgb(files[len(files) // 2])
    rows = []
    rng = np.random.default_rng(seed)
    for _ in range(count):
        style = sample_style(preset, rng)
        rainy, clean = add_rain([frame], style, rng)
        rows.append(np.concatenate([clean[0], rainy[0]], 1))
        kind = f"angle {style.angle:+.0f}, {len(style.layers)} layers, haze {style.haze:.2f}"
        kind += (
            f", H.264 CRF {style.h264_crf}" if style.h264_crf is not None else f", JPEG {style.jpeg_quality}"
        )
        print(f"row {len(rows)}: coverage {rain_coverage(rainy[0], clean[0]):.3f}; {kind}")
    sheet = np.concatenate(rows, 0)
    if reference is not None:
        ref = _read_rgb(reference)
        ref = cv2.resize(ref, (sheet.shape[1], int(ref.shape[0] * sheet.shape[1] / ref.shape[1])))
        sheet = np.concatenate([sheet, ref], 0)
    cv2.imwrite(str(out), (np.clip(sheet, 0, 1) * 255 + 0.5).astype(np.uint8)[..., ::-1])
    print(f"wrote {out}: clean | rainy per row" + (", real reference at the bottom" if reference else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description="Preview synthetic rain next to the clean frame.")
    parser.add_argument("--preview", type=Path, required=True, help="output PNG")
    parser.add_argument("--clip", type=Path, required=True, help="folder of clean frames")
    parser.add_argument("--preset", choices=list(PRESETS), default="heavy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=3)
    parser.add_argument("--reference", type=Path, help="a real rainy frame to show below, for comparison")
    args = parser.parse_args()
    preview(args.clip, args.preview, args.preset, args.seed, args.rows, args.reference)


if __name__ == "__main__":
    main()
