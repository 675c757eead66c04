"""``driftline triggers``: retraining decisions, followed on their topic or listed from ClickHouse."""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer

from driftline.cli.base import print_frame, say, settings

commands = typer.Typer(help="Retraining decisions: follow the topic or list recent ones.", no_args_is_help=True)


@commands.command("tail")
def triggers_tail(
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Also show earlier triggers.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print each trigger as one JSON line.")] = False,
) -> None:
    """Print retraining triggers as they arrive on the topic (each decision once), until Ctrl-C."""
    from driftline.client.triggers import tail

    config = settings()
    say(f"Following {config.topic('retrain-triggers')} at {config.kafka.bootstrap} (Ctrl-C to stop)")
    with contextlib.suppress(KeyboardInterrupt):
        tail(
            config,
            lambda t: print(t.model_dump_json() if as_json else t.describe(), flush=True),
            from_beginning=from_beginning,
        )


@commands.command("list")
def triggers_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
) -> None:
    """Show recent retraining triggers stored in ClickHouse."""
    from driftline.client.triggers import recent

    frame = recent(settings(), limit, model)
    print_frame(frame, f"{len(frame)} most recent retraining triggers")
