"""What tmics may write, and how: the one home of the rules that keep users' files safe.

Every command that writes (derain, train, search, benchmark, fetch-weights) goes through this module:

- `check_output` runs before any work. An output never is, or lies inside, one of the command's inputs
  (symbolic and hard links followed), and a folder output never holds an input. An existing output is
  replaced only with `overwrite`, and an existing *folder* only when it is a previous tmics output: its
  marker file (`MARKER`) lists what tmics wrote there, and it holds nothing else.
- `PendingOutput` writes under a hidden temporary name beside the output and renames it onto the output at
  the end with no-replace semantics (`rename_noreplace`): if another run created the output meanwhile,
  that output is kept, this run's result is kept under a free visible name, and the user is told.
- `handle_signals` turns SIGINT, SIGTERM and SIGHUP into `Interrupted` (a KeyboardInterrupt) in the main
  thread, so a closed terminal or a scheduler's time limit cleans up exactly like Ctrl-C; the exit status
  is 128 + the signal's number. Temporary outputs still pending at exit are removed.

Nothing here removes a file that tmics did not write.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

MARKER = ".tmics-output.json"  # in every folder tmics writes: which files are its own
PARTIAL = ".tmics-partial"  # in the names of temporary outputs
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class OutputError(ValueError):
    """An output that cannot be written without losing data; the message is one line for the user."""


class Interrupted(KeyboardInterrupt):
    """A signal asked tmics to stop (Ctrl-C, SIGTERM, SIGHUP); cleanup runs as for Ctrl-C."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code(exc: BaseException) -> int:
    """The exit status for an interruption: 128 + the signal (130 for a plain KeyboardInterrupt)."""
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


def signal_name(exc: BaseException) -> str:
    return exc.name if isinstance(exc, Interrupted) else "SIGINT"


# --- paths that collide --------------------------------------------------------------------------------
def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_apart(
    output: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str] | None],
    *,
    folder: bool = False,
    what: str = "output",
) -> None:
    """Refuse an output that is, or lies inside, one of `inputs` (links followed; missing inputs are
    skipped), or a folder output that holds one of them (OutputError)."""
    out = Path(output)
    real = _resolved(out)
    exists = os.path.lexists(out)
    for given in inputs:
        if given is None or str(given) == "" or not os.path.lexists(given):
            continue
        source = Path(given)
        src = _resolved(source)
        if real == src or (exists and _same_file(out, source)):
            raise OutputError(f"{what} {out} is the input {source}; choose another {what}")
        if src.is_dir() and _inside(real, src):
            raise OutputError(f"{what} {out} lies inside the input folder {source}; choose another {what}")
        if folder and _inside(src, real):
            raise OutputError(f"{what} folder {out} holds the input {source}; choose another {what}")


def check_distinct(outputs: Iterable[tuple[str | os.PathLike[str] | None, str]]) -> None:
    """Refuse two outputs of one run, given as (path, what it is), that name one file or one of which lies
    inside the other (a folder output): one would replace or hold the other. Checked before any work,
    whether they exist yet or not (OutputError); None and "-" (standard output) are passed over."""
    seen: list[tuple[Path, Path, str]] = []
    for given, what in outputs:
        if given is None or str(given) == "-":
            continue
        path = Path(given)
        real = _resolved(path)
        for other_real, other, other_what in seen:
            if real == other_real:
                raise OutputError(f"{what} and {other_what} both name {path}; give each its own file")
            if _inside(real, other_real) or _inside(other_real, real):
                inner, outer = (path, other) if _inside(real, other_real) else (other, path)
                raise OutputError(f"{inner} lies inside the output folder {outer}; give {what} another place")
        seen.append((real, path, what))


def write_failed(path: str | os.PathLike[str], exc: BaseException, what: str = "output") -> OutputError:
    """A failed write of `path` as one line. A full disk says so: an ENOSPC, or a library's own error (torch
    saving a checkpoint says "unexpected pos") where the disk has under a megabyte free."""
    path = Path(path)
    full = getattr(exc, "errno", None) == errno.ENOSPC
    if not full and not isinstance(exc, OSError):
        try:
            full = shutil.disk_usage(_resolved(path).parent).free < (1 << 20)
        except OSError:
            full = False
    if full:
        return OutputError(f"disk full while writing {what} {path}: free some space or give another place")
    lines = str(exc).strip().splitlines()
    reason = getattr(exc, "strerror", None) or (lines[0] if lines else type(exc).__name__)
    return OutputError(f"cannot write {what} {path}: {reason}")


def check_name(path: Path, what: str = "output") -> None:
    """Refuse a name longer than file systems hold (255 bytes), before anything touches it."""
    size = len(os.fsencode(path.name))
    if size > 255:
        raise OutputError(f"{what} name {path.name[:40]}... is {size} bytes; file names hold 255 at most")


def check_output(
    output: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    *,
    overwrite: bool = False,
    folder: bool = False,
    what: str = "output",
) -> None:
    """Refuse, before any work, an output that would lose data or cannot be written (OutputError).

    `inputs` are every path the command reads (see `check_apart`); `folder` says whether the output is a
    folder; `what` names the output in messages (e.g. "--json file")."""
    out = Path(output)
    check_name(out, what)
    check_apart(out, inputs, folder=folder, what=what)
    if os.path.lexists(out):
        if out.is_dir() != folder:
            kind = "a folder" if out.is_dir() else "a file"
            raise OutputError(f"{what} {out} exists and is {kind}; choose another {what}")
        if not overwrite:
            raise OutputError(f"{out} exists; pass --overwrite to replace it")
        if folder and out.is_symlink():
            raise OutputError(
                f"{what} {out} is a symbolic link to {os.path.realpath(out)}; give that folder itself or "
                "another name"
            )
        if folder:
            foreign = foreign_files(out)
            if foreign:
                raise OutputError(
                    f"{out} is a folder tmics did not write (it holds {_names(foreign)}); --overwrite "
                    "replaces only a folder of an earlier tmics output: choose another output"
                )
    parent = _resolved(out).parent
    shown = out.absolute().parent
    holder = f"the folder {shown} of {what}" if what.endswith("folder") else f"{what} folder {shown}"
    if not parent.is_dir():
        raise OutputError(f"{holder} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{holder} is not writable")


def check_fresh_start(checkpoint: Path, *, resume: bool, overwrite: bool, what: str = "run") -> None:
    """A run that does not resume never starts over an earlier run's checkpoint unless `overwrite`: hours of
    finished work are not replaced by accident (OutputError)."""
    if checkpoint.exists() and not (resume or overwrite):
        raise OutputError(
            f"{checkpoint.parent} holds the checkpoint of an earlier {what}: pass --resume to continue it, "
            "or --overwrite to start afresh"
        )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _names(paths: list[str], shown: int = 3) -> str:
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(paths[:shown]) + more


def owned_files(folder: Path) -> set[str] | None:
    """The files (relative paths) that tmics wrote in `folder`, from its marker; None without one."""
    try:
        record = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("tool") != "tmics":
        return None
    files = record.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) and _plain_relative(f) for f in files):
        return None  # a marker naming anything outside its folder is not one tmics wrote: trust none of it
    return set(files)


def _plain_relative(name: str) -> bool:
    """A path below its folder: relative, normalised, no `..`, no empty or `.` parts."""
    parts = name.split("/")
    return bool(name) and not os.path.isabs(name) and all(p not in ("", ".", "..") for p in parts)


def foreign_files(folder: Path) -> list[str]:
    """Entries of `folder` that tmics did not write (all of them when it has no marker)."""
    owned = owned_files(folder)
    found = []
    for root, dirs, files in os.walk(folder):
        for name in files:
            rel = Path(os.path.relpath(os.path.join(root, name), folder)).as_posix()
            if rel != MARKER and (owned is None or rel not in owned):
                found.append(rel)
        for name in dirs:
            path = os.path.join(root, name)
            if os.path.islink(path):  # os.walk does not descend into links; never ours
                found.append(os.path.relpath(path, folder))
    return sorted(found)  # an empty folder holds nothing to lose


def _write_marker(folder: Path, kind: str) -> None:
    files = []
    for root, _dirs, names in os.walk(folder):
        files += [Path(os.path.relpath(os.path.join(root, n), folder)).as_posix() for n in names]
    record = {"tool": "tmics", "kind": kind, "files": sorted(files)}
    (folder / MARKER).write_text(json.dumps(record, indent=0) + "\n")


def remove_own_folder(folder: Path) -> list[str]:
    """Remove what tmics wrote in `folder` (per its marker), then the folder if it is empty. Returns what
    was left because tmics did not write it."""
    owned = owned_files(folder) or set()
    base = _resolved(folder)
    for rel in owned:
        path = folder / rel
        if path.is_symlink() or base not in _resolved(path).parents:
            continue  # never follow a link out of the folder
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
            path.unlink()
    with contextlib.suppress(FileNotFoundError):
        (folder / MARKER).unlink()
    for root, _dirs, _files in sorted(os.walk(folder, topdown=False), key=lambda t: -len(t[0])):
        with contextlib.suppress(OSError):
            os.rmdir(root)
    return foreign_files(folder) if folder.exists() else []


# --- no-replace rename ---------------------------------------------------------------------------------
_RENAME_NOREPLACE = 1  # linux/fs.h
_RENAME_EXCL = 0x4  # macOS stdio.h, for renamex_np


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc() if sys.platform != "win32" else None


def _native_noreplace(src: str, dst: str) -> bool:
    """Rename with the kernel's no-replace flag; False when this system or file system lacks it."""
    if _LIBC is None:
        return False
    if sys.platform.startswith("linux") and hasattr(_LIBC, "renameat2"):
        call = _LIBC.renameat2
        call.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
        at_fdcwd = -100
        result = call(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), _RENAME_NOREPLACE)
    elif sys.platform == "darwin" and hasattr(_LIBC, "renamex_np"):
        call = _LIBC.renamex_np
        call.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint)
        result = call(os.fsencode(src), os.fsencode(dst), _RENAME_EXCL)
    else:
        return False
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EEXIST or (err == errno.ENOTEMPTY and os.path.lexists(dst)):
        raise FileExistsError(err, os.strerror(errno.EEXIST), dst)
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # e.g. a file system that does not support the flag
    raise OSError(err, os.strerror(err), dst)


def rename_noreplace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename `src` onto `dst` only if nothing is at `dst` at that moment; FileExistsError otherwise.

    The kernel's flag where there is one (Linux renameat2, macOS renamex_np); else a hard link (which
    fails if `dst` exists) and an unlink for files; Windows' rename never replaces."""
    src, dst = os.fspath(src), os.fspath(dst)
    if sys.platform == "win32":
        os.rename(src, dst)
        return
    if _native_noreplace(src, dst):
        return
    if os.path.isdir(src) and not os.path.islink(src):
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
        os.rename(src, dst)  # POSIX rename of a folder fails on anything but an empty folder
        return
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some network and FAT file systems): check, then rename
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst) from None
        os.rename(src, dst)
        return
    os.unlink(src)


def free_name(path: Path) -> Path:
    """`name.1.ext`, `name.2.ext`, ... : the first that does not exist beside `path`."""
    stem, suffix = (path.name, "") if path.is_dir() or not path.suffix else (path.stem, path.suffix)
    for n in range(1, 10_000):
        candidate = path.with_name(f"{stem}.{n}{suffix}")
        if not os.path.lexists(candidate):
            return candidate
    raise OutputError(f"no free name beside {path}")


# --- atomic outputs ------------------------------------------------------------------------------------
_PENDING: set[Path] = set()  # temporary outputs of this process not yet committed or aborted
_PENDING_LOCK = threading.Lock()


def _remove_temporary(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@atexit.register
def remove_pending() -> None:
    """Remove every temporary output of this process that was neither committed nor aborted."""
    with _PENDING_LOCK:
        pending = list(_PENDING)
        _PENDING.clear()
    for path in pending:
        _remove_temporary(path)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def machine_id() -> str:
    """What tells this machine and pid namespace from another with the same host name (containers with the
    host's network, cloned machines): the kernel's boot id and the pid namespace's inode, where there are
    such (Linux); else the host name alone."""
    parts = []
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:16])
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return "-".join(parts) or "host"


class MadeFolders:
    """Folders made for outputs (`make`), removed again by `remove_empty` where nothing was written in
    them: a job that failed or was interrupted leaves no empty folder tree behind (one it did not make is
    never removed)."""

    def __init__(self) -> None:
        self.made: list[Path] = []

    def make(self, folder: Path) -> None:
        new = [p for p in (folder, *folder.parents) if not p.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        self.made.extend(new)

    def remove_empty(self) -> None:
        for folder in sorted(set(self.made), key=lambda p: len(p.parts), reverse=True):  # deepest first
            with contextlib.suppress(OSError):  # holds something (or gone): kept
                folder.rmdir()


RUN_LOCK = ".tmics-run.lock"  # in a training or search run folder while a process works in it


@contextlib.contextmanager
def run_lock(folder: Path, what: str = "run folder") -> Iterator[None]:
    """Hold the run folder `folder` for this process while the block runs: a second run on it is refused
    (OutputError) instead of both writing its checkpoint and log. A lock whose process of this machine is
    gone (kill -9, power loss) is taken over; one of another machine is refused, naming the file to remove
    once that run has ended (no clock of another machine is trusted). Folders it made are removed again
    when the run leaves them empty (a run refused before any work)."""
    made = MadeFolders()
    made.make(folder)
    path = folder / RUN_LOCK
    mine = f"{socket.gethostname()} {os.getpid()} {machine_id()}"
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                host, pid, machine = (path.read_text().split() + ["", "", ""])[:3]
            except OSError:
                continue  # removed meanwhile
            here = host == socket.gethostname() and machine == machine_id()
            if here and pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # its process is gone
                continue
            if here or not host:
                raise OutputError(
                    f"{what} {folder} is in use by another run (process {pid or 'unknown'}); wait for it to "
                    "end or stop it"
                ) from None
            raise OutputError(
                f"{what} {folder} is in use by a run on {host}; if that run has ended, remove {path}"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(mine + "\n")
        break
    else:
        raise OutputError(f"cannot take {what} {folder}: its lock {path} keeps changing")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if path.read_text().strip() == mine:
                path.unlink()
        made.remove_empty()


def _temporary_prefix(dst: Path) -> str:
    """`.NAME.HOST-PID.`: hidden, short enough for any file system (the name is cut to 60 characters), and
    telling which process on which machine writes it (see `remove_stale`)."""
    return f".{dst.name[:60]}.{_HOST}-{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or we cannot tell: leave its files alone
    return True


def remove_stale(dst: Path) -> list[Path]:
    """Remove the temporary outputs of `dst` that a run on this machine left when it was killed (kill -9,
    power loss): named by `_temporary_prefix`, their process gone. Says so in a warning; returns them."""
    parent = dst.absolute().parent
    head = f".{dst.name[:60]}.{_HOST}-"
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    for entry in entries:
        name = entry.name
        if not name.startswith(head) or PARTIAL not in name:
            continue
        pid = name[len(head) :].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        _remove_temporary(Path(entry.path))
        removed.append(Path(entry.path))
    if removed:
        import warnings

        names = ", ".join(p.name for p in removed)
        warnings.warn(f"removed {names}: left beside {dst} by a run that was killed", stacklevel=3)
    return removed


class PendingOutput:
    """An output written under a hidden temporary name beside `dst` (a file, or a folder with
    `folder=True`), moved onto `dst` by `commit()` and removed by `abort()`.

    Without `overwrite`, commit never replaces anything: if `dst` appeared meanwhile (another run), this
    run's result is kept under a free name (`free_name`) and OutputError says where. With `overwrite` a file
    is replaced atomically, and a folder only if it is still a previous tmics output (see `check_output`).
    Used as a context manager it aborts when the block raises."""

    def __init__(
        self, dst: str | os.PathLike[str], *, overwrite: bool = False, folder: bool = False, kind: str = ""
    ) -> None:
        self.dst, self.overwrite, self.folder = Path(dst), overwrite, folder
        self.kind = kind or ("frames" if folder else "file")
        parent = self.dst.absolute().parent
        prefix = _temporary_prefix(self.dst)
        remove_stale(self.dst)
        try:
            if folder:
                self.path = Path(tempfile.mkdtemp(prefix=prefix, suffix=PARTIAL, dir=parent))
            else:  # the real suffix stays last: muxers and savers that look at it keep working
                fd, name = tempfile.mkstemp(prefix=prefix, suffix=f"{PARTIAL}{self.dst.suffix}", dir=parent)
                os.close(fd)
                self.path = Path(name)
        except OSError as exc:  # named by the output, not by the hidden temporary name it could not make
            raise OutputError(f"cannot write {self.dst}: {exc.strerror or exc} in {parent}") from None
        self.done = False
        with _PENDING_LOCK:
            _PENDING.add(self.path)

    def __enter__(self) -> PendingOutput:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is not None:
            self.abort()

    def _forget(self) -> None:
        self.done = True
        with _PENDING_LOCK:
            _PENDING.discard(self.path)

    def abort(self) -> None:
        """Remove the temporary output (idempotent)."""
        if not self.done:
            _remove_temporary(self.path)
            self._forget()

    def commit(self) -> Path:
        """Move the finished output onto `dst` (see the class). Returns `dst`."""
        if self.done:
            raise RuntimeError(f"{self.dst} was already committed or aborted")
        if self.folder:
            _write_marker(self.path, self.kind)
            os.chmod(self.path, 0o777 & ~_umask())
        else:
            os.chmod(self.path, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode of any new file
        try:
            if self.overwrite and os.path.lexists(self.dst):
                self._replace()
            else:
                rename_noreplace(self.path, self.dst)
        except FileExistsError:
            kept = self._keep_aside()
            raise OutputError(
                f"{self.dst} was created by something else while tmics was writing it (another run?); "
                f"it was left as it is and this run's result is kept as {kept}"
            ) from None
        except BaseException:
            self.abort()
            raise
        self._forget()
        return self.dst

    def _keep_aside(self) -> Path:
        while True:
            kept = free_name(self.dst)
            try:
                rename_noreplace(self.path, kept)
            except FileExistsError:
                continue
            self._forget()
            return kept

    def _replace(self) -> None:
        if not self.folder:
            if self.dst.is_dir():
                raise OutputError(f"{self.dst} is now a folder; it was left as it is")
            os.replace(self.path, self.dst)
            return
        if self.dst.is_symlink():
            raise OutputError(f"{self.dst} is now a symbolic link; it was left as it is")
        foreign = foreign_files(self.dst) if self.dst.is_dir() else [self.dst.name]
        if foreign:
            raise OutputError(
                f"{self.dst} now holds files tmics did not write ({_names(foreign)}); it was left as it is"
            )
        old = Path(tempfile.mkdtemp(prefix=f".{self.dst.name}.", suffix=".tmics-old", dir=self.path.parent))
        os.rmdir(old)
        os.rename(self.dst, old)  # aside, so the new folder arrives whole
        try:
            rename_noreplace(self.path, self.dst)
        except BaseException:
            with contextlib.suppress(OSError):
                rename_noreplace(old, self.dst)
            raise
        left = remove_own_folder(old)
        if left:  # something arrived in the old folder meanwhile: keep it, visibly
            kept = free_name(self.dst)
            os.rename(old, kept)
            import warnings

            warnings.warn(f"files tmics did not write were moved from {self.dst} to {kept}", stacklevel=2)


def write_text(
    dst: str | os.PathLike[str], text: str, *, overwrite: bool = False, encoding: str = "utf-8"
) -> Path:
    """Write a small text file atomically with the rules above."""
    with PendingOutput(dst, overwrite=overwrite) as pending:
        pending.path.write_text(text, encoding=encoding)
        return pending.commit()


# --- signals -------------------------------------------------------------------------------------------
class SignalState:
    """What `handle_signals` saw: the first signal that arrived, or None."""

    signum: int | None = None


@contextlib.contextmanager
def handle_signals(signals: Iterable[int] = SIGNALS) -> Iterator[SignalState]:
    """Within the block, SIGINT / SIGTERM / SIGHUP raise `Interrupted` in the main thread (once: signals
    that arrive while cleaning up are ignored), and pending temporary outputs are removed at the end.
    Yields a `SignalState` telling which signal came. Outside the main thread it only yields."""
    state = SignalState()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum: int, frame: object) -> None:
        if state.signum is not None:
            return  # already stopping: let the cleanup finish
        state.signum = signum
        raise Interrupted(signum)

    previous = {}
    for signum in signals:
        try:
            previous[signum] = signal.signal(signum, handler)
        except (OSError, ValueError):  # not settable here
            continue
    try:
        yield state
    finally:
        try:
            remove_pending()
        finally:
            for signum, old in previous.items():
                with contextlib.suppress(OSError, ValueError, TypeError):
                    signal.signal(signum, old)
