"""What the commands of the ``driftline`` command line share: the app and its global options, the resolved settings,
and output (results on stdout, progress for a person on stderr)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from driftline import __version__
from driftline.settings import Settings, load_settings

if TYPE_CHECKING:
    import pandas as pd

app = typer.Typer(
    help="driftline: a Kafka-native monitor for machine-learning models in production.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# wide enough off a terminal (CI logs, pipes) that tables and messages are not cut
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML config file (default: ./driftline.toml if present, or DRIFTLINE_CONFIG)."
    ),
]


class GlobalOptions:
    """The options given before the command."""

    config: Path | None = None


@app.callback()
def main(config: ConfigOption = None) -> None:
    """Global options."""
    GlobalOptions.config = config


def settings() -> Settings:
    """The resolved settings, or a clean exit with the reason."""
    return load_settings(GlobalOptions.config)


def say(line: str) -> None:
    """Progress for a person, on stderr so stdout stays parseable."""
    err.print(line, highlight=False, markup=False, soft_wrap=True)


LogLevel = Annotated[str, typer.Option("--loglevel", "-l", help="crit, error, warn, info or debug (Faust's levels).")]


def print_frame(frame: pd.DataFrame, title: str | None = None, *, blank_missing: bool = False) -> None:
    """``frame`` as a table, a row per row; with ``blank_missing``, missing values print empty."""
    import pandas as pd

    table = Table(*map(str, frame.columns), title=title)
    for row in frame.itertuples(index=False):
        table.add_row(*("" if blank_missing and pd.isna(value) else str(value) for value in row))
    out.print(table)


@app.command()
def version() -> None:
    """Print driftline's version."""
    out.print(f"driftline {__version__}")
