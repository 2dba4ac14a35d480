"""Recipes (`tmics train --config`): parsing, overrides, refusals, and every file in configs/ run end to end
at tiny scale on generated clips."""

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.test_datasets import write_clip
from tmics_cli.cli import app
from tmics_cli.model import load_model
from tmics_cli.model.io import read_metadata
from tmics_cli.training.recipe import RecipeError, load_recipe, plan, work_folder

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))
# any recipe at tiny scale: width 8 keeps each step's scale (small -> tiny, small-full -> tiny at scale 1),
# one step of stage 1, no stage 2, no validation (no clip is called "none")
TINY = ["--width", "8", "--steps", "1", "--fusion-steps", "0", "--batch", "2", "--crop", "32"]
TINY += ["--workers", "0", "--threads", "1", "--holdout", "none", "--checkpoint-every", "1"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    for i, name in enumerate(["alpha", "beta"]):
        write_clip(root / name, frames=7, h=40, w=48, seed=i)
    return root


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_plain_config_defaults_and_overrides(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "a.toml", 'output = "x.safetensors"\ndata = "clips"\nsteps = 30\nfusion-steps = 5\n'
    )
    recipe = load_recipe(f)
    assert len(recipe.steps) == 1 and recipe.output == "x.safetensors"
    (only,) = plan(recipe)
    cfg = only.config
    assert (
        cfg.output == "x.safetensors" and cfg.data == ["clips"] and cfg.steps == 30 and cfg.fusion_steps == 5
    )
    assert cfg.batch == 8 and cfg.run_dir is None  # TrainConfig's default; the usual run folder
    (only,) = plan(recipe, {"steps": 2, "lr": 1e-3}, output=tmp_path / "y.safetensors")
    assert only.config.steps == 2 and only.config.lr == 1e-3 and only.config.fusion_steps == 5
    assert only.output == tmp_path / "y.safetensors"


def test_steps_inherit_defaults_and_the_command_line_wins(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "r.toml",
        'output = "out.safetensors"\nseed = 4\nsteps = 100\n'
        '[[step]]\nname = "a"\nsteps = 7\n'
        '[[step]]\nname = "b"\ninit = "a"\nlr = 1e-5\n'
        '[[step]]\nname = "m"\nkind = "average"\nof = ["a", "b"]\n',
    )
    a, b, m = plan(load_recipe(f))
    assert (a.config.steps, a.config.seed, b.config.steps, b.config.lr) == (7, 4, 100, 1e-5)
    work = work_folder(Path("out.safetensors"))
    assert a.output == work / "a.safetensors" and a.config.run_dir == str(work / "a.run") and a.config.resume
    assert (
        b.config.init == str(a.output)
        and m.output == Path("out.safetensors")
        and m.sources
        == [
            a.output,
            b.output,
        ]
    )
    a2, b2, _ = plan(load_recipe(f), {"steps": 1})
    assert a2.config.steps == b2.config.steps == 1
    assert a2.key != a.key and b2.key != b.key  # a changed setting never reuses a stale file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stepz = 3\n", "r.toml: unknown key 'stepz'"),
        ('[[step]]\nname = "one"\nfusion_stepz = 1\n', "r.toml, step 'one': unknown step key 'fusion_stepz'"),
        ('[[step]]\nname = "one"\nsteps = "many"\n', "r.toml, step 'one': steps must be a whole number"),
        ('[[step]]\nname = "one"\nsteps = 0\n', "r.toml, step 'one': steps must be at least 1"),
        ('[[step]]\nname = "one"\ninit = "zero"\n', "r.toml, step 'one': init 'zero' names no earlier step"),
        ('[[step]]\nname = "one"\n[[step]]\nname = "one"\n', "step 'one': name used by an earlier step"),
        ('[[step]]\nname = "m"\nkind = "average"\nof = ["a", "b"]\n', "step 'm': of names 'a', no earlier"),
        ('[[step]]\nname = "m"\nkind = "soup"\n', "step 'm': kind must be one of"),
        (
            '[[step]]\nname = "a"\n[[step]]\nname = "m"\nkind = "average"\nof = ["a", "a"]\n',
            "step 'm': of names 'a' twice",
        ),
        ('[[step]]\nname = "a"\nsize = "huge"\n', "step 'a': unknown size 'huge'"),
        ("resume = true\n", "unknown key 'resume'"),
        ("steps = [\n", "not valid TOML"),
    ],
)
def test_bad_recipes_are_refused_naming_file_step_and_key(tmp_path: Path, text: str, message: str) -> None:
    f = _write(tmp_path / "r.toml", 'output = "o.safetensors"\n' + text)
    with pytest.raises(RecipeError, match=None) as info:
        plan(load_recipe(f))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cli_refuses_a_bad_recipe_in_one_line(tmp_path: Path) -> None:
    f = _write(tmp_path / "r.toml", '[[step]]\nname = "one"\nbatchsize = 3\n')
    result = CliRunner().invoke(app, ["train", "--config", str(f), "-o", str(tmp_path / "o.safetensors")])
    assert result.exit_code != 0
    assert f"{f}, step 'one': unknown step key 'batchsize'" in result.output
    assert not (tmp_path / "o.safetensors").exists() and not (tmp_path / "o.steps").exists()


def test_a_recipe_whose_last_step_is_not_training_cannot_write_over_what_it_reads(
    tmp_path: Path, clips: Path
) -> None:
    """A last step that rescales (or averages) has no training config, whose checks refused an output on
    an input: `-o init.safetensors --overwrite` replaced the init weights, `-o recipe.toml` the recipe, and
    an output inside the data made its work folder there before the refusal."""
    from tmics_cli.model import build_model, save_model

    init = tmp_path / "init.safetensors"
    save_model(build_model("light", "tiny"), init)
    kept = init.read_bytes()
    f = _write(
        tmp_path / "r.toml",
        f'data = ["{clips}"]\nsize = "tiny"\n[[step]]\nname = "ft"\ninit = "{init}"\n'
        '[[step]]\nname = "warm"\nkind = "change-scale"\nfrom = "ft"\nscale = 1\n',
    )
    frame = next((clips / "alpha").iterdir())
    cases = {init: "is the input", f: ".safetensors", frame.with_suffix(".safetensors"): "inside the input"}
    for out, message in cases.items():
        result = CliRunner().invoke(app, ["train", "--config", str(f), "-o", str(out), "--overwrite", *TINY])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.output
    assert init.read_bytes() == kept and f.read_text().startswith("data")
    assert all(p.suffix == ".jpg" for p in (clips / "alpha").iterdir())  # no work folder made there


def test_shipped_recipes_match_the_card() -> None:
    light = load_recipe(ROOT / "configs/tmics-light.toml")
    full = load_recipe(ROOT / "configs/tmics-light-full.toml")
    names = [s.name for s in light.steps]
    assert names[-1] == "r19" and [s.name for s in full.steps][: len(names)] == names  # the same chain
    assert [s.settings for s in full.steps[: len(names)]] == [s.settings for s in light.steps]
    steps = {p.step.name: p for p in plan(light)}
    assert steps["r19"].config.init == str(steps["r18"].output)
    assert steps["r18"].step.of == ["r18a", "r18b"] and steps["mean13_14"].step.of == ["r13", "r14"]
    assert steps["r19"].config.l1_weight == 5.0 and steps["r14"].config.l1_weight == 0.75
    last = plan(full)[-1].config
    assert last.size == "small-full" and last.seed == 21 and last.steps == 1401


@pytest.mark.parametrize("recipe", CONFIGS, ids=lambda p: p.stem)
def test_each_recipe_runs_end_to_end_at_tiny_scale(
    recipe: Path, clips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # recipes name repository paths (the heavy genotype) as the command line does
    out = tmp_path / f"{recipe.stem}.safetensors"
    args = ["train", "--config", str(recipe), "-o", str(out), "--data", str(clips), *TINY]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.exists() and load_model(out).config.width == 8
    steps = plan(load_recipe(recipe))
    work = work_folder(out)
    for p in steps[:-1]:
        assert (work / f"{p.step.name}.safetensors").exists()
    averages = [p for p in steps if p.step.kind == "average"]
    for p in averages:  # a recipe that averages really averages
        made = load_model(out if p.final else work / f"{p.step.name}.safetensors").state_dict()
        sources = [load_model(work / f"{n}.safetensors").state_dict() for n in p.step.of]
        key = next(k for k, v in made.items() if v.is_floating_point() and v.numel() > 8)
        mean = torch.stack([s[key] for s in sources]).mean(0)
        assert torch.allclose(made[key], mean, atol=1e-3) and not torch.equal(
            sources[0][key], sources[1][key]
        )
        assert "averaged_from" in read_metadata(work / f"{p.step.name}.safetensors")
    if any(p.step.kind == "change-scale" for p in steps):
        assert load_model(work / "warm.safetensors").config.scale == 1 and load_model(out).config.scale == 1
    # a rerun finds every step done; the output is there, so it asks for --overwrite
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and "--overwrite" in again.output
    again = CliRunner().invoke(app, [*args, "--overwrite"])
    assert again.exit_code == 0, again.output
    if len(steps) > 1:
        assert again.output.count("done before") == len(steps) - 1


@pytest.mark.parametrize("stamp", [b"[1]", b"garbage", b"\xff\xfe", b'{"key": "k"'])
def test_a_damaged_step_stamp_is_taken_for_other_settings(tmp_path: Path, stamp: bytes) -> None:
    """A torn or foreign stamp in the work folder ended in a traceback ('list' object has no attribute
    'get') or a bare parser message naming no file."""
    from types import SimpleNamespace

    from tmics_cli.training.recipe import PlannedStep, is_done

    out = tmp_path / "a.safetensors"
    out.write_bytes(b"weights")
    step = PlannedStep(SimpleNamespace(name="a"), out, None, [], key="k", final=False)  # type: ignore[arg-type]
    (tmp_path / "a.step.json").write_bytes(b'{"step": "a", "key": "k"}\n')
    assert is_done(step)
    (tmp_path / "a.step.json").write_bytes(stamp)
    with pytest.raises(RecipeError, match=r"a\.safetensors was made by other settings .* remove it"):
        is_done(step)
