"""``driftline schemas``: the event contracts as JSON Schema, and the ClickHouse tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from driftline.cli.base import out

commands = typer.Typer(help="Export the event contracts as JSON Schema.", no_args_is_help=True)


@commands.command("export")
def schemas_export(directory: Annotated[Path, typer.Argument(help="Where to write the *.json files.")]) -> None:
    """Write one JSON Schema per event type (prediction, feedback, their envelopes, dead letter)."""
    from driftline.schemas.json_schema import export

    for path in export(directory):
        out.print(str(path))


@commands.command("tables")
def schemas_tables() -> None:
    """Print every ClickHouse table with its columns, types and meanings (Markdown), as docs/tables.md shows it."""
    from driftline.schemas.tables import reference_markdown

    print(reference_markdown(), end="")
