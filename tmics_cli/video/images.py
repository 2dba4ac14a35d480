"""Image frames read with OpenCV, with a cheap structural check of the file that OpenCV does not make.

libjpeg decodes a truncated JPEG with the missing part grey and only prints to stderr; `cv2.imread` then
returns the grey-filled image as if nothing happened. `image_damage` reads the file's structure (not its
pixels): a JPEG must hold an EOI marker (FF D9) after its first scan, a PNG must reach its IEND chunk.
Other formats are not checked.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TAIL = 1 << 16  # bytes read from the end of a JPEG to find its EOI marker (all of it if not there)


def image_damage(path: Path) -> str | None:
    """What is structurally wrong with the image file at `path` ("truncated JPEG", ...), or None."""
    with open(path, "rb") as file:
        head = file.read(8)
        size = file.seek(0, 2)
        if head.startswith(b"\xff\xd8\xff"):
            return _jpeg_damage(file, size)
        if head == PNG_SIGNATURE:
            return _png_damage(file, size)
    return None


def _jpeg_damage(file: BinaryIO, size: int) -> str | None:
    # walk the marker segments (each FF xx + 2-byte length) to the first start of scan (FF DA); the
    # entropy-coded data after it never holds FF D9 (an FF there is followed by 00 or a restart marker),
    # so an FF D9 after that point is the end of the image, and its absence means the file was cut short
    pos = 2
    while True:
        file.seek(pos)
        marker = file.read(4)
        if len(marker) < 2:
            return "truncated JPEG"
        if marker[0] != 0xFF:
            return None  # a layout this walk does not follow: leave the verdict to the decoder
        kind = marker[1]
        if kind == 0xFF:  # fill byte before a marker
            pos += 1
        elif kind == 0xDA:
            break
        elif kind == 0xD9:
            return None  # no scan at all: the decoder refuses such a file itself
        elif kind == 0x01 or 0xD0 <= kind <= 0xD8:
            pos += 2
        elif len(marker) < 4:
            return "truncated JPEG"
        else:
            pos += 2 + int.from_bytes(marker[2:4], "big")
    start = max(pos, size - _TAIL)
    file.seek(start)
    if b"\xff\xd9" in file.read():
        return None
    if start > pos:  # data after the end of the image (some cameras append their own): look at all of it
        file.seek(pos)
        if b"\xff\xd9" in file.read():
            return None
    return "truncated JPEG"


def _png_damage(file: BinaryIO, size: int) -> str | None:
    pos = 8
    while pos + 12 <= size:
        file.seek(pos)
        header = file.read(8)
        length, kind = int.from_bytes(header[:4], "big"), header[4:8]
        pos += 12 + length
        if kind == b"IEND":
            return None if pos <= size else "truncated PNG"
    return "truncated PNG"


def read_rgb(path: Path) -> tuple[np.ndarray | None, str | None]:
    """(the image as (H, W, 3) uint8 RGB, or None when OpenCV cannot read it; what `image_damage` found)."""
    import cv2

    try:
        problem = image_damage(path)
    except OSError:
        return None, None
    with _stderr_silenced() if problem else contextlib.nullcontext():  # tmics says it in a warning
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return (None if image is None else np.ascontiguousarray(image[..., ::-1])), problem


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 sent to /dev/null while a damaged image decodes: libjpeg prints "Premature end
    of JPEG file" there itself, a line outside tmics' one `warning:` about the same frame."""
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no descriptor 2 (a service without one)
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def image_depth(path: Path) -> tuple[int, bool]:
    """(bits per sample, whether it has an alpha channel) of an image file as stored (a 16-bit PNG or TIFF
    scan, an RGBA PNG), which `read_rgb` reads as 8-bit RGB; (8, False) where OpenCV cannot tell."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        return 8, False
    bits = 8 * image.dtype.itemsize if image.dtype.kind in "ui" else 32
    return bits, image.ndim == 3 and image.shape[2] in (2, 4)


def write_png(path: Path, rgb: np.ndarray) -> None:
    """One PNG frame; errors as OSError with their errno (cv2.imwrite only says False)."""
    import cv2

    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise OSError(errno.EINVAL, f"cannot encode frame as PNG ({rgb.shape})")
    with open(path, "wb") as f:
        f.write(data.tobytes())
