"""``driftline simulate`` and ``driftline demo``: simulated models in production, and the demo that plays one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from driftline.cli.base import err, out, say, settings
from driftline.schemas.errors import DriftlineError
from driftline.settings import Settings

if TYPE_CHECKING:
    from driftline.simulation.simulator import Simulation


def simulate(
    *,
    scenario_name: Annotated[
        str,
        typer.Option(
            "--scenario",
            help="stable, covariate-drift, concept-drift, prediction-drift, fairness-gap, broken-feature or story.",
        ),
    ] = "stable",
    at: Annotated[
        list[float] | None,
        typer.Option("--at", help="Start (s of event time) of each phase after the first (repeat; default: even)."),
    ] = None,
    predictions: Annotated[int, typer.Option("--predictions", "-n", min=1, help="Predictions to simulate.")] = 10_000,
    duration: Annotated[float, typer.Option(min=0.001, help="Event time they span, seconds.")] = 3600.0,
    start: Annotated[str, typer.Option(help="Event time of the start: RFC 3339, or 'now'.")] = "2026-01-01T00:00:00Z",
    models: Annotated[int, typer.Option(min=1, help="Models (model-000, model-001, ...).")] = 1,
    versions: Annotated[int, typer.Option(min=1, help="Versions live at once per model (1.0, 2.0, ...).")] = 1,
    features: Annotated[int, typer.Option(min=1, help="Features per prediction (13: 9 numeric, 4 categorical).")] = 13,
    drift_feature: Annotated[
        list[str] | None, typer.Option("--drift-feature", help="Feature the covariate drift moves (repeat).")
    ] = None,
    label_share: Annotated[float, typer.Option(min=0, max=1, help="Share of predictions that get a label.")] = 0.8,
    label_delay: Annotated[float, typer.Option(min=0, help="Mean delay of a label, seconds of event time.")] = 300.0,
    label_delay_distribution: Annotated[
        str, typer.Option("--label-delay-distribution", help="exponential, lognormal or fixed.")
    ] = "exponential",
    malformed_share: Annotated[
        float, typer.Option(min=0, max=1, help="Malformed messages per prediction (dead-letter traffic).")
    ] = 0.001,
    seed: Annotated[int, typer.Option(help="Seed: the same options and seed give the same events.")] = 7,
    rate: Annotated[float, typer.Option(min=0, help="Events per second of wall time; 0 = as fast as possible.")] = 0.0,
    speedup: Annotated[
        float, typer.Option(min=0, help="Event time per wall time (1440: a day in a minute); 0 = no limit.")
    ] = 0.0,
    fast: Annotated[bool, typer.Option(help="Skip the producer client's validation (load generation).")] = False,
    envelopes: Annotated[
        bool, typer.Option("--envelopes/--single-events", help="Batch envelopes, or one event per message.")
    ] = True,
    send: Annotated[bool, typer.Option("--send/--no-send", help="Send to Kafka (creating missing topics).")] = True,
    parquet: Annotated[
        Path | None, typer.Option(help="Also write predictions.parquet and feedback.parquet to this folder.")
    ] = None,
    training_set: Annotated[
        Path | None,
        typer.Option(help="Write a training set for `reference build` (with several models: a path with {model})."),
    ] = None,
    training_rows: Annotated[int, typer.Option(min=1, help="Rows of the training set.")] = 5_000,
) -> None:
    """Simulate models in production: predictions, late labels and malformed messages telling a scenario."""
    # (long only by its options: the body builds the simulation, writes the files asked for and sends)
    from driftline.simulation.scenarios import ScriptTargets, scenario
    from driftline.simulation.simulator import Simulation
    from driftline.simulation.world import SimulationConfig, model_names

    if models > 1 and training_set is not None and "{model}" not in str(training_set):
        raise typer.BadParameter("with several models, give a path with {model}, e.g. train-{model}.parquet")
    targets = ScriptTargets(drift_features=tuple(drift_feature)) if drift_feature else ScriptTargets()
    simulation = Simulation(
        SimulationConfig(
            seed=seed,
            models=model_names(models),
            versions=versions,
            features=features,
            predictions=predictions,
            duration_s=duration,
            start=datetime.now(UTC) if start == "now" else datetime.fromisoformat(start),
            label_share=label_share,
            label_delay=label_delay_distribution,  # type: ignore[arg-type]  # checked by Simulation
            label_delay_s=label_delay,
            malformed_share=malformed_share,
            scenario=scenario(scenario_name, duration, at, targets),
        )
    )
    if training_set is not None:
        _write_training_sets(simulation, training_set, training_rows)
    if parquet is not None:
        written = simulation.to_parquet(parquet)
        say(f"Wrote {', '.join(map(str, written))}")
    if send:
        _send(simulation, rate=rate, speedup=speedup, fast=fast, envelopes=envelopes)


def _write_training_sets(simulation: Simulation, path_pattern: Path, rows: int) -> None:
    """Each model's training set to ``path_pattern`` (``{model}`` replaced by its id), with the command that
    profiles it."""
    for model_id in simulation.config.models:
        path = Path(str(path_pattern).replace("{model}", model_id))
        path.parent.mkdir(parents=True, exist_ok=True)
        simulation.training_set(rows, model_id=model_id).to_parquet(path, index=False)
        say(
            f"Wrote the training set of {model_id}: {path} (driftline reference build --model {model_id} "
            f"--version V --from {path} {simulation.reference_options()})"
        )


def _send(simulation: Simulation, *, rate: float, speedup: float, fast: bool, envelopes: bool) -> None:
    """Send the simulated stream to the configured Kafka (creating missing topics), with a progress bar, and say
    what went out."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from driftline.kafka.topics import create_topics
    from driftline.simulation.traffic import Progress as Sent
    from driftline.simulation.traffic import send as send_stream

    config, resolved = simulation.config, settings()
    _check_event_time_is_believable(
        config.start,
        duration_s=config.duration_s,
        predictions=config.predictions,
        rate=rate,
        speedup=speedup,
        config=resolved,
    )
    create_topics(resolved)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[sent]}"))
    with Progress(*columns, TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("predictions", total=config.predictions, sent="")

        def show(progress: Sent) -> None:
            stamp = datetime.fromtimestamp(progress.time_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
            bar.update(
                task,
                completed=progress.predictions,
                description=f"phase {progress.phase}",
                sent=f"{progress.events:,} events sent · event time {stamp}",
            )

        report = send_stream(
            simulation, resolved, rate=rate, speedup=speedup, fast=fast, envelopes=envelopes, progress=show
        )
    phases = ", ".join(f"{name} {count:,}" for name, count in report.by_phase.items())
    say(
        f"Sent {report.events:,} events to {resolved.kafka.bootstrap} in {report.seconds:.1f} s "
        f"({report.events_per_s:,.0f} events/s): {report.predictions:,} predictions ({phases}), "
        f"{report.feedback:,} labels, {report.malformed:,} malformed"
    )


def demo(seed: Annotated[int, typer.Option(help="Seed of the simulated stream.")] = 7) -> None:
    """Play a model's day in production through local Kafka, the worker and the sink: stable, covariate drift,
    a fairness gap, concept drift, a new version. Exits 0 only if every problem was detected in time and the
    stable period raised no trigger."""
    from driftline.demo.run import run_demo
    from driftline.demo.story import Story
    from driftline.demo.summary import print_summary

    try:
        outcome = run_demo(settings(), Story(seed=seed), err)
    except KeyboardInterrupt:
        say("Interrupted: the demo's worker and sink are stopped; the Kafka broker stays up (`driftline kafka stop`).")
        raise typer.Exit(130) from None
    print_summary(outcome, out)
    raise typer.Exit(0 if outcome.verdict.passed else 1)


def _check_event_time_is_believable(
    start: datetime, *, duration_s: float, predictions: int, rate: float, speedup: float, config: Settings
) -> None:
    """Refuse a simulation whose events would be stamped further ahead of the time they are sent than the
    pipeline believes (``monitor.max_future_s``): they would all become ``timestamp_in_future`` dead letters."""
    sending_s = max(duration_s / speedup if speedup > 0 else 0.0, predictions / rate if rate > 0 else 0.0)
    ahead = start + timedelta(seconds=duration_s) - (datetime.now(UTC) + timedelta(seconds=sending_s))
    if ahead.total_seconds() > config.monitor.max_future_s:
        raise DriftlineError(
            f"the simulated events would be stamped up to {ahead.total_seconds():,.0f} s ahead of the time they are "
            f"sent, and the worker and the sink refuse events more than {config.monitor.max_future_s:g} s ahead "
            "(timestamp_in_future): start in the past (the default start is), or pace event time at most as fast as "
            "the clock (--speedup 1)"
        )
