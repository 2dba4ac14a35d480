"""Crash and resource guards: every bad size, value or environment gives one `error:` line and exit 2,
before any work where it can be known, and leaves no output behind. All through the command line."""

import errno
import json
import re
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.hub_server import FakeHub
from tests.videos import make_video
from tmics_cli import guards
from tmics_cli import weights as registry
from tmics_cli.cli import app
from tmics_cli.model import build_model


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "small": make_video(folder / "small.mp4", frames=6, w=64, h=48),
        "big": make_video(folder / "big.mp4", frames=6, w=320, h=240),
        "tiles": make_video(folder / "tiles.mp4", frames=5, w=96, h=72),
    }


def _invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


# Sizes are chosen so that a regression fails fast and small: the memory tests pretend the machine has
# little RAM (a guard that stops working then runs a small job and exits 0, instead of taking the machine's
# memory), and crops are only somewhat larger than the clips.


def one_error(result, *words: str) -> str:
    """The run failed with exit 2 and printed exactly one line, `error: ...`, holding every word."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: "), repr(result.output)
    line = result.output.strip()
    for word in words:
        assert word in line, (word, line)
    return line


def nothing_left(folder: Path, *keep: Path) -> None:
    left = sorted(p.name for p in folder.iterdir() if p not in keep)
    assert not left, left


# --- train and search: sizes against the data and the memory ------------------------------------------------


def _train(out: Path, data: Path, *args: str | Path):
    base = ["train", "-o", out, "--data", data, "--size", "tiny", "--steps", "1", "--fusion-steps", "0"]
    return _invoke(*base, "--workers", "0", "--device", "cpu", *args)


def test_train_crop_larger_than_the_smallest_clip_names_it(tmp_path: Path, clips: dict[str, Path]) -> None:
    # a single video file as --data (it failed as "no data set folder" before)
    line = one_error(_train(tmp_path / "w.safetensors", clips["small"], "--crop", "96"), "--crop 96")
    assert "clip small (64x48)" in line and "--crop 48 or less" in line
    folder = tmp_path / "set"
    folder.mkdir()
    make_video(folder / "a.mp4", frames=4, w=96, h=80)
    make_video(folder / "b.mp4", frames=4, w=64, h=48)
    line = one_error(_train(tmp_path / "w.safetensors", folder, "--crop", "64"))
    assert "clip b (64x48)" in line and "--crop 48 or less" in line
    nothing_left(tmp_path, folder)


def test_train_batch_and_width_beyond_memory_say_what_fits(
    tmp_path: Path, clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "w.safetensors"
    monkeypatch.setattr(guards, "available_ram", lambda: 50 * 10**6)  # a step of 16 64-pixel crops: 220 MB
    line = one_error(_train(out, clips["big"], "--crop", "64", "--batch", "16"), "needs about")
    assert "--crop 64 --batch 16" in line and "50.0 MB of RAM is available" in line
    assert "at --crop 64 up to --batch 3 fits" in line
    line = one_error(_train(out, clips["big"], "--crop", "32", "--width", "128"), "--width 128 makes")
    assert "10,984,982 parameters" in line and "smaller --width" in line
    line = one_error(_train(out, clips["big"], "--crop", "160", "--batch", "1"), "even --batch 1 does not")
    assert re.search(r"fit at --crop 160; --crop (96|112|128) --batch 1 would", line), line
    nothing_left(tmp_path)


def test_memory_estimate_follows_crop_batch_and_width(monkeypatch: pytest.MonkeyPatch) -> None:
    tiny, wide = build_model("light", "tiny"), build_model("light", "tiny", width=16)
    cpu = torch.device("cpu")
    monkeypatch.setattr(guards, "available_ram", lambda: 10**9)  # a machine with 1 GB free
    small = guards.check_training_memory(tiny, 64, 2, cpu)
    assert small is not None and 10**6 < small < 10**8
    assert guards.check_training_memory(tiny, 128, 2, cpu) == pytest.approx(4 * small, rel=0.05)
    assert guards.check_training_memory(tiny, 64, 8, cpu) == pytest.approx(4 * small, rel=0.05)
    assert guards.check_training_memory(wide, 64, 2, cpu) > 1.3 * small
    with pytest.raises(guards.SizeError, match="up to --batch"):
        guards.check_training_memory(tiny, 128, 64, cpu)


def test_the_probe_is_measured_once_per_network_and_kept_in_the_users_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMICS_HOME", str(tmp_path / "home"))
    tiny, wide = build_model("light", "tiny"), build_model("light", "tiny", width=16)
    measured = guards.bytes_per_pixel(tiny, train=False, cached=False)
    assert measured is not None and measured > 0
    assert guards.bytes_per_pixel(tiny, train=False) == measured  # measured and kept
    cache = tmp_path / "home" / guards.ESTIMATES
    assert list(json.loads(cache.read_text()).values()) == [measured]
    probes = []
    monkeypatch.setattr(guards, "peak_bytes", lambda fn: probes.append(fn) or 1.0)
    assert guards.bytes_per_pixel(tiny, train=False) == measured and not probes  # read back, no probe
    guards.bytes_per_pixel(tiny, train=True)  # another mode, another network: measured anew
    guards.bytes_per_pixel(wide, train=False)
    assert len(probes) == 2 and len(json.loads(cache.read_text())) == 3
    assert (
        guards.estimate_key(tiny, False) != guards.estimate_key(tiny, True) != guards.estimate_key(wide, True)
    )
    cache.write_text("{not json")  # a damaged cache is only a slower start
    assert guards.bytes_per_pixel(tiny, train=False) == 1.0 / guards.PROBE**2
    assert json.loads(cache.read_text()) == {guards.estimate_key(tiny, False): 1.0 / guards.PROBE**2}
    monkeypatch.setenv("TMICS_HOME", str(cache))  # a cache that cannot be written: measured each time
    assert guards.bytes_per_pixel(wide, train=False) == 1.0 / guards.PROBE**2


def test_failed_train_before_any_checkpoint_leaves_no_run_folder(
    tmp_path: Path, clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("stage failed")

    monkeypatch.setattr("tmics_cli.training.train.Trainer.run_stage", broken)
    out = tmp_path / "w.safetensors"
    one_error(_train(out, clips["small"], "--crop", "32", "--batch", "1"), "stage failed")
    nothing_left(tmp_path)  # no w.run/ with only a log in it
    kept = tmp_path / "mine"  # a run folder that was there before is left alone
    kept.mkdir()
    one_error(_train(out, clips["small"], "--crop", "32", "--run-dir", kept), "stage failed")
    assert kept.is_dir()
    nothing_left(tmp_path, kept)


def test_train_accepts_a_single_video_file(tmp_path: Path, clips: dict[str, Path]) -> None:
    result = _train(tmp_path / "w.safetensors", clips["small"], "--crop", "32", "--batch", "1")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "w.safetensors").is_file()


def test_train_refuses_paired_frames_smaller_than_the_crop_or_of_two_sizes(tmp_path: Path) -> None:
    for kind, (h, w) in (("rain", (48, 64)), ("gt", (48, 64))):
        folder = tmp_path / "paired" / "v1" / kind
        folder.mkdir(parents=True)
        for i in range(5):
            cv2.imwrite(str(folder / f"{i}.png"), np.full((h, w, 3), 100, np.uint8))
    out = tmp_path / "w.safetensors"
    line = one_error(_train(out, tmp_path / "paired", "--crop", "64"), "paired video v1 (64x48)")
    assert "--crop 48 or less" in line
    cv2.imwrite(str(tmp_path / "paired" / "v1" / "gt" / "0.png"), np.full((40, 64, 3), 100, np.uint8))
    line = one_error(_train(out, tmp_path / "paired", "--crop", "32"), "paired video v1 frame 1")
    assert "64x48" in line and "64x40" in line
    nothing_left(tmp_path, tmp_path / "paired")


@pytest.mark.parametrize(
    ("command", "args", "word"),
    [
        ("train", ["--batch", "0"], "--batch"),
        ("train", ["--steps", "0"], "--steps"),
        ("train", ["--crop", "8"], "--crop"),
        ("search", ["--batch", "0"], "--batch"),
        ("search", ["--crop", "8"], "--crop"),
        ("search", ["--groups", "0"], "--groups"),
    ],
)
def test_out_of_range_values_are_one_line(
    tmp_path: Path, clips: dict[str, Path], command: str, args: list[str], word: str
) -> None:
    out = tmp_path / ("w.safetensors" if command == "train" else "g.json")
    one_error(_invoke(command, "-o", out, "--data", clips["small"], *args), "error: Invalid value for", word)
    nothing_left(tmp_path)


def _search(out: Path, data: Path, *args: str):
    base = ["search", "-o", out, "--data", data, "--epochs", "1", "--warmup", "0", "--device", "cpu"]
    return _invoke(*base, *args)


def test_search_refuses_a_crop_or_pool_that_cannot_fit(
    tmp_path: Path, clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "found.genotype.json"
    one_error(_search(out, clips["small"], "--crop", "64"), "--crop 64", "clip small (64x48)")
    assert not (tmp_path / "found.genotype.run").exists()
    pool = ["--crop", "32", "--batch", "4", "--groups", "1000", "--val-groups", "1"]
    monkeypatch.setattr(guards, "available_ram", lambda: 120 * 10**6)  # a step 97 MB, 1000 windows 106 MB
    line = one_error(_search(out, clips["big"], *pool), "1001 pooled windows")
    assert "at --crop 32 up to" in line and "windows in --groups + --val-groups fit" in line
    nothing_left(tmp_path)


# --- derain: sizes, times, encoder options, disk full -----------------------------------------------------


def _derain(src: Path, out: Path, weights: Path, *args: str | Path):
    return _invoke("derain", src, "-o", out, "--weights", weights, "--device", "cpu", *args)


def test_derain_batch_too_large_for_memory_is_refused_with_the_estimate(
    tmp_path: Path, clips: dict[str, Path], tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guards, "available_ram", lambda: 200 * 10**6)  # about 4 windows of 320x240
    out = tmp_path / "out.mp4"
    line = one_error(_derain(clips["big"], out, tiny_weights, "--batch", "64"), "--batch 64 at 320x240")
    assert "needs about" in line and "200.0 MB of RAM is available: use --batch" in line and "or less" in line
    nothing_left(tmp_path)


def test_derain_whole_frames_too_large_suggest_a_tile(
    tmp_path: Path, clips: dict[str, Path], tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guards, "available_ram", lambda: 30 * 10**6)  # less than one 320x240 window takes
    line = one_error(_derain(clips["big"], tmp_path / "out.mp4", tiny_weights), "--batch 1 at 320x240")
    assert "even one window does not fit; --batch 1 --tile" in line
    monkeypatch.setattr(guards, "available_ram", lambda: 10**6)
    one_error(_derain(clips["big"], tmp_path / "out.mp4", tiny_weights), "64-pixel tiles")
    nothing_left(tmp_path)


def test_tile_64_works_with_the_default_overlap_and_large_tiles_are_whole_frames(
    tmp_path: Path, clips: dict[str, Path], tiny_weights: Path
) -> None:
    for tile in ("64", "4096"):
        out = tmp_path / f"tile{tile}.mp4"
        result = _derain(clips["tiles"], out, tiny_weights, "--tile", tile, "--quiet")
        assert result.exit_code == 0, result.output
        assert out.is_file()
    one_error(
        _derain(clips["tiles"], tmp_path / "x.mp4", tiny_weights, "--tile", "64", "--tile-overlap", "32"),
        "--tile-overlap 32 must be less than half of --tile 64 (at most 31)",
    )
    one_error(_derain(clips["tiles"], tmp_path / "x.mp4", tiny_weights, "--tile", "32"), "at least 64")
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--start", "nan"], ["--start nan is not a time"]),
        (["--start", "inf"], ["--start inf is not a time"]),
        (["--end", "nan"], ["--end nan is not a time"]),
        (["--fps", "nan"], ["--fps must be a positive number", "nan"]),
        (["--fps", "inf"], ["--fps must be a positive number", "inf"]),
        (["--fps", "0"], ["--fps must be a positive number", "0"]),
        (["--fps", "-2"], ["--fps must be a positive number", "-2"]),
        (["--preset", "bogus"], ["unknown --preset 'bogus' for libx264", "veryslow"]),
        (["--pix-fmt", "bogus"], ["unknown --pix-fmt 'bogus'", "yuv420p"]),
        (["--pix-fmt", "rgb24"], ["libx264 cannot encode rgb24", "yuv444p"]),
        (["--crf", "60"], ["--crf 60 is out of libx264's range", "0 to 51"]),
        (["--batch", "0"], ["--batch"]),
        (["--tile", "-1"], ["--tile"]),
    ],
)
def test_bad_values_are_one_line_in_the_users_terms_before_any_work(
    tmp_path: Path,
    clips: dict[str, Path],
    tiny_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    words: list[str],
) -> None:
    def no_work(*a, **k):
        raise AssertionError("the weights were loaded: the value was not checked first")

    if args[0] in ("--preset", "--pix-fmt", "--crf", "--fps", "--start", "--end"):
        monkeypatch.setattr("tmics_cli.derain.load_weights", no_work)
    one_error(_derain(clips["small"], tmp_path / "out.mp4", tiny_weights, *args), *words)
    nothing_left(tmp_path)


def test_odd_frames_in_a_subsampled_pix_fmt_are_refused_before_any_work(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """x264 refuses 65x48 in yuv420p only at the first frame ("Generic error in an external library")."""

    def no_work(*a, **k):
        raise AssertionError("the weights were loaded: the size was not checked first")

    src = make_video(tmp_path / "odd.mkv", frames=3, w=65, h=48, pix_fmt="yuv444p")
    monkeypatch.setattr("tmics_cli.derain.load_weights", no_work)
    line = one_error(_derain(src, tmp_path / "out.mp4", tiny_weights, "--pix-fmt", "yuv420p"), "65x48")
    assert "yuv420p" in line and "--pix-fmt yuv444p" in line, line
    nothing_left(tmp_path, src)
    monkeypatch.undo()
    ok = _derain(src, tmp_path / "out.webm", tiny_weights, "--pix-fmt", "yuv420p", "--quiet")  # VP9 takes it
    assert ok.exit_code == 0, ok.output


def test_disk_full_while_writing_a_video_says_so(
    tmp_path: Path, clips: dict[str, Path], tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import av.container

    def full(self, packet):
        raise av.error.OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(av.container.OutputContainer, "mux", full)
    result = _derain(clips["small"], tmp_path / "out.mp4", tiny_weights, "--quiet")  # no bar before it
    line = one_error(result, "disk full while writing")
    assert "out.mp4 (frame " in line and "free some space" in line
    nothing_left(tmp_path)


def test_disk_full_while_writing_frames_says_so(
    tmp_path: Path, clips: dict[str, Path], tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def full(path: Path, rgb: np.ndarray) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        path.write_bytes(b"png")

    monkeypatch.setattr("tmics_cli.video.writer.write_png", full)
    result = _derain(clips["small"], tmp_path / "frames", tiny_weights, "--quiet")
    line = one_error(result, "disk full while writing")
    assert "frames (frame 3)" in line
    nothing_left(tmp_path)


# --- benchmark: paired frames of two sizes ---------------------------------------------------------------


def _no_work(*args, **kwargs):
    raise AssertionError("the work started before the input was checked")


def _paired(root: Path, gt_sizes: list[tuple[int, int]]) -> Path:
    for kind in ("rain", "gt"):
        folder = root / "v1" / kind
        folder.mkdir(parents=True)
        for i, (h, w) in enumerate(gt_sizes):
            size = (48, 64) if kind == "rain" else (h, w)
            cv2.imwrite(str(folder / f"{i}.png"), np.full((*size, 3), 90 + i, np.uint8))
    return root


def test_benchmark_rain_and_ground_truth_of_two_sizes_name_the_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _paired(tmp_path / "first", [(40, 64)] * 5)
    report = tmp_path / "r.json"
    with monkeypatch.context() as patch:  # the first frames are checked before any scoring starts
        patch.setattr("tmics_cli.benchmark.run_benchmark", _no_work)
        line = one_error(_invoke("benchmark", first, "-m", "input", "--json", report), "video v1 frame 1")
    assert "rainy frame is 64x48 but its ground truth is 64x40" in line
    later = _paired(tmp_path / "later", [(48, 64)] * 3 + [(40, 64)] * 2)
    line = one_error(_invoke("benchmark", later, "-m", "input", "--json", report), "video v1 frame 4")
    assert "64x48" in line and "64x40" in line
    assert not report.exists()


# --- fetch-weights: the cache and the proxy -------------------------------------------------------------


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_ENDPOINT", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    return monkeypatch


def _refuse(*args, **kwargs):
    raise PermissionError(errno.EACCES, "Permission denied")


def test_fetch_weights_into_a_cache_that_is_a_file_or_read_only(tmp_path: Path, hub_env) -> None:
    with FakeHub({}, registry.HUB_REPO) as hub:
        hub_env.setenv("HF_ENDPOINT", hub.url)
        home = tmp_path / "home-file"
        home.write_text("not a folder")
        hub_env.setenv("TMICS_HOME", str(home))
        one_error(_invoke("fetch-weights", "light", "--force"), f"{home} is a file", "TMICS_HOME")
        home = tmp_path / "home"
        (home / "weights").parent.mkdir()
        (home / "weights").write_text("not a folder")
        hub_env.setenv("TMICS_HOME", str(home))
        one_error(_invoke("fetch-weights", "light", "--force"), "weights is a file, not a folder")
        cache = tmp_path / "ro" / "weights"
        cache.mkdir(parents=True)
        cache.chmod(0o555)
        hub_env.setenv("TMICS_HOME", str(tmp_path / "ro"))
        if registry.os.access(cache, registry.os.W_OK):  # root writes anywhere: make the write fail
            hub_env.setattr(registry.tempfile, "mkstemp", _refuse)
        try:
            one_error(_invoke("fetch-weights", "light", "--force"), "is not writable (Permission denied)")
        finally:
            cache.chmod(0o755)
        assert not hub.requests  # refused before anything was asked of the server
    assert list(cache.iterdir()) == []


def test_fetch_weights_through_an_unreachable_proxy_fails_fast(tmp_path: Path, hub_env) -> None:
    hub_env.setenv("TMICS_HOME", str(tmp_path / "home"))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hub_env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    start = time.perf_counter()
    line = one_error(_invoke("fetch-weights", "light", "--force"), f"the proxy http://127.0.0.1:{port}")
    assert "(HTTPS_PROXY) cannot be reached" in line and time.perf_counter() - start < 10
    assert not list((tmp_path / "home" / "weights").glob("*.safetensors"))


def test_errors_are_said_in_one_line_that_names_a_bare_word_and_an_opencv_error_once() -> None:
    import av
    import cv2

    from tmics_cli.report import error_line, unexpected_line

    with pytest.raises(Exception) as codec:
        av.codec.Codec("libnothing", "w")
    assert error_line(codec.value) == "UnknownCodecError: libnothing"  # was "error: libnothing"
    with pytest.raises(cv2.error) as opencv:
        cv2.resize(np.zeros((0, 0), np.uint8), (1, 1))
    line = unexpected_line(opencv.value)
    assert line.startswith("OpenCV") and "error: error" not in f"error: {line}" and "\n" not in line
    assert error_line(KeyError("no such clip")) == "no such clip"  # unquoted
    assert unexpected_line(RuntimeError("CUDA error: out of memory\nCUDA kernel errors ...")) == (
        "RuntimeError: CUDA error: out of memory"
    )
    assert error_line(ValueError("")) == "ValueError"


def test_a_single_input_that_fails_still_gets_its_json_summary_and_log(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """Scripts read --json to learn what happened: with one input that failed, none was written."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(range(256)) * 20)
    report, log = tmp_path / "s.json", tmp_path / "log.jsonl"
    line = one_error(
        _derain(bad, tmp_path / "out.mp4", tiny_weights, "--json", report, "--log", log), "bad.mp4"
    )
    summary = json.loads(report.read_text())
    assert summary["ok"] is False and summary["error"] == line.removeprefix("error: ")
    assert [(i["input"], i["result"]) for i in summary["inputs"]] == [(str(bad), "failed")]
    events = [json.loads(x) for x in log.read_text().splitlines()]
    assert [e["event"] for e in events][-2:] == ["input_finished", "finished"] and events[-1]["ok"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4", "log.jsonl", "s.json"]


def test_a_batch_leaves_no_empty_output_folder_for_inputs_that_failed(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """-o DIR mirrors the inputs' tree: the folders of inputs that failed were left behind, empty."""
    (tmp_path / "in" / "bad").mkdir(parents=True)
    (tmp_path / "in" / "bad" / "g.mp4").write_bytes(bytes(range(256)) * 20)
    (tmp_path / "in" / "good").mkdir()
    make_video(tmp_path / "in" / "good" / "ok.mp4", frames=3)
    result = _invoke("derain", tmp_path / "in", "-r", "-o", tmp_path / "out", "--weights", tiny_weights, "-q")
    assert result.exit_code == 2, result.output
    assert f"error: {tmp_path / 'in' / 'bad' / 'g.mp4'} is not a video" in result.output  # named once
    assert sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "out").rglob("*")) == [
        "out/good",
        "out/good/ok.mp4",
    ]
    alone = _invoke("derain", tmp_path / "in" / "bad", "-o", tmp_path / "out2", "--weights", tiny_weights)
    assert alone.exit_code == 2 and not (tmp_path / "out2").exists(), alone.output
