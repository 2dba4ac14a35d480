"""Does training on correctly converted colours lose quality? A controlled A/B on video-file training data.

Since dcfc461, `tmics train` decodes clean clips that are video files through `tmics_cli.video.reader`
(the stream's own matrix and range, unbiased swscale flags: the colours `tmics derain` feeds the network)
instead of PyAV's default `to_ndarray(format="rgb24")` (biased, see `tmics_cli/video/colour.py`). The
shipped recipes train on JPEG frame folders and are unaffected; this measures the video-file case.

1. pack:  the six training clips of ../shared/data/clean (walk is held out and not packed) as H.264
          yuv420p (4:2:0 as real footage has it), CRF 12, tagged BT.601 limited range (SD footage),
          converted the unbiased way (`colour.rgb_to_frame`). Each file is then decoded both ways and
          compared with its JPEG frames (bias per channel, Y-PSNR): what the two training sets differ by.
2. train: two fine-tunes of weights/tmics-light.safetensors, identical (seed, steps, lr, rain, crops,
          batches) except for the decode: `reader` (the package as it is) or `rgb24` (the pre-dcfc461
          decode, monkeypatched into tmics_cli.data.datasets for that process only). A third run,
          `reader` with another data seed (`--seed`), measures what a seed alone moves the scores.
3. score: `tmics benchmark` on the frozen walk-based card set card-light-v1 (walk is never trained on), on
          nturain_a2 (real rain, JPEG frames) and on nturain_a2_h264 (a2's rainy frames as an H.264
          yuv420p file, decoded by video.reader: video input as `tmics derain` gets it), the shipped
          weights beside the fine-tunes; paired per-window differences give the evaluation noise.

    python experiments/colour_training.py pack /tmp/colourtrain
    python experiments/colour_training.py train /tmp/colourtrain --path reader --steps 400
    python experiments/colour_training.py train /tmp/colourtrain --path rgb24 --steps 400
    python experiments/colour_training.py train /tmp/colourtrain --path reader --steps 400 --seed 1
    python experiments/colour_training.py score /tmp/colourtrain \
        --json experiments/results/colour_training.json

Scratch files (mp4s, weights, run folders, per-set benchmark JSON) stay in the scratch folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLEAN = ROOT.parent / "shared" / "data" / "clean"
A2 = ROOT.parent / "shared" / "data" / "nturain_a2"
SHIPPED = ROOT / "weights" / "tmics-light.safetensors"
HOLDOUT = "walk"
CLEAN_PROBE = "carphone"  # the smallest clip: checks that training loads it through the path asked for
CRF = 12
A2_CRF = 18
BT601 = dict(colorspace=6, color_range=1, primaries=6, trc=6)  # smpte170m, limited ("MPEG") range

# The fine-tune, identical for every run but the decode path (and --seed for the seed-noise run): the last
# settings of the shipped chain (configs/tmics-light.toml, round 19: light-v9 rain, rho 5, lr 5e-5).
TRAIN = dict(
    preset="light",
    rain="light-v9",
    size="small",
    batch=8,
    crop=128,
    lr=5e-5,
    l1_weight=5.0,
    fusion_steps=0,  # the shipped AAS is kept: the comparison is about stage 1's data
    holdout=[HOLDOUT],
    workers=1,
    threads=1,
    checkpoint_every=10_000,
    val_every=10_000,
)
SETS = ["card-light-v1"]  # one of the six: it took 10 minutes of the 2-core CPU for four weights files


def rgb24_frames(path: Path) -> list[np.ndarray]:
    """The decode training used before dcfc461: PyAV's default conversion (swscale defaults)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def reader_frames(path: Path) -> list[np.ndarray]:
    from tmics_cli.data.datasets import read_video_frames

    return read_video_frames(path)


def encode(frames: list[np.ndarray], out: Path, crf: int = CRF) -> None:
    from tmics_cli.video.colour import ColourTags, rgb_to_frame

    tags = ColourTags(**BT601)
    h, w = (d - d % 2 for d in frames[0].shape[:2])
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        ctx = stream.codec_context
        ctx.colorspace, ctx.color_range = tags.colorspace, tags.color_range
        ctx.color_primaries, ctx.color_trc = tags.primaries, tags.trc
        stream.options = {"crf": str(crf), "preset": "slow"}
        for f in frames:
            for packet in stream.encode(rgb_to_frame(np.ascontiguousarray(f[:h, :w]), "yuv420p", tags)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def compare(decoded: list[np.ndarray], original: list[np.ndarray]) -> dict[str, float]:
    from tmics_cli.data.datasets import to_tensor
    from tmics_cli.metrics import psnr_y

    d = np.stack(decoded).astype(np.float64)
    o = np.stack([f[: d.shape[1], : d.shape[2]] for f in original]).astype(np.float64)
    bias = (d - o).mean(axis=(0, 1, 2))
    dt, ot = to_tensor(decoded), to_tensor([f[: d.shape[1], : d.shape[2]] for f in original])
    return {
        "bias_rgb": [round(float(b), 3) for b in bias],
        "mean_abs": round(float(np.abs(d - o).mean()), 3),
        "psnr_y": round(float(np.mean([psnr_y(a, b) for a, b in zip(dt, ot, strict=True)])), 3),
    }


def pack(scratch: Path) -> None:
    from tmics_cli.data.datasets import list_images, read_image

    videos = scratch / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    report = {}
    for folder in sorted(p for p in CLEAN.iterdir() if p.is_dir() and p.name != HOLDOUT):
        frames = [read_image(p) for p in list_images(folder)]
        out = videos / f"{folder.name}.mp4"
        encode(frames, out)
        a, b = reader_frames(out), rgb24_frames(out)
        report[folder.name] = {
            "frames": len(a),
            "size": f"{a[0].shape[1]}x{a[0].shape[0]}",
            "reader_vs_jpeg": compare(a, frames),
            "rgb24_vs_jpeg": compare(b, frames),
            "rgb24_vs_reader_mean_abs": round(
                float(np.abs(np.stack(b, dtype=np.float64) - np.stack(a)).mean()), 3
            ),
        }
        print(folder.name, json.dumps(report[folder.name]), flush=True)
    (scratch / "pack.json").write_text(json.dumps(report, indent=2) + "\n")


def a2_as_video(scratch: Path) -> Path:
    """nturain_a2 as footage reaches `tmics derain`: its rainy frames as H.264 yuv420p CRF 18 (as
    ../shared/data/videos/real_rain_rb2.mp4), decoded by video.reader, beside the untouched ground truth."""
    import cv2

    from tmics_cli.data.datasets import list_images, read_image

    root = scratch / "nturain_a2_h264"
    if (root / "gt").is_dir():
        return root
    (root / "rain").mkdir(parents=True, exist_ok=True)
    encode([read_image(p) for p in list_images(A2 / "rain")], scratch / "a2_rain.mp4", crf=A2_CRF)
    for i, rgb in enumerate(reader_frames(scratch / "a2_rain.mp4")):
        cv2.imwrite(str(root / "rain" / f"{i + 1:05d}.png"), rgb[..., ::-1])
    (root / "gt").symlink_to(A2 / "gt")
    return root


def run_name(path: str, seed: int) -> str:
    return f"ft-{path}" + (f"-seed{seed}" if seed else "")


def train(scratch: Path, path: str, steps: int, seed: int) -> None:
    from tmics_cli.data import datasets
    from tmics_cli.training.train import TrainConfig, Trainer

    if path == "rgb24":
        datasets.read_video_frames = rgb24_frames  # this process only; load_clips looks it up at call time
    probe = CLEAN_PROBE
    loaded = datasets.load_clips([scratch / "videos" / f"{probe}.mp4"])[0].frames
    expected = rgb24_frames if path == "rgb24" else reader_frames
    assert all(
        np.array_equal(a, b)
        for a, b in zip(loaded, expected(scratch / "videos" / f"{probe}.mp4"), strict=True)
    )
    name = run_name(path, seed)
    cfg = TrainConfig(
        output=str(scratch / f"{name}.safetensors"),
        data=[str(scratch / "videos")],
        init=str(SHIPPED),
        steps=steps,
        seed=seed,
        overwrite=True,
        **TRAIN,
    )
    start = time.time()
    out = Trainer(cfg).fit()
    seconds = time.time() - start
    (scratch / f"{name}.json").write_text(
        json.dumps({"path": path, "seed": seed, "steps": steps, "seconds": round(seconds, 1)}) + "\n"
    )
    print(f"{out}: {steps} steps in {seconds:.0f} s", flush=True)


def benchmark(scratch: Path, name: str, weights: list[Path]) -> dict:
    out = scratch / f"bench-{name}.json"
    if not out.exists():
        if name.startswith("card-"):
            target = [name, "--data", str(CLEAN)]
        else:
            target = [str(A2 if name == "nturain_a2" else a2_as_video(scratch))]
        methods = [arg for w in weights for arg in ("-m", str(w))]
        cmd = [
            sys.executable,
            "-m",
            "tmics_cli",
            "benchmark",
            *target,
            "-m",
            "input",
            *methods,
            "--threads",
            "2",
            "--json",
            str(out),
        ]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads(out.read_text())


def paired(result: dict, a: str, b: str) -> dict[str, float | int | None]:
    """Mean Y-PSNR difference a - b over the set's videos and its standard error (card sets: one scored
    frame per window, 8 windows; a2 is one video, benchmark keeps only its 9-frame mean: no error)."""
    va, vb = result["methods"][a]["per_video"], result["methods"][b]["per_video"]
    diff = np.array([va[k]["psnr"] - vb[k]["psnr"] for k in va])
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else None
    return {"mean_db": round(float(diff.mean()), 4), "se_db": se and round(se, 4), "n": len(diff)}


def run_record(scratch: Path, name: str) -> dict:
    """A run's length and time, and its mean stage-1 loss per quarter (the runs see the same batches
    but for the decode, so these should track each other)."""
    logged = [json.loads(line) for line in (scratch / f"{name}.run" / "log.jsonl").open()]
    losses = [r["loss"] for r in logged if r.get("stage") == "stage1"]
    quarters = np.array_split(np.array(losses), 4)
    return {
        **json.loads((scratch / f"{name}.json").read_text()),
        "loss_by_quarter": [round(float(q.mean()), 4) for q in quarters],
    }


def score(scratch: Path, json_out: Path | None) -> None:
    runs = [
        p for p in ("ft-reader", "ft-rgb24", "ft-reader-seed1") if (scratch / f"{p}.safetensors").exists()
    ]
    weights = [SHIPPED, *(scratch / f"{p}.safetensors" for p in runs)]
    # tmics benchmark names a weights file's rows after its stem
    labels = {w.stem: (w.stem if w != SHIPPED else "tmics-light (shipped)") for w in weights}
    results = {}
    for name in [*SETS, "nturain_a2", "nturain_a2_h264"]:
        raw = benchmark(scratch, name, weights)
        rows = {}
        for key, value in raw["methods"].items():
            label = labels.get(key, key)
            rows[label] = {"psnr": round(value["psnr"], 3), "ssim": round(value["ssim"], 4)}
        entry: dict = {"scores": rows}
        keys = {labels[k]: k for k in raw["methods"] if k in labels}
        if "ft-reader" in keys and "ft-rgb24" in keys:
            entry["reader_minus_rgb24"] = paired(raw, keys["ft-reader"], keys["ft-rgb24"])
        if "ft-reader" in keys and "ft-reader-seed1" in keys:
            entry["seed0_minus_seed1"] = paired(raw, keys["ft-reader"], keys["ft-reader-seed1"])
        for run in runs:
            entry[f"{run}_minus_shipped"] = paired(raw, keys[run], keys["tmics-light (shipped)"])
        results[name] = entry
        print(name, json.dumps(entry), flush=True)
    record = {
        "what": __doc__.split("\n\n")[0],
        "command": "python experiments/colour_training.py pack|train|score (module docstring)",
        "data": {
            "pack": json.loads((scratch / "pack.json").read_text()),
            "crf": CRF,
            "pix_fmt": "yuv420p",
            "tags": BT601,
        },
        "train": {
            **TRAIN,
            "init": "weights/tmics-light.safetensors",
            "runs": {p: run_record(scratch, p) for p in runs},
        },
        "sets": results,
        "not_scored": "the other five card sets (CPU time: card-light-v1 alone took 10 minutes)",
    }
    if json_out:
        json_out.write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stage", choices=["pack", "train", "score"])
    parser.add_argument("scratch", type=Path, help="scratch folder (not committed)")
    parser.add_argument("--path", choices=["reader", "rgb24"], default="reader", help="decode of video clips")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="score: write the record here")
    args = parser.parse_args()
    if args.stage == "pack":
        pack(args.scratch)
    elif args.stage == "train":
        train(args.scratch, args.path, args.steps, args.seed)
    else:
        score(args.scratch, args.json)


if __name__ == "__main__":
    main()
