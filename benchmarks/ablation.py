"""What the paper's machinery adds on top of optical-flow alignment: the same data, width and steps for

    full     TMICS light: OFM -> GARS -> DNA + CNA -> AAS (stage 1, then stage 2 for the fusion)
    no-gars  the same, but the DNA sees the plain centre frame (GARS off): two networks + AAS
    single   OFM -> GARS -> DNA alone (the paper's TMICS_S trained on its own; no CNA, no AAS)
    plain    OFM -> one restoration network on the plain centre frame: the plain aligned net

each trained from scratch by `tmics train`'s Trainer (same seed, so the same rainy windows in the same
order) and scored like the model card: Y-PSNR / SSIM on fixed synthetic windows of the held-out clip
`walk` (light preset, seed 1234) and on nturain_a2 (a check only).

    python benchmarks/ablation.py --data ../shared/data --steps 800 --threads 2

Two knobs for finding where the score goes rather than what TMICS adds: `--scale 1` runs the cells at full
resolution instead of the size's half resolution, `--rain-styles streaks` trains on one style of rain only,
`--rain-haze 1` adds the styles' haze (accumulation), which the light preset leaves out.

Training and scoring can run apart (train on a GPU machine without the check sets, score here):

    python benchmarks/ablation.py --variants plain --size medium --time-budget 400 --device cuda \
        --keep runs/ablation --no-eval                      # writes runs/ablation/plain.pt
    python benchmarks/ablation.py --variants plain --load runs/ablation --json results/x.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from tmics_cli.data.datasets import find_paired_videos, read_image, to_tensor
from tmics_cli.data.rain import PRESETS as RAIN_PRESETS
from tmics_cli.metrics import psnr_y, ssim_y
from tmics_cli.model.network import TMICS, TMICSOutput, model_config
from tmics_cli.training import train as train_module
from tmics_cli.training.train import TrainConfig, Trainer
from tmics_cli.video.windows import window_indices

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import quantize, synthetic  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "ablation.json"
VARIANTS = {  # name: (GARS for the DNA, CNA + AAS)
    "full": (True, True),
    "no-gars": (False, True),
    "single": (True, False),
    "plain": (False, False),
}


class AblatedTMICS(TMICS):
    """TMICS with GARS and/or the CNA + AAS pair switched off (the removed modules are deleted, so
    parameter counts and optimisers see only what runs)."""

    def __init__(self, config, gars: bool = True, pair: bool = True) -> None:  # noqa: ANN001
        super().__init__(config)
        self.use_gars, self.use_pair = gars, pair
        if not gars:
            del self.gars
        if not pair:
            del self.cna, self.aas

    def fusion_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.aas.parameters()) if self.use_pair else []

    def network_parameters(self) -> list[torch.nn.Parameter]:
        skip = {id(p) for p in self.fusion_parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def forward(self, frames, flows=None, return_all: bool = False):  # noqa: ANN001, ANN201
        # frames: (B, 5, 3, H, W) in [0, 1]; same padding rule as TMICS (scale divides H, W)
        h, w = frames.shape[-2:]
        s = self.config.scale
        pad = ((-h) % s, (-w) % s)
        if any(pad):
            frames = torch.nn.functional.pad(frames.flatten(0, 1), (0, pad[1], 0, pad[0]), mode="replicate")
            frames = frames.unflatten(0, (-1, 5))
            flows = None
        features = self.align(frames, flows)
        centre = frames[:, 2]
        dna = self.dna(features, self.gars(centre) if self.use_gars else centre)[..., :h, :w]
        if self.use_pair:
            cna = self.cna(features, centre)[..., :h, :w]
            fused, lam = self.aas(dna, cna)
        else:
            cna, fused, lam = dna, dna, torch.ones(dna.shape[0], 3, 1, 1, device=dna.device)
        return TMICSOutput(fused, dna, cna, lam) if return_all else fused


def scale_override(scale: int | None) -> dict[str, int]:
    """model_config overrides for an optional scale (None: the size's own)."""
    return {} if scale is None else {"scale": scale}


def rain_preset(args: argparse.Namespace) -> str:
    """The light preset, or (--rain-styles, --rain-haze) a variant of it, registered under its own name so
    that the loader's worker processes (forked) see it too."""
    base = RAIN_PRESETS["light"]
    styles = tuple(args.rain_styles or base.styles)
    haze = base.haze_scale if args.rain_haze is None else args.rain_haze
    if (styles, haze) == (base.styles, base.haze_scale):
        return "light"
    name = f"light:{'+'.join(styles)}:haze{haze:g}"
    RAIN_PRESETS[name] = replace(base, styles=styles, haze_scale=haze)
    return name


def train_variant(name: str, args: argparse.Namespace, run: Path) -> tuple[AblatedTMICS, dict]:
    gars, pair = VARIANTS[name]

    def build(cfg: TrainConfig) -> AblatedTMICS:
        return AblatedTMICS(
            model_config(cfg.preset, cfg.size, **scale_override(args.scale)), gars=gars, pair=pair
        )

    train_module.build_training_model = build  # the Trainer builds its model through this hook
    cfg = TrainConfig(
        output=str(run / f"{name}.safetensors"),
        preset="light",
        rain=rain_preset(args),
        size=args.size,
        data=[str(args.data / "clean")],
        steps=args.steps,
        fusion_steps=args.fusion_steps if pair else 0,
        batch=args.batch,
        crop=args.crop,
        workers=args.workers,
        seed=args.seed,
        val_every=args.steps,
        checkpoint_every=max(50, args.steps // 4),
        threads=args.threads,
        device=args.device,
        time_budget=args.time_budget,
    )
    start = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.fit()
    seconds = time.perf_counter() - start
    params = sum(p.numel() for p in trainer.model.parameters())
    info = {
        "train_seconds": round(seconds),
        "params": params,
        "steps": cfg.steps,
        "size": args.size,
        "scale": trainer.model.config.scale,
        "rain": cfg.rain,
        "device": str(trainer.device),
        "val": trainer.last_scores,
    }
    model = trainer.model.cpu().eval()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        torch.save({"state": model.state_dict(), "info": info}, args.keep / f"{name}.pt")
    return model, info


def nturain_a2(root: Path) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The check set: every frame's 5-frame window (reflected at the ends) and its ground truth (uint8)."""
    _, videos = find_paired_videos(root)
    video = videos[0]
    rain = to_tensor([read_image(p) for p in video.rain])
    gts = [torch.from_numpy(read_image(p)) for p in video.gt]
    windows = [rain[window_indices(t, len(rain))] for t in range(len(rain))]
    return windows, gts


@torch.no_grad()
def evaluate(model: torch.nn.Module, windows: list[torch.Tensor], targets: list[torch.Tensor]) -> dict:
    """Y-PSNR / SSIM of the fused output, as saved 8-bit frames, averaged over the windows; s per frame."""
    outputs, seconds = [], 0.0
    for w in windows:
        start = time.perf_counter()
        out = model(w[None])
        seconds += time.perf_counter() - start
        outputs.append(quantize(out[0]))
    return {
        "psnr": float(np.mean([psnr_y(o, t) for o, t in zip(outputs, targets, strict=True)])),
        "ssim": float(np.mean([ssim_y(o, t) for o, t in zip(outputs, targets, strict=True)])),
        "s_per_frame": seconds / len(windows),
    }


def load_variant(name: str, args: argparse.Namespace) -> tuple[AblatedTMICS, dict]:
    """A variant trained earlier with --keep (on another machine, say)."""
    saved = torch.load(args.load / f"{name}.pt", map_location="cpu", weights_only=True)
    gars, pair = VARIANTS[name]
    info = saved["info"]
    config = model_config("light", info["size"], **scale_override(info.get("scale")))
    model = AblatedTMICS(config, gars=gars, pair=pair)
    model.load_state_dict(saved["state"])
    return model.eval(), saved["info"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--size", default="small")
    parser.add_argument("--scale", type=int, default=None, help="override the size's scale (1: full res)")
    parser.add_argument(
        "--rain-styles",
        nargs="+",
        default=None,
        choices=["streaks", "fine", "slanted", "dense", "hazy"],
        help="train on rain of only these styles, at the light preset's densities",
    )
    parser.add_argument(
        "--rain-haze", type=float, default=None, help="scale the styles' haze (the light preset has 0)"
    )
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--fusion-steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--device", default="auto", help="training device: auto, cpu, cuda")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds per variant (--steps caps)")
    parser.add_argument("--keep", type=Path, default=None, help="save each trained variant here (NAME.pt)")
    parser.add_argument("--load", type=Path, default=None, help="score variants saved by --keep")
    parser.add_argument("--no-eval", action="store_true", help="train (and --keep) only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.no_eval:
        for name in args.variants:
            _, info = train_variant(name, args, Path(tempfile.mkdtemp()))
            print(f"{name}: {json.dumps(info)}", flush=True)
        return
    sets = {
        "nturain_a2": nturain_a2(args.data / "nturain_a2"),
        "synthetic-light": synthetic(args.data / "clean" / "walk", "light", args.windows),
    }
    report = json.loads(args.json.read_text()) if args.json.exists() else {}
    report["settings"] = {k: str(v) for k, v in vars(args).items()}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            model, info = load_variant(name, args) if args.load else train_variant(name, args, Path(tmp))
            scores = {}
            for set_name, (windows, targets) in sets.items():
                scores[set_name] = evaluate(model, windows, targets)
            report[name] = {**info, **scores}
            line = ", ".join(f"{k} {v['psnr']:.2f} dB / {v['ssim']:.4f}" for k, v in scores.items())
            print(f"{name:8s} {info['params']:>8,d} params, {info['train_seconds']} s: {line}", flush=True)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
