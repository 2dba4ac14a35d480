"""The `tmics` command line: a thin Typer app; each subcommand parses options and calls the library."""

from __future__ import annotations

import signal
import sys
import warnings
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args

import typer
import typer.core

try:  # typer 0.2x carries its own copy of click; older ones use click itself
    from typer._click import exceptions as _usage
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as _usage

from . import __version__
from .outputs import exit_code, handle_signals, signal_name
from .report import error_line, unexpected_line

# inference.default_batch() in words (torch is imported lazily, so not derived from it here)
MAX_THREADS = 1024  # more is a typo; torch would overflow or crash creating them
MAX_WORKERS = 64  # local worker processes of derain, each with its own model
BATCH_HELP = "Windows per model call (default: 8 on CUDA, 2 on MPS, 1 on CPU; halved when out of memory)."
OVERWRITE_HELP = (
    "Replace an existing output. Never an input, and a folder only if it holds an earlier tmics output "
    "and nothing else."
)
STRICT_HELP = (
    "Treat a damaged input as an error (exit 2, nothing written): decoder errors, frames the decoder "
    "flags corrupt, a video that stops short of the frame count or duration its file states, truncated "
    "JPEG/PNG frames. Without it each is a warning line and the work goes on."
)
MIN_TILE = 64  # inference.MIN_TILE, for the help text
# weights.resolve_weights: a registered name runs on the bundled file unless a checked copy is cached
FETCH_HELP = (
    "Download named weights from their Hugging Face repository into the user cache, sha256-checked."
    "\n\nThe hub repository (tmics/tmics-weights) is not published yet, so a download fails for now: the "
    "copies bundled with tmics (the bundled column of --list) are what derain and benchmark run on for a "
    "registered name."
)

# Choices shown in help as [a|b|c] and refused by the parser with one `error:` line. Literal keeps the values
# plain strings for the library, whose own checks stay (tests/test_cli_style.py keeps these in step with it).
RainLevel = Literal["light", "heavy", "auto"]  # derain.RAIN_LEVELS
RAIN_HELP = "light, heavy, or a frozen version such as light-v9 or heavy-v2 (data.rain.PRESET_VERSIONS)"
Preset = Literal["light", "heavy"]  # model.genotypes.PRESET_GENOTYPES
Precision = Literal["auto", "fp32", "fp16", "bf16"]  # inference.PRECISIONS
Size = Literal["tiny", "small", "small-full", "medium", "paper"]  # model.network.SIZES
Flow = Literal["dis", "pyramid", "device"]  # model.align.FLOW_ESTIMATORS
InferenceFlow = Literal["auto", "dis", "device"]  # model.align.FLOW_CHOICES
Colour = Literal["auto", "host", "device"]  # derain.COLOUR_CHOICES
FLOW_HELP = (
    "OFM optical flow: auto (the device flow, DIS in PyTorch ops, on CUDA/MPS; OpenCV DIS on the CPU), "
    "dis or device."
)
Optimizer = Literal["sgd", "adam"]  # training.search.SearchConfig


# Help panels: the options of each command grouped by what they are about
IO = "Input and output"
MODEL = "Model"
DEVICE = "Device"
ENCODING = "Encoding"
SAFETY = "Safety"
TRAINING = "Training"
SEARCH = "Search"
METHODS = "Methods"
METRICS = "Metrics"
ACTIONS = "Actions"
REPORT = "Progress and report"


def _examples(*lines: str) -> str:
    """A command's help epilog: a few example command lines (rich keeps each line apart)."""
    return "\n".join(["[bold]Examples[/bold]", *lines])


def _choices(kind: Any) -> str:
    """The help's metavar for a Literal: [a|b|c], as click shows a choice."""
    return "[" + "|".join(get_args(kind)) + "]"


def _overwrite_option() -> Any:
    """--overwrite: the same flag with the same meaning on every command that writes."""
    return typer.Option(False, "--overwrite", help=OVERWRITE_HELP, rich_help_panel=SAFETY)


class _Commands(typer.core.TyperGroup):
    """The `tmics` group: a usage error (an unknown option, a value out of range, a missing argument) is
    one `error:` line and exit 2, like every other bad input, instead of click's usage block and box."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        with warnings.catch_warnings():  # warnings as `warning:` lines for this run, then as they were
            warnings.showwarning = _show_warning
            code = self._run(*args, **kwargs)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        _REPORTED.clear()
        try:
            with handle_signals() as signals:  # SIGTERM and SIGHUP clean up as Ctrl-C does; 128 + signal
                code = super().main(*args, standalone_mode=False, **kwargs)
            if signals.signum is not None and not _REPORTED:  # stopped before a command could say so
                typer.echo(f"error: interrupted ({signal.Signals(signals.signum).name})", err=True)
                code = 128 + signals.signum
        except _usage.NoArgsIsHelpError as exc:
            exc.show()
            code = 2
        except _usage.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if isinstance(exc, _usage.UsageError) and ctx else ""
            message = exc.format_message().replace(": Value error, ", ": ", 1)  # typer's choice errors
            typer.echo(f"error: {message}{hint}", err=True)
            code = exc.exit_code
        except typer.Abort:
            typer.echo("error: interrupted", err=True)
            code = 130
        return code


app = typer.Typer(
    name="tmics",
    cls=_Commands,
    help="Remove rain from videos with TMICS (triple-level model-inferred collaborative networks).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tmics {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Remove rain from videos with TMICS."""


def _interrupted_run(exc: BaseException, checkpoint: Path | None) -> NoReturn:
    """An interrupted train or search run: the checkpoint to resume from, or that nothing was kept."""
    if checkpoint is None or not checkpoint.is_file():
        fail(
            f"interrupted ({signal_name(exc)}) before the first checkpoint; nothing was kept", exit_code(exc)
        )
    fail(
        f"interrupted ({signal_name(exc)}); resume with --resume (checkpoint in {checkpoint.parent})",
        exit_code(exc),
    )


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """Warnings of tmics as one `warning:` line on stderr (Python's format names a file and line)."""
    typer.echo(f"warning: {message}", err=True)


def _stop_progress(progress: Any) -> None:
    """Progress.stop, less the blank line it prints on a non-terminal when no bar was shown (a display
    that never started, a transient one, one without tasks yet): nothing may come before an `error:` line."""
    live = progress.live
    shown = live.is_started and not live.transient and any(t.visible for t in progress.tasks)
    live.stop()
    if shown and not progress.console.is_interactive and not progress.console.is_jupyter:
        progress.console.print()


_REPORTED: list[str] = []  # the error line this run printed, if any


def fail(message: str, code: int = 2) -> NoReturn:
    """One clear line on stderr and a non-zero exit: never a traceback for bad input."""
    typer.echo(f"error: {message}", err=True)
    _REPORTED.append(message)
    raise typer.Exit(code)


@app.command(
    epilog=_examples(
        "tmics train --data clips/ -o mine.safetensors --size tiny --steps 500",
        "tmics train --data clips/ -o heavy.safetensors --preset heavy --device cuda",
        "tmics train --config configs/tmics-light.toml",
        "tmics train --data clips/ -o mine.safetensors --resume",
    )
)
def train(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None,
        "--config",
        help="A recipe (TOML, see configs/): TrainConfig defaults and steps; options given here override "
        "every step's value.",
        rich_help_panel=IO,
    ),
    output: Path | None = typer.Option(
        None,
        "-o",
        "--output",
        help="Weights file to write (.safetensors); optional with a --config naming one.",
        rich_help_panel=IO,
    ),
    data: list[str] | None = typer.Option(
        None,
        "--data",
        help="Clean clips (video file, frame folder or folder of them) or a paired set. Repeatable.",
        rich_help_panel=IO,
    ),
    preset: Preset = typer.Option(
        "light", metavar=_choices(Preset), help="Genotype and rain preset.", rich_help_panel=MODEL
    ),
    genotype: Path | None = typer.Option(
        None,
        help="A named network (paper-light, paper-heavy, heavy-ofm) or a genotype JSON from `tmics search`, "
        "overriding the preset's.",
        rich_help_panel=MODEL,
    ),
    rain: str | None = typer.Option(
        None,
        metavar="PRESET",
        help=f"Rain preset for rendered rain (default: the preset): {RAIN_HELP}.",
        rich_help_panel=TRAINING,
    ),
    size: Size = typer.Option(
        "small", metavar=_choices(Size), help="Named size of the network.", rich_help_panel=MODEL
    ),
    width: int | None = typer.Option(
        None, min=1, help="Override the size's channel width.", rich_help_panel=MODEL
    ),
    flow: Flow | None = typer.Option(
        None, metavar=_choices(Flow), help="OFM flow estimator (default: dis).", rich_help_panel=MODEL
    ),
    init: Path | None = typer.Option(
        None,
        help="Start from these weights (fine-tuning); they must describe the network asked for.",
        rich_help_panel=IO,
    ),
    holdout: list[str] = typer.Option(
        ["walk"],
        help="Clip names held out for validation ('none': none; the default is passed over where the data "
        "has no such clip). Repeatable.",
        rich_help_panel=IO,
    ),
    steps: int = typer.Option(2000, min=1, help="Stage 1 steps (DNA + CNA).", rich_help_panel=TRAINING),
    fusion_steps: int = typer.Option(
        200, min=0, help="Stage 2 steps (AAS fusion alone).", rich_help_panel=TRAINING
    ),
    flow_steps: int = typer.Option(
        1000, min=0, help="Flow pre-training steps (pyramid flow only).", rich_help_panel=TRAINING
    ),
    batch: int = typer.Option(8, min=1, help="Batch size per process.", rich_help_panel=TRAINING),
    crop: int = typer.Option(128, min=16, help="Crop size in pixels.", rich_help_panel=TRAINING),
    lr: float = typer.Option(3e-4, help="Stage 1 learning rate (cosine to 1e-6).", rich_help_panel=TRAINING),
    fusion_lr: float = typer.Option(
        1e-3,
        help="Stage 2 learning rate (the paper: 1e-6, too small for a fresh AAS).",
        rich_help_panel=TRAINING,
    ),
    l1_weight: float = typer.Option(
        0.75,
        min=0,
        help="Weight of the L1 term beside -SSIM in the loss (the paper's rho, Eq. 6).",
        rich_help_panel=TRAINING,
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N.", rich_help_panel=DEVICE),
    workers: int = typer.Option(
        2, min=0, help="Data loader worker processes (up to 64).", rich_help_panel=DEVICE
    ),
    seed: int = typer.Option(0, help="Seed for weights and data (0 to 2^32 - 1).", rich_help_panel=TRAINING),
    val_every: int = typer.Option(
        250, min=1, help="Validate on the held-out set every N steps.", rich_help_panel=TRAINING
    ),
    checkpoint_every: int = typer.Option(
        100, min=1, help="Write a checkpoint every N steps.", rich_help_panel=TRAINING
    ),
    run_dir: Path | None = typer.Option(
        None, help="Checkpoints and log.jsonl (default: OUTPUT with .run suffix).", rich_help_panel=IO
    ),
    resume: bool = typer.Option(
        False, help="Continue from the run directory's checkpoint.", rich_help_panel=IO
    ),
    fp32: bool = typer.Option(False, help="Store float32 weights (default float16).", rich_help_panel=IO),
    threads: int | None = typer.Option(
        None, min=1, max=MAX_THREADS, help="CPU threads for torch.", rich_help_panel=DEVICE
    ),
    time_budget: float | None = typer.Option(
        None,
        min=1,
        help="Seconds for the whole run: stage 1 then takes as many steps (at most --steps) as the "
        "measured speed allows, cosine schedule included.",
        rich_help_panel=TRAINING,
    ),
    overwrite: bool = _overwrite_option(),
) -> None:
    """Train TMICS weights: DNA + CNA end to end, then the AAS fusion (the paper's two stages)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .data.datasets import DataError
    from .model.genotypes import GenotypeError
    from .model.io import WeightsError
    from .training.recipe import load_recipe, plan, run_recipe
    from .training.train import CHECKPOINT_NAME, TrainConfig, Trainer

    values = dict(
        output=str(output) if output else None,
        preset=preset,
        genotype=str(genotype) if genotype else None,
        rain=rain,
        size=size,
        width=width,
        flow=flow,
        init=str(init) if init else None,
        data=data,
        holdout=holdout,
        steps=steps,
        fusion_steps=fusion_steps,
        flow_steps=flow_steps,
        batch=batch,
        crop=crop,
        lr=lr,
        fusion_lr=fusion_lr,
        l1_weight=l1_weight,
        device=device,
        workers=workers,
        seed=seed,
        val_every=val_every,
        checkpoint_every=checkpoint_every,
        run_dir=str(run_dir) if run_dir else None,
        resume=resume,
        fp16_weights=not fp32,
        threads=threads,
        time_budget=time_budget,
        overwrite=overwrite,
    )
    console = Console(stderr=True)
    running: list[TrainConfig] = []

    def fit(cfg: TrainConfig) -> tuple[Trainer, Path]:
        running.append(cfg)
        trainer = Trainer(cfg, console)
        trainer.prepare()  # data, crop and memory checked before the progress display starts
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[sps]:.2f} steps/s"),
            TimeRemainingColumn(),
        )
        progress = Progress(*columns, console=console, disable=not trainer.is_main)
        progress.start()
        try:
            return trainer, trainer.fit(progress)
        finally:
            _stop_progress(progress)

    if config is None and (output is None or not data):
        fail("give -o/--output and --data (or a recipe with --config)")
    planned: list[Any] = []
    try:
        if config is None:
            trainer, path = fit(TrainConfig(**values))
            if not trainer.is_main:
                return
        else:
            recipe = load_recipe(config)
            given = {
                name: ("fp16_weights", not fp32) if name == "fp32" else (name, values[name])
                for name in ctx.params
                if name != "config" and _given(ctx, name)
            }
            planned = plan(recipe, dict(given.values()))
            path = run_recipe(planned, lambda cfg: fit(cfg)[1], console.print)
    except (DataError, GenotypeError, WeightsError, ValueError, OSError, RuntimeError) as exc:
        fail(error_line(exc))
    except KeyboardInterrupt as exc:
        if planned:
            where = (
                f"rerun the same command to continue (steps in {planned[-1].output.with_suffix('.steps')})"
            )
            fail(f"interrupted ({signal_name(exc)}); {where}", exit_code(exc))
        _interrupted_run(exc, running[-1].run_path / CHECKPOINT_NAME if running else None)
    console.print(f"wrote {path}")


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether an option was given on the command line (or by its environment variable), not defaulted."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


@app.command(
    epilog=_examples(
        "tmics derain rainy.mp4                      # -> rainy.derained.mp4",
        "tmics derain footage/ -r -o clean/          # every video below footage/, mirrored under clean/",
        "tmics derain 'cam*/*.mkv' --workers 2 --json summary.json",
        "tmics derain long.mp4 -o out.mp4            # killed? the same command resumes",
    )
)
def derain(
    inputs: list[str] | None = typer.Argument(
        None,
        help="Videos, folders of videos, folders of frames (png/jpg: one input each) or quoted patterns "
        "('clips/*.mp4'). Not a pipe or stdin: tmics seeks in its input.",
        show_default=False,
    ),
    output: str | None = typer.Option(
        None,
        "-o",
        "--output",
        help="One input: the output video, or a name without suffix for a folder of PNG frames (an "
        "existing folder or a name ending in / takes the output inside). Many inputs: a folder, mirroring "
        "the inputs' tree. Default: NAME.derained.EXT beside each input.",
        show_default=False,
        rich_help_panel=IO,
    ),
    fmt: str | None = typer.Option(
        None,
        "--format",
        help="Output container for every input (mp4, mkv, mov, webm, ts, avi, ...; png: folders of frames); "
        "default: the input's own.",
        show_default=False,
        rich_help_panel=IO,
    ),
    recursive: bool = typer.Option(
        False, "--recursive", "-r", help="Descend into the sub-folders of folder inputs.", rich_help_panel=IO
    ),
    sample: bool = typer.Option(
        False, "--sample", help="Derain the rainy sample clip shipped with tmics.", rich_help_panel=IO
    ),
    rain: RainLevel | None = typer.Option(
        None,
        metavar=_choices(RainLevel),
        help="Shipped weights for light or heavy rain, or auto (measured per input); default light "
        "(tmics-light-full on GPUs, tmics-light on the CPU).",
        rich_help_panel=MODEL,
    ),
    weights: Path | None = typer.Option(
        None,
        help="A .safetensors file or registered weights (e.g. light-full) instead of --rain.",
        rich_help_panel=MODEL,
    ),
    flow: InferenceFlow = typer.Option(
        "auto", metavar=_choices(InferenceFlow), help=FLOW_HELP, rich_help_panel=MODEL
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps.", rich_help_panel=DEVICE),
    precision: Precision = typer.Option(
        "auto",
        metavar=_choices(Precision),
        help="auto: fp16 on GPUs; on the CPU bf16 where it is native (AVX-512 BF16, AMX), else fp32.",
        rich_help_panel=DEVICE,
    ),
    colour: Colour = typer.Option(
        "auto",
        metavar=_choices(Colour),
        help="Where YUV <-> RGB conversion runs: auto (on the device on GPUs, host on the CPU), host "
        "(FFmpeg's swscale) or device (within a level of swscale's).",
        rich_help_panel=DEVICE,
    ),
    batch: int | None = typer.Option(None, min=1, help=BATCH_HELP, rich_help_panel=DEVICE),
    tile: int = typer.Option(
        0,
        min=0,
        help=f"Tile size in pixels, at least {MIN_TILE} (0: whole frames; tiles are made on OOM; a tile as "
        "large as the frame means whole frames).",
        rich_help_panel=DEVICE,
    ),
    tile_overlap: int | None = typer.Option(
        None,
        min=0,
        help="Overlap of neighbouring tiles in pixels, less than half of --tile (default: 32, or "
        "--tile / 2 - 1 for tiles under 66 pixels).",
        show_default=False,
        rich_help_panel=DEVICE,
    ),
    workers: int = typer.Option(
        1,
        min=1,
        max=MAX_WORKERS,
        help="Local workers, each with its own model (one per GPU on a machine with several; on a CPU the "
        "cores are split among them), sharing the segments of every input.",
        rich_help_panel=DEVICE,
    ),
    ray: str | None = typer.Option(
        None,
        "--ray",
        help="Run the segments as tasks on a Ray cluster: auto (the cluster this machine belongs to), local "
        "(one started here) or its address. Inputs and outputs must be on storage every node sees. Needs "
        "tmics[ray].",
        show_default=False,
        rich_help_panel=DEVICE,
    ),
    threads: int | None = typer.Option(
        None, min=1, max=MAX_THREADS, help="CPU threads for torch.", rich_help_panel=DEVICE
    ),
    codec: str | None = typer.Option(
        None, help="Video encoder (default libx264; libvpx-vp9 for .webm).", rich_help_panel=ENCODING
    ),
    crf: int = typer.Option(
        18, min=0, max=63, help="Encoder quality (lower is better; 0: lossless).", rich_help_panel=ENCODING
    ),
    preset: str = typer.Option("medium", help="x264/x265 speed preset.", rich_help_panel=ENCODING),
    pix_fmt: str | None = typer.Option(
        None,
        help="Output pixel format (default: the input's chroma sampling at 8 bits, yuv420p for RGB; "
        "yuv444p for odd sizes in x264/x265).",
        rich_help_panel=ENCODING,
    ),
    segment_frames: int | None = typer.Option(
        None,
        min=1,
        help="Frames per segment, the unit of resume and of work shared among workers (default: about 10 s "
        "of video; rounded up to whole batches).",
        show_default=False,
        rich_help_panel=ENCODING,
    ),
    compare: bool = typer.Option(False, help="Write input and output side by side.", rich_help_panel=IO),
    start: str | None = typer.Option(
        None, help="Start time: seconds, mm:ss or hh:mm:ss.", rich_help_panel=IO
    ),
    end: str | None = typer.Option(None, help="End time: seconds, mm:ss or hh:mm:ss.", rich_help_panel=IO),
    fps: float = typer.Option(
        25.0, help="Frame rate of a folder of frames (a positive number).", rich_help_panel=IO
    ),
    audio: bool = typer.Option(
        True, "--audio/--no-audio", help="Copy the audio (--no-audio: drop it).", rich_help_panel=IO
    ),
    overwrite: bool = _overwrite_option(),
    fail_fast: bool = typer.Option(
        False,
        "--fail-fast",
        help="Stop at the first input that fails (default: go on).",
        rich_help_panel=SAFETY,
    ),
    strict: bool = typer.Option(False, "--strict", help=STRICT_HELP, rich_help_panel=SAFETY),
    json_out: str | None = typer.Option(
        None,
        "--json",
        help="Write a machine-readable summary to this file (- for stdout).",
        show_default=False,
        rich_help_panel=REPORT,
    ),
    log: Path | None = typer.Option(
        None, "--log", help="Append JSON lines to this file as the job goes.", rich_help_panel=REPORT
    ),
    progress_every: float = typer.Option(
        30.0,
        min=0,
        help="Seconds between plain progress lines when stderr is not a terminal (0: every update).",
        rich_help_panel=REPORT,
    ),
    quiet: bool = typer.Option(
        False,
        "--quiet",
        "-q",
        help="No progress; only errors, warnings and the summary.",
        rich_help_panel=REPORT,
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also a line per segment.", rich_help_panel=REPORT
    ),
) -> None:
    """Remove rain from videos: streaming, one output frame per input frame, every stream kept; resumable."""
    import torch
    from rich.console import Console

    from .batch import Target, derain_many, probe_targets
    from .derain import SAMPLE_CLIP, Derainer
    from .jobs import job_progress
    from .model.io import WeightsError
    from .outputs import MadeFolders, check_name
    from .report import JobReport
    from .video.inputs import InputError, collect_inputs, output_targets
    from .video.reader import VideoError, check_input

    if sample and inputs:
        fail("give input videos or --sample, not both")
    if not sample and not inputs:
        fail("give an input video, folder or pattern (or --sample)")
    if weights is not None and rain is not None:
        fail("give --rain or --weights, not both")
    if quiet and verbose:
        fail("give --quiet or --verbose, not both")
    if ray is not None and workers > 1:
        fail("give --workers or --ray, not both (on Ray, each node's GPUs are its workers)")
    if threads:
        torch.set_num_threads(threads)
    try:
        if output == "-":  # a folder named "-" of PNG frames was made
            raise ValueError("-o -: the output is a file or folder, not standard output; give its name")
        if output is not None:
            check_name(Path(output))
        given = [str(check_input(a)) if a == "-" else a for a in inputs or []]  # stdin: the file it reads
        found = collect_inputs([str(SAMPLE_CLIP)] if sample else given, recursive, output)
        if sample and output is None:
            output = f"{SAMPLE_CLIP.stem}.derained{SAMPLE_CLIP.suffix}"  # here, not in the package
        places = output_targets(found.items, output, fmt, many=found.many)
    except (InputError, VideoError, ValueError, OSError) as exc:
        fail(error_line(exc))
    targets = [
        Target(item.path, place.path, place.frames) for item, place in zip(found.items, places, strict=True)
    ]
    try:
        derainer = Derainer(
            rain=rain or "light", weights=weights, device=device, precision=precision, batch=batch,
            tile=tile, tile_overlap=tile_overlap, codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt,
            compare=compare, start=start, end=end, fps=fps, audio=audio, overwrite=overwrite, strict=strict,
            segment_frames=segment_frames, flow=flow, colour=colour,
        )  # fmt: skip
        sources = [*(t.source for t in targets), *derainer.reads()]
        _check_reports(json_out, log, sources, [t.output for t in targets], overwrite)
    except (VideoError, WeightsError, ValueError, OSError, LookupError) as exc:
        fail(error_line(exc))
    if ray is not None:
        from .cluster import RayUnavailable, check_ray

        try:
            check_ray()
        except RayUnavailable as exc:
            fail(error_line(exc))
    console = Console(stderr=True)
    settings = {**derainer.kwargs, "workers": workers, "ray": ray, "segment_frames": segment_frames}
    try:
        report = JobReport(
            console, quiet=quiet, verbose=verbose, progress_every=progress_every, json_path=json_out,
            log_path=log, overwrite=overwrite, settings=settings,
        )  # fmt: skip
    except OSError as exc:
        fail(f"cannot open --log {log}: {exc.strerror or exc}")
    for passed in found.skipped:
        report.warning(None, f"passed over {passed}: an output of an earlier tmics run")
    results = []
    folders = MadeFolders()  # under -o DIR the inputs' tree is mirrored, a folder made when its turn comes

    def mirror(target: Target) -> None:
        folders.make(target.output.parent)

    try:
        try:
            frames, sizes, estimated = probe_targets(derainer, targets)
            auto = (
                "light or heavy, measured per input (--rain auto)" if rain == "auto" and not weights else None
            )
            report.run_started(
                str(derainer.device), derainer.precision, derainer.weights_file(), frames=frames, sizes=sizes,
                label=auto, estimated=estimated,
            )  # fmt: skip
            if ray is not None:
                from .cluster import derain_on_ray

                runs = derain_on_ray(derainer, targets, ray, report=report, fail_fast=fail_fast)
            else:
                runs = derain_many(
                    derainer, targets, report=report, fail_fast=fail_fast, workers=workers,
                    raise_errors=len(targets) == 1, on_output=mirror if found.many and output else None,
                )  # fmt: skip
            for result in runs:
                results.append(result)
        except BaseException:
            report.close()  # the bar stopped and the log closed before the error line
            raise
        finally:
            folders.remove_empty()  # those of inputs that failed or were never reached
    except KeyboardInterrupt as exc:
        target = getattr(exc, "target", None)
        kept = job_progress(target.output) if target is not None else None
        where = f"; nothing was written to {target.output}" if target is not None else ""
        if kept and kept[0]:
            where = (
                f"; {kept[0]} of {kept[1]} segments of {target.output} are kept: run the same command again "
                "to resume"
            )
        _abandon(report, f"interrupted ({signal_name(exc)}){where}", target, exit_code(exc))
    except (VideoError, WeightsError, ValueError, OSError, MemoryError, LookupError) as exc:  # one input's
        _abandon(report, error_line(exc), targets[0] if len(targets) == 1 else None)
    except Exception as exc:  # noqa: BLE001 - e.g. a CUDA or codec failure: still one line, no output left
        _abandon(report, unexpected_line(exc), targets[0] if len(targets) == 1 else None)
    try:
        report.finish()
    except (ValueError, OSError) as exc:
        fail(error_line(exc))
    failed = [r for r in results if r.status == "failed"]
    if failed and len(targets) > 1:
        names = ", ".join(str(r.source) for r in failed[:5]) + (", ..." if len(failed) > 5 else "")
        fail(f"{len(failed)} of {len(targets)} inputs failed: {names}")
    if failed:
        raise typer.Exit(2)


def _abandon(report: Any, message: str, target: Any = None, code: int = 2) -> NoReturn:
    """The job ended with an error (of `target`, a batch.Target, where known): the --json summary and
    the --log still say so (ok false, the error), then the one error line."""
    try:
        report.abandon(message, *((target.source, target.output) if target is not None else ()))
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {error_line(exc)}", err=True)
    fail(message, code)


def _check_reports(
    json_out: str | None, log: Path | None, sources: list[Path], outputs: list[Path], overwrite: bool
) -> None:
    """--json and --log must not land on an input, an output or each other (before any work)."""
    from .outputs import check_apart, check_distinct, check_output

    if json_out is not None and json_out != "-" and Path(json_out).is_dir():
        raise ValueError(f"--json {json_out} is a folder; give a file name")
    if log is not None and log.is_dir():
        raise ValueError(f"--log {log} is a folder; give a file to append to")
    check_distinct([(json_out, "--json"), (log, "--log"), *((out, "-o output") for out in outputs)])
    if json_out is not None and json_out != "-":
        check_output(Path(json_out), [*sources, *outputs], overwrite=overwrite, what="--json file")
    if log is not None:
        json_file = [Path(json_out)] if json_out not in (None, "-") else []
        check_apart(log, [*sources, *outputs, *json_file], what="--log file")


@app.command(
    epilog=_examples(
        "tmics benchmark RainSynLight25 --data sets/RainSynLight25",
        "tmics benchmark synthetic-heavy -m input -m heavy --json results.json",
        "tmics benchmark NTURain -m light --weights mine.safetensors --csv -",
    )
)
def benchmark(
    name: str = typer.Argument(
        ...,
        help="RainSynLight25, RainSynComplex25, NTURain, LasVR, synthetic-light, synthetic-heavy, the model "
        "card's frozen sets card-light-v1 ... card-near-v1 (with --data holding walk/), or a path.",
        show_default=False,
    ),
    data: Path | None = typer.Option(
        None, help="Folder of the set (default: $TMICS_DATA/NAME).", rich_help_panel=IO
    ),
    method: list[str] = typer.Option(
        ["input", "median", "median-unaligned", "light", "heavy"],
        "--method",
        "-m",
        help="input, median, median-unaligned, light, heavy or a weights file. Repeatable.",
        rich_help_panel=METHODS,
    ),
    weights: list[Path] = typer.Option(
        [], help="Also score this weights file. Repeatable.", rich_help_panel=METHODS
    ),
    ablate: bool = typer.Option(
        False, help="Also score each network's DNA output alone (TMICS_S).", rich_help_panel=METHODS
    ),
    flow: InferenceFlow = typer.Option(
        "auto", metavar=_choices(InferenceFlow), help=FLOW_HELP, rich_help_panel=METHODS
    ),
    fsim: bool = typer.Option(
        False, "--fsim/--no-fsim", help="Also FSIM (Zhang et al.; slower).", rich_help_panel=METRICS
    ),
    vif: bool = typer.Option(
        False, "--vif/--no-vif", help="Also pixel-domain VIF (Sheikh and Bovik).", rich_help_panel=METRICS
    ),
    per_video: bool = typer.Option(
        False, "--per-video/--no-per-video", help="Show every video's scores.", rich_help_panel=IO
    ),
    json_path: Path | None = typer.Option(
        None,
        "--json",
        help="Write results as JSON here (-: standard output, and the table to stderr).",
        rich_help_panel=IO,
    ),
    csv_path: Path | None = typer.Option(
        None,
        "--csv",
        help="Write results as CSV here (-: standard output, and the table to stderr).",
        rich_help_panel=IO,
    ),
    save_frames: Path | None = typer.Option(
        None, help="Save every output frame as PNG under this folder.", rich_help_panel=IO
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps.", rich_help_panel=DEVICE),
    precision: Precision = typer.Option(
        "auto",
        metavar=_choices(Precision),
        help="auto: fp16 on GPUs; on the CPU bf16 where it is native (AVX-512 BF16, AMX), else fp32.",
        rich_help_panel=DEVICE,
    ),
    batch: int | None = typer.Option(None, min=1, help=BATCH_HELP, rich_help_panel=DEVICE),
    threads: int | None = typer.Option(
        None, min=1, max=MAX_THREADS, help="CPU threads for torch.", rich_help_panel=DEVICE
    ),
    overwrite: bool = _overwrite_option(),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="A damaged frame (truncated JPEG/PNG) is an error (exit 2), not a warning.",
        rich_help_panel=SAFETY,
    ),
) -> None:
    """Y-PSNR / SSIM (the paper's MATLAB protocol), a temporal figure and speed, per method."""
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .benchmark import BASELINES, BenchmarkResult, baseline, load_set, model_method, run_benchmark
    from .data.datasets import DataError
    from .inference import Restorer, default_batch, pick_device, pick_precision
    from .model.io import WeightsError, load_model
    from .outputs import PendingOutput, check_apart, check_distinct, check_output
    from .weights import resolve_weights

    if threads:
        torch.set_num_threads(threads)
    to_stdout = "-" in (str(json_path), str(csv_path))
    if str(json_path) == "-" and str(csv_path) == "-":
        fail("--json - and --csv - cannot both go to standard output")
    console, out = Console(stderr=True), Console(stderr=to_stdout)
    frames_out: PendingOutput | None = None
    try:
        bench = load_set(name, data, strict=strict)
        entries = [*method, *map(str, weights)]
        weight_files = {e: resolve_weights(e) for e in entries if e not in BASELINES}
        inputs = [Path(bench.source), data, Path(name), *weight_files.values()]
        targets = [(json_path, "--json file"), (csv_path, "--csv file")]
        for target, what in targets:
            if target is not None and str(target) != "-":
                check_output(target, inputs, overwrite=overwrite, what=what)
                if save_frames is not None:
                    check_apart(target, [save_frames], what=what)
        check_distinct([(json_path, "--json"), (csv_path, "--csv"), (save_frames, "--save-frames")])
        if save_frames is not None:
            what = "--save-frames folder"
            check_output(save_frames, inputs, overwrite=overwrite, folder=True, what=what)
        torch_device = pick_device(device)
        dtype = pick_precision(precision, torch_device)
        batch = batch or default_batch(torch_device)
        methods = []
        stems = [Path(e).stem for e in entries if e not in BASELINES and e not in ("light", "heavy")]
        for entry in entries:
            if entry in BASELINES:
                methods.append(baseline(entry))
                continue
            path = weight_files[entry]
            label = entry if entry in ("light", "heavy") else Path(entry).stem
            if label != entry and (
                label in BASELINES or label in ("light", "heavy") or stems.count(label) > 1
            ):
                label = entry  # w1/input.safetensors is not the input, nor a/m and b/m one method
            restorer = Restorer(load_model(path), torch_device, dtype, flow=flow)
            methods.append(model_method(label, restorer, ablate))
        if len({m.name for m in methods}) != len(methods):
            raise ValueError("a method is listed twice")
        if save_frames is not None:  # written under a temporary name, moved into place at the end
            frames_out = PendingOutput(save_frames, overwrite=overwrite, folder=True, kind="benchmark-frames")
    except (DataError, WeightsError, FileNotFoundError, ValueError, OSError) as exc:
        fail(error_line(exc))
    total = sum(v.count for v in bench.videos) * len(methods)
    result = BenchmarkResult(bench, [m.name for m in methods], str(torch_device))
    columns = (TextColumn(bench.name), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    interrupted: KeyboardInterrupt | None = None
    error: str | None = None
    frames_dir = frames_out.path if frames_out is not None else None
    progress = Progress(*columns, console=console, transient=True)
    progress.start()
    try:
        task = progress.add_task("frames", total=total)
        extra = tuple(m for m, on in (("fsim", fsim), ("vif", vif)) if on)
        advance = lambda: progress.advance(task)  # noqa: E731
        run_benchmark(bench, methods, str(torch_device), batch, frames_dir, advance, result, extra)
    except KeyboardInterrupt as exc:
        interrupted = exc  # what is finished is kept: the table, --json, --csv and saved frames
    except (DataError, OSError, ValueError) as exc:
        error = error_line(exc)
    finally:
        _stop_progress(progress)
    if error is not None:
        if frames_out is not None:
            frames_out.abort()
        fail(error)
    _print_benchmark(out, result, per_video)
    try:
        if frames_out is not None:
            frames_out.commit()
        if json_path is not None:
            result.write_json(json_path, overwrite=overwrite)
        if csv_path is not None:
            result.write_csv(csv_path, overwrite=overwrite)  # "-": standard output
    except (ValueError, OSError) as exc:
        fail(error_line(exc))
    if interrupted is not None:
        what = "the table, --json, --csv and --save-frames hold the videos finished so far"
        fail(f"interrupted ({signal_name(interrupted)}): {what}", exit_code(interrupted))


def _print_benchmark(out, result, per_video: bool) -> None:  # noqa: ANN001 - rich Console, BenchmarkResult
    from rich.markup import escape
    from rich.table import Table

    def fmt(value, spec: str) -> str:  # noqa: ANN001
        return "-" if value is None else format(value, spec)

    bench = result.set
    scored = sum(len(v.scored) for v in bench.videos)
    title = f"{bench.name}: {len(bench.videos)} videos, {scored} scored frames ({bench.protocol} protocol)"
    table = Table(title=escape(title) + ("" if result.complete else r" \[interrupted]"))
    means = result.means()
    extra = [m for m in ("fsim", "vif") if any(m in mean for mean in means.values())]
    for column in ("method", "Y-PSNR", "SSIM", *(m.upper() for m in extra), "temporal err", "fps", "videos"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row, mean in means.items():
        table.add_row(
            escape(row),
            fmt(mean["psnr"], ".2f"),
            fmt(mean["ssim"], ".4f"),
            *(fmt(mean.get(m), ".4f") for m in extra),
            fmt(mean["temporal"], ".3f"),
            fmt(mean["fps"], ".2f"),
            str(mean["videos"]),
        )
    out.print(table)
    if per_video:
        detail = Table(title="per video")
        for column in ("method", "video", "Y-PSNR", "SSIM", "temporal err", "frames"):
            detail.add_column(column, justify="left" if column in ("method", "video") else "right")
        for row, videos in result.per_video.items():
            for video, r in videos.items():
                detail.add_row(
                    escape(row),
                    escape(video),
                    fmt(r["psnr"], ".2f"),
                    fmt(r["ssim"], ".4f"),
                    fmt(r["temporal"], ".3f"),
                    str(r["frames_scored"]),
                )
        out.print(detail)


@app.command(
    epilog=_examples(
        "tmics search --data clips/ -o genotype.json --epochs 20 --warmup 5",
        "tmics search --data clips/ -o genotype.json --resume",
        "tmics train --data clips/ -o mine.safetensors --genotype genotype.json",
    )
)
def search(
    output: Path = typer.Option(
        ..., "-o", "--output", help="Genotype JSON to write (for train --genotype).", rich_help_panel=IO
    ),
    data: list[str] = typer.Option(
        ..., "--data", help="Clean clips or a paired set. Repeatable.", rich_help_panel=IO
    ),
    holdout: list[str] = typer.Option(
        [],
        help="Clip names for the validation pool (default: other seeds of the training data).",
        rich_help_panel=IO,
    ),
    size: Size = typer.Option(
        "tiny",
        metavar=_choices(Size),
        help="Named size of the search network (usually tiny, small or paper).",
        rich_help_panel=MODEL,
    ),
    width: int | None = typer.Option(
        None, min=1, help="Override the size's channel width.", rich_help_panel=MODEL
    ),
    preset: str = typer.Option(
        "light", metavar="PRESET", help=f"Rain preset for rendered rain: {RAIN_HELP}.", rich_help_panel=SEARCH
    ),
    epochs: int = typer.Option(80, min=1, help="Epochs over the training pool.", rich_help_panel=SEARCH),
    warmup: int = typer.Option(
        30, min=0, help="First epochs update the weights only.", rich_help_panel=SEARCH
    ),
    groups: int = typer.Option(
        20, min=1, help="5-frame windows in the training pool.", rich_help_panel=SEARCH
    ),
    val_groups: int = typer.Option(
        20, min=1, help="5-frame windows in the validation pool.", rich_help_panel=SEARCH
    ),
    batch: int = typer.Option(4, min=1, help="Batch size.", rich_help_panel=SEARCH),
    crop: int = typer.Option(128, min=16, help="Crop size in pixels.", rich_help_panel=SEARCH),
    lr: float = typer.Option(3e-4, help="Weight learning rate (cosine to 1e-6).", rich_help_panel=SEARCH),
    weight_optimizer: Optimizer = typer.Option(
        "sgd", metavar=_choices(Optimizer), help="sgd is the paper's.", rich_help_panel=SEARCH
    ),
    arch_lr: float = typer.Option(1e-4, help="Learning rate of alpha and beta.", rich_help_panel=SEARCH),
    arch_optimizer: Optimizer = typer.Option(
        "sgd", metavar=_choices(Optimizer), help="sgd is the paper's.", rich_help_panel=SEARCH
    ),
    eta: float = typer.Option(
        0.01, help="Weight of the alpha entropy in L_arc (Eq. 7).", rich_help_panel=SEARCH
    ),
    fusion_lr: float = typer.Option(
        1e-3, help="Learning rate of the AAS fusion (level 3).", rich_help_panel=SEARCH
    ),
    seed: int = typer.Option(0, help="Seed for weights and pools (0 to 2^32 - 1).", rich_help_panel=SEARCH),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N.", rich_help_panel=DEVICE),
    resume: bool = typer.Option(False, help="Continue from OUTPUT.run/search.pt.", rich_help_panel=IO),
    threads: int | None = typer.Option(
        None, min=1, max=MAX_THREADS, help="CPU threads for torch.", rich_help_panel=DEVICE
    ),
    overwrite: bool = _overwrite_option(),
) -> None:
    """The paper's triple-level search: weights, then alpha/beta (micro/macro), then the AAS fusion."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from .data.datasets import DataError
    from .model.ops import OPERATION_NAMES
    from .training.search import CHECKPOINT_NAME, SearchConfig, Searcher

    cfg = SearchConfig(
        output=str(output),
        data=data,
        preset=preset,
        holdout=holdout,
        size=size,
        width=width,
        epochs=epochs,
        warmup=warmup,
        groups=groups,
        val_groups=val_groups,
        batch=batch,
        crop=crop,
        lr=lr,
        weight_optimizer=weight_optimizer,
        arch_lr=arch_lr,
        arch_optimizer=arch_optimizer,
        eta=eta,
        fusion_lr=fusion_lr,
        seed=seed,
        device=device,
        resume=resume,
        threads=threads,
        overwrite=overwrite,
    )
    console = Console(stderr=True)
    columns = (TextColumn("search"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"))
    columns += (TimeRemainingColumn(),)
    try:
        searcher = Searcher(cfg)
        searcher.prepare()  # data, crop and memory checked before the progress display starts
        progress = Progress(*columns, console=console)
        progress.start()
        try:
            task = progress.add_task("epochs", total=epochs, completed=searcher.epoch, note="")
            if searcher.epoch:
                console.print(
                    f"resumed at epoch {searcher.epoch} of {epochs} from {cfg.run_path}", markup=False
                )

            def on_epoch(r: dict) -> None:
                beta = ", ".join(f"{b:.3f}" for b in r["beta"])
                note = f"loss {r['loss']:.4f} entropy {r['entropy']:.3f} beta ({beta})"
                progress.update(task, completed=r["epoch"], note=note)
                if not console.is_terminal:  # logs get one line per epoch instead of a live bar
                    console.print(f"epoch {r['epoch']}/{epochs}: {note}", soft_wrap=True)

            genotype = searcher.fit(on_epoch)
        finally:
            _stop_progress(progress)
    except (DataError, ValueError, OSError, RuntimeError) as exc:
        fail(error_line(exc))
    except KeyboardInterrupt as exc:
        _interrupted_run(exc, cfg.run_path / CHECKPOINT_NAME)
    table = Table(title=f"softmax(alpha) per layer after {searcher.epoch} epochs")
    table.add_column("layer")
    for op in OPERATION_NAMES:
        short = op.replace("residual", "res").replace("_attention", " att").replace("dilated", "dil")
        table.add_column(short.replace("_", " "), justify="right")
    for i, row in enumerate(genotype.search["alpha"]):
        best = max(range(len(row)), key=row.__getitem__)
        cells = [f"[bold]{v:.3f}[/bold]" if j == best else f"{v:.3f}" for j, v in enumerate(row)]
        table.add_row(str(i + 1), *cells)
    console.print(table)
    beta = ", ".join(f"{k} {v:.3f}" for k, v in genotype.search["beta"].items())
    console.print(f"beta: {beta} -> {genotype.alignment}; cell: {', '.join(genotype.layers)}", soft_wrap=True)
    console.print(f"wrote {output} (and {output.with_suffix('.history.csv')})", soft_wrap=True)


@app.command(
    "fetch-weights",
    help=FETCH_HELP,
    epilog=_examples(
        "tmics fetch-weights --list",
        "tmics fetch-weights light-full",
        "tmics fetch-weights --verify",
    ),
)
def fetch_weights(
    names: list[str] = typer.Argument(
        None, help="Registered weights to download (see --list).", show_default=False
    ),
    all_: bool = typer.Option(
        False, "--all", help="Download every registered weights file.", rich_help_panel=ACTIONS
    ),
    list_: bool = typer.Option(
        False, "--list", help="Show the registry and what is present locally.", rich_help_panel=ACTIONS
    ),
    verify_: bool = typer.Option(
        False, "--verify", help="Re-check the sha256 of the cached files.", rich_help_panel=ACTIONS
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Download again and replace the cached copy, even when it is intact.",
        rich_help_panel=SAFETY,
    ),
    force: bool = typer.Option(False, "--force", hidden=True, help="Old name of --overwrite."),
) -> None:
    """Download named weights from their Hugging Face repository into the user cache, sha256-checked."""
    from rich.console import Console
    from rich.table import Table

    from . import weights as registry

    console = Console(stderr=True)
    names = list(names or [])
    if not (names or all_ or list_ or verify_):
        fail("give weights names, --all, --list or --verify")
    unknown = [n for n in names if n not in registry.REGISTRY]
    if unknown:
        fail(f"unknown weights {', '.join(unknown)}; registered: {', '.join(registry.REGISTRY)}")
    if list_:
        out = Console()
        table = Table(title="registered weights")
        for column in ("name", "file", "MB", "sha256", "cached", "bundled"):
            table.add_column(column, no_wrap=True)
        for name, entry in registry.REGISTRY.items():
            cached = registry.cached_path(name)
            state = "-" if not cached.exists() else ("ok" if registry.verify(name) else "corrupt")
            bundled = "yes" if registry.bundled_path(name) else "-"
            table.add_row(name, entry.filename, f"{entry.size / 1e6:.2f}", entry.sha256[:12], state, bundled)
        out.print(table)
        for name, entry in registry.REGISTRY.items():
            out.print(f"{name}: {entry.description}; from {entry.repo_id}@{entry.revision}", soft_wrap=True)
        out.print(f"cache: {registry.cache_dir()}", soft_wrap=True)
    if verify_:
        bad = []
        for name in registry.REGISTRY:
            path = registry.cached_path(name)
            if not path.exists():
                continue
            if registry.verify(name):
                console.print(f"{name}: {path} ok", soft_wrap=True)
            elif not path.is_file() or path.is_symlink():  # not a file tmics wrote: never removed
                bad.append(name)
                console.print(f"{name}: {path} is not a weights file; left as it is", soft_wrap=True)
            else:
                path.unlink()
                bad.append(name)
                console.print(f"{name}: {path} does not match its sha256; deleted", soft_wrap=True)
        if bad:
            fail(f"cached weights that failed their check: {', '.join(bad)}; fetch them again")
    for name in list(registry.REGISTRY) if all_ else names:
        try:
            path = registry.fetch(name, force=force or overwrite)
        except registry.FetchError as exc:
            fail(error_line(exc))
        console.print(f"{name}: {path} (sha256 {registry.REGISTRY[name].sha256[:12]}... ok)", soft_wrap=True)


def main() -> None:
    app()
