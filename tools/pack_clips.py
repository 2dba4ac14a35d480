"""Pack clean training clips (folders of frames) into near-lossless H.264 files, to copy a training set to
another machine in a third of the space. `tmics train --data` reads the files as clips, as it reads folders.

H.264 4:4:4 at CRF 12 (the default) keeps a luma PSNR of 43-48 dB to the frames (printed per clip): far
less change than the rain and the compression (JPEG, or H.264 at CRF 14-32) that the rain renderer adds on
top, to input and target alike. The project's seven clean clips, 52 MB of JPEG frames, pack into 18 MB.
Frames are cropped to even sizes.

    python tools/pack_clips.py ../shared/data/clean packed/clean     # a folder of clip folders, or one clip
    tmics train --config configs/tmics-light.toml --data packed/clean  # on the other machine
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tmics_cli.data.datasets import list_images, read_image, to_tensor
from tmics_cli.metrics import psnr_y
from tmics_cli.outputs import OutputError, check_apart


def pack(folder: Path, output: Path, crf: int) -> tuple[int, float]:
    """Encode one folder of frames into `output`; returns the frame count and the mean Y-PSNR of the
    decoded file to the frames."""
    frames = [read_image(p) for p in list_images(folder)]
    h, w = (d - d % 2 for d in frames[0].shape[:2])  # even sizes for the encoder
    with av.open(str(output), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv444p"
        stream.options = {"crf": str(crf), "preset": "slow"}
        for f in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:h, :w]), format="rgb24")
            for packet in stream.encode(frame.reformat(format="yuv444p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(output)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    restored, original = to_tensor(decoded), to_tensor([f[:h, :w] for f in frames])
    psnr = float(np.mean([psnr_y(d, f) for d, f in zip(restored, original, strict=True)]))
    return len(decoded), psnr


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path, help="a folder of clip folders, or one folder of frames")
    parser.add_argument("output", type=Path, help="folder for the .mp4 files (one per clip, named after it)")
    parser.add_argument("--crf", type=int, default=12, help="x264 quality: lower is closer (default 12)")
    parser.add_argument("--overwrite", action="store_true", help="replace .mp4 files already in OUTPUT")
    args = parser.parse_args()
    if not args.source.is_dir():
        parser.error(f"{args.source} is not a folder")
    if list_images(args.source):
        folders = [args.source]
    else:
        folders = sorted(p for p in args.source.iterdir() if p.is_dir() and list_images(p))
    if not folders:
        parser.error(f"no folder of frames in {args.source}")
    try:
        check_apart(args.output, [args.source], folder=True)
    except OutputError as exc:
        parser.error(str(exc))
    targets = [args.output / f"{folder.name}.mp4" for folder in folders]
    existing = [t for t in targets if t.exists()]
    if existing and not args.overwrite:
        parser.error(f"{existing[0]} exists: pass --overwrite to replace it")
    args.output.mkdir(parents=True, exist_ok=True)
    total = 0
    for folder, out in zip(folders, targets, strict=True):
        count, psnr = pack(folder, out, args.crf)
        size = out.stat().st_size
        total += size
        print(
            f"{folder.name}: {count} frames, {size / 1e6:.1f} MB, Y-PSNR to the frames {psnr:.2f} dB",
            flush=True,
        )
    print(f"total {total / 1e6:.1f} MB in {args.output}")


if __name__ == "__main__":
    main()
