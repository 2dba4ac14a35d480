"""`--compare` frames: the input beside its derained frame in one picture, the input on the left as the
picture is shown.

A video with a display rotation (a phone held upright) is stored turned and shown rotated, so panels put
side by side as stored would show one above the other, or swapped: they are stacked along the side that
is shown horizontally, in the order that shows the input first. Outputs that cannot hold a rotation (and
frame folders) show the frames as stored, so they get the stored arrangement.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .files import UNROTATED_SUFFIXES


def shown_rotation(dst: Path, rotation: int, folder: bool) -> int:
    """The display rotation (degrees counter-clockwise, 0/90/180/270) `dst` will play its frames with."""
    if folder or dst.suffix.lower() in UNROTATED_SUFFIXES:
        return 0
    return rotation % 360


def panel_size(width: int, height: int, rotation: int) -> tuple[int, int]:
    """(width, height) of a compare frame made of two `width` x `height` frames shown with `rotation`."""
    return (width, 2 * height) if rotation % 180 == 90 else (2 * width, height)


def side_by_side(rainy: np.ndarray, derained: np.ndarray, rotation: int) -> np.ndarray:
    """Two (H, W, 3) uint8 frames -> one compare frame, `rainy` on the left once shown with `rotation`
    (90 counter-clockwise turns a stored top to the shown left)."""
    turn = rotation % 360
    first, second = (derained, rainy) if turn in (180, 270) else (rainy, derained)
    return np.concatenate([first, second], 0 if turn in (90, 270) else 1)
