"""The TMICS network: alignment F -> GARS -> DNA and CNA -> AAS, plus named configurations.

    frames (B, 5, 3, H, W) in [0, 1]
      -> F (OFM, TGM, or softmax(beta)-mixture while searching)     features (B, C, H, W)
      -> GARS on the centre frame I_t                                 I~_t (B, 3, H, W)
      -> DNA(features, I~_t), CNA(features, I_t)                      B_D, B_C (B, 3, H, W)
      -> AAS: lambda * B_D + (1 - lambda) * B_C                       derained centre frame (B, 3, H, W)

Each of DNA and CNA is a RestorationNetwork: head conv, `cells` cells of L layers, tail conv, predicting
the rain residual to subtract from its own centre input. With `scale` s > 1 the head first folds s x s
pixel blocks into channels (pixel unshuffle) and the tail unfolds them, so the cells run at 1/s
resolution: the knob that makes a CPU-affordable size. The paper's networks are scale 1, width 96.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from .aas import AttentionAveraging
from .align import (
    CENTRE,
    FLOW_ESTIMATORS,
    NUM_FRAMES,
    MixedAlign,
    OpticalFlowAlign,
    TemporalGroupingAlign,
    build_flow_estimator,
)
from .cell import Cell
from .gars import AuxiliaryRainStreaks
from .genotypes import ALIGNMENTS, GENOTYPES, PRESET_GENOTYPES, Genotype, named_genotype
from .ops import OPERATION_NAMES


@dataclass(frozen=True)
class ModelConfig:
    """Everything that rebuilds a TMICS network; stored in every weights file."""

    genotype: Genotype | None  # None for the search variant
    width: int = 16
    cells: int = 4
    layers: int = 4  # layers per cell; a genotype fixes it to len(genotype.layers)
    scale: int = 1
    flow: str = "dis"
    gars_width: int = 16
    aas_width: int = 16

    @property
    def search(self) -> bool:
        return self.genotype is None

    def __post_init__(self) -> None:
        if self.genotype is not None and self.layers != len(self.genotype.layers):
            object.__setattr__(self, "layers", len(self.genotype.layers))
        if self.flow not in FLOW_ESTIMATORS:
            raise ValueError(f"unknown flow estimator {self.flow!r}; known: {', '.join(FLOW_ESTIMATORS)}")
        for name in ("width", "cells", "layers", "scale", "gars_width", "aas_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"model config {name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["genotype"] = None if self.genotype is None else self.genotype.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        genotype = data.pop("genotype", None)
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config field(s): {sorted(unknown)}")
        return cls(genotype=None if genotype is None else Genotype.from_dict(genotype), **data)


# Named sizes (timm-style registry). `small` is the CPU-affordable default, `medium` twice its width (about
# 2x the CPU time); `small-full` is `small` with its cells at full resolution (3.3x the multiply-adds, about
# those of `medium`; the plain aligned network at this size, trained like one at `small` for 600 steps,
# scored 2.4 dB higher on held-out synthetic rain: benchmarks/ablation.py --scale 1); `paper` is the paper's
# width at full resolution.
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"width": 8, "scale": 2, "gars_width": 8, "aas_width": 8},
    "small": {"width": 16, "scale": 2, "gars_width": 8, "aas_width": 8},
    "small-full": {"width": 16, "scale": 1, "gars_width": 8, "aas_width": 8},
    "medium": {"width": 32, "scale": 2, "gars_width": 16, "aas_width": 8},
    "paper": {"width": 96, "scale": 1, "gars_width": 32, "aas_width": 32},
}


def model_config(
    preset: str | Genotype | None = "light", size: str = "small", **overrides: Any
) -> ModelConfig:
    """A named configuration: a named network or preset ("light", "heavy", "paper-light", "paper-heavy",
    "heavy-ofm") / a Genotype / None (search), at a named size."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; known: {', '.join(SIZES)}")
    if isinstance(preset, str):
        named = named_genotype(preset)
        if named is None:
            known = ", ".join([*PRESET_GENOTYPES, *GENOTYPES])
            raise ValueError(f"unknown preset {preset!r}; known: {known}")
        preset = named
    return replace(ModelConfig(genotype=preset, **SIZES[size]), **overrides)


class RestorationNetwork(nn.Module):
    """DNA or CNA: head conv -> cells -> (+ head) -> tail conv; returns centre - predicted rain."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        s, c = config.scale, config.width
        self.scale = s
        layers = None if config.genotype is None else config.genotype.layers
        self.head = nn.Conv2d((c + 3) * s * s, c, 3, padding=1)
        self.cells = nn.ModuleList(Cell(c, layers, config.layers) for _ in range(config.cells))
        self.tail = nn.Conv2d(c, 3 * s * s, 3, padding=1)
        with torch.no_grad():  # start close to identity (small residual), yet let gradients through
            self.tail.weight.mul_(0.1)
            self.tail.bias.zero_()
        # For inference, the same map as head(pixel_unshuffle(cat)) without either (tmics_cli.model.fuse)
        self.fused_head: nn.Module | None = None

    def embed(self, features: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        """The head: (B, C, H, W) features and (B, 3, H, W) centre -> (B, C, H/s, W/s)."""
        if self.fused_head is not None:
            return self.fused_head(features, centre)
        return self.head(F.pixel_unshuffle(torch.cat([features, centre], 1), self.scale))

    def forward(
        self, features: torch.Tensor, centre: torch.Tensor, layer_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        # features: (B, C, H, W); centre: (B, 3, H, W); layer_weights: (L, 8) or None -> (B, 3, H, W)
        h = self.embed(features, centre)
        y = h
        for cell in self.cells:
            y = cell(y, layer_weights)
        rain = F.pixel_shuffle(self.tail(y + h), self.scale)
        return centre - rain


class TMICSOutput(NamedTuple):
    derained: torch.Tensor  # (B, 3, H, W) the AAS fusion
    dna: torch.Tensor  # (B, 3, H, W) the DNA's estimate (the paper's single-network TMICS_S)
    cna: torch.Tensor  # (B, 3, H, W) the CNA's estimate
    lam: torch.Tensor  # (B, 3, 1, 1) the DNA's share in the fusion


def _pad_frames(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """Pad the last two dims of (..., H, W) at bottom/right; reflect where possible, else replicate."""
    if ph == 0 and pw == 0:
        return x
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    flat = F.pad(flat, (0, pw, 0, ph), mode=mode)
    return flat.reshape(*lead, *flat.shape[-3:])


class TMICS(nn.Module):
    """The whole model. `TMICS(config)` with a genotype is the derived network; with `genotype=None` it is
    the search variant, holding alpha (L, 8) shared by every cell of DNA and CNA and beta (2,) over
    ("ofm", "tgm")."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        if config.search:
            self.align = MixedAlign(config.width, config.flow)
            self.alpha = nn.Parameter(1e-3 * torch.randn(config.layers, len(OPERATION_NAMES)))
            self.beta = nn.Parameter(torch.zeros(len(ALIGNMENTS)))
        elif config.genotype.alignment == "ofm":
            self.align = OpticalFlowAlign(config.width, config.flow)
        else:
            self.align = TemporalGroupingAlign(config.width)
        self.gars = AuxiliaryRainStreaks(config.gars_width)
        self.dna = RestorationNetwork(config)
        self.cna = RestorationNetwork(config)
        self.aas = AttentionAveraging(config.aas_width)
        self.flow_name = config.flow  # the flow the OFM runs with (use_flow changes it)

    @property
    def flow_estimator(self) -> nn.Module | None:
        """The OFM's flow estimator (DISFlow, PatchInverseSearchFlow or PyramidFlowNet), or None when the
        model has no OFM."""
        if self.config.search:
            return self.align.ofm.flow
        return self.align.flow if isinstance(self.align, OpticalFlowAlign) else None

    def use_flow(self, name: str) -> None:
        """Run the OFM with another flow estimator without weights ("dis" or "device"); `config.flow` keeps
        naming the flow the weights were trained with. A model without OFM is left as it is."""
        if FLOW_ESTIMATORS.get(name) is None or name == "pyramid":
            raise ValueError(f"use_flow takes a flow without weights (dis or device), got {name!r}")
        if self.flow_estimator is None or self.flow_name == name:
            return
        ofm = self.align.ofm if self.config.search else self.align
        ref = next(self.parameters())
        ofm.flow = build_flow_estimator(name).to(ref.device)
        self.flow_name = name

    def architecture_parameters(self) -> list[nn.Parameter]:
        """alpha and beta (the search's second level); empty for a derived network."""
        return [self.alpha, self.beta] if self.config.search else []

    def fusion_parameters(self) -> list[nn.Parameter]:
        """The AAS parameters (the third level, lambda)."""
        return list(self.aas.parameters())

    def network_parameters(self) -> list[nn.Parameter]:
        """Every other parameter: alignment, GARS, DNA, CNA (the first level, omega)."""
        skip = {id(p) for p in self.architecture_parameters() + self.fusion_parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def forward(
        self, frames: torch.Tensor, flows: torch.Tensor | None = None, return_all: bool = False
    ) -> torch.Tensor | TMICSOutput:
        # frames: (B, 5, 3, H, W) in [0, 1]; flows: optional (B, 4, 2, H, W) centre -> neighbours
        if frames.ndim != 5 or frames.shape[1] != NUM_FRAMES or frames.shape[2] != 3:
            raise ValueError(f"expected frames (B, {NUM_FRAMES}, 3, H, W), got {tuple(frames.shape)}")
        h, w = frames.shape[-2:]
        s = self.config.scale
        ph, pw = (-h) % s, (-w) % s
        frames = _pad_frames(frames, ph, pw)
        if flows is not None:
            flows = _pad_frames(flows, ph, pw)
        if self.config.search:
            features = self.align(frames, torch.softmax(self.beta, 0), flows)
            layer_weights = torch.softmax(self.alpha, -1)
        else:
            features = self.align(frames, flows)
            layer_weights = None
        centre = frames[:, CENTRE]
        dna = self.dna(features, self.gars(centre), layer_weights)[..., :h, :w]
        cna = self.cna(features, centre, layer_weights)[..., :h, :w]
        fused, lam = self.aas(dna, cna)
        return TMICSOutput(fused, dna, cna, lam) if return_all else fused


def build_model(preset: str | Genotype | None = "light", size: str = "small", **overrides: Any) -> TMICS:
    """TMICS from a named preset and size, e.g. build_model("heavy", "tiny")."""
    return TMICS(model_config(preset, size, **overrides))


def change_scale(model: TMICS, scale: int) -> TMICS:
    """A warm start for `model` with its cells at another resolution: a new TMICS whose scale is `scale`,
    which must divide the model's. Every tensor is copied except the heads and tails of DNA and CNA: a head's
    weights for the sub-pixel positions that fold onto one position of the new scale are summed, a tail's
    outputs for them averaged. On an input that is constant in space the new network then gives, away from
    the borders, the mean of the old one's output over each block; elsewhere it needs fine-tuning."""
    old = model.config.scale
    if scale < 1 or old % scale:
        raise ValueError(f"the new scale must divide the model's scale {old}, got {scale}")
    new = TMICS(replace(model.config, scale=scale))
    # sub-pixel position (i, j) of an old block (channel index i * old + j) lands on (i % scale, j % scale)
    ij = torch.arange(old * old)
    target = (ij // old % scale) * scale + ij % old % scale  # (old*old,) in [0, scale*scale)
    fold = F.one_hot(target, scale * scale).to(torch.float32)  # (old*old, scale*scale): sums
    average = fold / fold.sum(0)  # the same, averaging the (old / scale)^2 positions that fold together
    state = model.state_dict()
    converted = {}
    for name, value in new.state_dict().items():
        w = state[name]
        if w.shape == value.shape:
            converted[name] = w
        elif name.endswith("head.weight"):  # (C, Cin*old*old, 3, 3) -> (C, Cin*scale*scale, 3, 3)
            w = w.reshape(w.shape[0], -1, old * old, *w.shape[2:])
            converted[name] = torch.einsum("ocpyx,pq->ocqyx", w, fold).flatten(1, 2)
        elif name.endswith("tail.weight"):  # (3*old*old, C, 3, 3) -> (3*scale*scale, C, 3, 3)
            w = w.reshape(-1, old * old, *w.shape[1:])
            converted[name] = torch.einsum("mpcyx,pq->mqcyx", w, average).flatten(0, 1)
        elif name.endswith("tail.bias"):  # (3*old*old,) -> (3*scale*scale,)
            converted[name] = (w.reshape(-1, old * old) @ average).flatten()
        else:  # pragma: no cover - every other tensor is independent of the scale
            shapes = f"{tuple(w.shape)} -> {tuple(value.shape)}"
            raise ValueError(f"no rule to change the scale of {name}: {shapes}")
    new.load_state_dict(converted)
    return new.train(model.training)
