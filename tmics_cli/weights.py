"""Where named weights come from: the user cache, then the weights bundled with the package.

Names are the rain levels, "light" and "heavy". A path to a .safetensors file is used as it is. The wheel
carries the shipped files inside the package (`tmics_cli/_weights/`, via hatch force-include); a source
checkout finds them in the repository's `weights/` folder. The user cache (platformdirs' user cache dir,
or $TMICS_HOME) is searched first, so weights fetched later override the bundled ones.
"""

from __future__ import annotations

import os
from pathlib import Path

NAMED_WEIGHTS: dict[str, str] = {
    "light": "tmics-light.safetensors",
    "heavy": "tmics-heavy.safetensors",
}

_PACKAGE = Path(__file__).resolve().parent


def cache_dir() -> Path:
    """The user's weights cache: $TMICS_HOME/weights, else the platform's user cache dir."""
    home = os.environ.get("TMICS_HOME")
    if home:
        return Path(home).expanduser() / "weights"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("tmics")) / "weights"


def bundled_dirs() -> list[Path]:
    """Folders holding the weights that ship with tmics (installed wheel, then source checkout)."""
    return [_PACKAGE / "_weights", _PACKAGE.parent / "weights"]


def search_path() -> list[Path]:
    return [cache_dir(), *bundled_dirs()]


def resolve_weights(name_or_path: str | os.PathLike[str]) -> Path:
    """A weights file for a name ("light", "heavy") or a path. Raises FileNotFoundError with one line."""
    text = str(name_or_path)
    if text in NAMED_WEIGHTS:
        for folder in search_path():
            candidate = folder / NAMED_WEIGHTS[text]
            if candidate.is_file():
                return candidate
        places = ", ".join(str(p) for p in search_path())
        raise FileNotFoundError(f"no {text} weights ({NAMED_WEIGHTS[text]}) in {places}")
    path = Path(text).expanduser()
    if not path.is_file():
        known = ", ".join(NAMED_WEIGHTS)
        raise FileNotFoundError(f"weights {text} not found (give a .safetensors file or one of: {known})")
    return path
