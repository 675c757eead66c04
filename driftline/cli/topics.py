"""``driftline topics``: create and check driftline's Kafka topics."""

from __future__ import annotations

import typer

from driftline.cli.base import out, settings

commands = typer.Typer(help="Create and check driftline's Kafka topics.", no_args_is_help=True)


@commands.command("create")
def topics_create() -> None:
    """Create every driftline topic that is missing, with the configured partition count."""
    from driftline.kafka.topics import create_topics

    resolved = settings()
    for topic, outcome in sorted(create_topics(resolved).items()):
        out.print(f"{outcome:8} {topic}")
    out.print(f"({resolved.kafka.partitions} partitions each, at {resolved.kafka.bootstrap})")


@commands.command("check")
def topics_check() -> None:
    """Verify that predictions and feedback are co-partitioned (exit code 1 if not)."""
    from driftline.kafka.topics import check_copartitioning

    report = check_copartitioning(settings())
    out.print(report.describe())
    raise typer.Exit(0 if report.ok else 1)
