"""The CLI's conventions: choices shown as [a|b|c], options in help panels, an Examples block per command,
shell completion, paired --x/--no-x flags, and a bad choice as one `error:` line with exit 2."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from typer.testing import CliRunner

from tmics_cli import cli
from tmics_cli.cli import app

COMMANDS = ("derain", "train", "search", "benchmark", "fetch-weights")


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(
    ("command", "option", "choices"),
    [
        ("derain", "--rain", "[light|heavy|auto]"),
        ("derain", "--precision", "[auto|fp32|fp16|bf16]"),
        ("benchmark", "--precision", "[auto|fp32|fp16|bf16]"),
        ("train", "--preset", "[light|heavy]"),
        ("train", "--size", "[tiny|small|small-full|medium|paper]"),
        ("train", "--flow", "[dis|pyramid|device]"),
        ("derain", "--flow", "[auto|dis|device]"),
        ("derain", "--colour", "[auto|host|device]"),
        ("benchmark", "--flow", "[auto|dis|device]"),
        ("search", "--size", "[tiny|small|small-full|medium|paper]"),
        ("search", "--weight-optimizer", "[sgd|adam]"),
        ("search", "--arch-optimizer", "[sgd|adam]"),
    ],
)
def test_choices_are_shown_as_choices(command: str, option: str, choices: str) -> None:
    lines = [line for line in _help(command).splitlines() if f" {option} " in line]
    assert lines and choices in lines[0], lines


def test_device_stays_free_text_and_lists_its_forms() -> None:
    for command in ("derain", "benchmark", "train", "search"):
        line = next(line for line in _help(command).splitlines() if " --device " in line)
        assert "<str>" in line and "cuda:N" in line and "cpu" in line


PANELS = {
    "derain": ("Input and output", "Model", "Device", "Encoding", "Safety"),
    "train": ("Input and output", "Model", "Training", "Device", "Safety"),
    "search": ("Input and output", "Model", "Search", "Device", "Safety"),
    "benchmark": ("Input and output", "Methods", "Metrics", "Device", "Safety"),
    "fetch-weights": ("Actions", "Safety"),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_panels_and_examples(command: str) -> None:
    text = _help(command)
    for panel in PANELS[command]:
        assert f"─ {panel} ─" in text, panel
    examples = text[text.index("Examples") :].splitlines()[1:]
    shown = [line.strip() for line in examples if line.strip().startswith(f"tmics {command} ")]
    assert 2 <= len(shown) <= 4, examples


def test_safety_panel_holds_overwrite_and_strict() -> None:
    text = _help("derain")
    safety = text[text.index("─ Safety ─") :]
    assert "--overwrite" in safety and "--strict" in safety


def test_fetch_weights_help_says_the_bundled_copies_run() -> None:
    text = " ".join(_help("fetch-weights").split())
    assert "not published yet" in text and "bundled with tmics" in text


def test_completion_is_offered() -> None:
    text = _help()
    assert "--install-completion" in text and "--show-completion" in text


def test_completion_completes_choices() -> None:
    env = {"_TMICS_COMPLETE": "complete_bash", "COMP_WORDS": "tmics derain --rain ", "COMP_CWORD": "3"}
    result = CliRunner().invoke(app, [], prog_name="tmics", env=env)
    assert result.output.split() == ["light", "heavy", "auto"]


def _fake_derain(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def derain_many(derainer: Any, targets: Any, **kwargs: Any) -> Any:
        seen.update(derainer.kwargs)
        return iter(())

    monkeypatch.setattr("tmics_cli.batch.derain_many", derain_many)
    return seen


@pytest.mark.parametrize(("flags", "audio"), [((), True), (("--audio",), True), (("--no-audio",), False)])
def test_audio_flag_pair(monkeypatch: pytest.MonkeyPatch, flags: tuple[str, ...], audio: bool) -> None:
    seen = _fake_derain(monkeypatch)
    result = CliRunner().invoke(app, ["derain", "--sample", "-o", "out.mp4", *flags])
    assert result.exit_code == 0, result.output
    assert seen["audio"] is audio


def test_choice_values_reach_the_library_as_plain_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _fake_derain(monkeypatch)
    args = ["derain", "--sample", "-o", "out.mp4", "--rain", "auto", "--precision", "bf16"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert type(seen["rain"]) is str and seen["rain"] == "auto"
    assert type(seen["precision"]) is str and seen["precision"] == "bf16"


def test_other_toggles_are_paired() -> None:
    text = _help("benchmark")
    for flag in ("ablate", "fsim", "vif", "per-video"):
        assert f"--{flag}" in text and f"--no-{flag}" in text
    assert "--no-compare" in _help("derain")


@pytest.mark.parametrize(
    ("args", "value"),
    [
        (["derain", "clip.mp4", "-o", "out.mp4", "--rain", "storm"], "storm"),
        (["derain", "clip.mp4", "-o", "out.mp4", "--precision", "fp8"], "fp8"),
        (["benchmark", "NTURain", "--precision", "fp8"], "fp8"),
        (["train", "--data", "clips", "-o", "w.safetensors", "--size", "huge"], "huge"),
        (["search", "--data", "clips", "-o", "g.json", "--arch-optimizer", "lion"], "lion"),
    ],
)
def test_bad_choice_is_one_error_line(args: list[str], value: str) -> None:
    result = CliRunner().invoke(app, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and f"'{value}' is not one of" in lines[0]
    assert "Value error" not in lines[0]


def test_choices_match_the_library() -> None:
    from tmics_cli.data.rain import PRESETS
    from tmics_cli.derain import RAIN_LEVELS
    from tmics_cli.inference import PRECISIONS
    from tmics_cli.model.align import FLOW_CHOICES, FLOW_ESTIMATORS
    from tmics_cli.model.genotypes import PRESET_GENOTYPES
    from tmics_cli.model.network import SIZES

    assert get_args(cli.RainLevel) == tuple(RAIN_LEVELS)
    assert {"light", "heavy"} <= set(PRESETS) and "light-v9" in cli.RAIN_HELP and "light-v9" in PRESETS
    assert get_args(cli.Preset) == tuple(PRESET_GENOTYPES)
    assert get_args(cli.Precision) == tuple(PRECISIONS)
    assert get_args(cli.Size) == tuple(SIZES)
    assert get_args(cli.Flow) == tuple(FLOW_ESTIMATORS)
    assert get_args(cli.InferenceFlow) == FLOW_CHOICES
