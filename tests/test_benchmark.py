import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.videos import moving_texture
from tmics_cli.benchmark import (
    BENCHMARK_FORMAT,
    CARD_SETS,
    SYNTHETIC_SETS,
    BenchmarkResult,
    baseline,
    card_set,
    load_set,
    protocol_frames,
    run_benchmark,
    synthetic_set,
)
from tmics_cli.cli import app
from tmics_cli.data.datasets import DataError, RainyClipDataset, load_clips
from tmics_cli.data.rain import PRESET_VERSIONS
from tmics_cli.metrics import psnr_y
from tmics_cli.model import build_model, save_model


def _pair(index: int, h: int = 40, w: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rainy, clean) uint8 RGB frames: clean texture plus bright vertical streaks at random places."""
    clean = moving_texture(index, h, w)
    rng = np.random.default_rng([seed, index])
    rainy = clean.astype(int)
    for x in rng.integers(0, w, 6):
        y = int(rng.integers(0, h - 10))
        rainy[y : y + 10, x] += 90
    return np.clip(rainy, 0, 255).astype(np.uint8), clean


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rgb[..., ::-1])


def make_j4r(root: Path, videos: int = 2, frames: int = 7) -> Path:
    for v in range(videos):
        for i in range(frames):
            rainy, clean = _pair(i, seed=v)
            _write(root / f"video{v + 1}" / f"rfc-{i + 1}.png", rainy)
            _write(root / f"video{v + 1}" / f"gtc-{i + 1}.png", clean)
    return root


def make_nturain(root: Path, frames: int = 6) -> Path:
    for i in range(frames):
        rainy, clean = _pair(i)
        _write(root / "a1_Rain" / f"{i + 1:05d}.png", rainy)
        _write(root / "a1_GT" / f"{i + 1:05d}.png", clean)
    return root


def make_generic(root: Path, frames: int = 5) -> Path:
    for i in range(frames):
        rainy, clean = _pair(i)
        _write(root / "rain" / f"{i + 1}.png", rainy)
        _write(root / "gt" / f"{i + 1}.png", clean)
    return root


def test_protocol_frames() -> None:
    assert protocol_frames("j4r", 31) == list(range(2, 29))  # frames 3..29 of 31 (1-based)
    assert len(protocol_frames("j4r", 31)) == 27
    assert protocol_frames("all", 9) == list(range(9))


def test_layouts_are_detected_and_protocols_chosen(tmp_path: Path) -> None:
    j4r = load_set(str(make_j4r(tmp_path / "j4r")))
    assert j4r.protocol == "j4r" and [v.name for v in j4r.videos] == ["video1", "video2"]
    assert j4r.videos[0].scored == [2, 3, 4]
    ntu = load_set(str(make_nturain(tmp_path / "ntu")))
    assert ntu.protocol == "all" and ntu.videos[0].count == 6 and ntu.videos[0].scored == list(range(6))
    generic = load_set("LasVR", data=make_generic(tmp_path / "lasvr"))
    assert generic.name == "LasVR" and generic.videos[0].count == 5
    named = load_set("RainSynComplex25", data=tmp_path / "j4r")
    assert named.name == "RainSynComplex25" and named.protocol == "j4r"


def test_missing_or_wrong_sets_name_the_expected_layout(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("TMICS_DATA", raising=False)
    with pytest.raises(DataError, match=r"\$TMICS_DATA.*J4R.*flyywh"):
        load_set("RainSynLight25")
    monkeypatch.setenv("TMICS_DATA", str(tmp_path))
    with pytest.raises(DataError, match=r"no NTURain at .*NTURain_Rain|no NTURain at .*published"):
        load_set("NTURain")
    (tmp_path / "NTURain").mkdir()
    with pytest.raises(DataError, match="does not look like NTURain"):
        load_set("NTURain")
    with pytest.raises(DataError, match="unknown set"):
        load_set("Rain100H")


def test_baselines_and_a_model_scored_as_the_protocol_says(tmp_path: Path) -> None:
    bench = load_set(str(make_j4r(tmp_path / "j4r", videos=2, frames=7)))
    methods = [baseline("input"), baseline("median-unaligned")]
    result = run_benchmark(bench, methods)
    assert result.complete
    expected = []
    for v in range(2):  # the input's score by hand: frames 3..5 of 7, per video, then averaged
        expected.append(np.mean([psnr_y(*_pair(i, seed=v)) for i in range(2, 5)]))
    means = result.means()
    assert means["input"]["psnr"] == pytest.approx(np.mean(expected), abs=1e-9)
    assert means["median-unaligned"]["psnr"] > means["input"]["psnr"]  # streaks are brief: a median helps
    assert result.per_video["input"]["video1"]["frames_scored"] == 3
    assert result.per_video["input"]["video1"]["frames"] == 7


def test_temporal_error_is_zero_for_the_ground_truth(tmp_path: Path) -> None:
    root = tmp_path / "g"
    for i in range(4):
        _, clean = _pair(i)
        _write(root / "rain" / f"{i}.png", clean)
        _write(root / "gt" / f"{i}.png", clean)
    result = run_benchmark(load_set(str(root)), [baseline("input")])
    assert result.means()["input"]["temporal"] == 0.0
    assert result.means()["input"]["psnr"] == float("inf")


def test_interrupted_run_keeps_the_finished_videos(tmp_path: Path) -> None:
    bench = load_set(str(make_j4r(tmp_path / "j4r", videos=3, frames=5)))
    result = BenchmarkResult(bench, ["input"], "cpu")
    calls = []

    def stop_in_second_video() -> None:
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_benchmark(bench, [baseline("input")], on_frame=stop_in_second_video, result=result)
    assert not result.complete and list(result.per_video["input"]) == ["video1"]
    assert result.to_json()["complete"] is False


def test_cli_end_to_end_json_csv_and_frames(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    save_model(build_model("light", "tiny"), weights)
    root = make_nturain(tmp_path / "ntu", frames=5)
    args = ["benchmark", str(root), "-m", "input", "-m", "median", "--weights", str(weights), "--ablate"]
    args += ["--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv")]
    args += ["--save-frames", str(tmp_path / "frames"), "--per-video", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Y-PSNR" in result.output and "tiny DNA only (TMICS_S)" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["format"] == BENCHMARK_FORMAT and report["complete"] is True
    assert report["set"] == "ntu" and report["protocol"] == "all" and report["videos"] == 1
    assert set(report["methods"]) == {"input", "median", "tiny", "tiny DNA only (TMICS_S)"}
    for row in report["methods"].values():
        assert {"psnr", "ssim", "temporal", "fps", "videos", "per_video"} <= set(row)
        assert row["per_video"]["a1"]["frames_scored"] == 5
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0].startswith("method,video,psnr") and len(lines) == 1 + 4 + 4
    assert len(list((tmp_path / "frames" / "median" / "a1").glob("*.png"))) == 5


def test_cli_errors_are_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("TMICS_DATA", raising=False)
    runner = CliRunner()
    for args in (
        ["RainSynLight25"],
        [str(tmp_path / "nope")],
        ["synthetic-light", "-m", "nothing.safetensors"],
    ):
        result = runner.invoke(app, ["benchmark", *args])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, (args, result.output)


def test_builtin_synthetic_set_is_deterministic_and_rainy() -> None:
    a, b = synthetic_set("synthetic-heavy"), synthetic_set("synthetic-heavy")
    assert len(a.videos) == 3 and all(v.count == 20 for v in a.videos)
    first_a, first_b = next(a.videos[1].rain()), next(b.videos[1].rain())
    assert np.array_equal(first_a, first_b)
    assert psnr_y(first_a, a.videos[1].gt(0)) < 30  # visibly rainy


def test_builtin_sets_draw_frozen_preset_versions() -> None:
    assert SYNTHETIC_SETS == {"synthetic-light": "light-v9", "synthetic-heavy": "heavy-v2"}
    assert all(spec.preset in PRESET_VERSIONS for spec in CARD_SETS.values())  # versions, never aliases
    assert {n: s.preset for n, s in CARD_SETS.items()} == {
        "card-light-v1": "light-v3",
        "card-light-hazy-v1": "light-v2",
        "card-heavy-v1": "heavy-v2",
        "card-drizzle-v1": "drizzle-v1",
        "card-dense-drizzle-v1": "dense-drizzle-v1",
        "card-near-v1": "near-v1",
    }
    assert all((s.windows, s.seed, s.clip) == (8, 1234, "walk") for s in CARD_SETS.values())


def _walk(root: Path, count: int = 6) -> Path:
    for i in range(count):
        _write(root / "clean" / "walk" / f"{i + 1:05d}.png", moving_texture(i, 40, 48))
    return root


def test_card_set_renders_the_cards_windows(tmp_path: Path) -> None:
    root = _walk(tmp_path)
    bench = load_set("card-near-v1", root)
    assert len(bench.videos) == 8 and all(v.count == 5 and v.scored == [2] for v in bench.videos)
    # the windows model_card_eval.py drew before the sets moved here: the dataset's, as 8-bit frames
    ds = RainyClipDataset(
        load_clips([root / "clean" / "walk"]),
        "card-near",
        crop=None,
        seed=1234,
        clean_probability=0.0,
        max_stride=1,
    )
    for i, video in enumerate(bench.videos):
        sample = ds[i]
        frames = (sample["frames"].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        target = (sample["target"].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
        assert np.array_equal(np.stack(list(video.rain())), frames)
        assert np.array_equal(video.gt(2), target)
    # the clip folder itself, or the folder holding it, does as well as the shared data root
    again = card_set("card-near-v1", root / "clean" / "walk")
    assert np.array_equal(next(again.videos[3].rain()), next(bench.videos[3].rain()))


def test_card_set_needs_its_clip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TMICS_DATA", raising=False)
    with pytest.raises(DataError, match="walk"):
        load_set("card-light-v1")
    with pytest.raises(DataError, match="no clean clip"):
        load_set("card-light-v1", tmp_path)


def test_optional_fsim_and_vif_columns(tmp_path: Path) -> None:
    root = tmp_path / "big"
    for i in range(3):
        rainy, clean = _pair(i, h=72, w=80)
        _write(root / "rain" / f"{i}.png", rainy)
        _write(root / "gt" / f"{i}.png", clean)
    args = ["benchmark", str(root), "-m", "input", "-m", "median-unaligned", "--fsim", "--vif"]
    result = CliRunner().invoke(
        app, [*args, "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv")]
    )
    assert result.exit_code == 0, result.output
    assert "FSIM" in result.output and "VIF" in result.output
    methods = json.loads((tmp_path / "r.json").read_text())["methods"]
    assert 0 < methods["input"]["fsim"] < 1 and 0 < methods["input"]["vif"] < 1
    assert (tmp_path / "r.csv").read_text().splitlines()[0].endswith("fsim,vif")


def test_weights_named_like_a_baseline_or_alike_keep_their_paths_as_labels(tmp_path: Path) -> None:
    """w1/input.safetensors was reported as "input" (the rainy input's row), and a/m and b/m as one."""
    torch.manual_seed(0)
    for name in ("input", "a/m", "b/m"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        save_model(build_model("light", "tiny"), tmp_path / f"{name}.safetensors")
    root = make_nturain(tmp_path / "ntu", frames=5)
    given = [str(tmp_path / f"{n}.safetensors") for n in ("input", "a/m", "b/m")]
    args = ["benchmark", str(root), "-m", "input", *(x for g in given for x in ("-m", g))]
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert set(json.loads((tmp_path / "r.json").read_text())["methods"]) == {"input", *given}


def test_an_interrupted_table_says_so() -> None:
    """Rich read " [interrupted]" in the title as a style tag and dropped it: partial means looked whole."""
    from rich.console import Console

    from tmics_cli.cli import _print_benchmark

    bench = SimpleNamespace(name="set [v2]", videos=[], protocol="all")
    row = {"psnr": 30.0, "ssim": 0.9, "temporal": 1.0, "fps": 2.0, "videos": 1}
    result = SimpleNamespace(set=bench, complete=False, means=lambda: {"[x]": row}, per_video={})
    console = Console(record=True, width=200)
    _print_benchmark(console, result, per_video=False)
    text = console.export_text()
    assert "set [v2]: 0 videos" in text and "[interrupted]" in text and "[x]" in text
