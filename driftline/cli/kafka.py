"""``driftline kafka``: the local Apache Kafka broker, for development."""

from __future__ import annotations

from typing import Annotated

import typer

from driftline.cli.base import out, say, settings

commands = typer.Typer(help="Run a local Apache Kafka broker (KRaft, one node) for development.", no_args_is_help=True)


@commands.command("start")
def kafka_start() -> None:
    """Start the local broker (resolving its jars with Maven on first use) and print its bootstrap address."""
    from driftline.devtools.local_broker import LocalKafka

    status = LocalKafka(settings(), log=say).start()
    out.print(status.bootstrap)


@commands.command("stop")
def kafka_stop() -> None:
    """Stop the local broker cleanly."""
    from driftline.devtools.local_broker import LocalKafka

    stopped = LocalKafka(settings(), log=say).stop()
    say("Kafka stopped" if stopped else "Kafka was not running")


@commands.command("status")
def kafka_status() -> None:
    """Tell whether the local broker runs, and where. Exit code 0 if running, 1 if not."""
    from driftline.devtools.local_broker import LocalKafka

    status = LocalKafka(settings()).status()
    out.print(status.describe())
    raise typer.Exit(0 if status.running else 1)


@commands.command("logs")
def kafka_logs(
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="How many lines.")] = 40,
) -> None:
    """Print the last lines of the local broker's log."""
    from driftline.devtools.local_broker import LocalKafka

    out.print(LocalKafka(settings()).log_tail(lines), highlight=False, markup=False)
