"""Weight files: safetensors whose metadata rebuilds the network. Never pickle.

Metadata (all strings, as safetensors requires):
    format      "tmics-weights/1"
    config      ModelConfig as JSON: genotype (ops per layer, alignment, search provenance), width, cells,
                layers, scale, flow estimator, GARS and AAS widths
    dtype       the storage dtype of floating tensors ("float32" or "float16")
    + any free-form keys the writer adds (data, steps, command, ...), kept as they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..outputs import PendingOutput
from .fuse import is_rewritten
from .network import TMICS, ModelConfig

WEIGHTS_FORMAT = "tmics-weights/1"
RESERVED_KEYS = frozenset({"format", "config", "dtype"})
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


class WeightsError(ValueError):
    """A weights file that cannot be loaded; the message says what is wrong."""


def save_model(
    model: TMICS,
    path: str | os.PathLike[str],
    dtype: torch.dtype = torch.float32,
    metadata: dict[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `model` to `path` (written to a temporary file, then renamed; an existing file is replaced only
    with `overwrite`, see tmics_cli.outputs). Floating tensors are stored in `dtype` (float32 or float16);
    `metadata` adds free-form string entries."""
    from safetensors.torch import save_file

    if is_rewritten(model):
        raise ValueError("this network was rewritten for inference (tmics_cli.model.fuse); save the original")
    names = {v: k for k, v in STORAGE_DTYPES.items()}
    if dtype not in names:
        raise ValueError(f"storage dtype must be float32 or float16, got {dtype}")
    extra = dict(metadata or {})
    clash = RESERVED_KEYS & set(extra)
    if clash:
        raise ValueError(f"metadata keys {sorted(clash)} are reserved")
    if not all(isinstance(v, str) for v in extra.values()):
        raise ValueError("metadata values must be strings")
    tensors = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    meta = {
        "format": WEIGHTS_FORMAT,
        "config": json.dumps(model.config.to_dict()),
        "dtype": names[dtype],
        **extra,
    }
    path = Path(path)
    with PendingOutput(path, overwrite=overwrite) as pending:
        save_file(tensors, str(pending.path), metadata=meta)
        pending.commit()
    return path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata of a weights file, checked to be a tmics file of a known format."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for malformed headers
        raise WeightsError(f"{path} is not a safetensors weights file ({exc})") from exc
    if meta.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(
            f"{path} is not a tmics weights file: metadata format is {meta.get('format')!r}, "
            f"expected {WEIGHTS_FORMAT!r}"
        )
    return meta


def config_from_metadata(meta: dict[str, str], path: str | os.PathLike[str] = "weights") -> ModelConfig:
    try:
        return ModelConfig.from_dict(json.loads(meta["config"]))
    except KeyError:
        raise WeightsError(f"{path}: metadata has no 'config' entry") from None
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"{path}: metadata 'config' does not describe a network ({exc})") from exc


def _describe(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> TMICS:
    """Rebuild the network from the file's metadata alone, load its tensors (as float32), eval mode."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    config = config_from_metadata(meta, path)
    model = TMICS(config)
    expected = model.state_dict()
    tensors = load_file(str(path))
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    reshaped = sorted(
        f"{k} {tuple(tensors[k].shape)} vs {tuple(expected[k].shape)}"
        for k in set(expected) & set(tensors)
        if tensors[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing tensors: {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {_describe(unexpected)}")
    if reshaped:
        problems.append(f"shape mismatch (file vs metadata's network): {_describe(reshaped)}")
    common = sorted(set(expected) & set(tensors))
    retyped = [k for k in common if expected[k].is_floating_point() != tensors[k].is_floating_point()]
    if retyped:
        problems.append(f"integer tensors where the network has floats, or the reverse: {_describe(retyped)}")
    if problems:
        raise WeightsError(
            f"{path}: tensors do not match the network its metadata describes; " + "; ".join(problems)
        )
    broken = [k for k in common if tensors[k].is_floating_point() and not torch.isfinite(tensors[k]).all()]
    if broken:  # a training run that diverged: every output would be NaN, scored and written as black
        raise WeightsError(f"{path}: tensors hold NaN or infinite values: {_describe(broken)}")
    state = {k: (v.to(expected[k].dtype) if v.is_floating_point() else v) for k, v in tensors.items()}
    model.load_state_dict(state)
    return model.to(device).eval()


def average_models(paths: list[str | os.PathLike[str]]) -> TMICS:
    """The uniform average of the parameters and BatchNorm statistics of weights files of one network (a
    "model soup": e.g. rounds fine-tuned one from another). Integer tensors (BN step counts) are taken from
    the first file. Files describing different networks raise WeightsError."""
    if not paths:
        raise ValueError("no weights files to average")
    models = [load_model(p) for p in paths]
    for path, model in zip(paths[1:], models[1:], strict=True):
        if model.config != models[0].config:
            raise WeightsError(f"{path} describes another network than {paths[0]}; only one network averages")
    states = [m.state_dict() for m in models]
    averaged = {
        k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v
        for k, v in states[0].items()
    }
    models[0].load_state_dict(averaged)
    return models[0]
