"""`tmics train`: the paper's two-stage training, preceded by a flow stage when OFM uses a learned flow.

    flow stage  (only for the "pyramid" flow estimator) PyramidFlowNet on synthetic motion with known flow
    stage 1     DNA + CNA (with alignment and GARS) end to end: Eq. 6 on B_D plus Eq. 6 on B_C, Adam,
                lr cosine from 3e-4 to 1e-6, random crops and flips
    stage 2     the AAS fusion alone, every other weight frozen: Eq. 6 on the fused frame

Every sample is a pure function of its index (see data.datasets), and a checkpoint holds the weights,
optimiser, step and stage; so a killed run resumed with --resume reaches exactly the state of an
uninterrupted one. Under `torchrun --nproc-per-node N` each process takes its own share of every batch
index and gradients are averaged by DistributedDataParallel (gloo on the CPU, nccl on GPUs).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.datasets import (
    Clip,
    DataError,
    LayoutNotFound,
    PairedWindowDataset,
    RainyClipDataset,
    find_paired_videos,
    load_clips,
)
from ..data.rain import PRESETS as RAIN_PRESETS
from ..data.rain import tensor_rain
from ..guards import check_crop, check_parameters, check_training_memory
from ..inference import pick_device
from ..metrics import psnr_y, ssim_y
from ..model.align import FLOW_ESTIMATORS, DISFlow, PyramidFlowNet, estimate_flows
from ..model.genotypes import PRESET_GENOTYPES, get_genotype
from ..model.io import load_model, save_model
from ..model.network import SIZES, TMICS, model_config
from ..outputs import (
    PendingOutput,
    check_apart,
    check_fresh_start,
    check_output,
    run_lock,
    write_failed,
)
from .flow import train_flow
from .losses import RHO, restoration_loss

CHECKPOINT_NAME = "checkpoint.pt"
DEFAULT_HOLDOUT = ["walk"]  # the clip of the shared clean set kept out of training for validation
# What a resumed run must share with the checkpoint: the network and the data stream. Step counts and
# learning rates may change (the schedule then follows the new values from the current step on).
RESUME_MUST_MATCH = (
    "preset",
    "genotype",
    "rain",
    "size",
    "width",
    "flow",
    "data",
    "holdout",
    "batch",
    "crop",
    "seed",
    "init",
)
LOG_NAME = "log.jsonl"
# a time budget's speed measurement starts at least BUDGET_PROBE[0] + 2 * workers steps in (after the
# loader's start-up and the batches its workers prefetched); under DDP it spans BUDGET_PROBE[1] - [0] steps
BUDGET_PROBE = (10, 210)
BUDGET_MARGIN = 0.93  # share of the remaining budget given to stage 1 steps (validation, saving)


def check_rates(**rates: float) -> None:
    """Refuse a learning rate (or other step size) that is not a finite number of zero or more, before any
    work: NaN or infinity trains nothing and writes weights of NaN (ValueError)."""
    for name, value in rates.items():
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"--{name.replace('_', '-')} must be a finite number of zero or more, got {value}"
            )


MAX_SEED = 2**32 - 1  # numpy's seed sequences take no negative number; torch none past 64 bits
MAX_LOADER_WORKERS = 64  # loader processes: a typo (--workers 100000) forked until the RAM ran out


def check_seed(seed: int) -> None:
    """Refuse a seed the random generators cannot take (ValueError), before any work."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"--seed must be 0 to {MAX_SEED}, got {seed}")


def check_weights_output(out: Path, reads: Iterable[str | os.PathLike[str]], overwrite: bool) -> None:
    """Refuse a weights output that is a folder, not a .safetensors file, or one that would replace
    what the run reads or an existing file without --overwrite (ValueError, OutputError)."""
    if out.is_dir():
        example = out / "weights.safetensors"
        raise ValueError(f"output {out} is a directory; give a file name such as {example}")
    if out.suffix.lower() != ".safetensors":
        raise ValueError(f"weights are written as .safetensors files; got {out.name}")
    check_output(out, reads, overwrite=overwrite)


@dataclass
class TrainConfig:
    output: str
    preset: str = "light"  # genotype preset and, unless `rain` says otherwise, rain preset
    genotype: str | None = None  # genotype JSON from `tmics search` (overrides the preset's genotype)
    rain: str | None = None
    size: str = "small"
    width: int | None = None
    flow: str | None = None  # flow estimator for OFM: "dis" (default) or "pyramid"
    init: str | None = None  # weights file to start from (fine-tuning); must describe the same network
    data: list[str] = field(default_factory=list)
    holdout: list[str] = field(default_factory=lambda: list(DEFAULT_HOLDOUT))  # clips kept for validation
    steps: int = 2000  # stage 1
    fusion_steps: int = 200  # stage 2
    flow_steps: int = 1000  # flow stage (pyramid flow only)
    batch: int = 8
    crop: int = 128
    lr: float = 3e-4
    lr_min: float = 1e-6
    fusion_lr: float = (
        1e-3  # the paper says 1e-6; measured: a fresh AAS does not move at 1e-6 (weights/README.md)
    )
    l1_weight: float = RHO  # rho of Eq. 6, the L1 term's weight beside -SSIM
    device: str = "auto"
    workers: int = 2
    seed: int = 0
    val_every: int = 250
    val_windows: int = 16
    checkpoint_every: int = 100
    run_dir: str | None = None
    resume: bool = False
    fp16_weights: bool = True
    threads: int | None = None
    # seconds for the whole run: stage 1 then gets as many steps (at most `steps`) as the measured speed
    # allows, fixed once (see Trainer._probe) and kept in the checkpoint, so a resumed run agrees
    time_budget: float | None = None
    overwrite: bool = False  # replace an existing output file

    @property
    def inputs(self) -> list[str]:
        """Every path the run reads: an output may be none of them nor lie inside one."""
        return [*self.data, *(p for p in (self.init, self.genotype) if p)]

    def check_choices(self) -> None:
        """The named choices (preset, rain preset, size, flow) exist."""
        if not self.genotype and self.preset not in PRESET_GENOTYPES:
            raise ValueError(f"unknown preset {self.preset!r}; known: {', '.join(PRESET_GENOTYPES)}")
        if self.rain_preset not in RAIN_PRESETS:
            raise ValueError(f"unknown rain preset {self.rain_preset!r}; known: {', '.join(RAIN_PRESETS)}")
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; known: {', '.join(SIZES)}")
        if self.flow is not None and self.flow not in FLOW_ESTIMATORS:
            raise ValueError(f"unknown flow estimator {self.flow!r}; known: {', '.join(FLOW_ESTIMATORS)}")

    def validate(self) -> None:
        """Refuse bad settings before any work is done (one clear message each)."""
        self.check_choices()
        if self.l1_weight < 0:
            raise ValueError("the L1 weight must be zero or positive")
        check_rates(lr=self.lr, lr_min=self.lr_min, fusion_lr=self.fusion_lr, l1_weight=self.l1_weight)
        check_seed(self.seed)
        if not 0 <= self.workers <= MAX_LOADER_WORKERS:
            raise ValueError(f"--workers must be 0 to {MAX_LOADER_WORKERS}, got {self.workers}")
        if self.lr_min > self.lr:  # the schedule would rise to lr_min (measured: 1 ruined the weights)
            raise ValueError(
                f"lr_min {self.lr_min} is above lr {self.lr}; the schedule falls from lr to lr_min"
            )
        if self.time_budget is not None and not 0 < self.time_budget < math.inf:
            raise ValueError("the time budget must be a positive, finite number of seconds")
        check_weights_output(Path(self.output), self.inputs, overwrite=self.overwrite)
        if os.path.lexists(self.run_path) and not self.run_path.is_dir():
            raise ValueError(f"run folder {self.run_path} exists and is a file; give a folder (--run-dir)")
        check_apart(self.run_path, self.inputs, folder=True, what="run folder")
        check_fresh_start(self.run_path / CHECKPOINT_NAME, resume=self.resume, overwrite=self.overwrite)

    @property
    def rain_preset(self) -> str:
        return (
            self.preset if self.rain is None else self.rain
        )  # "" is a preset name nobody has, not the default

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path(self.output).with_suffix(".run")


def read_checkpoint(path: Path, device: torch.device | str, keys: tuple[str, ...]) -> dict[str, Any]:
    """A checkpoint of tmics train/search holding `keys`; ValueError in one line for anything else
    (truncated, foreign, or written by something else)."""
    again = "remove it (or pass --overwrite) to start afresh"
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: torch raises many types
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot read checkpoint {path} ({reason}); {again}") from None
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{path} is not a tmics checkpoint (no {', '.join(missing)}); {again}")
    if not isinstance(state["config"], dict):
        raise ValueError(f"{path} is not a tmics checkpoint (its config is not a table); {again}")
    return state


class WithFlows(Dataset):
    """Adds flows from a non-learned estimator (DIS) computed on the rainy frames, exactly as the model
    computes them at inference, in the loader's worker processes."""

    def __init__(self, base: Dataset, estimator: nn.Module) -> None:
        self.base, self.flow = base, estimator

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.base[index]
        sample["flows"] = estimate_flows(self.flow, sample["frames"][None])[0]
        return sample


def _setting(key: str, config: dict[str, Any]) -> Any:
    """A setting as it acts, for comparing two runs' configs: paths that exist by their real path (`./data`
    and `data` are one folder), the rain preset by the one used (none given: the network preset's)."""

    def path(value: Any) -> Any:
        return os.path.realpath(value) if isinstance(value, str) and os.path.exists(value) else value

    value = config.get(key)
    if key == "rain" and value is None:
        return config.get("preset")
    if key == "data" and isinstance(value, list):
        return [path(v) for v in value]
    if key in ("init", "genotype"):
        return path(value)
    return value


def changed_settings(saved: dict[str, Any], now: dict[str, Any], keys: Iterable[str]) -> list[str]:
    """The `keys` whose settings differ between a checkpoint's config and this run's, as they act."""
    return [k for k in keys if k in saved and _setting(k, saved) != _setting(k, now)]


def cosine_lr(step: int, total: int, lr: float, lr_min: float) -> float:
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def training_network(cfg: TrainConfig) -> TMICS:
    """The network the options describe, freshly initialised (--init not applied)."""
    genotype = get_genotype(cfg.genotype) if cfg.genotype else cfg.preset
    overrides: dict[str, Any] = {}
    if cfg.width:
        overrides["width"] = cfg.width
    if cfg.flow:
        overrides["flow"] = cfg.flow
    return TMICS(model_config(genotype, cfg.size, **overrides))


def build_training_model(cfg: TrainConfig) -> TMICS:
    model = training_network(cfg)
    if cfg.init:
        start = load_model(cfg.init)
        if start.config != model.config:
            raise ValueError(
                f"--init {cfg.init} holds a different network ({_describe_config(start.config)}) than the "
                f"options ask for ({_describe_config(model.config)}); pass matching "
                "--preset/--genotype/--size/--width/--flow"
            )
        model.load_state_dict(start.state_dict())
    return model


def _describe_config(config: Any) -> str:
    genotype = (
        "search" if config.genotype is None else f"{config.genotype.alignment}, {config.genotype.layers}"
    )
    return f"{genotype}, width {config.width}, scale {config.scale}, flow {config.flow}"


def check_holdout(holdout: list[str], names: list[str], paired: Sequence[str] = ()) -> None:
    """Refuse a --holdout name that is none of `names` (a typo would train on the clip meant for
    validation, and score on the training data), or one of the `paired` videos that cannot be held out
    (train's validation renders rain on clean clips): DataError naming what the data holds. "none" holds
    nothing out; the default, `walk`, is passed over where the data has no such clip."""
    asked = [name for name in holdout if name != "none"]
    missing = [name for name in asked if name not in names]
    if not missing or asked == DEFAULT_HOLDOUT:
        return
    unheld = [name for name in missing if name in paired]
    if unheld:
        raise DataError(
            f"--holdout {', '.join(unheld)}: a paired video; train holds out clean clips only (its "
            "validation renders rain on them): leave it out of --data to keep it unseen"
        )
    known = sorted(set(names))
    held = ", ".join(known[:12]) + (f" and {len(known) - 12} more" if len(known) > 12 else "")
    raise DataError(
        f"--holdout {', '.join(missing)}: no such clip or video in --data (it holds {held or 'nothing'}); "
        "give their names, or --holdout none to hold nothing out"
    )


def split_data(cfg: TrainConfig, hold_paired: bool = False) -> tuple[list[Clip], list[Clip], list[Any]]:
    """Clean clips for training, held-out clean clips for validation, and paired videos. `hold_paired`:
    the caller holds paired videos out by name too (search's pools); else only clean clips are."""
    clean_sources, paired = [], []
    for source in cfg.data:
        if not Path(source).exists():
            raise DataError(f"no data at {source}")
        if not Path(source).is_dir():  # a video file: a clean clip (paired sets are folders)
            clean_sources.append(source)
            continue
        try:
            paired.extend(find_paired_videos(source)[1])
        except LayoutNotFound:
            clean_sources.append(source)
    clips = load_clips(clean_sources) if clean_sources else []
    videos = [v.name for v in paired]
    check_holdout(cfg.holdout, [c.name for c in clips] + (videos if hold_paired else []), videos)
    train_clips = [c for c in clips if c.name not in cfg.holdout]
    val_clips = [c for c in clips if c.name in cfg.holdout]
    if not train_clips and not paired:
        raise DataError("no training data: give --data with clean clips or a paired set")
    return train_clips, val_clips, paired


def validation_set(clips: list[Clip], cfg: TrainConfig) -> list[dict[str, torch.Tensor]]:
    """A fixed synthetic held-out set: rain rendered once with a fixed seed on the held-out clips."""
    if not clips:
        return []
    ds = RainyClipDataset(clips, cfg.rain_preset, crop=256, seed=10_000 + cfg.seed, clean_probability=0.0)
    return [ds[i] for i in range(cfg.val_windows)]


@torch.no_grad()
def evaluate(model: TMICS, samples: list[dict[str, torch.Tensor]], device: torch.device) -> dict[str, float]:
    """Y-PSNR / SSIM of the fused output, the DNA alone (TMICS_S) and the rainy input."""
    model.eval()
    scores: dict[str, list[float]] = {k: [] for k in ("psnr", "ssim", "psnr_dna", "psnr_input")}
    for s in samples:
        frames = s["frames"][None].to(device)
        out = model(frames, return_all=True)  # the model computes its own flows, as at inference
        target = s["target"]
        fused = out.derained[0].clamp(0, 1).cpu()
        scores["psnr"].append(psnr_y(fused, target))
        scores["ssim"].append(ssim_y(fused, target))
        scores["psnr_dna"].append(psnr_y(out.dna[0].clamp(0, 1).cpu(), target))
        scores["psnr_input"].append(psnr_y(s["frames"][2], target))
    return {k: float(np.mean(v)) for k, v in scores.items()}


class Trainer:
    def __init__(self, cfg: TrainConfig, console: Any = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.rank = int(os.environ.get("RANK", 0))
        self.device = pick_device(cfg.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True  # fixed crop sizes: let cuDNN pick its fastest kernels
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.console = console
        self.run = cfg.run_path
        # made for this run (by its lock, see fit): what it wrote goes again if it fails before its first
        # checkpoint, and run_lock removes the folders it made once they are empty
        self._new_run = not self.run.exists()
        torch.manual_seed(cfg.seed)
        widths = f"--size {cfg.size}" + (f" --width {cfg.width}" if cfg.width else "")
        check_parameters(lambda: training_network(cfg), self.device, widths)
        self.model = build_training_model(cfg).to(self.device)
        self.prepared = False
        self.stage, self.step = ("flow" if self.learns_flow else "stage1"), 0
        self.ran: dict[str, int] = {}  # steps each finished stage ran (a resume may have run more than asked)
        self.optimizer: torch.optim.Optimizer | None = None
        self.log_file = self.run / LOG_NAME
        self._data: tuple[list[Clip], list[Clip], list[Any]] | None = None
        self.last_scores: dict[str, float] | None = None  # held-out scores of the weights as they are now
        self.started = time.time()
        self.budget_rate: float | None = None  # stage 1 steps/s measured for the time budget
        self.budget_steps: int | None = None  # stage 1's length as a time budget fixed it

    @property
    def data(self) -> tuple[list[Clip], list[Clip], list[Any]]:
        """(training clips, held-out clips, paired videos), read once."""
        if self._data is None:
            self._data = split_data(self.cfg)
        return self._data

    def prepare(self) -> None:
        """Read the data and check the crop against the clips and the step against the memory, before any
        work (the CLI calls it before its progress display; fit calls it too)."""
        if self.prepared:
            return
        train_clips, _, paired = self.data
        check_crop(self.cfg.crop, train_clips, paired)
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", self.world))
        check_training_memory(
            self.model,
            self.cfg.crop,
            self.cfg.batch,
            self.device,
            workers=self.cfg.workers,
            processes=processes,
        )
        self.prepared = True

    def _discard_run(self) -> None:
        """After a failure before the first checkpoint: remove what this run wrote in a run folder made
        for it (the log); the run lock, held around it, then removes the folder when nothing else is in
        it."""
        if not self.is_main or not self._new_run or (self.run / CHECKPOINT_NAME).exists():
            return
        for name in (LOG_NAME, CHECKPOINT_NAME + ".tmp"):
            (self.run / name).unlink(missing_ok=True)

    @property
    def learns_flow(self) -> bool:
        return isinstance(self.model.flow_estimator, PyramidFlowNet)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # --- data ---------------------------------------------------------------------------------------------
    def datasets(self) -> tuple[Dataset, list[dict[str, torch.Tensor]]]:
        train_clips, val_clips, paired = self.data
        parts: list[Dataset] = []
        if train_clips:
            parts.append(
                RainyClipDataset(train_clips, self.cfg.rain_preset, self.cfg.crop, seed=self.cfg.seed)
            )
        if paired:
            parts.append(PairedWindowDataset(paired, self.cfg.crop, seed=self.cfg.seed))
        dataset: Dataset = parts[0] if len(parts) == 1 else _Interleave(parts)
        if isinstance(self.model.flow_estimator, DISFlow):
            dataset = WithFlows(dataset, self.model.flow_estimator)
        return dataset, validation_set(val_clips, self.cfg)

    def loader(self, dataset: Dataset, step: int, steps: int) -> DataLoader:
        per_rank = self.cfg.batch
        # every step consumes world * batch consecutive indices; this rank takes its own slice of them
        start = step * per_rank * self.world
        sampler = _RankSlice(start, (steps - step) * per_rank * self.world, self.rank, self.world, per_rank)
        return DataLoader(
            dataset,
            batch_size=per_rank,
            sampler=sampler,
            num_workers=self.cfg.workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )

    # --- checkpoints ---------------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        if not self.is_main:
            return
        state = {
            "config": asdict(self.cfg),
            "stage": self.stage,
            "step": self.step,
            "ran": self.ran,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "world_size": self.world,
            "budget_steps": self.budget_steps,
        }
        self.run.mkdir(parents=True, exist_ok=True)
        with PendingOutput(self.run / CHECKPOINT_NAME, overwrite=True) as pending:  # whole or not at all
            try:
                torch.save(state, pending.path)
            except (OSError, RuntimeError) as exc:
                raise write_failed(self.run / CHECKPOINT_NAME, exc, "the checkpoint") from None
            pending.commit()

    def load_checkpoint(self) -> dict[str, Any] | None:
        path = self.run / CHECKPOINT_NAME
        if not path.exists():
            return None
        state = read_checkpoint(path, self.device, ("config", "model", "stage", "step"))
        saved = state.get("config", {})
        changed = changed_settings(saved, asdict(self.cfg), RESUME_MUST_MATCH)
        if changed:
            was = ", ".join(f"--{k.replace('_', '-')} {_setting(k, saved)!r}" for k in changed)
            raise ValueError(
                f"{path} was written with {was}; resume with the same settings or another --run-dir"
            )
        if state.get("world_size", 1) != self.world:
            raise ValueError(
                f"{path} was written by {state.get('world_size', 1)} process(es), this run has {self.world}"
            )
        self.model.load_state_dict(state["model"])
        self.stage, self.step = state["stage"], state["step"]
        self.ran = dict(state.get("ran", {}))
        if state.get("budget_steps"):  # a time budget fixed stage 1's length: the schedule depends on it
            self.budget_steps = self.cfg.steps = state["budget_steps"]
        return state

    def log(self, record: dict[str, Any]) -> None:
        if self.is_main:
            self.run.mkdir(parents=True, exist_ok=True)
            with self.log_file.open("a") as f:
                f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")

    # --- stages --------------------------------------------------------------------------------------------
    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            return nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return model

    def run_stage(
        self,
        name: str,
        steps: int,
        params: list[nn.Parameter],
        lr: float,
        lr_min: float,
        dataset: Dataset,
        val: list[dict[str, torch.Tensor]],
        optimizer_state: dict[str, Any] | None,
        progress: Any,
    ) -> None:
        trainable = {id(p) for p in params}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in trainable)
        self.optimizer = torch.optim.Adam(params, lr=lr)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        net = self._wrap(self.model)
        task = (
            progress.add_task(name, total=steps, completed=self.step, loss=float("nan"), sps=0.0)
            if progress
            else None
        )
        start_time, start_step = time.time(), self.step
        probe_time: float | None = None  # where the speed measurement of a time budget started
        probe_step = self.step
        for batch in self.loader(dataset, self.step, steps):
            budget = self.cfg.time_budget
            overdue = budget and self.world == 1 and time.time() - self.started > budget  # ranks must agree
            if name == "stage2" and overdue and self.step > 0:
                # the fusion's lr is constant: ending it when the budget is spent costs no schedule
                self.cfg.fusion_steps = steps = self._end_early("stage2_steps", progress, task)
                self.save_checkpoint()
                break
            if name == "stage1" and budget:
                if not self.steps_fixed:
                    probe_time, probe_step, rate = self._probe(probe_time, probe_step, start_time, start_step)
                    if rate is not None:
                        steps = self.cfg.steps = self._steps_from_budget(rate)
                        if progress is not None:
                            progress.update(task, total=steps)
                elif self.world == 1 and self.budget_rate and self._stage1_overdue():
                    # slower than measured (other jobs on the machine): end stage 1 here, as the budget says
                    steps = self.cfg.steps = self.budget_steps = self._end_early(
                        "stage1_cut_at", progress, task
                    )
                    self.save_checkpoint()
                if self.step >= steps:
                    break
            frames = batch["frames"].to(self.device, non_blocking=True)
            target = batch["target"].to(self.device, non_blocking=True)
            flows = batch["flows"].to(self.device, non_blocking=True) if "flows" in batch else None
            for group in self.optimizer.param_groups:
                # a time budget holds the lr until it has fixed the step count the cosine runs over
                group["lr"] = cosine_lr(self.step, steps, lr, lr_min) if self.steps_fixed else lr
            if name == "stage1":
                self.model.train()
                out = net(frames, flows, return_all=True)
                rho = self.cfg.l1_weight
                loss = restoration_loss(out.dna, target, rho) + restoration_loss(out.cna, target, rho)
            else:  # stage 2: the rest is frozen, BN statistics included
                self.model.eval()
                out = net(frames, flows, return_all=True)
                loss = restoration_loss(out.derained, target, self.cfg.l1_weight)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.last_scores = None  # the weights moved
            self.step += 1
            sps = (self.step - start_step) / max(time.time() - start_time, 1e-9)
            record = {
                "stage": name,
                "step": self.step,
                "loss": round(loss.item(), 6),
                "lr": self.optimizer.param_groups[0]["lr"],
            }
            if name == "stage2":
                record["lambda"] = round(out.lam.mean().item(), 6)
            if self.step % 10 == 0 or self.step == steps:
                self.log({**record, "steps_per_s": round(sps, 4)})
            if progress is not None:
                progress.update(task, completed=self.step, loss=loss.item(), sps=sps)
            if val and self.is_main and (self.step % self.cfg.val_every == 0 or self.step == steps):
                scores = self.last_scores = evaluate(self.model, val, self.device)
                self.log({"stage": name, "step": self.step, "val": scores})
                if self.console is not None:
                    self.console.print(
                        f"[{name} {self.step}/{steps}] held-out Y-PSNR {scores['psnr']:.2f} dB "
                        f"(DNA {scores['psnr_dna']:.2f}, input {scores['psnr_input']:.2f}), "
                        f"SSIM {scores['ssim']:.4f}"
                    )
            if self.step % self.cfg.checkpoint_every == 0 or self.step == steps:
                self.save_checkpoint()
            if self.step >= steps:
                break

    @property
    def steps_fixed(self) -> bool:
        """Whether stage 1's step count is final (always, unless a time budget has yet to fix it)."""
        return self.cfg.time_budget is None or self.budget_steps is not None

    def _end_early(self, event: str, progress: Any, task: Any) -> int:
        """End the running stage at this step for the time budget: logged and shown; returns the step."""
        self.log({"event": "budget", event: self.step})
        if progress is not None:
            progress.update(task, total=self.step)
        return self.step

    def _probe(
        self, probe_time: float | None, probe_step: int, start_time: float, start_step: int
    ) -> tuple[float | None, int, float | None]:
        """Stage 1's speed for the time budget: (probe start time, probe start step, steps/s or None).

        One process measures from 10% to 20% of the budget, once the loader's workers have started and
        their prefetched batches (which would flatter the speed) are used up. Under DDP every rank must
        decide at the same step, so the measurement spans BUDGET_PROBE's steps instead."""
        now, step = time.time(), self.step
        share = (now - self.started) / self.cfg.time_budget
        ready = step - start_step >= BUDGET_PROBE[0] + 2 * self.cfg.workers  # steps run in this process
        if self.world > 1:
            if probe_time is None and ready:
                return now, step, None
            done = probe_time is not None and step - probe_step >= BUDGET_PROBE[1] - BUDGET_PROBE[0]
            return probe_time, probe_step, (step - probe_step) / (now - probe_time) if done else None
        if not ready:
            return probe_time, probe_step, None
        if probe_time is None and share >= 0.1:
            probe_time, probe_step = now, step
        if share < 0.2:
            return probe_time, probe_step, None
        if probe_time is not None and step > probe_step:
            return probe_time, probe_step, (step - probe_step) / (now - probe_time)
        if probe_time is None:  # the budget's first fifth went before the loader was ready
            return now, step, None
        return probe_time, probe_step, None  # measure one more step

    def _stage1_overdue(self) -> bool:
        """Whether stage 1 must end now to leave stage 2 its share of the time budget: true only when the
        run is slower than measured (at the measured speed the planned steps end with 5% of the budget
        or more to spare; a resumed run keeps the step count it saved)."""
        cfg = self.cfg
        left = cfg.time_budget - (time.time() - self.started)
        return left < cfg.fusion_steps / self.budget_rate / BUDGET_MARGIN + 0.02 * cfg.time_budget

    def _steps_from_budget(self, steps_per_s: float) -> int:
        """Stage 1's step count from the time budget and the measured speed (agreed across processes)."""
        cfg = self.cfg
        self.budget_rate = steps_per_s
        left = cfg.time_budget - (time.time() - self.started)
        stage1_seconds = left * BUDGET_MARGIN - cfg.fusion_steps / steps_per_s
        steps = min(cfg.steps, max(self.step, self.step + int(stage1_seconds * steps_per_s)))
        if self.world > 1:
            box = [steps]
            dist.broadcast_object_list(box, src=0)
            steps = box[0]
        self.budget_steps = steps
        self.log({"event": "budget", "steps_per_s": steps_per_s, "stage1_steps": steps})
        if self.console is not None and self.is_main:
            self.console.print(
                f"time budget {cfg.time_budget:.0f} s at {steps_per_s:.2f} steps/s: "
                f"stage 1 runs {steps} steps"
            )
        return steps

    def flow_stage(self) -> None:
        """Pre-train PyramidFlowNet on synthetic motion with known flow, rain on half the pairs (one go:
        a run killed here restarts the flow stage)."""
        if self.cfg.flow_steps == 0:
            return
        train_clips = self.data[0]
        crop = max(32, self.cfg.crop // 32 * 32)  # multi-scale flow supervision wants a multiple of 32
        frames = [torch.from_numpy(f).permute(2, 0, 1) for c in train_clips for f in c.frames]
        frames = [f for f in frames if min(f.shape[-2:]) >= crop]
        if not frames:
            raise DataError(f"the flow stage needs clean frames of at least {crop}x{crop} pixels")
        history = train_flow(
            self.model.flow_estimator,
            frames,
            self.cfg.flow_steps,
            batch=self.cfg.batch,
            crop=crop,
            device=self.device,
            seed=self.cfg.seed,
            rain=tensor_rain(self.cfg.rain_preset),
        )
        for record in history:
            self.log({"stage": "flow", **record})

    def fit(self, progress: Any = None) -> Path:
        """Flow stage, stage 1 and stage 2 as far as they are not done yet; writes the weights file.

        OpenCV runs single-threaded meanwhile, in this process and in the loader's workers, which inherit
        it: the workers are the parallelism. (Setting it inside a worker instead hung: a worker forked
        after OpenCV's thread pool ran here, in a validation, hangs in cv2.setNumThreads.)"""
        import cv2

        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        # a second run on this run folder is refused before it touches the first one's log or checkpoint
        with run_lock(self.run) if self.is_main else contextlib.nullcontext():
            try:
                return self._fit(progress)
            except BaseException:  # Ctrl-C or SIGTERM before the first checkpoint too
                self._discard_run()
                raise
            finally:
                cv2.setNumThreads(threads)

    def _fit(self, progress: Any = None) -> Path:
        cfg = self.cfg
        self.prepare()
        state = self.load_checkpoint() if cfg.resume else None
        if self.stage == "done":  # written by earlier versions after stage 2
            self.stage = "stage2"
        if cfg.resume and state is None and self.is_main and self.console is not None:
            self.console.print(f"no checkpoint in {self.run}; starting from scratch")
        if state is None:
            self.log({"event": "start", "config": asdict(cfg), "world_size": self.world})
        dataset, val = self.datasets()
        opt_state = state["optimizer"] if state and self.step > 0 else None
        if self.stage == "flow":
            self.flow_stage()
            self.stage, self.step = "stage1", 0
            self.save_checkpoint()
        if self.stage == "stage1":
            if self.step < cfg.steps:
                self.run_stage(
                    "stage1",
                    cfg.steps,
                    self.model.network_parameters(),
                    cfg.lr,
                    cfg.lr_min,
                    dataset,
                    val,
                    opt_state,
                    progress,
                )
            self.ran["stage1"] = self.step  # cfg.steps, or more where a checkpoint was past it
            self.stage, self.step, opt_state, self.optimizer = "stage2", 0, None, None
            self.save_checkpoint()
        if self.stage == "stage2" and self.step < cfg.fusion_steps:
            self.run_stage(
                "stage2",
                cfg.fusion_steps,
                self.model.fusion_parameters(),
                cfg.fusion_lr,
                cfg.fusion_lr,
                dataset,
                val,
                opt_state,
                progress,
            )
        out = Path(cfg.output)
        if self.is_main:
            scores = self.last_scores or (evaluate(self.model, val, self.device) if val else {})
            meta = {
                "trained_by": "tmics train",
                "command": " ".join(sys.argv),
                "data": ", ".join(cfg.data),
                "holdout": ", ".join(cfg.holdout),
                "rain_preset": cfg.rain_preset,
                "steps": json.dumps(
                    {"stage1": self.ran.get("stage1", cfg.steps), "stage2": max(self.step, cfg.fusion_steps)}
                ),
                "heldout_scores": json.dumps(scores),
            }
            save_model(
                self.model.cpu(),
                out,
                dtype=torch.float16 if cfg.fp16_weights else torch.float32,
                metadata=meta,
                overwrite=cfg.overwrite,
            )
            self.model.to(self.device)
            self.log({"event": "saved", "path": str(out), "val": scores})
        if self.world > 1:
            dist.barrier()
        return out


class _RankSlice(Sampler[int]):
    """Batch k of this rank = indices start + (k * world + rank) * batch ... + batch - 1."""

    def __init__(self, start: int, count: int, rank: int, world: int, batch: int) -> None:
        self.start, self.count, self.rank, self.world, self.batch = start, count, rank, world, batch

    def __iter__(self):
        for k in range(self.count // (self.batch * self.world)):
            first = self.start + (k * self.world + self.rank) * self.batch
            yield from range(first, first + self.batch)

    def __len__(self) -> int:
        return self.count // self.world


class _Interleave(Dataset):
    """Alternates between data sets by index (clean clips with rendered rain, paired sets)."""

    def __init__(self, parts: list[Dataset]) -> None:
        self.parts = parts

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        part = self.parts[index % len(self.parts)]
        return part[index // len(self.parts)]
