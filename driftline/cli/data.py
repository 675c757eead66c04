"""``driftline backfill``, ``status`` and ``sql``: sending a file's events, and reading what is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from driftline.cli.base import err, print_frame, say, settings


def backfill(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet file of predictions (or labels with --feedback).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model id of the rows.")],
    version: Annotated[str, typer.Option("--version", "-v", help="Model version of the rows.")],
    feedback: Annotated[bool, typer.Option("--feedback", help="The rows are labels, not predictions.")] = False,
    sensitive: Annotated[
        list[str] | None, typer.Option("--sensitive", "-s", help="A column holding a sensitive attribute (repeat).")
    ] = None,
) -> None:
    """Send the rows of a file as prediction (or feedback) events, with a progress bar."""
    from datetime import timedelta

    from rich.progress import Progress

    from driftline.client.backfill import backfill as run_backfill
    from driftline.streams.core.joining import window_start

    config = settings()
    with Progress(console=err, transient=False) as bar:
        task = bar.add_task(f"Sending {file.name}", total=None)
        sent = run_backfill(
            config,
            file,
            model,
            version,
            feedback=feedback,
            sensitive_columns=tuple(sensitive or ()),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    span = f", event time {sent.first:%Y-%m-%d %H:%M:%S} to {sent.last:%Y-%m-%d %H:%M:%S}" if sent.last else ""
    say(f"Sent {sent.rows} {'feedback' if feedback else 'prediction'} events for {model} {version}{span}")
    if sent.last is not None and not feedback:
        last_end = window_start(sent.last, config.monitor.window_s) + timedelta(seconds=config.monitor.window_s)
        query = (
            "SELECT max(window_end) FROM performance_windows_latest "
            f"WHERE model_id = '{model}' AND model_version = '{version}'"
        )
        say(
            f"Its windows close on its own events; the last one, ending {last_end:%Y-%m-%d %H:%M:%S}, once {model} "
            f"{version} has been quiet for {config.monitor.idle_timeout_s:g} s while other traffic flows (or when "
            f"it sends again). Complete when this answers {last_end:%Y-%m-%d %H:%M:%S}:\n  driftline sql "
            f'"{query}"'
        )


def status(model: Annotated[str | None, typer.Option(help="Only this model.")] = None) -> None:
    """How complete each model version's results are in ClickHouse: closed until (every prediction in), final
    until (no label changes them), the latest prediction stored, and what the newest window waits for."""
    from driftline.client.status import completeness

    frame = completeness(settings(), model)
    print_frame(frame, "Windows per model version", blank_missing=True)
    if frame.empty:
        say("(no model has results yet)")


def sql(
    query: Annotated[str, typer.Argument(help='A SQL query, e.g. "SELECT count() FROM predictions FINAL".')],
    output: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
) -> None:
    """Run a read-only query on the configured ClickHouse (through a running sink if it holds the database)."""
    if output not in {"table", "csv", "json"}:
        raise typer.BadParameter(f"--format must be table, csv or json, got {output!r}")
    from driftline.sinks.sql_endpoint import query as run_query

    frame = run_query(settings(), query)
    if output == "csv":
        print(frame.to_csv(index=False), end="")
    elif output == "json":
        print(frame.to_json(orient="records", date_format="iso"))
    else:
        print_frame(frame)
        if frame.empty:
            say("0 rows")
