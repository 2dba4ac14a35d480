"""Named weights: the registry, where a command finds them, and fetching them from a Hugging Face repo.

A path to a .safetensors file is used as it is. A name from the registry ("light", "heavy", ...) is looked
up in the user cache (platformdirs' user cache dir, or $TMICS_HOME), then in the weights bundled with the
package: the wheel carries the shipped files (`tmics_cli/_weights/`, via hatch force-include), a source
checkout has them in the repository's `weights/` folder. `fetch()` downloads registered weights into the
cache with huggingface_hub and checks their sha256 (the hub itself checks only the size).

The registry's sha256 and sizes are those of the files in `weights/` (a test keeps them in step). The
revision stays `main` until a commit of the hub repository is pinned: integrity rests on the sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .outputs import rename_noreplace


@dataclass(frozen=True)
class RegisteredWeights:
    name: str
    filename: str
    sha256: str
    size: int  # bytes
    repo_id: str  # Hugging Face model repository they are published to
    revision: str
    description: str


HUB_REPO = "tmics/tmics-weights"  # the repository tmics publishes its weights to
REGISTRY: dict[str, RegisteredWeights] = {
    "light": RegisteredWeights(
        "light",
        "tmics-light.safetensors",
        "19c78c8d1d075314b821c0caa9a95d06d8a5976e3948b1d5f45715a33fc1311b",
        441_916,
        HUB_REPO,
        "main",
        "paper's light cell + OFM, width 16, cells at half resolution; the default on the CPU",
    ),
    "heavy": RegisteredWeights(
        "heavy",
        "tmics-heavy.safetensors",
        "2677270d0b70bf9436fa84d613ddae8bfbf33406877500bab2b8b16373c7a295",
        507_484,
        HUB_REPO,
        "main",
        "paper's heavy cell + OFM, width 16, trained on heavy rendered rain",
    ),
    "light-full": RegisteredWeights(
        "light-full",
        "tmics-light-full.safetensors",
        "ca254adfc797c62a0ec6a3417268d2e2397b74e2a9e5db8d4527977a784480fc",
        403_864,
        HUB_REPO,
        "main",
        "light with cells at full resolution: better on all held-out rain; the GPU default (2.2x CPU time)",
    ),
}
NAMED_WEIGHTS: dict[str, str] = {name: entry.filename for name, entry in REGISTRY.items()}


class FetchError(Exception):
    """A download or check that failed; the message is one line meant for the user."""


_PACKAGE = Path(__file__).resolve().parent


def cache_root() -> Path:
    """tmics' own folder in the user's cache: $TMICS_HOME, else the platform's user cache dir for tmics."""
    home = os.environ.get("TMICS_HOME")
    if home:
        return Path(home).expanduser()
    try:
        from platformdirs import user_cache_dir
    except ImportError:  # a bare environment (the lent GPU machines have no platformdirs)
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tmics"
    return Path(user_cache_dir("tmics"))


def cache_dir() -> Path:
    """The user's weights cache: $TMICS_HOME/weights, else weights/ in the platform's user cache dir."""
    return cache_root() / "weights"


def bundled_dirs() -> list[Path]:
    """Folders holding the weights that ship with tmics (installed wheel, then source checkout)."""
    return [_PACKAGE / "_weights", _PACKAGE.parent / "weights"]


def search_path() -> list[Path]:
    return [cache_dir(), *bundled_dirs()]


def resolve_weights(name_or_path: str | os.PathLike[str]) -> Path:
    """A weights file for a registered name or a path. A cached copy that fails its sha256 check is
    passed over for the bundled one. Raises FileNotFoundError with one line."""
    text = str(name_or_path)
    if text in REGISTRY:
        if verify(text):
            return cached_path(text)
        bundled = bundled_path(text)
        if bundled is not None:
            return bundled
        places = ", ".join(str(p) for p in search_path())
        raise FileNotFoundError(
            f"no {text} weights ({NAMED_WEIGHTS[text]}) in {places}; see tmics fetch-weights"
        )
    path = Path(text).expanduser()
    if not path.is_file():
        known = ", ".join(NAMED_WEIGHTS)
        raise FileNotFoundError(f"weights {text} not found (give a .safetensors file or one of: {known})")
    return path


def load_model(name_or_path: str | os.PathLike[str], device: str = "cpu") -> Any:
    """The network of a weights file, or of registered weights by name (`light`, `heavy`, `light-full`:
    the cached copy, else the one bundled with tmics). Raises FileNotFoundError or WeightsError."""
    from .model.io import load_model as load_file

    return load_file(resolve_weights(name_or_path), device)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_path(name: str) -> Path:
    return cache_dir() / REGISTRY[name].filename


def bundled_path(name: str) -> Path | None:
    for folder in bundled_dirs():
        candidate = folder / REGISTRY[name].filename
        if candidate.is_file():
            return candidate
    return None


def verify(name: str, path: Path | None = None) -> bool:
    """Whether the file (default: the cached copy) has the registered size and sha256."""
    entry, path = REGISTRY[name], path or cached_path(name)
    return path.is_file() and path.stat().st_size == entry.size and sha256_of(path) == entry.sha256


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def fetch(name: str, force: bool = False) -> Path:
    """Download registered weights into the cache and check them; returns the cached file.

    An already cached, intact file is kept unless `force`. HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE are
    read at call time. A file whose sha256 does not match is deleted and FetchError raised."""
    if name not in REGISTRY:
        raise FetchError(f"unknown weights {name!r}; registered: {', '.join(REGISTRY)}")
    entry, target = REGISTRY[name], cached_path(name)
    if target.is_dir():
        raise FetchError(f"{target} is a folder, not a weights file; move it away first")
    if not force and verify(name):
        return target
    if _offline():
        raise FetchError(
            f"offline (HF_HUB_OFFLINE is set) and {entry.filename} is not in the cache {cache_dir()}"
            + ("" if bundled_path(name) is None else "; the copy bundled with tmics is used meanwhile")
        )
    _check_cache(target.parent)
    endpoint = os.environ.get("HF_ENDPOINT") or None
    where = f"{entry.repo_id}@{entry.revision} on {endpoint or 'huggingface.co'}"
    _check_reachable(endpoint or "https://huggingface.co", where)  # before the hub parses HF_ENDPOINT
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import logging as hub_logging
    except ValueError as exc:  # the hub parses HF_ENDPOINT and its other settings as it is imported
        raise FetchError(f"cannot download from {where}: {exc}; check HF_ENDPOINT") from None

    hub_logging.set_verbosity_error()  # its retry warnings would break the one-line error
    created = _prepare_cache(target.parent)
    # Download beside the cache, and replace the cached file only with a copy that passed its check:
    # a failed --force never costs the good copy.
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        try:
            downloaded = Path(
                hf_hub_download(
                    entry.repo_id,
                    entry.filename,
                    revision=entry.revision,
                    local_dir=staging,
                    force_download=True,
                    endpoint=endpoint,
                    token=os.environ.get("HF_TOKEN") or None,
                )
            )
        except Exception as exc:  # noqa: BLE001 - huggingface_hub raises many types; one line for all
            raise FetchError(f"cannot download {entry.filename} from {where}: {_describe(exc)}") from None
        if not verify(name, downloaded):
            actual = sha256_of(downloaded) if downloaded.exists() else "nothing"
            kept = " (the cached copy was kept)" if target.exists() else ""
            raise FetchError(
                f"{entry.filename} from {where} failed its check (sha256 {actual[:16]}..., expected "
                f"{entry.sha256[:16]}...); the corrupt file was deleted{kept}"
            )
        _into_cache(name, downloaded, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # a failed first download leaves no empty cache folders behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return target


def _into_cache(name: str, downloaded: Path, target: Path) -> None:
    """Move a checked download onto the cached name. A cached copy is replaced only when it is there and
    this is a --overwrite or it failed its check; one that another fetch put there meanwhile is kept if it
    is intact (tmics_cli.outputs.rename_noreplace)."""
    if os.path.lexists(target):
        os.replace(downloaded, target)
        return
    try:
        rename_noreplace(downloaded, target)
    except FileExistsError:
        if not verify(name):
            os.replace(downloaded, target)


_CACHE_HINT = "set TMICS_HOME to a writable folder (the cache is $TMICS_HOME/weights)"


def _check_cache(folder: Path) -> None:
    """FetchError in one line when the cache folder is, or would lie under, a file (nothing is made)."""
    for above in (folder, *folder.parents):
        if above.exists():
            if not above.is_dir():
                what = "is a file" if above == folder else f"cannot be made: {above} is a file"
                raise FetchError(f"the weights cache {folder} {what}, not a folder; {_CACHE_HINT}")
            break


def _prepare_cache(folder: Path) -> list[Path]:
    """Make the cache folder and check that a file can be written in it; FetchError in one line if not.
    Returns the folders it made, deepest first."""
    hint = _CACHE_HINT
    _check_cache(folder)
    created = [f for f in (folder, *folder.parents) if not f.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise FetchError(f"the weights cache {folder} is not writable ({reason}); {hint}") from None
    return created


def _proxy_for(url: str) -> tuple[str, str] | None:
    """(variable, proxy URL) that the hub's HTTP client takes for `url` from the environment, or None."""
    from urllib.parse import urlsplit
    from urllib.request import proxy_bypass_environment

    parts = urlsplit(url)
    if proxy_bypass_environment(parts.hostname or ""):  # NO_PROXY
        return None
    for name in (f"{parts.scheme}_proxy", "all_proxy"):
        for var in (name.upper(), name):
            if os.environ.get(var):
                return var, os.environ[var]
    return None


def _check_reachable(endpoint: str, where: str) -> None:
    """Fail at once when nothing listens at the endpoint, or at the proxy the download would go through
    (huggingface_hub would retry for about 25 s, or fail with a message about something else)."""
    import socket
    from urllib.parse import urlsplit

    try:
        proxy = _proxy_for(endpoint)
    except ValueError as exc:  # urlsplit: "Invalid IPv6 URL"
        raise FetchError(
            f"cannot download from {where}: the address {endpoint} is not a URL ({exc})"
        ) from None
    target = endpoint if proxy is None else (proxy[1] if "://" in proxy[1] else f"http://{proxy[1]}")
    try:
        parts = urlsplit(target)
    except ValueError as exc:
        what = f"the proxy {proxy[1]} ({proxy[0]})" if proxy else f"the address {target}"
        raise FetchError(
            f"cannot download from {where}: {what} is not a URL ({exc}); check it or unset it"
        ) from None
    try:
        default = {"https": 443, "socks4": 1080, "socks5": 1080, "socks5h": 1080}.get(parts.scheme, 80)
        port = parts.port or default
        socket.create_connection((parts.hostname or "", port), timeout=10).close()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if proxy is not None:
            raise FetchError(
                f"cannot download from {where}: the proxy {proxy[1]} ({proxy[0]}) cannot be reached "
                f"({reason}); check {proxy[0]} or unset it"
            ) from None
        raise FetchError(
            f"cannot download from {where}: the server cannot be reached ({reason}); "
            "offline? set HF_ENDPOINT for a mirror"
        ) from None


def _describe(exc: BaseException) -> str:
    """A failed download in the user's words; by its cause where the hub wraps one ("Force download
    failed due to the above error")."""
    while exc.__cause__ is not None and "above error" in str(exc):
        exc = exc.__cause__
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "404" in text or name in ("EntryNotFoundError", "RepositoryNotFoundError", "RevisionNotFoundError"):
        return "not found (404): the file, revision or repository is not there (not published yet?)"
    if name in ("ConnectError", "ConnectionError", "LocalEntryNotFoundError") or "connect" in text.lower():
        return "the server cannot be reached (offline? set HF_ENDPOINT for a mirror)"
    return f"{name}: {text}"[:200]
