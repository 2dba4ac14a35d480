"""Genotypes: which operation each layer of a cell uses, and which alignment module feeds the networks.

The JSON schema, used by `tmics search` (writes it), `tmics train --genotype` (reads it) and the weights
metadata, is::

    {
      "format": "tmics-genotype/1",
      "layers": ["residual_3x3", "spatial_attention", "dilated_3x3", "channel_attention"],
      "alignment": "ofm",                       # "ofm" or "tgm"
      "search": {                               # optional provenance of a searched genotype
        "alpha": [[p_op1, ..., p_op8], ...],    # softmax(alpha), one row per layer, OPERATION_NAMES order
        "beta": {"ofm": p, "tgm": q},           # softmax(beta)
        "data": "...", "settings": {...}
      }
    }

The same cell is repeated in every cell of both the DNA and the CNA (alpha is shared), as in the paper.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .ops import OPERATION_NAMES

GENOTYPE_FORMAT = "tmics-genotype/1"
ALIGNMENTS: tuple[str, ...] = ("ofm", "tgm")


class GenotypeError(ValueError):
    """A genotype (JSON or object) that does not follow the schema."""


@dataclass(frozen=True)
class Genotype:
    layers: tuple[str, ...]
    alignment: str
    search: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise GenotypeError("a genotype needs at least one layer")
        unknown = [op for op in self.layers if op not in OPERATION_NAMES]
        if unknown:
            raise GenotypeError(f"unknown operation(s) {unknown}; known: {', '.join(OPERATION_NAMES)}")
        if self.alignment not in ALIGNMENTS:
            raise GenotypeError(f"alignment must be one of {ALIGNMENTS}, got {self.alignment!r}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": GENOTYPE_FORMAT,
            "layers": list(self.layers),
            "alignment": self.alignment,
        }
        if self.search is not None:
            out["search"] = self.search
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Any) -> Genotype:
        if not isinstance(data, dict):
            raise GenotypeError("a genotype must be a JSON object")
        if data.get("format") != GENOTYPE_FORMAT:
            raise GenotypeError(f"genotype format must be {GENOTYPE_FORMAT!r}, got {data.get('format')!r}")
        layers = data.get("layers")
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise GenotypeError("genotype 'layers' must be a list of operation names")
        search = data.get("search")
        if search is not None and not isinstance(search, dict):
            raise GenotypeError("genotype 'search' must be an object when present")
        return cls(tuple(layers), data.get("alignment"), search)

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"genotype is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> Genotype:
        """A genotype JSON file (from `tmics search`); errors name the file."""
        try:
            text = Path(path).read_text()
        except UnicodeDecodeError:
            raise GenotypeError(f"{path} is not a genotype JSON file (not text)") from None
        except OSError as exc:
            raise GenotypeError(f"cannot read genotype {path}: {exc.strerror or exc}") from None
        try:
            return cls.from_json(text)
        except GenotypeError as exc:
            raise GenotypeError(f"{path}: {exc}") from None


# The named networks. The paper's derived cells (Sec. III-B, "The Final Derived Architectures"; the authors'
# code uses residual_5x5 as the light cell's first op, we follow the paper's text), and the network shipped
# as tmics-heavy: the paper's heavy cell with OFM alignment instead of TGM.
_LIGHT_CELL = ("residual_3x3", "spatial_attention", "dilated_3x3", "channel_attention")
_HEAVY_CELL = ("residual_5x5", "spatial_attention", "channel_attention", "residual_3x3")
GENOTYPES: dict[str, Genotype] = {
    "paper-light": Genotype(_LIGHT_CELL, "ofm"),
    "paper-heavy": Genotype(_HEAVY_CELL, "tgm"),
    "heavy-ofm": Genotype(_HEAVY_CELL, "ofm"),
}
# What the presets `light` / `heavy` (tmics train --preset, build_model("light")) mean: the paper's networks.
PRESET_GENOTYPES = {"light": "paper-light", "heavy": "paper-heavy"}


def named_genotype(name: str) -> Genotype | None:
    """A named network (paper-light, paper-heavy, heavy-ofm) or preset (light, heavy); None if unknown."""
    return GENOTYPES.get(PRESET_GENOTYPES.get(name, name))


def get_genotype(name_or_path: str | Path) -> Genotype:
    """A named network or preset (see `named_genotype`) or a genotype JSON file."""
    named = named_genotype(str(name_or_path))
    if named is not None:
        return named
    path = Path(name_or_path)
    if not path.is_file():
        known = ", ".join([*PRESET_GENOTYPES, *GENOTYPES])
        raise GenotypeError(f"no genotype named {str(name_or_path)!r} and no such file (names: {known})")
    return Genotype.load(path)


def genotype_from_architecture(
    alpha: torch.Tensor, beta: torch.Tensor, provenance: dict[str, Any] | None = None
) -> Genotype:
    """Derive a genotype from searched weights: argmax of alpha per layer, argmax of beta.

    alpha: (L, 8) logits in OPERATION_NAMES order; beta: (2,) logits in ALIGNMENTS order.
    """
    if alpha.ndim != 2 or alpha.shape[1] != len(OPERATION_NAMES):
        raise GenotypeError(f"alpha must be (layers, {len(OPERATION_NAMES)}), got {tuple(alpha.shape)}")
    if beta.shape != (len(ALIGNMENTS),):
        raise GenotypeError(f"beta must be ({len(ALIGNMENTS)},), got {tuple(beta.shape)}")
    p_alpha = torch.softmax(alpha.detach().float(), -1)
    p_beta = torch.softmax(beta.detach().float(), -1)
    layers = tuple(OPERATION_NAMES[i] for i in p_alpha.argmax(-1).tolist())
    search = {
        "alpha": [[round(v, 6) for v in row] for row in p_alpha.tolist()],
        "beta": {name: round(v, 6) for name, v in zip(ALIGNMENTS, p_beta.tolist(), strict=True)},
        **(provenance or {}),
    }
    return Genotype(layers, ALIGNMENTS[int(p_beta.argmax())], search)
