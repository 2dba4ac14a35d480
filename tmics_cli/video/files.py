"""File types and ordering: the one home of which suffixes tmics reads and writes, and of natural sorting.

Frames of a folder are read in natural order (`frame2.png` before `frame10.png`). `VIDEO_SUFFIXES` are the
files taken for videos when a folder is scanned (training data, clips); `CONTAINER_SUFFIXES` are the
containers `tmics derain` writes (any file PyAV opens can be derained).
"""

from __future__ import annotations

import re
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (
    ".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".flv", ".wmv"
)  # fmt: skip
CONTAINER_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".ts", ".mts")
UNROTATED_SUFFIXES = (".avi", ".ts", ".mts")  # containers that cannot hold a display rotation (tested)


def natural_key(path: Path) -> list[object]:
    """Sort key: digit runs compare as numbers, the rest case-insensitively."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def list_images(folder: Path) -> list[Path]:
    """The image files of `folder`, in natural order."""
    return sorted((p for p in folder.iterdir() if is_image(p)), key=natural_key)
