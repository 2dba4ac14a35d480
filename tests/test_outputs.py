"""The output-safety rules of tmics_cli.outputs, unit by unit and through each command that writes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.videos import make_video, moving_texture
from tmics_cli.cli import app
from tmics_cli.derain import derain_video
from tmics_cli.outputs import (
    MARKER,
    OutputError,
    PendingOutput,
    check_output,
    foreign_files,
    handle_signals,
    rename_noreplace,
    write_text,
)

REPO = Path(__file__).resolve().parent.parent


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes (to prove nothing changed and nothing was left)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, result.output.strip().splitlines()


def _one_error(result, lines: list[str], *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for word in words:
        assert word in lines[0], lines[0]


# --- the module ----------------------------------------------------------------------------------------
def test_rename_noreplace_never_replaces_a_file_or_a_folder(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("new")
    (tmp_path / "b").write_text("theirs")
    with pytest.raises(FileExistsError):
        rename_noreplace(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a").read_text() == "new" and (tmp_path / "b").read_text() == "theirs"
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    (tmp_path / "d2" / "keep").write_text("x")
    with pytest.raises(FileExistsError):
        rename_noreplace(tmp_path / "d1", tmp_path / "d2")
    rename_noreplace(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c").read_text() == "new" and not (tmp_path / "a").exists()


def test_a_result_that_loses_the_race_is_kept_under_a_free_name(tmp_path: Path) -> None:
    dst = tmp_path / "out.json"
    pending = PendingOutput(dst)
    pending.path.write_text("mine")
    dst.write_text("theirs")  # another run finished first
    with pytest.raises(OutputError, match=r"out\.1\.json") as info:
        pending.commit()
    assert "left as it is" in str(info.value)
    assert dst.read_text() == "theirs" and (tmp_path / "out.1.json").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.1.json", "out.json"]


def test_pending_outputs_vanish_on_error_and_get_the_usual_mode(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), PendingOutput(tmp_path / "x.csv") as pending:
        pending.path.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    path = write_text(tmp_path / "y.txt", "ok")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(OutputError, match="exists"):
        check_output(path, overwrite=False)
    write_text(path, "again", overwrite=True)
    assert path.read_text() == "again"


def test_input_collisions_follow_links(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    src.write_bytes(b"video")
    (tmp_path / "link.mp4").symlink_to(src)
    os.link(src, tmp_path / "hard.mp4")
    for out in ("link.mp4", "hard.mp4", "in.mp4"):
        with pytest.raises(OutputError, match="is the input"):
            check_output(tmp_path / out, [src], overwrite=True)
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(OutputError, match="inside the input folder"):
        check_output(data / "sub" / "w.safetensors", [data], overwrite=True)
    with pytest.raises(OutputError, match="holds the input"):
        check_output(tmp_path, [src], overwrite=True, folder=True)


def test_only_a_folder_tmics_wrote_may_be_replaced_and_only_its_files_go(tmp_path: Path) -> None:
    dst = tmp_path / "frames"
    with PendingOutput(dst, folder=True) as pending:
        (pending.path / "000001.png").write_bytes(b"1")
        pending.commit()
    assert (dst / MARKER).exists() and foreign_files(dst) == []
    check_output(dst, overwrite=True, folder=True)  # an earlier tmics output: may be replaced
    (dst / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="did not write.*notes.txt"):
        check_output(dst, overwrite=True, folder=True)
    (dst / "notes.txt").unlink()
    pending = PendingOutput(dst, overwrite=True, folder=True)
    (pending.path / "000002.png").write_bytes(b"2")
    (dst / "late.txt").write_text("arrived meanwhile")  # must survive the replacement
    with pytest.raises(OutputError, match="late.txt"):
        pending.commit()
    assert (dst / "late.txt").read_text() == "arrived meanwhile" and (dst / "000001.png").exists()
    pending.abort()
    (dst / "late.txt").unlink()
    with PendingOutput(dst, overwrite=True, folder=True) as pending:
        (pending.path / "000002.png").write_bytes(b"2")
        pending.commit()
    assert sorted(p.name for p in dst.iterdir()) == [MARKER, "000002.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]


def test_handle_signals_turns_sigterm_into_an_interruption_with_its_exit_status(tmp_path: Path) -> None:
    pending = PendingOutput(tmp_path / "out.bin")
    with pytest.raises(KeyboardInterrupt) as info, handle_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert info.value.exit_code == 128 + signal.SIGTERM
    assert not pending.path.exists()  # what was pending at the end is removed
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


# --- through the commands ------------------------------------------------------------------------------
def test_derain_never_deletes_a_folder_that_holds_the_input(tmp_path: Path, tiny_weights: Path) -> None:
    folder = tmp_path / "x"
    folder.mkdir()
    src = make_video(folder / "in.mp4", frames=3)
    (folder / "notes.txt").write_text("keep")
    before = _tree(tmp_path)
    result, lines = _cli("derain", src, "-o", folder, "--overwrite", "--weights", tiny_weights)
    _one_error(result, lines, "is the input")  # an existing folder takes the output inside: x/in.mp4
    assert _tree(tmp_path) == before
    other = tmp_path / "y"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    before = _tree(tmp_path)
    result, lines = _cli(
        "derain", src, "-o", other, "--overwrite", "--weights", tiny_weights, "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    assert _tree(tmp_path) == {**before, "y/in.mp4": (other / "in.mp4").read_bytes()}  # beside, not over


def test_a_rerun_skips_only_its_own_output_made_with_these_settings(tmp_path: Path, tiny_weights: Path):
    """A finished output is recorded (its input, settings and the file as written): a rerun with other
    settings, or over a file that merely has the same length and size, was told "skipped: output exists"
    with the old pixels kept; it is refused (exit 2) and says why, and --overwrite redoes it."""
    src = make_video(tmp_path / "in.mp4", frames=3)
    out = tmp_path / "out.mp4"
    run = ["derain", src, "-o", out, "--weights", tiny_weights, "--device", "cpu"]
    assert _cli(*run)[0].exit_code == 0
    made = out.read_bytes()
    result, lines = _cli(*run)
    assert result.exit_code == 0 and lines[-1] == f"skipped {src} -> {out}: output exists"
    result, lines = _cli(*run, "--crf", "30")
    _one_error(result, lines, "derained by tmics with other crf", "--overwrite")
    assert out.read_bytes() == made
    assert _cli(*run, "--crf", "30", "--overwrite")[0].exit_code == 0
    assert out.read_bytes() != made and _cli(*run, "--crf", "30")[1][-1].startswith("skipped")
    make_video(out, frames=3)  # the user's own video of the same length and size put in its place
    mine = out.read_bytes()
    result, lines = _cli(*run, "--crf", "30")
    _one_error(result, lines, "changed since tmics wrote it", "--overwrite")
    assert out.read_bytes() == mine


def test_derain_replaces_its_own_frames_folder_with_overwrite(tmp_path: Path, tiny_weights: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=3)
    out = tmp_path / "frames"
    assert _cli("derain", src, "-o", out, "--weights", tiny_weights, "--device", "cpu")[0].exit_code == 0
    result, lines = _cli("derain", src, "-o", out, "--weights", tiny_weights)
    assert result.exit_code == 0 and lines[-1] == f"skipped {src} -> {out}: output exists"  # whole already
    (out / "000003.png").unlink()  # no longer a whole output of in.mp4: refused without --overwrite
    result, lines = _cli("derain", src, "-o", out, "--weights", tiny_weights)
    _one_error(result, lines, "exists", "--overwrite")
    short = make_video(tmp_path / "short.mp4", frames=2)
    run = _cli("derain", short, "-o", out, "--weights", tiny_weights, "--device", "cpu", "--overwrite")
    assert run[0].exit_code == 0, run[0].output
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "000001.png", "000002.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "in.mp4", "short.mp4"]


def test_derain_that_loses_a_race_keeps_its_result(tmp_path: Path, tiny_weights: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=4)
    dst = tmp_path / "out.mp4"

    def another_run_finishes(done: int) -> None:
        if done == 2:
            dst.write_bytes(b"the other run")

    with pytest.raises(OutputError, match=r"out\.1\.mp4"):
        derain_video(src, dst, weights=tiny_weights, device="cpu", on_frame=another_run_finishes)
    assert dst.read_bytes() == b"the other run"
    assert (tmp_path / "out.1.mp4").stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.1.mp4", "out.mp4"]


def _clips(root: Path) -> Path:
    for name, seed in (("alpha", 0), ("beta", 1)):
        for t in range(6):
            frame = moving_texture(t + 7 * seed, 40, 48)
            (root / name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / name / f"{t + 1:05d}.jpg"), frame)
    return root


@pytest.mark.parametrize(
    ("output", "words"),
    [
        ("data/alpha/00001.jpg", ["safetensors"]),
        ("data/w.safetensors", ["inside the input folder"]),
        ("data/alpha/w.safetensors", ["inside the input folder"]),
        ("init.safetensors", ["is the input"]),
        ("existing.safetensors", ["exists", "--overwrite"]),
    ],
)
def test_train_refuses_outputs_that_would_lose_data(
    tmp_path: Path, tiny_weights: Path, output: str, words: list[str]
) -> None:
    data = _clips(tmp_path / "data")
    (tmp_path / "init.safetensors").write_bytes(tiny_weights.read_bytes())
    (tmp_path / "existing.safetensors").write_bytes(b"keep")
    before = _tree(tmp_path)
    args = ["train", "--data", data, "-o", tmp_path / output, "--size", "tiny", "--steps", "1"]
    result, lines = _cli(*args, "--init", tmp_path / "init.safetensors", "--holdout", "beta")
    _one_error(result, lines, *words)
    assert _tree(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["data", "init.safetensors", "existing.safetensors"]
    )


@pytest.mark.parametrize(
    ("output", "words"),
    [
        ("data/g.json", ["inside the input folder"]),
        ("g.txt", [".json"]),
        ("existing.json", ["exists", "--overwrite"]),
        ("taken.json", ["taken.history.csv", "exists"]),
    ],
)
def test_search_refuses_outputs_that_would_lose_data(tmp_path: Path, output: str, words: list[str]) -> None:
    data = _clips(tmp_path / "data")
    (tmp_path / "existing.json").write_text("{}")
    (tmp_path / "taken.history.csv").write_text("mine")
    before = _tree(tmp_path)
    result, lines = _cli("search", "--data", data, "-o", tmp_path / output, "--epochs", "1", "--warmup", "0")
    _one_error(result, lines, *words)
    assert _tree(tmp_path) == before


def _paired_set(root: Path, frames: int = 3) -> Path:
    for i in range(frames):
        clean = moving_texture(i, 32, 40)
        rainy = np.clip(clean.astype(int) + 40, 0, 255).astype(np.uint8)
        for kind, rgb in (("rain", rainy), ("gt", clean)):
            (root / "v1" / kind).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "v1" / kind / f"{i + 1}.png"), rgb[..., ::-1])
    return root


@pytest.mark.parametrize(
    ("option", "target", "words"),
    [
        ("--json", "set/v1/gt/1.png", ["inside the input folder", "--json"]),
        ("--csv", "set/v1/rain/2.png", ["inside the input folder", "--csv"]),
        ("--json", "set/scores.json", ["inside the input folder"]),
        ("--save-frames", "set/frames", ["inside the input folder"]),
        ("--save-frames", ".", ["holds the input"]),
        ("--json", "existing.json", ["exists", "--overwrite"]),
        ("--save-frames", "mine", ["exists", "--overwrite"]),
    ],
)
def test_benchmark_refuses_outputs_that_would_lose_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str, target: str, words: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    bench = _paired_set(tmp_path / "set")
    (tmp_path / "existing.json").write_text("{}")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "photo.png").write_bytes(b"mine")
    before = _tree(tmp_path)
    result, lines = _cli("benchmark", bench, "-m", "input", option, target)
    _one_error(result, lines, *words)
    assert _tree(tmp_path) == before


def test_benchmark_outputs_are_replaced_only_with_overwrite(tmp_path: Path) -> None:
    bench = _paired_set(tmp_path / "set")
    args = ["benchmark", bench, "-m", "input", "--json", tmp_path / "r.json", "--save-frames", tmp_path / "f"]
    assert _cli(*args)[0].exit_code == 0
    first = (tmp_path / "r.json").read_text()
    result, lines = _cli(*args)
    assert result.exit_code == 2 and "exists" in result.output
    result, _ = _cli(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.json").read_text().startswith("{") and first.startswith("{")
    assert len(list((tmp_path / "f" / "input" / "v1").glob("*.png"))) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_train_and_search_never_start_over_an_earlier_checkpoint(tmp_path: Path) -> None:
    data = _clips(tmp_path / "data")
    for command, checkpoint, out in (
        ("train", "checkpoint.pt", "w.safetensors"),
        ("search", "search.pt", "g.json"),
    ):
        run = tmp_path / Path(out).with_suffix(".run").name
        run.mkdir()
        (run / checkpoint).write_bytes(b"hours of work")
        result, lines = _cli(command, "--data", data, "-o", tmp_path / out, "--size", "tiny")
        _one_error(result, lines, "--resume", "--overwrite", "earlier")
        assert (run / checkpoint).read_bytes() == b"hours of work"


def test_train_search_and_benchmark_keep_a_result_that_loses_the_race(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run writes the same output while this one works: its file stays, ours is kept beside."""
    import tmics_cli.benchmark as benchmark_module
    import tmics_cli.training.search as search_module
    import tmics_cli.training.train as train_module

    def first_another_run(module, name: str, position: int = 1):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            Path(args[position]).write_text("the other run")
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    data = _clips(tmp_path / "data")
    first_another_run(train_module, "save_model")
    args = ["--data", data, "--size", "tiny", "--holdout", "beta", "--crop", "32", "--workers", "0"]
    result, lines = _cli(
        "train", "-o", tmp_path / "w.safetensors", *args, "--steps", "1", "--fusion-steps", "0"
    )
    assert result.exit_code == 2 and "w.1.safetensors" in lines[-1], result.output
    assert (tmp_path / "w.safetensors").read_text() == "the other run"
    assert (tmp_path / "w.1.safetensors").stat().st_size > 10_000
    first_another_run(search_module, "write_text", position=0)
    search = ["search", *args[:-2], "--epochs", "1", "--warmup", "0", "--groups", "1", "--val-groups", "1"]
    result, lines = _cli(*search, "-o", tmp_path / "g.json", "--batch", "1")
    assert result.exit_code == 2 and "g.1.json" in lines[-1], result.output
    assert (tmp_path / "g.json").read_text() == "the other run"
    assert (tmp_path / "g.1.json").read_text().startswith("{")
    first_another_run(benchmark_module, "write_text", position=0)
    bench = _paired_set(tmp_path / "set")
    result, lines = _cli("benchmark", bench, "-m", "input", "--json", tmp_path / "r.json")
    assert result.exit_code == 2 and "r.1.json" in lines[-1], result.output
    assert (tmp_path / "r.json").read_text() == "the other run" and "psnr" in (
        tmp_path / "r.1.json"
    ).read_text()


# --- signals: a closed terminal or a scheduler's time limit cleans up like Ctrl-C --------------------------
def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "tmics_cli", *map(str, args)]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"exited early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_derain_cleans_up_on_sigterm_and_sighup(tmp_path: Path, tiny_weights: Path, signum: int) -> None:
    src = make_video(tmp_path / "in.mp4", frames=400, w=96, h=64)
    before = _tree(tmp_path)
    args = [
        "derain",
        src,
        "-o",
        tmp_path / "out.mp4",
        "--weights",
        tiny_weights,
        "-q",
        "--segment-frames",
        "1000",
    ]
    proc = _start(args, tmp_path)  # one segment: none is finished when the signal comes, so none is kept
    _wait_for(lambda: any(".tmics-partial" in p.name for p in tmp_path.rglob("*")), proc)
    time.sleep(0.5)  # inside the frame loop
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: interrupted") and signal.Signals(signum).name in lines[-1]
    assert _tree(tmp_path) == before  # no partial file, no output, the input as it was


def test_train_on_sigterm_keeps_its_checkpoint_and_leaves_no_partial_file(tmp_path: Path) -> None:
    data = _clips(tmp_path / "data")
    out = tmp_path / "w.safetensors"
    args = ["train", "--data", data, "-o", out, "--size", "tiny", "--steps", "100000", "--crop", "32"]
    args += ["--batch", "1", "--workers", "0", "--checkpoint-every", "1", "--holdout", "beta"]
    proc = _start(args, tmp_path)
    _wait_for(lambda: (tmp_path / "w.run" / "checkpoint.pt").exists(), proc, seconds=180)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "--resume" in err.strip().splitlines()[-1]
    assert not out.exists() and (tmp_path / "w.run" / "checkpoint.pt").exists()
    assert not [p for p in tmp_path.rglob("*") if "partial" in p.name or p.name.endswith(".tmp")]


def test_train_stopped_before_its_first_checkpoint_leaves_nothing_and_says_so(tmp_path: Path) -> None:
    """It left its run folder (a log alone) and pointed to checkpoints that did not exist."""
    data = _clips(tmp_path / "data")
    args = ["train", "--data", data, "-o", tmp_path / "w.safetensors", "--size", "tiny", "--steps", "100000"]
    args += [
        "--crop",
        "32",
        "--batch",
        "1",
        "--workers",
        "0",
        "--checkpoint-every",
        "100000",
        "--holdout",
        "beta",
    ]
    before = _tree(tmp_path)
    proc = _start(args, tmp_path)
    _wait_for(lambda: (tmp_path / "w.run" / "log.jsonl").exists(), proc, seconds=180)
    time.sleep(1.0)  # training steps, no checkpoint yet
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "before the first checkpoint; nothing was kept" in err.strip().splitlines()[-1], err
    assert _tree(tmp_path) == before


def test_benchmark_on_sigterm_keeps_the_finished_videos(tmp_path: Path, tiny_weights: Path) -> None:
    for video in ("v1", "v2"):
        for i in range(120):
            clean = moving_texture(i, 96, 128)
            for kind, rgb in (
                ("rain", np.clip(clean.astype(int) + 40, 0, 255).astype(np.uint8)),
                ("gt", clean),
            ):
                (tmp_path / "set" / video / kind).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(tmp_path / "set" / video / kind / f"{i + 1}.png"), rgb)
    args = ["benchmark", tmp_path / "set", "-m", "input", "--weights", tiny_weights, "--device", "cpu"]
    args += ["--json", tmp_path / "r.json", "--save-frames", tmp_path / "frames"]
    proc = _start(args, tmp_path)

    def saving() -> bool:
        partial = [p for p in tmp_path.iterdir() if p.name.startswith(".frames.")]
        try:
            return bool(partial) and len(list(partial[0].rglob("*.png"))) > 130
        except FileNotFoundError:  # a video's folder renamed into place while it was walked
            return False

    _wait_for(saving, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM" in err.strip().splitlines()[-1]
    report = (tmp_path / "r.json").read_text()
    assert '"complete": false' in report and '"v1"' in report
    assert (tmp_path / "frames" / MARKER).exists()
    saved = sorted(p.relative_to(tmp_path / "frames") for p in (tmp_path / "frames").rglob("*.png"))
    assert saved == [Path("input", "v1", f"{i:05d}.png") for i in range(1, 121)]  # none of v2's, cut short
    assert not [p for p in tmp_path.rglob(".*") if p.name != MARKER]


# --- found by probing: each a way the rules above could be got round ---------------------------------------
def test_a_marker_naming_paths_outside_its_folder_is_not_trusted(tmp_path: Path, tiny_weights: Path) -> None:
    import json

    src = make_video(tmp_path / "in.mp4", frames=2)
    out = tmp_path / "frames"
    assert _cli("derain", src, "-o", out, "--weights", tiny_weights, "--device", "cpu")[0].exit_code == 0
    (tmp_path / "keep.txt").write_text("mine")
    record = json.loads((out / MARKER).read_text())
    record["files"] += ["../keep.txt", str(tmp_path / "keep.txt")]
    (out / MARKER).write_text(json.dumps(record))
    before = _tree(tmp_path)
    result, lines = _cli("derain", src, "-o", out, "--overwrite", "--weights", tiny_weights)
    _one_error(result, lines, "did not write")
    assert _tree(tmp_path) == before


def test_a_symlinked_folder_output_is_refused(tmp_path: Path, tiny_weights: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=2)
    real = tmp_path / "elsewhere"
    assert _cli("derain", src, "-o", real, "--weights", tiny_weights, "--device", "cpu")[0].exit_code == 0
    (tmp_path / "link").symlink_to(real)
    before = _tree(tmp_path)
    result, lines = _cli("derain", src, "-o", tmp_path / "link", "--overwrite", "--weights", tiny_weights)
    _one_error(result, lines, "symbolic link", "elsewhere")
    assert _tree(tmp_path) == before and (tmp_path / "link").is_symlink()


def test_long_names_and_leftovers_of_killed_runs(tmp_path: Path, tiny_weights: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=2)
    long = tmp_path / ("a" * 240 + ".mp4")  # a legal name; the temporary one must fit too
    assert _cli("derain", src, "-o", long, "--weights", tiny_weights, "--device", "cpu")[0].exit_code == 0
    result, lines = _cli("derain", src, "-o", tmp_path / ("b" * 260 + ".mp4"), "--weights", tiny_weights)
    _one_error(result, lines, "255")
    # a run killed with SIGKILL leaves its temporary file; the next run to that output removes it
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out.mp4"
    from tmics_cli.outputs import _HOST

    stale = tmp_path / f".out.mp4.{_HOST}-{dead.pid}.abc123.tmics-partial.mp4"
    stale.write_bytes(b"half a video")
    alive = tmp_path / f".out.mp4.{_HOST}-{os.getpid()}.def456.tmics-partial.mp4"
    alive.write_bytes(b"a run still going")  # this process is alive: never touched
    result = CliRunner().invoke(app, ["derain", str(src), "-o", str(out), "--weights", str(tiny_weights)])
    assert result.exit_code == 0, result.output
    assert "removed" in result.output and stale.name in result.output
    assert not stale.exists() and alive.exists() and out.exists()


def test_benchmark_never_writes_over_the_weights_it_scores(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    shipped = REPO / "weights" / "tmics-light.safetensors"
    cached = home / "weights" / "tmics-light.safetensors"
    cached.write_bytes(shipped.read_bytes())
    monkeypatch.setenv("TMICS_HOME", str(home))
    bench = _paired_set(tmp_path / "set")
    result, lines = _cli("benchmark", bench, "-m", "light", "--json", cached, "--overwrite")
    _one_error(result, lines, "is the input")
    assert cached.read_bytes() == shipped.read_bytes()


def test_benchmark_json_to_standard_output(tmp_path: Path, monkeypatch) -> None:
    import json

    monkeypatch.chdir(tmp_path)
    bench = _paired_set(tmp_path / "set")
    result = subprocess.run(
        [sys.executable, "-m", "tmics_cli", "benchmark", str(bench), "-m", "input", "--json", "-"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["methods"]["input"]["videos"] == 1  # stdout holds the JSON alone
    assert "Y-PSNR" in result.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_saved_frames_of_two_videos_never_share_a_folder() -> None:
    from tmics_cli.benchmark import _safe

    assert _safe("a b") != _safe("a_b") and _safe("v1") == "v1" and "/" not in _safe("../x")


def test_garbage_checkpoints_are_one_line(tmp_path: Path) -> None:
    data = _clips(tmp_path / "data")
    cases = (("train", "w.safetensors", "checkpoint.pt"), ("search", "g.json", "search.pt"))
    small = ("--size", "tiny", "--crop", "32", "--resume")
    for command, out, name in cases:
        run = tmp_path / Path(out).with_suffix(".run").name
        run.mkdir(exist_ok=True)
        for content in ([1, 2, 3], {"config": {}}):
            torch.save(content, run / name)
            result, lines = _cli(command, "--data", data, "-o", tmp_path / out, *small)
            _one_error(result, lines, "not a tmics checkpoint")
        (run / name).write_bytes(b"garbage")
        result, lines = _cli(command, "--data", data, "-o", tmp_path / out, *small)
        _one_error(result, lines, "cannot read checkpoint")


def test_frames_output_of_a_video_with_audio_says_what_it_drops(tmp_path: Path, tiny_weights: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=3, audio=True)
    result = CliRunner().invoke(
        app, ["derain", str(src), "-o", str(tmp_path / "frames"), "--weights", str(tiny_weights), "-q"]
    )
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "1 audio stream" in warning[0] and "video file" in warning[0]


def test_a_derain_refused_for_disk_space_leaves_no_job_folder(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tmics_cli.derain as derain_module

    src = make_video(tmp_path / "in.mp4", frames=3)
    monkeypatch.setattr(derain_module, "_free_bytes", lambda folder: 1000)
    with pytest.raises(Exception, match="not enough disk space"):
        derain_video(src, tmp_path / "out.mp4", weights=tiny_weights, device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]  # the job folder went too


def test_a_full_disk_is_said_as_such_for_saved_frames_and_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import shutil

    from tmics_cli import benchmark
    from tmics_cli.outputs import write_failed

    def full(path: Path, rgb: np.ndarray) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("tmics_cli.video.images.write_png", full)  # cv2.imwrite said only False: frames lost
    with pytest.raises(ValueError, match="disk full while writing the frame .*00001.png"):
        benchmark._save(tmp_path / "v" / "00001.png", np.zeros((4, 4, 3), np.uint8))
    # torch.save's own error says nothing of the disk: judged by the space left
    failure = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 128 vs 0")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 0))
    said = str(write_failed(tmp_path / "c.pt", failure, "the checkpoint"))
    assert said.startswith("disk full while writing the checkpoint")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 40, 0, 1 << 40))
    assert "unexpected pos" in str(write_failed(tmp_path / "c.pt", failure, "the checkpoint"))


def test_a_run_folder_is_held_by_one_run_at_a_time(tmp_path: Path) -> None:
    """Two `tmics train` (or search) runs on one output shared its run folder: both wrote the log and
    the checkpoint. The second is refused; a lock whose process died is taken over."""
    from tmics_cli.outputs import RUN_LOCK, OutputError, machine_id, run_lock

    run = tmp_path / "w.run"
    with run_lock(run):
        assert (run / RUN_LOCK).read_text().split()[1] == str(os.getpid())
        with pytest.raises(OutputError, match="in use by another run"), run_lock(run):
            pass  # pragma: no cover - refused
    assert not run.exists()  # released, and the folder it made is gone with it (nothing was written)
    nested = tmp_path / "a" / "b.run"
    with pytest.raises(RuntimeError), run_lock(nested):
        raise RuntimeError("refused before any work")
    assert sorted(os.listdir(tmp_path)) == []
    with run_lock(run):
        (run / "log.jsonl").write_text("{}\n")
    assert sorted(os.listdir(run)) == ["log.jsonl"]  # what the run wrote stays, and its folder
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    import socket

    (run / RUN_LOCK).write_text(f"{socket.gethostname()} {dead.stdout.strip()} {machine_id()}\n")
    with run_lock(run):  # its process is gone: taken over
        pass
    (run / RUN_LOCK).write_text(f"elsewhere 123 {machine_id()}x\n")
    with pytest.raises(
        OutputError, match=f"in use by a run on elsewhere; if that run has ended, remove {run}"
    ):
        with run_lock(run):
            pass  # pragma: no cover - refused


def test_an_output_whose_folder_refuses_files_is_named_not_its_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`benchmark --json /proc/r.json` ended naming '.r.json.<host-pid>.<random>.tmics-partial.json'."""
    import tempfile

    from tmics_cli.outputs import OutputError, write_text

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(OutputError, match=f"cannot write {tmp_path / 'r.json'}: Permission denied") as caught:
        write_text(tmp_path / "r.json", "{}")
    assert "partial" not in str(caught.value)
