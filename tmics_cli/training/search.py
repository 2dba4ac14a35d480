"""The triple-level architecture search of the paper (Algorithm 1; Eqs. 4, 5, 7), first order.

Over the search variant of TMICS (every layer of every cell a softmax(alpha)-weighted sum of the eight
operations, alpha shared by DNA and CNA; the alignment a softmax(beta)-weighted sum of OFM and TGM), each
step of an epoch does the paper's three levels in turn:

    1. weights omega (alignment, GARS, DNA, CNA) on a training batch:  L_D + L_C            (Eq. 6)
    2. alpha and beta on a validation batch, omega fixed:            L_arc = L_D + eta * H(alpha) (Eq. 7)
    3. the AAS fusion (lambda) on the training batch, omega fixed:    Eq. 6 of the fused output

Levels 2 and 3 start after `warmup` epochs of level 1 alone (the paper's warm start). Gradients for
alpha and beta are first order (taken at the current omega; DARTS' second-order unrolled step is not
implemented). Data: fixed pools of rainy 5-frame windows, rendered once per seed from clean clips (or
drawn from paired sets), so that an epoch is one pass over `groups` windows as in the paper; training and
validation pools come from different clips when --holdout names some, else from different seeds. Flows
for the OFM branch are computed once per window on the rainy frames (DIS), as at inference.
"""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.datasets import PairedWindowDataset, RainyClipDataset
from ..data.rain import PRESETS as RAIN_PRESETS
from ..guards import check_crop, check_parameters, check_training_memory
from ..inference import pick_device
from ..model.align import DISFlow, estimate_flows
from ..model.genotypes import ALIGNMENTS, Genotype, genotype_from_architecture
from ..model.network import SIZES, TMICS, model_config
from ..model.ops import OPERATION_NAMES
from ..outputs import (
    PendingOutput,
    check_apart,
    check_fresh_start,
    check_output,
    run_lock,
    write_failed,
    write_text,
)
from .losses import ETA, alpha_entropy, restoration_loss
from .train import (
    TrainConfig,
    changed_settings,
    check_rates,
    check_seed,
    cosine_lr,
    read_checkpoint,
    split_data,
)

CHECKPOINT_NAME = "search.pt"
RESUME_MUST_MATCH = (
    "preset",
    "size",
    "width",
    "data",
    "holdout",
    "groups",
    "val_groups",
    "crop",
    "seed",
    "weight_optimizer",  # an optimizer's saved state fits only its own kind
    "arch_optimizer",
)


@dataclass
class SearchConfig:
    output: str  # genotype JSON
    data: list[str] = field(default_factory=list)
    preset: str = "light"  # rain preset for rendered rain
    holdout: list[str] = field(default_factory=list)  # clips for the validation pool
    size: str = "tiny"
    width: int | None = None
    epochs: int = 80
    warmup: int = 30
    groups: int = 20  # windows in the training pool (the paper's "20 groups of rainy frames")
    val_groups: int = 20
    batch: int = 4
    crop: int = 128
    lr: float = 3e-4  # weights, cosine to lr_min
    lr_min: float = 1e-6
    weight_optimizer: str = "sgd"
    arch_lr: float = 1e-4
    arch_optimizer: str = "sgd"
    eta: float = ETA
    fusion_lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    threads: int | None = None
    overwrite: bool = False  # replace existing output files

    @property
    def outputs(self) -> list[Path]:
        """The genotype JSON and, beside it, its history (CSV, and a PNG when matplotlib is there)."""
        out = Path(self.output)
        paths = [out, out.with_suffix(".history.csv")]
        try:
            import matplotlib  # noqa: F401 - the PNG is drawn only where it is installed
        except ImportError:
            return paths
        return [*paths, out.with_suffix(".png")]

    def validate(self) -> None:
        if self.preset not in RAIN_PRESETS:
            raise ValueError(f"unknown rain preset {self.preset!r}; known: {', '.join(RAIN_PRESETS)}")
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; known: {', '.join(SIZES)}")
        check_seed(self.seed)
        if not 0 <= self.warmup < self.epochs:  # warmup == epochs: a genotype of an alpha never searched
            raise ValueError("--warmup must be 0 or more and less than --epochs (the search comes after it)")
        for name in ("weight_optimizer", "arch_optimizer"):
            if getattr(self, name) not in ("sgd", "adam"):
                raise ValueError(f"--{name.replace('_', '-')} must be sgd or adam")
        if self.groups < 1 or self.val_groups < 1 or self.batch < 1:
            raise ValueError("--groups, --val-groups and --batch must be at least 1")
        check_rates(
            lr=self.lr, lr_min=self.lr_min, arch_lr=self.arch_lr, eta=self.eta, fusion_lr=self.fusion_lr
        )
        out = Path(self.output)
        if out.is_dir() or not out.absolute().parent.is_dir():
            raise ValueError(f"cannot write the genotype to {out}: give a file in an existing folder")
        if out.suffix.lower() != ".json":
            raise ValueError(f"the genotype is written as a .json file; got {out.name}")
        for path in self.outputs:
            check_output(path, self.data, overwrite=self.overwrite)
        check_apart(self.run_path, self.data, folder=True, what="run folder")
        checkpoint = self.run_path / CHECKPOINT_NAME
        check_fresh_start(checkpoint, resume=self.resume, overwrite=self.overwrite, what="search")

    @property
    def run_path(self) -> Path:
        return Path(self.output).with_suffix(".run")


def _optimizer(kind: str, params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def architecture_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    frames: torch.Tensor,
    target: torch.Tensor,
    flows: torch.Tensor | None = None,
    eta: float = ETA,
) -> float:
    """One level-2 step: L_arc = Eq. 6 of the DNA output + eta * entropy(alpha), gradients reaching
    alpha and beta only (the optimizer holds just those)."""
    out = model(frames, flows, return_all=True)
    loss = restoration_loss(out.dna, target) + eta * alpha_entropy(model.alpha)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def search_data(cfg: SearchConfig) -> tuple[list, list, list]:
    """(training clips, held-out clips, paired videos) of the search's --data and --holdout."""
    config = TrainConfig(output=cfg.output, data=cfg.data, holdout=cfg.holdout, preset="light")
    return split_data(config, hold_paired=True)


def build_pools(
    cfg: SearchConfig, data: tuple[list, list, list] | None = None
) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """Fixed training and validation pools of (frames, target, flows) windows (`data`: search_data's)."""
    train_clips, val_clips, paired = data if data is not None else search_data(cfg)
    paired_train = [v for v in paired if v.name not in cfg.holdout]
    paired_val = [v for v in paired if v.name in cfg.holdout]
    if not train_clips and not paired_train:
        raise ValueError("every clip and video is held out: nothing is left for the training pool")

    def draw(clips: list, videos: list, seed: int, count: int) -> list[dict[str, torch.Tensor]]:
        """Windows taken in turn from the clean clips (rain rendered) and the paired videos."""
        sources: list[Any] = []
        if clips:
            sources.append(RainyClipDataset(clips, cfg.preset, crop=cfg.crop, seed=seed))
        if videos:
            sources.append(PairedWindowDataset(videos, crop=cfg.crop, seed=seed))
        return [sources[i % len(sources)][i] for i in range(count)]

    train = draw(train_clips, paired_train, cfg.seed, cfg.groups)
    if val_clips or paired_val:  # held-out clips and videos
        val = draw(val_clips, paired_val, cfg.seed, cfg.val_groups)
    else:  # other windows of the training data (another seed)
        val = draw(train_clips, paired_train, cfg.seed + 1_000_003, cfg.val_groups)
    flow = DISFlow("medium")
    for sample in train + val:
        sample["flows"] = estimate_flows(flow, sample["frames"][None])[0]
    return train, val


def _batches(pool: list[dict[str, torch.Tensor]], batch: int, rng: np.random.Generator) -> list[dict]:
    order = rng.permutation(len(pool))
    out = []
    for start in range(0, len(pool), batch):
        items = [pool[i] for i in order[start : start + batch]]
        out.append({k: torch.stack([it[k] for it in items]) for k in items[0]})
    return out


class Searcher:
    def __init__(self, cfg: SearchConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = pick_device(cfg.device)
        torch.manual_seed(cfg.seed)
        overrides = {"width": cfg.width} if cfg.width else {}
        widths = f"--size {cfg.size}" + (f" --width {cfg.width}" if cfg.width else "")
        check_parameters(lambda: TMICS(model_config(None, cfg.size, **overrides)), self.device, widths)
        self.model = TMICS(model_config(None, cfg.size, **overrides)).to(self.device)
        self.weights_opt = _optimizer(cfg.weight_optimizer, self.model.network_parameters(), cfg.lr)
        self.arch_opt = _optimizer(cfg.arch_optimizer, self.model.architecture_parameters(), cfg.arch_lr)
        self.fusion_opt = torch.optim.Adam(self.model.fusion_parameters(), lr=cfg.fusion_lr)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.seconds = 0.0
        self.run = cfg.run_path
        self._data: tuple[list, list, list] | None = None

    def prepare(self) -> None:
        """Read the data and check the crop against the clips and the pools and a step against the memory,
        before any work (the CLI calls it before its progress display; fit calls it too)."""
        if self._data is not None:
            return
        data = search_data(self.cfg)
        train_clips, val_clips, paired = data
        check_crop(self.cfg.crop, train_clips + val_clips, paired)
        check_training_memory(
            self.model,
            self.cfg.crop,
            min(self.cfg.batch, self.cfg.groups),
            self.device,
            pool=self.cfg.groups + self.cfg.val_groups,
        )
        self._data = data
        if self.cfg.resume:  # a bad checkpoint is refused before any work too
            self.load_checkpoint()

    # --- checkpoints ---------------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        self.run.mkdir(parents=True, exist_ok=True)
        state = {
            "config": asdict(self.cfg),
            "epoch": self.epoch,
            "history": self.history,
            "seconds": self.seconds,
            "model": self.model.state_dict(),
            "weights_opt": self.weights_opt.state_dict(),
            "arch_opt": self.arch_opt.state_dict(),
            "fusion_opt": self.fusion_opt.state_dict(),
        }
        with PendingOutput(self.run / CHECKPOINT_NAME, overwrite=True) as pending:  # whole or not at all
            try:
                torch.save(state, pending.path)
            except (OSError, RuntimeError) as exc:
                raise write_failed(self.run / CHECKPOINT_NAME, exc, "the checkpoint") from None
            pending.commit()

    def load_checkpoint(self) -> bool:
        path = self.run / CHECKPOINT_NAME
        if not path.exists():
            return False
        keys = ("config", "model", "weights_opt", "arch_opt", "fusion_opt", "epoch", "history", "seconds")
        state = read_checkpoint(path, self.device, keys)
        saved = state["config"]
        changed = changed_settings(
            {k: saved.get(k) for k in RESUME_MUST_MATCH}, asdict(self.cfg), RESUME_MUST_MATCH
        )
        if changed:
            was = ", ".join(f"--{k.replace('_', '-')} {saved.get(k)!r}" for k in changed)
            raise ValueError(f"{path} was written with {was}; resume with the same settings")
        self.model.load_state_dict(state["model"])
        self.weights_opt.load_state_dict(state["weights_opt"])
        self.arch_opt.load_state_dict(state["arch_opt"])
        self.fusion_opt.load_state_dict(state["fusion_opt"])
        self.epoch, self.history, self.seconds = state["epoch"], state["history"], state["seconds"]
        return True

    # --- the search -----------------------------------------------------------------------------------------
    def _to(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            batch["frames"].to(self.device),
            batch["target"].to(self.device),
            batch["flows"].to(self.device),
        )

    def run_epoch(self, train: list[dict], val: list[dict]) -> dict[str, Any]:
        cfg, model = self.cfg, self.model
        rng = np.random.default_rng([cfg.seed, self.epoch])
        train_batches, val_batches = _batches(train, cfg.batch, rng), _batches(val, cfg.batch, rng)
        searching = self.epoch >= cfg.warmup
        steps_per_epoch = len(train_batches)
        total = cfg.epochs * steps_per_epoch
        losses, arch_losses, lams = [], [], []
        model.train()
        for k, batch in enumerate(train_batches):
            frames, target, flows = self._to(batch)
            step = self.epoch * steps_per_epoch + k
            for group in self.weights_opt.param_groups:
                group["lr"] = cosine_lr(step, total, cfg.lr, cfg.lr_min)
            # level 1: omega on the training batch
            out = model(frames, flows, return_all=True)
            loss = restoration_loss(out.dna, target) + restoration_loss(out.cna, target)
            self.weights_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.weights_opt.step()
            losses.append(loss.item())
            if not searching:
                continue
            # level 2: alpha, beta on a validation batch, omega fixed (only they are in arch_opt)
            v_frames, v_target, v_flows = self._to(val_batches[k % len(val_batches)])
            arch_losses.append(architecture_step(model, self.arch_opt, v_frames, v_target, v_flows, cfg.eta))
            # level 3: the AAS fusion on the training batch, omega and alpha fixed
            out = model(frames, flows, return_all=True)
            fusion_loss = restoration_loss(out.derained, target)
            self.fusion_opt.zero_grad(set_to_none=True)
            fusion_loss.backward()
            self.fusion_opt.step()
            lams.append(out.lam.mean().item())
        for p in model.parameters():
            p.grad = None
        self.epoch += 1
        record = {
            "epoch": self.epoch,
            "searching": searching,
            "loss": float(np.mean(losses)),
            "arch_loss": float(np.mean(arch_losses)) if arch_losses else None,
            "lambda": float(np.mean(lams)) if lams else None,
            "alpha": torch.softmax(model.alpha.detach(), -1).cpu().tolist(),
            "beta": torch.softmax(model.beta.detach(), -1).cpu().tolist(),
            "entropy": alpha_entropy(model.alpha.detach()).item(),
        }
        self.history.append(record)
        return record

    def genotype(self) -> Genotype:
        cfg = self.cfg
        provenance = {
            "data": cfg.data,
            "rain": cfg.preset,
            "settings": {
                k: v for k, v in asdict(cfg).items() if k not in ("output", "data", "resume", "device")
            },
            "epochs_done": self.epoch,
            "seconds": round(self.seconds, 1),
            "device": str(self.device),
            "lambda": self.history[-1]["lambda"] if self.history else None,
        }
        return genotype_from_architecture(self.model.alpha, self.model.beta, provenance)

    def fit(self, on_epoch: Any = None) -> Genotype:
        with run_lock(self.run):  # a second search on this run folder is refused
            return self._fit(on_epoch)

    def _fit(self, on_epoch: Any = None) -> Genotype:
        self.prepare()
        train, val = build_pools(self.cfg, self._data)
        while self.epoch < self.cfg.epochs:
            start = time.perf_counter()
            record = self.run_epoch(train, val)
            self.seconds += time.perf_counter() - start
            self.save_checkpoint()
            if on_epoch is not None:
                on_epoch(record)
        genotype = self.genotype()
        out = Path(self.cfg.output)
        write_text(out, genotype.to_json() + "\n", overwrite=self.cfg.overwrite)
        write_history(self.history, out, overwrite=self.cfg.overwrite)
        return genotype


def write_history(history: list[dict[str, Any]], output: Path, overwrite: bool = False) -> list[Path]:
    """alpha and beta over the epochs: always a CSV beside the genotype; a PNG too if matplotlib is there."""
    written = []
    path = output.with_suffix(".history.csv")
    pending = PendingOutput(path, overwrite=overwrite)
    with pending, pending.path.open("w", newline="") as f:
        writer = csv.writer(f)
        layers = len(history[0]["alpha"]) if history else 0
        head = ["epoch", "searching", "loss", "arch_loss", "lambda", "entropy"]
        head += [f"beta_{a}" for a in ALIGNMENTS]
        head += [f"alpha_{layer}_{op}" for layer in range(layers) for op in OPERATION_NAMES]
        writer.writerow(head)
        for r in history:
            row = [
                r["epoch"],
                r["searching"],
                r["loss"],
                r["arch_loss"],
                r["lambda"],
                r["entropy"],
                *r["beta"],
            ]
            writer.writerow(row + [v for layer in r["alpha"] for v in layer])
    pending.commit()
    written.append(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    epochs = [r["epoch"] for r in history]
    layers = len(history[0]["alpha"])
    fig, axes = plt.subplots(1, layers + 1, figsize=(4 * (layers + 1), 3.2), squeeze=False)
    for layer in range(layers):
        ax = axes[0][layer]
        for i, op in enumerate(OPERATION_NAMES):
            ax.plot(epochs, [r["alpha"][layer][i] for r in history], label=op)
        ax.set_title(f"alpha, layer {layer + 1}")
        ax.set_xlabel("epoch")
    axes[0][0].legend(fontsize=6)
    ax = axes[0][layers]
    for i, name in enumerate(ALIGNMENTS):
        ax.plot(epochs, [r["beta"][i] for r in history], label=name)
    ax.set_title("beta")
    ax.legend(fontsize=7)
    fig.tight_layout()
    png = output.with_suffix(".png")
    with PendingOutput(png, overwrite=overwrite) as pending:
        fig.savefig(pending.path, dpi=100, format="png")
        plt.close(fig)
        pending.commit()
    written.append(png)
    return written
