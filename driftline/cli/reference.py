"""``driftline reference``: reference profiles that drift is measured against."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from driftline.cli.base import say, settings
from driftline.schemas.events import Task

commands = typer.Typer(help="Reference profiles that drift is measured against.", no_args_is_help=True)


@commands.command("build")
def reference_build(
    *,
    model: Annotated[str, typer.Option("--model", "-m", help="Model id.")],
    version: Annotated[str, typer.Option("--version", "-v", help="Model version.")],
    source: Annotated[
        Path, typer.Option("--from", help="CSV or Parquet of training data (features, score, predicted label).")
    ],
    feature: Annotated[list[str] | None, typer.Option("--feature", "-f", help="Profile only these columns.")] = None,
    prediction_column: Annotated[
        str, typer.Option("--prediction-column", help="Column of the model's predicted label.")
    ] = "prediction",
    score_column: Annotated[
        str, typer.Option("--score-column", help="Column of the score (binary: probability of the positive class).")
    ] = "score",
    label_column: Annotated[
        str | None, typer.Option("--label-column", help="Column of the true outcome (left out of the features).")
    ] = None,
    sensitive: Annotated[
        list[str] | None,
        typer.Option("--sensitive", "-s", help="A sensitive attribute's column, left out of the features (repeat)."),
    ] = None,
    task: Annotated[
        Task | None,
        typer.Option(help="The model's task (default: its pinned one, else inferred from the predictions)."),
    ] = None,
) -> None:
    """Build a reference profile from a file and publish it to the workers.

    A column named ``label`` must be named by --label-column (the true outcome) or --prediction-column (the
    predicted label): profiling the one as the other is silent and wrong. With --label-column the profile
    holds the reference's accuracy, which the default performance rules compare windows with."""
    from driftline.client.backfill import read_frame
    from driftline.client.reference import build_and_publish, reference_performance_line

    profile = build_and_publish(
        settings(),
        read_frame(source),
        model,
        version,
        feature,
        prediction_column=prediction_column,
        score_column=score_column,
        label_column=label_column,
        sensitive=tuple(sensitive or ()),
        task=task,
    )
    say(f"Published the reference profile of {model} {version}: {profile.rows} rows, {len(profile.features)} features")
    say(reference_performance_line(profile))
