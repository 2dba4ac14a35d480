"""tmics_cli.video.inputs: which inputs the arguments of `tmics derain` name, and where their outputs go.

Fake files only (their content is never read): fast, no decoding.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

from tmics_cli.outputs import MARKER
from tmics_cli.video.inputs import (
    InputError,
    InputItem,
    OutputTarget,
    collect_inputs,
    find_inputs,
    is_tmics_output,
    is_tmics_output_name,
    output_paths,
    output_targets,
)
from tmics_cli.video.inputs import _glob as glob_matches


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def frames(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(1, count + 1):
        (folder / f"{n:04d}.png").write_bytes(b"x")
    return folder


def rel(items: list[InputItem]) -> list[str]:
    return [item.relative.as_posix() for item in items]


def error(*args, **kwargs) -> str:
    """The message of the InputError that find_inputs raises; always one line."""
    with pytest.raises(InputError) as info:
        find_inputs(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message
    return message


def out_error(*args, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        output_paths(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message
    return message


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- names ---------------------------------------------------------------------------------------------
def test_tmics_output_names() -> None:
    assert is_tmics_output_name("clip.derained.mp4")
    assert is_tmics_output_name(Path("a/shots.derained"))
    assert is_tmics_output_name(".clip.mp4.ab12cd34-99.x1y2.tmics-partial.mp4")
    assert not is_tmics_output_name("clip.mp4")
    assert not is_tmics_output_name("derained.mp4")
    assert not is_tmics_output_name("clip.derained-by-hand.mp4")


def test_marker_folder_is_an_output(tmp_path: Path) -> None:
    frames(tmp_path / "out")
    assert not is_tmics_output(tmp_path / "out")
    (tmp_path / "out" / MARKER).write_text("{}")
    assert is_tmics_output(tmp_path / "out")


# --- files and folders ---------------------------------------------------------------------------------
def test_files_named_directly_whatever_their_suffix(tmp_path: Path) -> None:
    touch(tmp_path, "a.mp4", "b.weird", "noext")
    args = [tmp_path / "b.weird", str(tmp_path / "a.mp4"), tmp_path / "noext"]
    found = collect_inputs(args)
    assert [i.path.name for i in found.items] == ["b.weird", "a.mp4", "noext"]  # the order given
    assert find_inputs(str(tmp_path / "a.mp4"))[0].path.name == "a.mp4"  # one argument, not a list
    assert rel(list(found.items)) == ["b.weird", "a.mp4", "noext"]
    assert found.many


def test_one_file_is_not_many(tmp_path: Path) -> None:
    touch(tmp_path, "a.mp4")
    found = collect_inputs([tmp_path / "a.mp4"])
    assert not found.many and found.items == (InputItem(tmp_path / "a.mp4", Path("a.mp4")),)


def test_frames_folder_is_one_input(tmp_path: Path) -> None:
    frames(tmp_path / "shots")
    touch(tmp_path, "shots/notes.txt", "shots/sub/c.mp4")  # sub-folders of a frames folder do not count
    found = collect_inputs([tmp_path / "shots"], recursive=True)
    assert found.items == (InputItem(tmp_path / "shots", Path("shots")),)
    assert not found.many and found.items[0].frames


def test_frames_folder_given_as_dot(cwd: Path) -> None:
    frames(cwd / "shots")
    os.chdir(cwd / "shots")
    (item,) = find_inputs(["."])
    assert item.relative == Path("shots")
    assert output_paths([item], None, None, many=False) == [cwd / "shots.derained"]


def test_folder_of_videos_in_natural_order(tmp_path: Path) -> None:
    touch(
        tmp_path, "v/clip10.mp4", "v/clip2.MKV", "v/clip1.avi", "v/poster.jpg", "v/notes.txt", "v/sub/x.mp4"
    )
    found = collect_inputs([tmp_path / "v"])
    assert rel(list(found.items)) == ["clip1.avi", "clip2.MKV", "clip10.mp4"]  # no sub-folder, no poster
    assert found.many


def test_one_video_in_a_folder_is_many(tmp_path: Path) -> None:
    touch(tmp_path, "v/a.mp4")
    assert collect_inputs([tmp_path / "v"]).many


def test_recursion_mirrors_and_interleaves_in_natural_order(tmp_path: Path) -> None:
    touch(tmp_path, "v/b.mp4", "v/a/x.mp4", "v/c/d/y.mov", "v/c/z.webm", "v/a10.mp4", "v/a2.mp4")
    frames(tmp_path / "v/c/shots")
    items = find_inputs([tmp_path / "v"], recursive=True)
    assert rel(items) == ["a/x.mp4", "a2.mp4", "a10.mp4", "b.mp4", "c/d/y.mov", "c/shots", "c/z.webm"]
    assert items[5].path == tmp_path / "v/c/shots" and items[5].frames


def test_recursive_hint(tmp_path: Path) -> None:
    touch(tmp_path, "v/a/x.mp4", "v/readme.txt")
    message = error([tmp_path / "v"])
    assert (
        message
        == f"{tmp_path / 'v'} holds no videos or frames in itself, but its sub-folders do: pass --recursive"
    )
    assert rel(find_inputs([tmp_path / "v"], recursive=True)) == ["a/x.mp4"]


def test_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "e" / "sub").mkdir(parents=True)
    assert error([tmp_path / "e"]) == f"{tmp_path / 'e'} holds no videos or frames"
    assert error([tmp_path / "e"], recursive=True) == f"{tmp_path / 'e'} holds no videos or frames"


def test_hidden_derained_and_marker_folders_are_skipped(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "v/a.mp4",
        "v/a.derained.mp4",
        "v/.hidden.mp4",
        "v/.a.mp4.ab12cd34-7.q1.tmics-partial.mp4",
        "v/.job/b.mp4",
        "v/old.derained/c.mp4",
    )
    frames(tmp_path / "v/shots.derained")
    frames(tmp_path / "v/out")
    (tmp_path / "v/out" / MARKER).write_text("{}")
    frames(tmp_path / "v/real")
    found = collect_inputs([tmp_path / "v"], recursive=True)
    assert rel(list(found.items)) == ["a.mp4", "real"]
    assert sorted(p.name for p in found.skipped) == [
        "a.derained.mp4",
        "old.derained",
        "out",
        "shots.derained",
    ]


def test_earlier_outputs_named_directly_are_skipped(tmp_path: Path) -> None:
    touch(tmp_path, "a.mp4", "a.derained.mp4")
    frames(tmp_path / "shots.derained")
    # the shell expanded `tmics derain *` a second time
    found = collect_inputs([tmp_path / "a.derained.mp4", tmp_path / "a.mp4", tmp_path / "shots.derained"])
    assert rel(list(found.items)) == ["a.mp4"] and not found.many
    assert [p.name for p in found.skipped] == ["a.derained.mp4", "shots.derained"]
    message = error([tmp_path / "a.derained.mp4"])
    assert (
        message
        == "no inputs: a.derained.mp4 is an output of an earlier tmics run (rename it to derain again)"
    )
    frames(tmp_path / "out")
    (tmp_path / "out" / MARKER).write_text("{}")
    message = error([tmp_path / "out", tmp_path / "a.derained.mp4", tmp_path / "out"])
    assert message == (
        "no inputs: out, a.derained.mp4 are outputs of an earlier tmics run "
        f"(rename them and remove {MARKER} to derain again)"
    )


def test_folder_of_only_earlier_outputs(tmp_path: Path) -> None:
    touch(tmp_path, "v/a.derained.mp4", "v/poster.png")
    message = error([tmp_path / "v"])  # it holds a video, so it is not a frames folder
    expected = f"{tmp_path / 'v'} holds no videos or frames besides outputs of earlier tmics runs"
    assert message == expected + " (a.derained.mp4)"


def test_hidden_file_named_directly_is_taken(tmp_path: Path) -> None:
    touch(tmp_path, ".secret.mp4")
    assert rel(find_inputs([tmp_path / ".secret.mp4"])) == [".secret.mp4"]


# --- links ---------------------------------------------------------------------------------------------
def test_links(tmp_path: Path) -> None:
    touch(tmp_path, "store/real.mp4", "v/a.mp4", "store/deep/b.mp4")
    (tmp_path / "v/link.mp4").symlink_to(tmp_path / "store/real.mp4")
    (tmp_path / "v/loop").symlink_to(tmp_path / "v", target_is_directory=True)
    (tmp_path / "v/store").symlink_to(tmp_path / "store", target_is_directory=True)
    items = find_inputs([tmp_path / "v"], recursive=True)
    assert rel(items) == ["a.mp4", "link.mp4"]  # linked files followed, linked folders not entered
    assert items[1].path == tmp_path / "v/link.mp4"  # the link's own path (outputs go beside it)
    # a linked folder named directly is used
    assert rel(find_inputs([tmp_path / "v/store"], recursive=True)) == ["deep/b.mp4", "real.mp4"]


def test_broken_link(tmp_path: Path) -> None:
    (tmp_path / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    message = error([tmp_path / "gone.mp4"])
    assert (
        message
        == f"{tmp_path / 'gone.mp4'} is a symbolic link to {tmp_path / 'nowhere.mp4'}, which does not exist"
    )


# --- duplicates ----------------------------------------------------------------------------------------
def test_the_same_input_twice_is_taken_once(tmp_path: Path, cwd: Path) -> None:
    touch(tmp_path, "v/a.mp4", "v/b.mp4")
    (tmp_path / "alias.mp4").symlink_to(tmp_path / "v/b.mp4")
    items = find_inputs(["v/b.mp4", "v", str(tmp_path / "v/a.mp4"), "alias.mp4", "v/*.mp4", "v/./b.mp4"])
    assert [(i.path.as_posix(), i.relative.as_posix()) for i in items] == [
        ("v/b.mp4", "b.mp4"),
        ("v/a.mp4", "a.mp4"),
    ]


def test_hard_links_are_one_input(tmp_path: Path) -> None:
    touch(tmp_path, "a.mp4")
    os.link(tmp_path / "a.mp4", tmp_path / "b.mp4")
    assert rel(find_inputs([tmp_path / "a.mp4", tmp_path / "b.mp4"])) == ["a.mp4"]


# --- patterns ------------------------------------------------------------------------------------------
def test_pattern(cwd: Path) -> None:
    touch(cwd, "v/a10.mp4", "v/a2.mp4", "v/b.txt", "v/a.derained.mp4", "v/.h.mp4")
    found = collect_inputs(["v/*"])
    assert [i.path.as_posix() for i in found.items] == ["v/a2.mp4", "v/a10.mp4"]
    assert rel(list(found.items)) == ["a2.mp4", "a10.mp4"]
    assert [p.name for p in found.skipped] == ["a.derained.mp4"]
    assert collect_inputs(["v/a1?.mp4"]).many  # a pattern is many, even with one match
    assert rel(find_inputs(["v/a[0-9].mp4"])) == ["a2.mp4"]
    assert rel(find_inputs(["v/.*.mp4"])) == [".h.mp4"]  # hidden only when the pattern says so


def test_recursive_pattern_mirrors_below_its_literal_folder(cwd: Path) -> None:
    touch(cwd, "v/a.mp4", "v/x/b.mp4", "v/x/y/c.mp4", "v/.hid/d.mp4", "v/o.derained/e.mp4")
    frames(cwd / "v/x/shots")
    assert rel(find_inputs(["v/**/*.mp4"])) == ["a.mp4", "x/b.mp4", "x/y/c.mp4"]
    assert rel(find_inputs(["v/**"])) == ["a.mp4", "x/b.mp4", "x/shots", "x/y/c.mp4"]
    assert rel(find_inputs(["**/c.mp4"])) == ["v/x/y/c.mp4"]
    assert rel(find_inputs(["v/*/"])) == ["x/b.mp4"]  # a folder matched is taken like a folder named
    assert rel(find_inputs(["v/*/"], recursive=True)) == ["x/b.mp4", "x/shots", "x/y/c.mp4"]


def test_patterns_match_as_glob_does(cwd: Path) -> None:
    touch(cwd, "v/a.mp4", "v/x/b.mp4", "v/x/y/c.mp4", "v/x/y/d.txt", "w/e.mp4")
    for pattern in ["v/**", "v/**/*.mp4", "**/*.mp4", "*/x/*", "v/*/", "**/", "v/x/**/y/*", "*"]:
        ours = {p.as_posix() for p, _ in glob_matches(pattern)}
        theirs = {Path(p).as_posix() for p in glob.glob(pattern, recursive=True)}
        assert ours == theirs, pattern


def test_pattern_does_not_loop_on_linked_folders(cwd: Path) -> None:
    touch(cwd, "v/a.mp4")
    (cwd / "v/loop").symlink_to(cwd / "v", target_is_directory=True)
    assert rel(find_inputs(["v/**/*.mp4"], recursive=True)) == ["a.mp4"]


def test_absolute_and_home_patterns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path, "v/a.mp4", "v/b.mp4")
    assert rel(find_inputs([f"{tmp_path}/v/*.mp4"])) == ["a.mp4", "b.mp4"]
    monkeypatch.setenv("HOME", str(tmp_path))
    assert rel(find_inputs(["~/v/b*"])) == ["b.mp4"]
    assert find_inputs(["~/v/a.mp4"])[0].path == tmp_path / "v/a.mp4"


def test_a_path_that_exists_is_not_a_pattern(cwd: Path) -> None:
    touch(cwd, "[1].mp4", "1.mp4")
    assert [i.path.name for i in find_inputs(["[1].mp4"])] == ["[1].mp4"]
    assert not collect_inputs(["[1].mp4"]).many
    assert [i.path.name for i in find_inputs(["[1]*.mp4"])] == ["1.mp4"]


def test_pattern_errors(cwd: Path) -> None:
    touch(cwd, "v/a.txt", "v/b.3gp", "w/a.derained.mp4")
    assert error(["nothing*.mp4"]) == "nothing*.mp4 matches no files"
    assert (
        error(["v/*"])
        == "v/* matches no videos or frames (it matches a.txt, b.3gp: name other files directly)"
    )
    assert (
        error(["w/*"])
        == "w/* matches no videos or frames besides outputs of earlier tmics runs (a.derained.mp4)"
    )


# --- errors --------------------------------------------------------------------------------------------
def test_missing(cwd: Path) -> None:
    assert error(["gone.mp4"]) == "gone.mp4 does not exist"
    assert error([]) == "no inputs given"
    assert error(["bad\nname.mp4"]) == "'bad\\nname.mp4' does not exist"  # one line whatever the name


def test_unreadable_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path, "v/a.mp4")
    scandir = os.scandir

    def refuse(path):
        if Path(path) == tmp_path / "v":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)  # as chmod 0 would, even for root
    assert error([tmp_path / "v"]) == f"cannot read the folder {tmp_path / 'v'}: Permission denied"


# --- outputs: beside the inputs ------------------------------------------------------------------------
def test_default_names(tmp_path: Path) -> None:
    touch(tmp_path, "a.mp4", "b.MOV", "c.flv", "d.mpg", "noext", "e.f.mkv")
    frames(tmp_path / "shots")
    frames(tmp_path / "take.v2")
    names = ["a.mp4", "b.MOV", "c.flv", "d.mpg", "noext", "e.f.mkv", "shots", "take.v2"]
    items = find_inputs([tmp_path / n for n in names])
    targets = output_targets(items, None, None, many=True)
    assert [t.path.relative_to(tmp_path).as_posix() for t in targets] == [
        "a.derained.mp4",
        "b.derained.MOV",
        "c.derained.mkv",  # tmics cannot write .flv: .mkv holds everything
        "d.derained.mkv",
        "noext.derained.mkv",
        "e.f.derained.mkv",
        "shots.derained",
        "take.v2.derained",
    ]
    assert [t.frames for t in targets] == [False] * 6 + [True] * 2


def test_format(tmp_path: Path) -> None:
    touch(tmp_path, "a.mp4", "c.flv")
    frames(tmp_path / "shots")
    items = find_inputs([tmp_path / "a.mp4", tmp_path / "c.flv", tmp_path / "shots"])
    got = [(t.path.name, t.frames) for t in output_targets(items, None, "MKV", many=True)]
    assert got == [("a.derained.mkv", False), ("c.derained.mkv", False), ("shots.derained.mkv", False)]
    got = [(t.path.name, t.frames) for t in output_targets(items, None, ".png", many=True)]
    assert got == [("a.derained", True), ("c.derained", True), ("shots.derained", True)]


def test_unknown_format(tmp_path: Path) -> None:
    touch(tmp_path, "a.mp4")
    message = out_error(find_inputs([tmp_path / "a.mp4"]), None, "gif", many=False)
    known = "avi, m4v, mkv, mov, mp4, mts, ts, webm"
    assert message == f"unknown --format 'gif': use {known}, or png for a folder of PNG frames"


def test_collisions_beside(tmp_path: Path) -> None:
    touch(tmp_path, "x.mp4", "x.mkv", "y.flv", "y.mkv")
    items = find_inputs([tmp_path / n for n in ["x.mp4", "x.mkv"]])
    message = out_error(items, None, "mkv", many=True)
    assert message == (
        f"{tmp_path / 'x.mp4'} and {tmp_path / 'x.mkv'} would both be derained into "
        f"{tmp_path / 'x.derained.mkv'}: "
        "derain them in separate runs, each with its own -o"
    )
    assert output_paths(items, None, None, many=True)  # each keeps its container: no collision
    out_error(find_inputs([tmp_path / "y.flv", tmp_path / "y.mkv"]), None, None, many=True)  # both .mkv


# --- outputs: -o with many inputs ----------------------------------------------------------------------
def test_many_mirror_under_the_output_folder(tmp_path: Path) -> None:
    touch(tmp_path, "v/a.mp4", "v/s/b.flv", "v/s/c.MOV")
    frames(tmp_path / "v/s/shots")
    found = collect_inputs([tmp_path / "v"], recursive=True)
    out = tmp_path / "out"
    assert output_paths(found.items, out, None, many=found.many) == [
        out / "a.mp4",
        out / "s/b.mkv",
        out / "s/c.MOV",
        out / "s/shots",
    ]
    assert output_paths(found.items, str(out), "webm", many=True) == [
        out / "a.webm",
        out / "s/b.webm",
        out / "s/c.webm",
        out / "s/shots.webm",
    ]
    targets = output_targets(found.items, out, "png", many=True)
    assert targets == [
        OutputTarget(out / "a", True),
        OutputTarget(out / "s/b", True),
        OutputTarget(out / "s/c", True),
        OutputTarget(out / "s/shots", True),
    ]


def test_an_output_folder_inside_a_recursive_input_is_not_an_input(tmp_path: Path, cwd: Path) -> None:
    """`tmics derain f -r -o f/clean` ran once; rerun (to finish what was left) it took f/clean's outputs
    for inputs and refused them as colliding with themselves. What lies in the -o folder is passed over."""
    touch(tmp_path, "f/a.mp4", "f/sub/b.mp4", "f/clean/a.mp4", "f/clean/sub/b.mp4")
    found = collect_inputs([tmp_path / "f"], recursive=True, output=tmp_path / "f" / "clean")
    assert rel(list(found.items)) == ["a.mp4", "sub/b.mp4"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in found.skipped) == [
        "f/clean/a.mp4",
        "f/clean/sub/b.mp4",
    ]
    targets = output_targets(found.items, tmp_path / "f" / "clean", None, many=True)
    assert [t.path for t in targets] == [tmp_path / "f/clean/a.mp4", tmp_path / "f/clean/sub/b.mp4"]
    pattern = collect_inputs(["f/**/*.mp4"], recursive=True, output="f/clean")
    assert rel(list(pattern.items)) == ["a.mp4", "sub/b.mp4"]
    alone = collect_inputs([tmp_path / "f" / "clean" / "a.mp4"], output=tmp_path / "f" / "clean")
    assert rel(list(alone.items)) == ["a.mp4"]  # named itself: taken (and its output checked against it)


def test_many_output_must_be_a_folder(tmp_path: Path) -> None:
    touch(tmp_path, "a.mp4", "b.mp4", "file")
    items = find_inputs([tmp_path / "a.mp4", tmp_path / "b.mp4"])
    assert out_error(items, tmp_path / "o.mp4", None, many=True) == (
        f"-o {tmp_path / 'o.mp4'} names a video, but there are several inputs: give a folder"
    )
    assert out_error(items, tmp_path / "file", None, many=True) == (
        f"-o {tmp_path / 'file'} exists and is not a folder; with several inputs -o is a folder"
    )
    frames(tmp_path / "old")
    (tmp_path / "old" / MARKER).write_text("{}")
    assert out_error(items, tmp_path / "old", None, many=True) == (
        f"-o {tmp_path / 'old'} is an earlier tmics output; give another folder"
    )
    assert output_paths(items, tmp_path / "out.v1", None, many=True) == [
        tmp_path / "out.v1/a.mp4",
        tmp_path / "out.v1/b.mp4",
    ]


def test_many_collisions(tmp_path: Path) -> None:
    touch(tmp_path, "a/x.mp4", "b/x.mp4", "x.mp4", "x/y.mp4")
    items = find_inputs([tmp_path / "a/x.mp4", tmp_path / "b/x.mp4"])
    message = out_error(items, tmp_path / "out", None, many=True)
    assert message == (
        f"{tmp_path / 'a/x.mp4'} and {tmp_path / 'b/x.mp4'} would both be derained into "
        f"{tmp_path / 'out/x.mp4'}: "
        "derain them in separate runs, each with its own -o"
    )
    # a frames output out/x would hold out/x/y
    items = find_inputs([tmp_path / "x.mp4", f"{tmp_path}/*/y.mp4"])
    assert rel(items) == ["x.mp4", "x/y.mp4"]
    message = out_error(items, tmp_path / "out", "png", many=True)
    assert message == (
        f"the output {tmp_path / 'out/x/y'} of {tmp_path / 'x/y.mp4'} would lie inside the output "
        f"{tmp_path / 'out/x'} of {tmp_path / 'x.mp4'}"
    )


def test_output_over_an_input_is_refused(tmp_path: Path) -> None:
    touch(tmp_path, "v/a.mp4", "v/a.mkv")
    found = collect_inputs([tmp_path / "v"])
    message = out_error(found.items, tmp_path / "v", None, many=True)
    assert message == (
        f"the output {tmp_path / 'v/a.mkv'} of {tmp_path / 'v/a.mkv'} would overwrite or mix with the input "
        f"{tmp_path / 'v/a.mkv'}; give another -o"
    )
    touch(tmp_path, "w/a.mp4", "w/b.mkv")
    found = collect_inputs([tmp_path / "w"])
    out_error(found.items, tmp_path / "w", "mkv", many=True)  # a.mp4 -> w/a.mkv is fine, b.mkv is itself
    frames(tmp_path / "shots")
    (item,) = find_inputs([tmp_path / "shots"])
    # one input: left to outputs.check_output (its messages say how they collide), which refuses it
    (target,) = output_targets([item], str(tmp_path / "shots") + "/", None, many=False)
    from tmics_cli.outputs import OutputError, check_output

    with pytest.raises(OutputError, match="inside the input"):
        check_output(target.path, [item.path], folder=target.frames)


# --- outputs: -o with one input ------------------------------------------------------------------------
def test_single_output_file_folder_and_trailing_slash(tmp_path: Path) -> None:
    touch(tmp_path, "in/a.flv", "in/b.mp4")
    frames(tmp_path / "in/shots")
    a, b, shots = find_inputs([tmp_path / "in/a.flv", tmp_path / "in/b.mp4", tmp_path / "in/shots"])
    # a file (or a new name): as it is, whatever its suffix (the writer judges it)
    assert output_paths([b], tmp_path / "out.mkv", None, many=False) == [tmp_path / "out.mkv"]
    assert output_paths([a], tmp_path / "out.flv", None, many=False) == [tmp_path / "out.flv"]
    assert output_targets([shots], tmp_path / "frames", None, many=False) == [
        OutputTarget(tmp_path / "frames", True)
    ]
    # an existing folder, like cp file dir/
    (tmp_path / "dir").mkdir()
    assert output_paths([b], tmp_path / "dir", None, many=False) == [tmp_path / "dir/b.mp4"]
    assert output_paths([a], str(tmp_path / "dir"), None, many=False) == [tmp_path / "dir/a.mkv"]
    assert output_targets([shots], tmp_path / "dir", None, many=False) == [
        OutputTarget(tmp_path / "dir/shots", True)
    ]
    assert output_paths([b], tmp_path / "dir", "png", many=False) == [tmp_path / "dir/b"]
    # a trailing slash: a folder, existing or not (Path() would drop the slash: give the string)
    assert output_paths([b], f"{tmp_path}/new/", "mov", many=False) == [tmp_path / "new/b.mov"]
    assert output_paths([b], tmp_path / "new", None, many=False) == [tmp_path / "new"]
    # an earlier frames output is replaced (with --overwrite), not filled
    frames(tmp_path / "old")
    (tmp_path / "old" / MARKER).write_text("{}")
    assert output_targets([shots], tmp_path / "old", None, many=False) == [
        OutputTarget(tmp_path / "old", True)
    ]


def test_single_format_must_agree_with_output(tmp_path: Path) -> None:
    touch(tmp_path, "b.mp4")
    items = find_inputs([tmp_path / "b.mp4"])
    assert output_paths(items, tmp_path / "o.MKV", "mkv", many=False) == [tmp_path / "o.MKV"]
    assert output_targets(items, tmp_path / "o", "png", many=False) == [OutputTarget(tmp_path / "o", True)]
    assert out_error(items, tmp_path / "o.mp4", "mkv", many=False) == (
        f"--format mkv does not match -o {tmp_path / 'o.mp4'} (a .mp4 file); give one or the other"
    )
    assert out_error(items, tmp_path / "o", "mp4", many=False) == (
        f"--format mp4 does not match -o {tmp_path / 'o'} (a folder of frames); give one or the other"
    )


def test_one_file_named_twice_is_many_so_dash_o_is_a_folder(tmp_path: Path) -> None:
    """`tmics derain a.mp4 a.mp4 -o out` wrote PNG frames into out/: -o is a folder for several inputs."""
    touch(tmp_path, "a.mp4")
    found = collect_inputs([tmp_path / "a.mp4", tmp_path / "." / "a.mp4"])
    assert found.many and rel(list(found.items)) == ["a.mp4"]


def test_a_folder_scan_finds_blu_ray_m2ts_files(tmp_path: Path) -> None:
    touch(tmp_path / "disc", "00001.m2ts", "00002.mts")
    assert rel(list(collect_inputs([tmp_path / "disc"]).items)) == ["00001.m2ts", "00002.mts"]
