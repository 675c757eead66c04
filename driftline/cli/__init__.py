"""The ``driftline`` command line (Typer): one module per command group, put together here on
:data:`driftline.cli.base.app`. Every command and group has ``--help``."""

from __future__ import annotations

import sys

from driftline.cli import config, data, kafka, reference, schemas, services, simulate, topics, triggers
from driftline.cli.base import app, err
from driftline.schemas.errors import DriftlineError

__all__ = ["app", "main_entry"]

for name, group in (
    ("kafka", kafka),
    ("topics", topics),
    ("config", config),
    ("schemas", schemas),
    ("reference", reference),
    ("triggers", triggers),
):
    app.add_typer(group.commands, name=name)
app.command()(services.worker)
app.command()(services.sink)
app.command("run")(services.run_all)
app.command()(data.backfill)
app.command()(data.status)
app.command()(data.sql)
app.command()(simulate.simulate)
app.command()(simulate.demo)


def main_entry() -> None:
    """Entry point: turn driftline's own errors into one line on stderr and exit code 2."""
    try:
        app()
    except DriftlineError as exc:
        err.print(f"error: {exc}", style="bold red", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
