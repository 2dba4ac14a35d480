"""Many inputs for `tmics derain`: the videos and frame folders the arguments name, and each one's output.

Pure file-system logic (no decoding, no PyAV, no torch): `collect_inputs` turns the arguments (files,
folders, quoted glob patterns) into `InputItem`s, and `output_targets` gives each its output. Errors are
`InputError`s with one line for the user.

What is an input:

- A file named as an argument is taken whatever its suffix (tmics derains anything PyAV opens). A folder
  whose visible entries include images (`IMAGE_SUFFIXES`) and no videos (`VIDEO_SUFFIXES`) is one input: a
  folder of frames. Any other folder expands to the videos in it, and with `recursive` to those of its
  sub-folders (a sub-folder of frames is one input). An argument that does not exist as a path and holds
  glob characters (`*`, `?`, `[...]`, `**` as in `glob.glob(..., recursive=True)`) is a pattern; of its
  matches, folders count as above and files only when they are videos (`VIDEO_SUFFIXES`).
- Never taken while scanning a folder or a pattern: hidden entries (tmics' temporaries and job folders are
  hidden), symbolic links to folders (no loops; links to files are followed). Never taken at all, even when
  named: outputs of earlier runs (`is_tmics_output`: `clip.derained.mp4`, `shots.derained/`, a folder
  holding the marker `outputs.MARKER`) and tmics' temporaries (`*.tmics-partial*`); they are listed in
  `Inputs.skipped` so the caller can say so. So `tmics derain *.mp4` expanded by the shell a second time
  does not derain the first run's outputs.
- Order: the arguments as given; within a folder the natural order (`files.natural_key`) of its whole
  listing, files and sub-folders together (like `ls -v`), each sub-folder's inputs in its place. The same
  file or folder reached twice (same device and inode: links, `a.mp4` and `dir/`, overlapping patterns) is
  taken once, at its first place.

Where outputs go (`output_targets`): beside each input as `NAME.derained.EXT` without `-o`; with `-o` and
several inputs (or a folder of videos, or a pattern) under the folder `-o`, mirroring each input's path
below its argument (`InputItem.relative`); with `-o` and one input at `-o` itself, or inside it when it is
an existing folder (not an earlier frames output) or ends with `/`.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..outputs import MARKER, PARTIAL
from .files import CONTAINER_SUFFIXES, IMAGE_SUFFIXES, VIDEO_SUFFIXES, natural_key

DERAINED = ".derained"  # the tag of a default output's name: clip.derained.mp4, shots.derained/
FALLBACK_SUFFIX = ".mkv"  # for inputs whose own container tmics cannot write (.flv, .wmv, .mpg, ...)
FRAMES_FORMAT = "png"  # --format png: a folder of PNG frames
FORMATS = (*sorted(s[1:] for s in CONTAINER_SUFFIXES), FRAMES_FORMAT)
_MAGIC = re.compile(r"[*?[]")


class InputError(ValueError):
    """Arguments that name no inputs, or outputs that cannot be told apart; the message is one line."""


@dataclass(frozen=True)
class InputItem:
    """One input: a video file, or a folder of image frames."""

    path: Path  # as reached from the argument (links not resolved): messages and outputs use it
    relative: Path  # below the argument it came from (mirrored under -o DIR); its name when named directly

    @property
    def frames(self) -> bool:
        """A folder of frames (else a video file)."""
        return self.path.is_dir()


@dataclass(frozen=True)
class Inputs:
    """What `collect_inputs` found."""

    items: tuple[InputItem, ...]
    many: bool  # several inputs (or one named twice), a folder of videos or a pattern: -o names a folder
    skipped: tuple[Path, ...] = ()  # outputs of earlier runs passed over (see the module), once each


@dataclass(frozen=True)
class OutputTarget:
    """Where one input's output goes."""

    path: Path
    frames: bool  # a folder of PNG frames (whatever `path`'s suffix looks like: `shots.derained`)


# --- names ---------------------------------------------------------------------------------------------
def is_tmics_output_name(path: str | os.PathLike[str]) -> bool:
    """A name tmics gives its outputs: a stem or folder name ending in `.derained` (`clip.derained.mp4`,
    `shots.derained`), or a temporary output (`.NAME.HOST-PID.*.tmics-partial*`)."""
    name = Path(path).name.lower()
    stem = Path(name).stem
    return name.endswith(DERAINED) or stem.endswith(DERAINED) or PARTIAL in name


def is_tmics_output(path: str | os.PathLike[str]) -> bool:
    """An output of an earlier tmics run: by its name (`is_tmics_output_name`), or a folder holding
    tmics' marker file (a frames output, or a training, search or benchmark folder)."""
    path = Path(path)
    return is_tmics_output_name(path) or (path.is_dir() and os.path.lexists(path / MARKER))


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _shown(path: str | os.PathLike[str]) -> str:
    """A path for a one-line message (control characters escaped)."""
    text = os.fspath(path)
    if text == "":
        return '""'
    return ascii(text) if any(ord(c) < 32 or ord(c) == 127 for c in text) else text


def _key(path: Path) -> tuple[list[object], str]:
    return natural_key(path), path.name


def _named_path(path: Path) -> Path:
    """`path`, made absolute where it has no name of its own (`.`, `..`)."""
    return path if path.name not in ("", "..") else Path(os.path.abspath(path))


def _identity(path: Path) -> tuple[int, int] | str:
    try:
        info = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return info.st_dev, info.st_ino


# --- folders -------------------------------------------------------------------------------------------
@dataclass
class _Listing:
    videos: list[Path]  # visible video files (outputs of earlier runs too)
    images: bool  # visible image files
    order: list[Path]  # the videos and the visible sub-folders that are not links, in natural order

    @property
    def frames(self) -> bool:
        return self.images and not self.videos


def _list(folder: Path) -> _Listing:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: _key(Path(e.name)))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"cannot read the folder {_shown(folder)}: {reason}") from None
    listing = _Listing([], False, [])
    for entry in entries:
        if _hidden(entry.name):
            continue
        path = folder / entry.name
        try:
            is_dir = entry.is_dir()
            is_file = not is_dir and entry.is_file()
            link = entry.is_symlink()
        except OSError:
            continue
        suffix = Path(entry.name).suffix.lower()
        if is_dir:
            if not link:
                listing.order.append(path)
        elif is_file and suffix in VIDEO_SUFFIXES:
            listing.videos.append(path)
            listing.order.append(path)
        elif is_file and suffix in IMAGE_SUFFIXES:
            listing.images = True
    return listing


def _scan(folder: Path, relative: Path, recursive: bool, skipped: list[Path]) -> Iterator[InputItem]:
    """The videos of a folder that is not a frames folder (and with `recursive` its sub-folders' inputs)."""
    listing = _list(folder)
    for path in listing.order:
        if path.is_dir() and not recursive:
            continue  # sub-folders are entered only with --recursive
        if is_tmics_output(path):
            skipped.append(path)
        elif path.is_dir():
            if _list(path).frames:
                yield InputItem(path, relative / path.name)
            else:
                yield from _scan(path, relative / path.name, recursive, skipped)
        else:
            yield InputItem(path, relative / path.name)


def _folder(
    folder: Path, relative: Path, recursive: bool, skipped: list[Path]
) -> tuple[list[InputItem], bool]:
    """A folder's inputs, and whether it was a folder of videos (not one frames input)."""
    if _list(folder).frames:
        return [InputItem(folder, relative if relative.parts else Path(_named_path(folder).name))], False
    return list(_scan(folder, relative, recursive, skipped)), True


def _empty_folder_message(folder: Path, recursive: bool, skipped: list[Path]) -> str:
    text = f"{_shown(folder)} holds no videos or frames"
    if skipped:
        return text + f" besides outputs of earlier tmics runs ({_names(skipped)})"
    if not recursive:
        try:
            below = any(_scan(folder, Path(), True, []))
        except InputError:  # an unreadable sub-folder: no hint
            below = False
        if below:
            return text + " in itself, but its sub-folders do: pass --recursive"
    return text


def _names(paths: Sequence[Path], shown: int = 3) -> str:
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(_shown(p.name) for p in paths[:shown]) + more


# --- patterns ------------------------------------------------------------------------------------------
def _magic(text: str) -> bool:
    return bool(_MAGIC.search(text))


def _glob(pattern: str) -> list[tuple[Path, Path]]:
    """The matches of `pattern` as `glob.glob(pattern, recursive=True)` finds them, as (path, path below
    the pattern's literal folder), except that `**` does not enter links to folders (no loops), hidden
    folders or outputs of earlier runs, and magic parts never match tmics' outputs as folders to enter."""
    seps = "/" if os.altsep is None else "/" + os.altsep
    dirs_only = pattern.endswith(tuple(seps + os.sep))
    parts = re.split(f"[{re.escape(seps + os.sep)}]", pattern)
    root = parts[0] + os.sep if parts and parts[0] == "" else ""  # an absolute pattern
    parts = [p for p in parts if p and p != "."]
    first = next((i for i, p in enumerate(parts) if _magic(p)), len(parts))
    base = Path(root + os.sep.join(parts[:first])) if root or first else Path()
    found: list[tuple[Path, Path]] = []

    def children(folder: Path) -> list[os.DirEntry[str]]:
        try:
            return list(os.scandir(folder))
        except OSError:
            return []

    def below(folder: Path, relative: Path) -> Iterator[tuple[Path, Path, bool]]:
        """`folder` and everything below it that `**` matches: (path, relative, a folder `**` enters)."""
        yield folder, relative, True
        for entry in children(folder):
            if _hidden(entry.name):
                continue
            path, rel = folder / entry.name, relative / entry.name
            try:
                enter = entry.is_dir() and not entry.is_symlink() and not is_tmics_output(path)
            except OSError:
                continue
            if enter:
                yield from below(path, rel)
            else:
                yield path, rel, False

    def walk(folder: Path, relative: Path, rest: list[str]) -> None:
        if not rest:
            if folder.parts:  # `**` at the start of a relative pattern does not match "" (as in glob)
                found.append((folder, relative))
            return
        head, tail = rest[0], rest[1:]
        if head == "**":
            for path, rel, enter in below(folder, relative):
                if enter:
                    walk(path, rel, tail)
                elif not tail:
                    found.append((path, rel))
        elif _magic(head):
            for entry in children(folder):
                if _hidden(entry.name) and not head.startswith("."):
                    continue
                if not fnmatch.fnmatch(entry.name, head):
                    continue
                path, rel = folder / entry.name, relative / entry.name
                if not tail:
                    found.append((path, rel))
                elif path.is_dir() and not is_tmics_output(path):
                    walk(path, rel, tail)
        else:
            path = folder / head
            if not tail:
                if os.path.lexists(path):
                    found.append((path, relative / head))
            elif path.is_dir():
                walk(path, relative / head, tail)

    if base.is_dir():
        walk(base, Path(), parts[first:])
    if dirs_only:
        found = [(p, r) for p, r in found if p.is_dir()]
    unique = {(str(p), str(r)): (p, r) for p, r in found}
    return sorted(unique.values(), key=lambda pr: [_key(Path(part)) for part in pr[1].parts])


# --- inputs --------------------------------------------------------------------------------------------
def collect_inputs(
    args: Sequence[str | os.PathLike[str]],
    recursive: bool = False,
    output: str | os.PathLike[str] | None = None,
) -> Inputs:
    """The inputs the arguments name (see the module), whether they are `many`, and the outputs of
    earlier runs passed over. `output`: the -o folder; what a folder or pattern finds inside it is passed
    over too (the outputs of a run that mirrors its inputs into a folder among them). InputError when an
    argument names nothing, a folder or pattern yields no input, or there is no input at all."""
    if isinstance(args, (str, os.PathLike)):
        args = [args]
    into = Path(os.path.realpath(output)) if output is not None else None

    def outside(found: Sequence[InputItem], passed: list[Path]) -> list[InputItem]:
        """`found` but what lies inside the -o folder (put in `passed`)."""
        if into is None:
            return list(found)
        kept = []
        for item in found:
            if into in Path(os.path.realpath(item.path)).parents:
                passed.append(item.path)
            else:
                kept.append(item)
        return kept

    items: list[InputItem] = []
    seen: set[tuple[int, int] | str] = set()
    skipped: list[Path] = []
    many = False
    named = 0  # files named as arguments (one named twice counts twice; earlier outputs passed over not)

    def take(found: Sequence[InputItem]) -> None:
        for item in found:
            identity = _identity(item.path)
            if identity not in seen:
                seen.add(identity)
                items.append(item)

    for arg in args:
        text = os.fspath(arg)
        name = text  # on the file system: a quoted ~ expanded as the shell would have
        if text.startswith("~") and not os.path.lexists(text):
            name = os.path.expanduser(text)
        path = Path(name)
        if name and os.path.lexists(name):
            if not path.exists():
                raise InputError(
                    f"{_shown(text)} is a symbolic link to {_shown(_link(name))}, which does not exist"
                )
            if is_tmics_output(path):
                skipped.append(path)
            elif path.is_dir():
                own: list[Path] = []
                found, videos = _folder(path, Path(), recursive, own)
                found = outside(found, own)
                if not found:
                    raise InputError(_empty_folder_message(path, recursive, own))
                skipped += own
                many = many or videos
                take(found)
            else:  # any file (or something else the reader will refuse with its own message)
                named += 1  # `a.mp4 a.mp4 -o DIR`: two arguments, so DIR is a folder, as the help says
                take([InputItem(path, Path(path.name))])
            continue
        if not _magic(name):
            raise InputError(f"{_shown(text)} does not exist")
        many = True
        take(outside(_pattern(text, name, recursive, skipped), skipped))
    skipped = list(dict.fromkeys(skipped))
    if not items:
        if skipped:
            are = "is an output" if len(skipped) == 1 else "are outputs"
            how = "rename it" if len(skipped) == 1 else "rename them"
            if any(not is_tmics_output_name(p) for p in skipped):
                how += f" and remove {MARKER}"
            raise InputError(
                f"no inputs: {_names(skipped)} {are} of an earlier tmics run ({how} to derain again)"
            )
        raise InputError("no inputs given")
    return Inputs(tuple(items), many or len(items) > 1 or named > 1, tuple(skipped))


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _pattern(text: str, pattern: str, recursive: bool, skipped: list[Path]) -> list[InputItem]:
    matches = _glob(pattern)
    if not matches:
        raise InputError(f"{_shown(text)} matches no files")
    found: list[InputItem] = []
    own: list[Path] = []
    others: list[Path] = []
    for path, relative in matches:
        if is_tmics_output(path):
            own.append(path)
        elif path.is_dir():
            found += _folder(path, relative, recursive, own)[0]
        elif path.suffix.lower() in VIDEO_SUFFIXES and path.exists():
            found.append(InputItem(path, relative))
        else:
            others.append(path)
    if not found:
        text = f"{_shown(text)} matches no videos or frames"
        if others:
            text += f" (it matches {_names(others)}: name other files directly)"
        elif own:
            text += f" besides outputs of earlier tmics runs ({_names(own)})"
        raise InputError(text)
    skipped += own
    return found


def find_inputs(args: Sequence[str | os.PathLike[str]], recursive: bool = False) -> list[InputItem]:
    """The inputs the arguments name (`collect_inputs(...).items`)."""
    return list(collect_inputs(args, recursive).items)


# --- outputs -------------------------------------------------------------------------------------------
def check_format(fmt: str | None) -> str | None:
    """`--format` as a suffix without dot, lower case (`png` for PNG frames); InputError if unknown."""
    if fmt is None:
        return None
    name = fmt.lower().lstrip(".")
    if name not in FORMATS:
        known = ", ".join(FORMATS[:-1])
        raise InputError(
            f"unknown --format {fmt!r}: use {known}, or {FRAMES_FORMAT} for a folder of PNG frames"
        )
    return name


def _kind(item: InputItem, fmt: str | None) -> str:
    """The output's suffix (`.mp4`), or "" for a folder of frames."""
    if fmt == FRAMES_FORMAT:
        return ""
    if fmt is not None:
        return "." + fmt
    if item.frames:
        return ""
    suffix = item.path.suffix
    return suffix if suffix.lower() in CONTAINER_SUFFIXES else FALLBACK_SUFFIX


def _named(name: Path, item: InputItem, ext: str, tag: str = "") -> Path:
    """`name` (an input's name or relative path) with the output's tag and suffix."""
    stem = name.name if item.frames or not name.suffix else name.stem
    return name.with_name(stem + tag + ext)


def output_targets(
    items: Sequence[InputItem], output: str | os.PathLike[str] | None, fmt: str | None, *, many: bool
) -> list[OutputTarget]:
    """Each input's output (see the module), in the order of `items`. `fmt`: `--format` (a container
    suffix without dot, or `png` for frames); without it an output keeps its input's container, or
    becomes `.mkv` where tmics cannot write that one (.flv, .wmv, .mpg, ...), and frames stay frames.
    `many`: `Inputs.many`. InputError for an unknown format, an `-o` that cannot hold the outputs, and two
    outputs that collide (or an output that would be an input)."""
    fmt = check_format(fmt)
    if output is None:
        targets = [
            OutputTarget(_named(_named_path(i.path), i, _kind(i, fmt), DERAINED), not _kind(i, fmt))
            for i in items
        ]
    elif many:
        folder = Path(output)
        if folder.suffix.lower() in CONTAINER_SUFFIXES:
            raise InputError(
                f"-o {_shown(output)} names a video, but there are several inputs: give a folder"
            )
        if os.path.lexists(folder) and not folder.is_dir():
            raise InputError(
                f"-o {_shown(output)} exists and is not a folder; with several inputs -o is a folder"
            )
        if folder.is_dir() and os.path.lexists(folder / MARKER):
            raise InputError(f"-o {_shown(output)} is an earlier tmics output; give another folder")
        above = next((f for f in folder.absolute().parents if os.path.lexists(f)), None)
        if above is not None and not above.is_dir():
            raise InputError(f"-o {_shown(output)} cannot be made: {_shown(above)} is a file, not a folder")
        targets = [
            OutputTarget(folder / _named(i.relative, i, _kind(i, fmt)), not _kind(i, fmt)) for i in items
        ]
    else:
        targets = [_single(item, output, fmt) for item in items]
    # one input: its output is checked against it by outputs.check_output, whose messages say exactly how
    # they collide; many: all are checked first, so that no input is overwritten by an earlier one's output
    _check_apart(items, targets, against_inputs=len(items) > 1)
    return targets


def _single(item: InputItem, output: str | os.PathLike[str], fmt: str | None) -> OutputTarget:
    text = os.fspath(output)
    path = Path(text)
    into = text.endswith(("/", os.sep)) or (path.is_dir() and not os.path.lexists(path / MARKER))
    if into:
        ext = _kind(item, fmt)
        return OutputTarget(path / _named(Path(_named_path(item.path).name), item, ext), not ext)
    frames = path.is_dir() or not path.suffix  # as video.writer.is_folder_output
    if fmt is not None and (
        (fmt == FRAMES_FORMAT) != frames or (not frames and path.suffix.lower() != "." + fmt)
    ):
        kind = "a folder of frames" if frames else f"a {path.suffix} file"
        raise InputError(f"--format {fmt} does not match -o {_shown(text)} ({kind}); give one or the other")
    return OutputTarget(path, frames)


def _check_apart(
    items: Sequence[InputItem], targets: Sequence[OutputTarget], against_inputs: bool = True
) -> None:
    """Refuse two outputs on one path (or one inside the other), and an output that is an input, lies in
    a frames input, or (a frames output) holds one."""
    outputs: dict[str, int] = {}
    for n, target in enumerate(targets):
        key = os.path.realpath(target.path)
        if key in outputs:
            first = outputs[key]
            raise InputError(
                f"{_shown(items[first].path)} and {_shown(items[n].path)} would both be derained into "
                f"{_shown(target.path)}: derain them in separate runs, each with its own -o"
            )
        outputs[key] = n
    for key, n in outputs.items():
        for parent in Path(key).parents:
            if str(parent) in outputs:
                other = outputs[str(parent)]
                raise InputError(
                    f"the output {_shown(targets[n].path)} of {_shown(items[n].path)} would lie inside the "
                    f"output {_shown(targets[other].path)} of {_shown(items[other].path)}"
                )
    if not against_inputs:
        return
    inputs = {os.path.realpath(item.path): item for item in items}
    holders: dict[str, InputItem] = {}  # every folder that holds an input
    for key, item in inputs.items():
        for parent in Path(key).parents:
            holders.setdefault(str(parent), item)
    for key, n in outputs.items():
        clash = inputs.get(key) or next((inputs[str(p)] for p in Path(key).parents if str(p) in inputs), None)
        if clash is None and targets[n].frames:
            clash = holders.get(key)
        if clash is not None:
            raise InputError(
                f"the output {_shown(targets[n].path)} of {_shown(items[n].path)} would overwrite or mix "
                f"with the input {_shown(clash.path)}; give another -o"
            )


def output_paths(
    items: Sequence[InputItem], output: str | os.PathLike[str] | None, fmt: str | None, *, many: bool
) -> list[Path]:
    """The paths of `output_targets(...)`. Note that a frames output may have a suffix (`shots.derained`):
    use `output_targets` to know which are folders."""
    return [target.path for target in output_targets(items, output, fmt, many=many)]
