"""Pack clean training clips (folders of frames) into near-lossless H.264 files for a lent GPU machine.

The device tool carries at most 64 MiB; the JPEG frames of ../shared/data/clean take 52 MB and the PyAV
wheel (needed there for the H.264 compression of rendered rain and for end-to-end `tmics derain`) 36 MB.
As H.264 4:4:4 at CRF 12 they take 18 MB, at a luma PSNR of 43-48 dB to the frames they came from
(printed per clip): far less change than the rain and the compression (JPEG / H.264 at CRF 18-32) that
training adds on top, input and target alike.

    python tools/pack_gpu_data.py ../shared/data/clean .gpu-data/clean

`tmics train --data .gpu-data/clean` reads the files as clips (PyAV decodes them).
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tmics_cli.data.datasets import list_images, read_image, to_tensor
from tmics_cli.metrics import psnr_y


def pack(folder: Path, output: Path, crf: int) -> tuple[int, float]:
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
    parser.add_argument("source", type=Path, help="folder of clip folders")
    parser.add_argument("output", type=Path, help="folder for the .mp4 files")
    parser.add_argument("--crf", type=int, default=12)
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    total = 0
    for folder in sorted(p for p in args.source.iterdir() if p.is_dir() and list_images(p)):
        out = args.output / f"{folder.name}.mp4"
        count, psnr = pack(folder, out, args.crf)
        size = out.stat().st_size
        total += size
        print(
            f"{folder.name}: {count} frames, {size / 1e6:.1f} MB, Y-PSNR to the frames {psnr:.2f} dB",
            flush=True,
        )
    print(f"total {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
