"""tmics: video deraining with TMICS (triple-level model-inferred collaborative networks)."""

from typing import TYPE_CHECKING, Any

from .version import __version__

# The public API, imported on first use: `import tmics_cli` (and so the `tmics` command's start, before its
# signal handlers are in place) does not import torch.
_API = {
    "TMICS": "model",
    "build_model": "model",
    "save_model": "model",
    "load_model": "weights",  # a file or registered weights by name
    "derain_clip": "inference",  # frames in memory through a model
    "derain_video": "derain",  # a video file or frame folder into a new one
    "iter_derained": "derain",  # the same, frame by frame, lazily
    "Derainer": "derain",  # the model loaded once for many inputs; resumable segmented jobs
    "derain_many": "batch",  # many (input, output) targets, one result per input
    "Target": "batch",
}
_OLD_NAMES = {"derain_frames": "derain_clip", "derained_frames": "iter_derained"}  # before 0.2

if TYPE_CHECKING:
    from .batch import Target, derain_many
    from .derain import Derainer, derain_video, iter_derained
    from .inference import derain_clip
    from .model import TMICS, build_model, save_model
    from .weights import load_model


def __getattr__(name: str) -> Any:
    if name in _OLD_NAMES:
        import warnings

        new = _OLD_NAMES[name]
        warnings.warn(f"tmics_cli.{name} is now tmics_cli.{new}", DeprecationWarning, stacklevel=2)
        return __getattr__(new)
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:  # the public API shows in dir() and help() before its first use
    return sorted({*globals(), *__all__})


__all__ = [
    "TMICS",
    "Derainer",
    "Target",
    "__version__",
    "build_model",
    "derain_clip",
    "derain_many",
    "derain_video",
    "iter_derained",
    "load_model",
    "save_model",
]
