"""tmics: video deraining with TMICS (triple-level model-inferred collaborative networks)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tmics")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from .derain import derain_video, derained_frames
from .inference import derain_frames
from .model import TMICS, build_model, load_model, save_model

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
