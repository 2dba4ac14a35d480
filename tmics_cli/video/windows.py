"""Which input frames make the 5-frame window of each output frame.

At the ends the window reflects about the edge frame (frame 0 of a long clip sees 2, 1, 0, 1, 2), never
repeating the centre frame: a repeated copy would make its rain look static, and static rain is what the
network learns to keep.
"""

from __future__ import annotations


def reflect_index(index: int, length: int) -> int:
    """Mirror `index` into [0, length) without repeating the edge frame (period 2 * (length - 1))."""
    if length < 1:
        raise ValueError("a clip needs at least one frame")
    if length == 1:
        return 0
    period = 2 * (length - 1)
    index %= period
    return period - index if index >= length else index


def window_indices(centre: int, length: int, radius: int = 2) -> list[int]:
    """Frame indices of the window centred on `centre` in a clip of `length` frames."""
    if not 0 <= centre < length:
        raise IndexError(f"frame {centre} outside a clip of {length} frames")
    return [reflect_index(centre + d, length) for d in range(-radius, radius + 1)]
