"""The `tmics` command line: a thin Typer app; each subcommand parses options and calls the library."""

from __future__ import annotations

import typer

from . import __version__

app = typer.Typer(
    name="tmics",
    help="Remove rain from videos with TMICS (triple-level model-inferred collaborative networks).",
    no_args_is_help=True,
    add_completion=False,
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


def main() -> None:
    app()
