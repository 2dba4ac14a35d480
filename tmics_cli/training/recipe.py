"""Training recipes: `tmics train --config FILE.toml`.

A recipe is a TOML file. Its top-level keys are defaults for every training step (any TrainConfig field,
spelt with underscores or dashes; `output` names the recipe's result). Its steps are an ordered list:

    [[step]]
    name = "r1"              # unique; later steps refer to it
    kind = "train"           # the default: a `tmics train` run; TrainConfig fields override the defaults
    steps = 1800
    init = "r0"              # an earlier step's output, or a .safetensors path

    [[step]]
    name = "soup"
    kind = "average"         # the plain mean of earlier steps' weights (tools/average_weights.py)
    of = ["r1", "r2"]

    [[step]]
    name = "warm"
    kind = "change-scale"    # an earlier step's network with its cells at another scale
    from = "soup"            # (tools/change_scale.py)
    scale = 1

A file without `[[step]]` is a plain config: one training run. Options given on the command line override
every step's value (so `--width 8 --steps 1 --fusion-steps 0` runs any recipe at tiny scale). Steps before
the last write to a work folder beside the output (OUTPUT.steps/NAME.safetensors, runs in NAME.run); a step
whose output is there, made with the same settings from the same sources, is skipped, and a training
step with a checkpoint resumes, so a rerun continues where a chain stopped. The last step writes OUTPUT.
Relative paths (data, init, genotype) are read from the current directory, as on the command line.
"""

from __future__ import annotations

import hashlib
import json
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..outputs import write_text
from .train import TrainConfig, check_weights_output

KINDS = ("train", "average", "change-scale")
# TrainConfig fields a recipe may not set: where the steps write is the recipe's business
NOT_IN_RECIPE = {"run_dir", "resume", "overwrite"}
NOT_IN_STEP = {"output"}
# the command line's minimums, held to in recipes too
MINIMUMS = {
    "steps": 1,
    "fusion_steps": 0,
    "flow_steps": 0,
    "batch": 1,
    "crop": 16,
    "workers": 0,
    "val_every": 1,
    "val_windows": 1,
    "checkpoint_every": 1,
    "width": 1,
    "threads": 1,
    "l1_weight": 0,
}
STEP_KEYS = {
    "train": {"name", "kind"},
    "average": {"name", "kind", "of"},
    "change-scale": {"name", "kind", "from", "scale"},
}
CONFIG_FIELDS = {f.name: f for f in fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


class RecipeError(ValueError):
    """A recipe that cannot run: the message names the file, the step and the key."""


@dataclass
class Step:
    name: str
    kind: str = "train"
    settings: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields set by this step
    of: list[str] = field(default_factory=list)  # average
    source: str | None = None  # change-scale: `from`
    scale: int | None = None  # change-scale


@dataclass
class Recipe:
    path: Path
    defaults: dict[str, Any]
    steps: list[Step]
    plain: bool = False  # a file without [[step]]: one training run

    @property
    def output(self) -> str | None:
        return self.defaults.get("output")


@dataclass
class PlannedStep:
    """A step with everything resolved: what it reads, what it writes, and its settings' key."""

    step: Step
    output: Path
    config: TrainConfig | None  # train steps
    sources: list[Path]  # average / change-scale
    key: str  # hash of the settings and of the sources' keys: a changed recipe never reuses a stale file
    final: bool
    overwrite: bool = False  # the final step may replace an existing output (--overwrite)


def _where(path: Path, step: str | None) -> str:
    return f"{path}" + (f", step {step!r}" if step else "")


def _check_value(path: Path, step: str | None, key: str, value: Any) -> Any:
    """The value as TrainConfig wants it, or RecipeError naming the file, step and key."""
    where = _where(path, step)
    hint = _HINTS[key]
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    origin = typing.get_origin(base)

    def bad(what: str) -> RecipeError:
        return RecipeError(f"{where}: {key} must be {what}, got {value!r}")

    if origin is list:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise bad("a string or a list of strings")
        return list(items)
    if base is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("a whole number")
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        value = float(value)
    elif base is str:
        if not isinstance(value, str):
            raise bad("a string")
    if key in MINIMUMS and value < MINIMUMS[key]:
        raise bad(f"at least {MINIMUMS[key]}")
    return value


def _settings(path: Path, step: str | None, table: dict[str, Any], ignore: set[str]) -> dict[str, Any]:
    out = {}
    for raw, value in table.items():
        if raw in ignore:
            continue
        key = raw.replace("-", "_")
        if key not in CONFIG_FIELDS or key in NOT_IN_RECIPE or (step is not None and key in NOT_IN_STEP):
            what = "step key" if step is not None else "key"
            raise RecipeError(f"{_where(path, step)}: unknown {what} {raw!r}")
        out[key] = _check_value(path, step, key, value)
    return out


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe; RecipeError (one line naming the file, the step and the key) if it is bad."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from None
    tables = raw.get("step", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise RecipeError(f"{path}: `step` must be a list of [[step]] tables")
    defaults = _settings(path, None, raw, {"step"})
    if not tables:  # a plain config: one training run
        return Recipe(path, defaults, [Step("train")], plain=True)
    steps: list[Step] = []
    for i, table in enumerate(tables, 1):
        name = table.get("name", f"#{i}")
        if not isinstance(name, str) or not name or name.endswith(".safetensors") or "/" in name:
            raise RecipeError(f"{path}, step #{i}: name must be a plain word, got {name!r}")
        if any(s.name == name for s in steps):
            raise RecipeError(f"{_where(path, name)}: name used by an earlier step")
        kind = table.get("kind", "train")
        if kind not in KINDS:
            raise RecipeError(f"{_where(path, name)}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        known = {s.name for s in steps}
        if kind == "train":
            settings = _settings(path, name, table, STEP_KEYS["train"])
            init = settings.get("init", defaults.get("init"))
            if init and not init.endswith(".safetensors") and init not in known:
                raise RecipeError(
                    f"{_where(path, name)}: init {init!r} names no earlier step (nor a .safetensors file)"
                )
            steps.append(Step(name, kind, settings))
            continue
        extra = set(table) - STEP_KEYS[kind]
        if extra:
            raise RecipeError(f"{_where(path, name)}: unknown key {sorted(extra)[0]!r} for a {kind} step")
        if kind == "average":
            of = table.get("of")
            if not isinstance(of, list) or len(of) < 2 or not all(isinstance(s, str) for s in of):
                raise RecipeError(f"{_where(path, name)}: of must list at least two earlier steps")
            for source in of:
                if source not in known:
                    raise RecipeError(f"{_where(path, name)}: of names {source!r}, no earlier step")
                if of.count(source) > 1:  # an average weighting one step twice is no uniform soup
                    raise RecipeError(f"{_where(path, name)}: of names {source!r} twice")
            steps.append(Step(name, kind, of=list(of)))
        else:
            source, scale = table.get("from"), table.get("scale")
            if source not in known:
                raise RecipeError(f"{_where(path, name)}: from must name an earlier step, got {source!r}")
            if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
                raise RecipeError(f"{_where(path, name)}: scale must be a whole number from 1, got {scale!r}")
            steps.append(Step(name, kind, source=source, scale=scale))
    return Recipe(path, defaults, steps)


def work_folder(output: Path) -> Path:
    return output.with_suffix(".steps")


def _key(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan(
    recipe: Recipe, overrides: dict[str, Any] | None = None, output: str | Path | None = None
) -> list[PlannedStep]:
    """Every step resolved: the command line's `overrides` (TrainConfig fields) win over the recipe's values
    in every training step; `output` over the recipe's output."""
    overrides = dict(overrides or {})
    overwrite = bool(overrides.pop("overwrite", False))
    resume = bool(overrides.pop("resume", False))
    out = output or overrides.pop("output", None) or recipe.output
    overrides.pop("output", None)
    if not out:
        raise RecipeError(f"{recipe.path}: the recipe names no output; give -o/--output")
    out = Path(out)
    multi = len(recipe.steps) > 1
    if multi and "init" in overrides:
        raise RecipeError(f"{recipe.path}: --init cannot override a recipe of several steps (set init there)")
    if multi and "run_dir" in overrides:
        raise RecipeError(f"{recipe.path}: --run-dir cannot be given for a recipe of several steps")
    if out.exists() and not overwrite:
        raise RecipeError(f"{out} exists: pass --overwrite to replace it")
    work = work_folder(out)
    planned: dict[str, PlannedStep] = {}
    result = []
    for i, step in enumerate(recipe.steps):
        final = i == len(recipe.steps) - 1
        target = out if final else work / f"{step.name}.safetensors"
        if step.kind == "train":
            values = {**recipe.defaults, **step.settings, **overrides}
            values.pop("output", None)
            init = values.get("init")
            sources = []
            if init in planned:
                sources = [planned[init].output]
                values["init"] = str(planned[init].output)
            settings = {k: v for k, v in values.items() if k not in {"threads", "workers", "device"}}
            key = _key([settings, [planned[s].key for s in ([init] if init in planned else [])]])
            if multi:
                values["run_dir"] = str(work / f"{step.name}.run")
            cfg = TrainConfig(
                output=str(target),
                **values,
                resume=True if multi else resume,
                overwrite=overwrite if final else False,
            )
            try:
                cfg.check_choices()  # those of files wait for the step's turn
            except ValueError as exc:
                raise RecipeError(
                    f"{_where(recipe.path, None if recipe.plain else step.name)}: {exc}"
                ) from None
            p = PlannedStep(step, target, cfg, sources, key, final, final and overwrite)
        else:
            names = step.of if step.kind == "average" else [step.source]
            sources = [planned[n].output for n in names]
            key = _key([step.kind, step.scale, [planned[n].key for n in names]])
            p = PlannedStep(step, target, None, sources, key, final, final and overwrite)
        planned[step.name] = p
        result.append(p)
    _check_output(result, recipe.path)
    return result


def _check_output(steps: list[PlannedStep], recipe_path: Path) -> None:
    """The recipe's output and work folder against everything its steps read (the recipe, data, init and
    genotype files), before any work or folder is made: a last step that averages or rescales has no
    training config to check it (OutputError, ValueError)."""
    from ..outputs import check_apart

    out = steps[-1].output
    made = {p.output for p in steps[:-1]}  # the work folder's
    reads = [recipe_path, *(x for p in steps if p.config for x in p.config.inputs if Path(x) not in made)]
    check_weights_output(out, reads, overwrite=steps[-1].overwrite)
    if len(steps) > 1:
        check_apart(work_folder(out), reads, folder=True, what="work folder")


def _stamp(p: PlannedStep) -> Path:
    return p.output.with_suffix(".step.json")


def _recorded_key(stamp: Path) -> str | None:
    """The settings key a step's stamp records; None where there is none or it is damaged (then the step's
    output is taken as made otherwise)."""
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # not there; torn, not JSON, not UTF-8
        return None
    return recorded.get("key") if isinstance(recorded, dict) else None


def is_done(p: PlannedStep) -> bool:
    """Whether an intermediate step's output is there, made from these settings and sources. A file made
    otherwise is refused (remove it, or the work folder, to redo the step)."""
    if p.final or not p.output.exists():
        return False
    stamp = _stamp(p)
    recorded = _recorded_key(stamp)
    if recorded != p.key:
        raise RecipeError(
            f"{p.output} was made by other settings than step {p.step.name!r} now asks for; remove it "
            f"(or the folder {p.output.parent}) to redo the step"
        )
    return True


def run_recipe(
    steps: list[PlannedStep],
    train: Callable[[TrainConfig], Path],
    say: Callable[[str], None] = lambda message: None,
) -> Path:
    """Run the planned steps in order, skipping those already done; `train` runs one training config (the
    CLI's progress display). Returns the recipe's output."""
    from ..model import average_models, change_scale, load_model, read_metadata, save_model
    from ..model.io import STORAGE_DTYPES

    total = len(steps)
    for i, p in enumerate(steps, 1):
        name, kind = p.step.name, p.step.kind
        if is_done(p):
            say(f"step {i}/{total} {name}: done before ({p.output})")
            continue
        if total > 1:
            say(f"step {i}/{total} {name}: {kind}")
        if not p.final:
            p.output.parent.mkdir(parents=True, exist_ok=True)
        if kind == "train":
            assert p.config is not None
            train(p.config)
        else:
            if kind == "average":
                model = average_models(p.sources)
                dtype = STORAGE_DTYPES[read_metadata(p.sources[0])["dtype"]]
                sources = [{"file": s.name, **_source_meta(s)} for s in p.sources]
                meta = {
                    "trained_by": "tmics train --config, average step",
                    "averaged_from": json.dumps(sources),
                }
            else:
                model = change_scale(load_model(p.sources[0]), p.step.scale or 1)
                dtype = STORAGE_DTYPES["float32"]  # the folded sums are kept exactly
                meta = {
                    "rescaled_from": json.dumps({"file": p.sources[0].name, **_source_meta(p.sources[0])})
                }
            save_model(model, p.output, dtype=dtype, metadata=meta, overwrite=p.overwrite)
        if not p.final:  # whole or not at all: a kill while writing it leaves no torn stamp
            write_text(_stamp(p), json.dumps({"step": name, "key": p.key}) + "\n", overwrite=True)
    return steps[-1].output


def _source_meta(path: Path) -> dict[str, Any]:
    from ..model import read_metadata

    meta = read_metadata(path)
    return {"steps": json.loads(meta.get("steps", "null")), "command": meta.get("command")}
