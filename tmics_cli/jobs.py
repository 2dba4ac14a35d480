"""Resumable jobs: a video derained as segments recorded in a hidden job folder beside its output.

    .OUTPUT.tmics-job/
        manifest.json          the input's identity, every setting that changes the pixels, the segments
        piece-000003.mp4       segment 3, encoded on its own (a folder of PNG frames for a frames output)
        piece-000003.json      written after the piece is in place: segment 3 is done
        piece-000003.claim     a worker holds segment 3 (its host, process id and a token; kept fresh)
        segments.log           a line per segment done, with the host and process that did it

A segment is a run of frames derained with (up to) two frames of context on each side, so that it comes
out exactly as it would within the whole video. Finished segments survive a crash, `kill -9`, power loss
or Ctrl-C; a rerun of the same command finds the job folder, checks that its manifest matches (same input,
weights and settings) and goes on at the first unfinished segment. A manifest that does not match is never
mixed in: `JobMismatch` says what differs, and only `--overwrite` discards it. Workers share a job through
claim files, each made whole or not at all (written aside, hard-linked into place), so that two workers
do not derain one segment. A holder touches its claims every HEARTBEAT_SECONDS (a thread), so a claim can
be judged without trusting any clock but the judge's own: the claim of a process of this machine that is
gone is taken over at once; a claim of another machine (shared storage), or of a pid of this machine that
is alive (perhaps another process by now), once it has not changed for STALE_SECONDS as seen from here.
Of several workers that find one claim stale, only the one that creates its takeover file (exclusive, named
by the claim's token) replaces it. "This machine" is the host name with the kernel's boot id and the pid
namespace (containers may share a host name): only there is a pid asked whether it lives. A claim wrongly
judged stale (its machine suspended for minutes) is noticed by its holder, which then drops its segment
unrecorded (`lost`); a piece made twice so is replaced, not refused (the same frames). A claim of a tmics
before heartbeats is never judged stale (a warning names it once it has been silent for STALE_SECONDS). An
empty claim (made where there are no hard links, its maker killed before writing it) and a takeover file
left by a worker killed while taking over are stale after SETTLE_SECONDS unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .outputs import OutputError, _alive, machine_id, write_text

JOB_VERSION = 1
JOB_SUFFIX = ".tmics-job"
HEAD_BYTES = 4 << 20  # the input's first 4 MiB are hashed into its identity
CONTEXT = 2  # frames of context each side of a segment: the 5-frame window's radius
_PIECE = re.compile(r"^piece-(\d{6})(\..*)?$")
_HOST = socket.gethostname()


_MACHINE = machine_id()
AUDIT = "segments.log"  # one line per segment done: which host and process did it
HEARTBEAT_SECONDS = 15.0  # a holder touches its claims this often
# A claim of another machine unchanged this long (by this machine's clock) is stale: many missed heartbeats,
# beyond the minute a network file system may cache a file's times
STALE_SECONDS = 180.0
# An empty claim (its maker died before writing it) or a takeover file (its maker died taking over) left
# unchanged this long is stale: both are written or removed at once by a live process
SETTLE_SECONDS = 10.0


class JobMismatch(OutputError):
    """An unfinished job for this output was made with another input, weights or settings."""


class JobGone(OutputError):
    """The job folder this process works in was removed (another run finished the output) or replaced (by
    a run with --overwrite) while it ran: its work there is not mixed in."""


@dataclass(frozen=True)
class Segment:
    index: int
    first: int  # its first output frame, counted in the input's range
    count: int | None  # its frames (None: all of them, when the input cannot be cut)
    lo: int | None  # raw timestamp of the first frame decoded, context included (None: from the start)
    hi: int | None  # raw timestamp where decoding stops (exclusive; None: to the end)
    lead: int  # context frames decoded before `first`

    def as_list(self) -> list[Any]:
        return [self.first, self.count, self.lo, self.hi, self.lead]


def plan_segments(times: Sequence[int] | None, segment_frames: int) -> list[Segment]:
    """Cut frames with these raw timestamps (presentation order) into segments of `segment_frames`; one
    segment of everything when the timestamps are unknown (`times` None)."""
    if segment_frames < 1:
        raise ValueError(f"--segment-frames must be at least 1, got {segment_frames}")
    if times is None:
        return [Segment(0, 0, None, None, None, 0)]
    n, segments = len(times), []
    for index, first in enumerate(range(0, n, segment_frames)):
        stop = min(n, first + segment_frames)
        begin = max(0, first - CONTEXT)
        after = stop + CONTEXT
        segments.append(
            Segment(
                index, first, stop - first, times[begin], times[after] if after < n else None, first - begin
            )
        )
    return segments


def job_folder(dst: Path) -> Path:
    """The hidden job folder of the output `dst`."""
    dst = Path(dst).absolute()
    name = dst.name
    if len(name.encode()) > 100:  # within any file system's 255 bytes, and still telling whose it is
        name = f"{name[:60]}.{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return dst.parent / f".{name}{JOB_SUFFIX}"


def input_identity(src: Path) -> dict[str, Any]:
    """What tells this input from another (or from itself changed): path, size, modification time and a
    hash of its first megabytes; for a folder of frames, the same over its files' names, sizes and times."""
    src = Path(src)
    stat = src.stat()
    digest = hashlib.sha256()
    if src.is_dir():
        size = 0
        for entry in sorted(os.scandir(src), key=lambda e: e.name):
            if entry.is_file():
                st = entry.stat()
                size += st.st_size
                digest.update(f"{entry.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        mtime = stat.st_mtime_ns
    else:
        size, mtime = stat.st_size, stat.st_mtime_ns
        with open(src, "rb") as f:
            digest.update(f.read(HEAD_BYTES))
    return {"path": str(src.resolve()), "size": size, "mtime_ns": mtime, "head_sha256": digest.hexdigest()}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    said = []
    if old.get("input") != new.get("input"):
        said.append(
            "the input changed"
            if old.get("input", {}).get("path") == new["input"]["path"]
            else "another input"
        )
    before_all, after_all = old.get("settings", {}), new.get("settings", {})
    for key in [*after_all, *(k for k in before_all if k not in after_all)]:  # also settings now left out
        before, value = before_all.get(key), after_all.get(key)
        if before != value:
            said.append(f"{key} {_short(before)} -> {_short(value)}")
    if not said and old.get("segments") != new.get("segments"):
        said.append("other segments")
    return said


def _short(value: Any) -> str:
    text = "none" if value is None else str(value)
    return text[:12] if re.fullmatch(r"[0-9a-f]{40,}", text) else text


class _Heartbeat:
    """The claims this process holds (path -> the token written in it), touched every HEARTBEAT_SECONDS by
    one daemon thread while any is held, so that other machines see them alive; a claim that no longer
    holds its token (taken over) is not touched."""

    def __init__(self) -> None:
        self._held: dict[Path, str] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def hold(self, path: Path, token: str) -> None:
        with self._lock:
            self._held[path] = token
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="tmics-claims", daemon=True)
                self._thread.start()

    def drop(self, path: Path) -> None:
        with self._lock:
            self._held.pop(path, None)

    def token(self, path: Path) -> str | None:
        with self._lock:
            return self._held.get(path)

    def held(self) -> set[Path]:
        with self._lock:
            return set(self._held)

    def _run(self) -> None:
        while True:
            self._wake.wait(HEARTBEAT_SECONDS)
            self._wake.clear()
            with self._lock:
                if not self._held:
                    self._thread = None
                    return
                held = list(self._held.items())
            for path, token in held:
                holder = _claim_holder(path)
                if holder is not None and holder[2] == token:
                    with contextlib.suppress(OSError):
                        os.utime(path)

    def beat(self) -> None:
        """Touch the held claims now (tests; the thread does it on its own)."""
        self._wake.set()


HEARTBEAT = _Heartbeat()


def _claim_holder(path: Path) -> tuple[str, str, str, str] | None:
    """(host, pid, token, machine) written in a claim file (token and machine "" in claims of tmics before
    heartbeats; all "" in an empty one), or None when it cannot be read or holds something else."""
    try:
        fields = path.read_text().split()
    except (OSError, UnicodeDecodeError):
        return None
    if not fields:
        return "", "", "", ""
    if len(fields) not in (2, 4):
        return None
    return fields[0], fields[1], *(fields[2:] if len(fields) == 4 else ("", ""))  # type: ignore[return-value]


def _create_claim(path: Path, text: str) -> bool:
    """Make the claim file `path` holding `text`, whole, only if there is none; False when there is. The
    text is written under another name and hard-linked into place (a link never replaces a file), so no
    one reads a claim half written; where the file system has no hard links, created exclusively and
    written (an empty claim, if its maker dies in between, is stale after SETTLE_SECONDS)."""
    temporary = path.with_name(f"{path.name}.{secrets.token_hex(6)}")
    try:
        temporary.write_text(text)
    except BaseException:  # a full disk: no claim, and no part of one left
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    try:
        os.link(temporary, path)
        return True
    except OSError as exc:
        # a network file system may report a link it made as failed (a retried request): the
        # temporary's link count says whether the claim is ours
        with contextlib.suppress(OSError):
            if os.stat(temporary).st_nlink == 2:
                return True
        if isinstance(exc, FileExistsError):
            return False
        # else no hard links here: made exclusively below
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


class Job:
    """One output's job folder (see the module)."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder, self.manifest = folder, manifest
        self.id: str | None = manifest.get("id")  # made afresh with each job (none in jobs of older tmics)
        self.segments = [Segment(i, *row) for i, row in enumerate(manifest["segments"])]
        self.suffix: str = manifest["piece_suffix"]  # "" for a frames output
        # seconds the pieces' times are written late (MPEG-TS: video.writer.piece_late); 0 in older jobs
        self.piece_late: int = manifest["settings"].get("piece_late_s", 0)
        # claims of other machines as last seen: path -> (what was seen, when first seen so, monotonic)
        self._seen: dict[Path, tuple[tuple[Any, ...], float]] = {}
        self._warned: set[Path] = set()  # claims of tmics without heartbeats said to be silent

    @classmethod
    def start(
        cls,
        dst: Path,
        *,
        input: dict[str, Any],  # noqa: A002 - the manifest's own word
        settings: dict[str, Any],
        segments: Sequence[Segment],
        frames: int | None,
        piece_suffix: str,
        overwrite: bool = False,
    ) -> Job:
        """The job of `dst`: resumed when its folder holds a matching manifest, else made afresh (an
        unmatched one only with `overwrite`: JobMismatch otherwise)."""
        folder = job_folder(dst)
        manifest = {
            "tmics_job": JOB_VERSION,
            "output": Path(dst).name,
            "input": input,
            "settings": settings,
            "frames": frames,
            "piece_suffix": piece_suffix,
            "segments": [s.as_list() for s in segments],
            "id": secrets.token_hex(8),
        }
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise OutputError(f"{folder} is in the way of the job folder of {dst}; move it away")
        if folder.is_dir():
            old = read_manifest(folder)
            if old is not None and {k: v for k, v in old.items() if k not in ("output", "id")} == {
                k: v for k, v in manifest.items() if k not in ("output", "id")
            }:
                return cls(folder, old)
            if not overwrite:
                what = "an unreadable manifest" if old is None else ", ".join(_differences(old, manifest))
                done = len(Job(folder, old).done()) if old is not None else 0
                kept = f"its {done} finished segment is" if done == 1 else f"its {done} finished segments are"
                raise JobMismatch(
                    f"{dst} has an unfinished job that does not match this run ({what}); {kept} not mixed "
                    "in: rerun it as it was, or add --overwrite to start afresh"
                )
            live = live_holders(folder)
            if live:
                raise OutputError(
                    f"{dst} is being derained by another run now ({', '.join(live[:2])}) with other "
                    "settings; let it finish or stop it before --overwrite starts afresh"
                )
            left = remove_job(folder)
            if left:
                raise OutputError(
                    f"{folder} holds files tmics did not write ({', '.join(left[:3])}); move them"
                )
        folder.mkdir()
        write_text(folder / "manifest.json", json.dumps(manifest, indent=1) + "\n")
        return cls(folder, manifest)

    # --- segments ---

    def piece(self, index: int) -> Path:
        return self.folder / f"piece-{index:06d}{self.suffix}"

    def _record(self, index: int) -> Path:
        return self.folder / f"piece-{index:06d}.json"

    def _claim(self, index: int) -> Path:
        return self.folder / f"piece-{index:06d}.claim"

    def done(self) -> dict[int, dict[str, Any]]:
        """The finished segments and their records."""
        found = {}
        for segment in self.segments:
            record = self._record(segment.index)
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(record.read_text())
                if self.piece(segment.index).exists():
                    found[segment.index] = data
        return found

    def is_done(self, index: int) -> bool:
        """Whether segment `index` is done (its record and its piece are in place)."""
        return self._record(index).exists() and self.piece(index).exists()

    def gone(self) -> bool:
        """Whether the job folder no longer holds this job: removed (its output finished by another run)
        or made anew by a run with --overwrite."""
        manifest = read_manifest(self.folder)
        return manifest is None or manifest.get("id") != self.id

    def check(self) -> None:
        """JobGone when the folder no longer holds this job (see `gone`)."""
        if self.gone():
            output = self.folder.parent / self.manifest["output"]
            raise JobGone(
                f"the job of {output} was removed or started afresh by another run while this one ran; "
                "this run's work is not mixed in"
            )

    def claim(self, index: int) -> bool:
        """Take segment `index` for this process; False when another live process holds it or it is done.
        JobGone when the job is no longer in its folder (the manifest is read once a try: waiting runs
        retry their claims often)."""
        path = self._claim(index)
        for _ in range(2):
            token = secrets.token_hex(8)
            try:
                made = _create_claim(path, f"{_HOST} {os.getpid()} {token} {_MACHINE}\n")
            except FileNotFoundError:
                self.check()  # the folder went
                raise
            if not made:
                self.check()  # held, perhaps by the run that replaced this job
                if not self._take_over(path):
                    return False
                continue
            HEARTBEAT.hold(path, token)
            if self.is_done(index) or self.gone():
                self.release(index)  # done meanwhile, or the job replaced
                self.check()
                return False
            return True
        return False

    def holds(self, index: int) -> bool:
        """Whether this process holds segment `index`: it claimed it, and the claim was not taken over
        meanwhile (as a claim wrongly judged stale would be: its machine suspended for minutes)."""
        path = self._claim(index)
        token = HEARTBEAT.token(path)
        holder = _claim_holder(path)
        return token is not None and holder is not None and holder[2] == token

    def lost(self, index: int) -> bool:
        """Whether this process claimed segment `index` and another has taken the claim over since (a
        segment handed to this process without a claim, as a cluster's task, is never lost), or the job
        is no longer in its folder (`gone`)."""
        return self.gone() or (HEARTBEAT.token(self._claim(index)) is not None and not self.holds(index))

    def _take_over(self, path: Path) -> bool:
        """Remove the claim at `path` when its holder is gone; True when it was removed here (then the
        caller claims anew). Of several processes judging one stale claim, only the one that creates its
        takeover file removes it; a takeover file left by a process that died taking over is removed once
        it has stood unchanged for SETTLE_SECONDS."""
        holder = self._stale(path)
        if holder is None:
            return False
        stem = path.name[: -len(".claim")]
        marker = path.with_name(f"{stem}.takeover-{holder[2] or holder[1] or 'empty'}")
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:  # another process is taking it over (or died doing so)
            if self._unchanged_for(marker, SETTLE_SECONDS):
                with contextlib.suppress(FileNotFoundError):
                    marker.unlink()
            return False
        except OSError:
            return False
        try:
            if _claim_holder(path) == holder:  # still the stale one, not a claim made meanwhile
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                self._seen.pop(path, None)
                return True
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()

    def _stale(self, path: Path) -> tuple[str, str, str, str] | None:
        """The holder written in the claim at `path` when that claim is stale, else None: a process of this
        machine that is gone; a claim of another machine that has not changed for STALE_SECONDS since
        this process first saw it so (no clock of another machine or of the storage is compared); an empty
        claim (its maker died between making and writing it) unchanged for SETTLE_SECONDS (all "")."""
        holder = _claim_holder(path)
        if holder is None:
            return None  # unreadable: not ours to judge
        host, pid, token, machine = holder
        if not host:
            return holder if self._unchanged_for(path, SETTLE_SECONDS) else None
        # pids can be asked about only in this machine's pid namespace (a host name alone may be shared)
        here = machine == _MACHINE if machine else host == _HOST
        if here and pid.isdigit():
            if int(pid) == os.getpid() and token == HEARTBEAT.token(path):
                return None  # this process's own, held
            if int(pid) != os.getpid() and not _alive(int(pid)):
                return holder
        if not token:
            if self._unchanged_for(path, STALE_SECONDS) and path not in self._warned:
                self._warned.add(path)
                warnings.warn(
                    f"{path} is held by {host} pid {pid}, a tmics without heartbeats, unchanged for "
                    f"{STALE_SECONDS:.0f} s; if that run is gone, remove the file and this run goes on",
                    stacklevel=2,
                )
            return None  # no sign of life to miss: never judged stale
        # another machine's, or a live pid here that may be another process by now (or this process's
        # claim it does not know: a link reported failed): judged by its heartbeat
        return holder if self._unchanged_for(path, STALE_SECONDS) else None

    def _unchanged_for(self, path: Path, seconds: float) -> bool:
        """Whether the file at `path` (its contents, times and inode) has stayed as it is for `seconds` of
        this process's clock since it first saw it so; the first look starts the count."""
        try:
            st = path.stat()
            seen: tuple[Any, ...] = (path.read_bytes(), st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        except OSError:
            self._seen.pop(path, None)
            return False
        now = time.monotonic()
        last = self._seen.get(path)
        if last is None or last[0] != seen:
            self._seen[path] = (seen, now)
            return False
        return now - last[1] >= seconds

    def release(self, index: int) -> None:
        """Give up segment `index`: its claim is removed if it is still this process's own (a taker's claim
        made between that check and the removal would go too: it needs this process suspended in between,
        and then costs only a segment derained again)."""
        path = self._claim(index)
        mine = self.holds(index)
        HEARTBEAT.drop(path)
        if mine:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def pending_piece(self, index: int) -> None:
        """Clear what a worker that died may have left of segment `index` (a piece without its record)."""
        piece = self.piece(index)
        if piece.is_dir() and not piece.is_symlink():
            shutil.rmtree(piece, ignore_errors=True)
        elif piece.exists():
            piece.unlink()

    def finish(self, index: int, record: dict[str, Any]) -> None:
        """Record segment `index` as done (its piece is in place); JobGone when the job is no longer in its
        folder."""
        self.check()
        write_text(self._record(index), json.dumps(record) + "\n", overwrite=True)
        line = json.dumps({"index": index, "host": _HOST, "pid": os.getpid()}) + "\n"
        fd = os.open(self.folder / AUDIT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:  # one write per line: lines of workers never interleave
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        self.release(index)

    def pieces(self) -> list[Path]:
        return [self.piece(s.index) for s in self.segments]

    def remove(self) -> list[str]:
        return remove_job(self.folder)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("tmics_job") != JOB_VERSION or "segments" not in data:
        return None
    return data


def job_progress(dst: Path) -> tuple[int, int] | None:
    """(finished, all) segments of the unfinished job of `dst`, or None when it has none."""
    folder = job_folder(dst)
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is None:
        return None
    job = Job(folder, manifest)
    return len(job.done()), len(job.segments)


def live_holders(folder: Path) -> list[str]:
    """The processes that hold claims in a job folder and may be alive ("host pid N"): of this machine,
    those whose process runs; of another, those whose claim its heartbeat touched in the last
    STALE_SECONDS (by this machine's clock: a refusal, never a takeover, rests on it)."""
    live = []
    now = time.time()
    for path in sorted(folder.glob("piece-*.claim")):
        holder = _claim_holder(path)
        try:
            age = now - path.stat().st_mtime
        except OSError:
            continue
        if holder is None or not holder[0]:
            if age < SETTLE_SECONDS:
                live.append(f"a claim being made ({path.name})")
            continue
        host, pid, _token, machine = holder
        here = machine == _MACHINE if machine else host == _HOST
        if here and pid.isdigit():
            if int(pid) != os.getpid() and _alive(int(pid)):
                live.append(f"{host} pid {pid}")
        elif abs(age) < STALE_SECONDS:
            live.append(f"{host} pid {pid}")
    return live


def remove_job(folder: Path) -> list[str]:
    """Remove a job folder and what tmics wrote in it; returns the names of anything else (then kept).
    A helper worker may still be trying a claim in it as it goes: what appears meanwhile is removed too."""
    for _ in range(20):
        left = []
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return []
        for entry in entries:
            name = entry.name
            ours = (
                name in ("manifest.json", AUDIT)
                or _PIECE.match(name)
                or (name.startswith(".") and ".tmics-partial" in name)
            )
            if not ours:
                left.append(name)
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        if left:
            return left
        try:
            os.rmdir(folder)
            return []
        except FileNotFoundError:
            return []
        except OSError:
            time.sleep(0.01)  # not empty: something arrived after the listing
    return sorted(os.listdir(folder))
