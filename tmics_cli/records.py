"""What tmics made: a record of each finished output in the user's cache ($TMICS_HOME/outputs), saying
which input and settings made it and how the file stood when it was written (device, inode, size,
modification time).

A rerun of `tmics derain` then tells its own finished output, made from this input with these settings
(skipped), from one made otherwise or changed since (refused without --overwrite, like any existing
file). Where there is no record (another machine joined the output, the cache was cleared), derain falls
back to what the file itself shows: its frame count and width. A record is a small JSON file named by a
hash of the output's path, replaced whole (written aside, then renamed); one that cannot be written is
passed over (a read-only cache costs only the exact check).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from .weights import cache_root


def records_dir() -> Path:
    return cache_root() / "outputs"


def _record_path(dst: Path) -> Path:
    key = hashlib.sha256(str(Path(dst).resolve()).encode()).hexdigest()[:32]
    return records_dir() / f"{key}.json"


def _as_written(dst: Path) -> dict[str, int] | None:
    """How `dst` stands now, or None when it is not there (a frames folder's times change with any file
    added to it or taken out)."""
    try:
        st = os.stat(dst)
    except OSError:
        return None
    return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def record_output(dst: Path, made: dict[str, Any]) -> None:
    """Note that tmics finished `dst` just now from what `made` says (an input's identity and settings)."""
    stat = _as_written(dst)
    if stat is None:
        return
    path = _record_path(dst)
    entry = {"output": str(Path(dst).resolve()), "file": stat, "made": made}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        aside.write_text(json.dumps(entry, sort_keys=True))
        os.replace(aside, path)  # our own record: replacing it loses nothing
    except OSError:
        return


CHANGED = "changed"  # made_by: the record's output was changed or replaced since tmics wrote it


def made_by(dst: Path) -> dict[str, Any] | str | None:
    """What made `dst`, from its record, while the file is still as tmics wrote it; CHANGED when the
    record's file was changed or replaced since (it is no longer tmics' output); None without a record."""
    try:
        entry = json.loads(_record_path(dst).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("output") != str(Path(dst).resolve()):
        return None
    made = entry.get("made")
    if not isinstance(made, dict):
        return None
    return made if entry.get("file") == _as_written(dst) else CHANGED
