"""tmics: video deraining with TMICS (triple-level model-inferred collaborative networks)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tmics")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from typing import TYPE_CHECKING, Any

# The public API, imported on first use: `import tmics_cli` (and so the `tmics` command's start, before its
# signal handlers are in place) does not import torch.
_API = {
    "TMICS": "model",
    "build_model": "model",
    "load_model": "model",
    "save_model": "model",
    "derain_frames": "inference",
    "derain_video": "derain",
    "derained_frames": "derain",
}

if TYPE_CHECKING:
    from .derain import derain_video, derained_frames
    from .inference import derain_frames
    from .model import TMICS, build_model, load_model, save_model


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TMICS",
    "__version__",
    "build_model",
    "derain_frames",
    "derain_video",
    "derained_frames",
    "load_model",
    "save_model",
]
