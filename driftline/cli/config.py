"""``driftline config``: the resolved configuration."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Column, Table

from driftline.cli.base import GlobalOptions, out, settings

commands = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)


@commands.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show every setting in force and its source: default, the TOML file (its path) or the DRIFTLINE_* variable
    that set it (secrets masked). --json prints the settings by section, plus "sources": setting -> source."""
    from driftline.settings_report import setting_sources
    from driftline.sinks.clickhouse import redacted

    resolved = settings()
    sources = setting_sources(GlobalOptions.config)
    dumped = resolved.model_dump(mode="json")
    dumped["clickhouse"]["dsn"] = redacted(resolved.clickhouse_dsn)
    if as_json:
        out.print_json(json.dumps({**dumped, "sources": sources}))
        return
    table = Table(Column("setting", no_wrap=True), "value", Column("source", no_wrap=True))  # the value wraps
    for name, source in sources.items():
        section, _, key = name.partition(".")
        table.add_row(name, str(dumped[section][key] if key else dumped[section]), source)
    out.print(table)


@commands.command("reference")
def config_reference() -> None:
    """Print the table of every setting (Markdown), as docs/configuration.md shows it."""
    from driftline.settings_report import reference_markdown

    print(reference_markdown())
