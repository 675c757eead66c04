"""The ``driftline`` command line (Typer). Every command and group has ``--help``."""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from driftline import __version__
from driftline.schemas.errors import DriftlineError
from driftline.schemas.events import Task
from driftline.settings import Settings, load_settings

if TYPE_CHECKING:
    import pandas as pd

    from driftline.sinks.sink import SinkStats
    from driftline.streams.monitor import StreamMonitor

app = typer.Typer(
    help="driftline: a Kafka-native monitor for machine-learning models in production.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
kafka_app = typer.Typer(help="Run a local Apache Kafka broker (KRaft, one node) for development.", no_args_is_help=True)
topics_app = typer.Typer(help="Create and check driftline's Kafka topics.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)
schemas_app = typer.Typer(help="Export the event contracts as JSON Schema.", no_args_is_help=True)
reference_app = typer.Typer(help="Reference profiles that drift is measured against.", no_args_is_help=True)
triggers_app = typer.Typer(help="Retraining decisions: follow the topic or list recent ones.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")
app.add_typer(config_app, name="config")
app.add_typer(schemas_app, name="schemas")
app.add_typer(reference_app, name="reference")
app.add_typer(triggers_app, name="triggers")

# wide enough off a terminal (CI logs, pipes) that tables and messages are not cut
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML config file (default: ./driftline.toml if present, or DRIFTLINE_CONFIG)."
    ),
]


class _State:
    config: Path | None = None


@app.callback()
def main(config: ConfigOption = None) -> None:
    """Global options."""
    _State.config = config


def settings() -> Settings:
    """The resolved settings, or a clean exit with the reason."""
    return load_settings(_State.config)


def say(line: str) -> None:
    """Progress for a person, on stderr so stdout stays parseable."""
    err.print(line, highlight=False, markup=False, soft_wrap=True)


@app.command()
def version() -> None:
    """Print driftline's version."""
    out.print(f"driftline {__version__}")


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show every setting in force and its source: default, the TOML file (its path) or the DRIFTLINE_* variable
    that set it (secrets masked). --json prints the settings by section, plus "sources": setting -> source."""
    from driftline.settings import setting_sources
    from driftline.sinks.clickhouse import redacted

    resolved = settings()
    sources = setting_sources(_State.config)
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


@config_app.command("reference")
def config_reference() -> None:
    """Print the table of every setting (Markdown), as docs/configuration.md shows it."""
    from driftline.settings import reference_markdown

    print(reference_markdown())


@kafka_app.command("start")
def kafka_start() -> None:
    """Start the local broker (resolving its jars with Maven on first use) and print its bootstrap address."""
    from driftline.devtools.local_broker import LocalKafka

    status = LocalKafka(settings(), log=say).start()
    out.print(status.bootstrap)


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the local broker cleanly."""
    from driftline.devtools.local_broker import LocalKafka

    stopped = LocalKafka(settings(), log=say).stop()
    say("Kafka stopped" if stopped else "Kafka was not running")


@kafka_app.command("status")
def kafka_status() -> None:
    """Tell whether the local broker runs, and where. Exit code 0 if running, 1 if not."""
    from driftline.devtools.local_broker import LocalKafka

    status = LocalKafka(settings()).status()
    out.print(status.describe())
    raise typer.Exit(0 if status.running else 1)


@kafka_app.command("logs")
def kafka_logs(
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="How many lines.")] = 40,
) -> None:
    """Print the last lines of the local broker's log."""
    from driftline.devtools.local_broker import LocalKafka

    out.print(LocalKafka(settings()).log_tail(lines), highlight=False, markup=False)


@topics_app.command("create")
def topics_create() -> None:
    """Create every driftline topic that is missing, with the configured partition count."""
    from driftline.admin.topics import create_topics

    resolved = settings()
    for topic, outcome in sorted(create_topics(resolved).items()):
        out.print(f"{outcome:8} {topic}")
    out.print(f"({resolved.kafka.partitions} partitions each, at {resolved.kafka.bootstrap})")


@topics_app.command("check")
def topics_check() -> None:
    """Verify that predictions and feedback are co-partitioned (exit code 1 if not)."""
    from driftline.admin.topics import check_copartitioning

    report = check_copartitioning(settings())
    out.print(report.describe())
    raise typer.Exit(0 if report.ok else 1)


LogLevel = Annotated[str, typer.Option("--loglevel", "-l", help="crit, error, warn, info or debug (Faust's levels).")]


@app.command()
def worker(loglevel: LogLevel = "info") -> None:
    """Run the stream-processing worker (Faust) until stopped with Ctrl-C or SIGTERM, then print what it did."""
    from driftline.pipeline import run_worker

    run_worker(settings(), loglevel, on_stop=lambda monitor: say(_worker_stopped(monitor)))


@app.command()
def sink() -> None:
    """Load every driftline topic from Kafka into ClickHouse until Ctrl-C or SIGTERM; Prometheus metrics on
    DRIFTLINE_SINK_METRICS_PORT (/metrics)."""
    import logging
    import signal

    from driftline.sinks.sink import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stopping: list[int] = []

    def handle_signals() -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda number, _frame: stopping.append(number))

    say(_sink_stopped(serve(settings(), lambda: bool(stopping), say, on_open=handle_signals)))


def _sink_stopped(stats: SinkStats) -> str:
    """The line ``driftline sink`` and ``driftline run`` end with."""
    letters = dict(stats.dead_letters_by_reason)
    return f"Sink stopped: {stats.messages} messages, rows {dict(stats.rows)}, dead letters {letters}"


@app.command("run")
def run_all(loglevel: LogLevel = "info") -> None:
    """Run the worker and the sink in one process (the laptop default) until Ctrl-C or SIGTERM, then print the
    worker's and the sink's stop summaries. An error of the sink is raised once the worker has stopped."""
    import threading

    from driftline.pipeline import run_worker
    from driftline.sinks.sink import serve

    resolved = settings()
    stop, opened = threading.Event(), threading.Event()
    failures: list[BaseException] = []
    stopped: list[SinkStats] = []

    def sink_thread() -> None:
        try:
            stopped.append(serve(resolved, stop.is_set, say, on_open=opened.set))
        except BaseException as error:  # reported after the worker stops
            failures.append(error)
            opened.set()

    thread = threading.Thread(target=sink_thread, name="driftline-sink")
    thread.start()
    opened.wait(120)
    try:
        if not failures:
            run_worker(resolved, loglevel, on_stop=lambda monitor: say(_worker_stopped(monitor)))
    finally:
        stop.set()
        thread.join()
        if stopped:
            say(_sink_stopped(stopped[0]))
        if failures:
            raise failures[0]  # also when the worker stopped cleanly: its SystemExit would hide the sink's error


def _worker_stopped(monitor: StreamMonitor) -> str:
    """The worker's stop summary: what its monitor counted in this run."""
    counts = monitor.counts
    letters = {name.split(":", 1)[1]: n for name, n in sorted(counts.items()) if name.startswith("dead_letter:")}
    return (
        f"Worker stopped: {counts['predictions']} predictions, {counts['feedback']} feedback, "
        f"{counts['windows_emitted']} window results, {counts['alarms']} alarms, {counts['triggers']} triggers, "
        f"dead letters {letters}"
    )


@app.command()
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
    from driftline.streams.joining import window_start

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


@reference_app.command("build")
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


@schemas_app.command("export")
def schemas_export(directory: Annotated[Path, typer.Argument(help="Where to write the *.json files.")]) -> None:
    """Write one JSON Schema per event type (prediction, feedback, their envelopes, dead letter)."""
    from driftline.schemas.json_schema import export

    for path in export(directory):
        out.print(str(path))


@schemas_app.command("tables")
def schemas_tables() -> None:
    """Print every ClickHouse table with its columns, types and meanings (Markdown), as docs/tables.md shows it."""
    from driftline.schemas.tables import reference_markdown

    print(reference_markdown(), end="")


@triggers_app.command("tail")
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


@triggers_app.command("list")
def triggers_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
) -> None:
    """Show recent retraining triggers stored in ClickHouse."""
    from driftline.client.triggers import recent

    frame = recent(settings(), limit, model)
    _print_frame(frame, f"{len(frame)} most recent retraining triggers")


@app.command()
def status(model: Annotated[str | None, typer.Option(help="Only this model.")] = None) -> None:
    """How complete each model version's results are in ClickHouse: closed until (every prediction in), final
    until (no label changes them), the latest prediction stored, and what the newest window waits for."""
    from driftline.client.status import completeness

    frame = completeness(settings(), model)
    _print_frame(frame, "Windows per model version", blank_missing=True)
    if frame.empty:
        say("(no model has results yet)")


@app.command()
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
        _print_frame(frame)
        if frame.empty:
            say("0 rows")


def _print_frame(frame: pd.DataFrame, title: str | None = None, *, blank_missing: bool = False) -> None:
    """``frame`` as a table, a row per row; with ``blank_missing``, missing values print empty."""
    import pandas as pd

    table = Table(*map(str, frame.columns), title=title)
    for row in frame.itertuples(index=False):
        table.add_row(*("" if blank_missing and pd.isna(value) else str(value) for value in row))
    out.print(table)


@app.command()
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
    from datetime import UTC, datetime

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from driftline.admin.topics import create_topics
    from driftline.simulation.scenarios import ScriptTargets, scenario
    from driftline.simulation.simulator import Simulation, SimulationConfig, model_names
    from driftline.simulation.traffic import Progress as Sent

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
        for model_id in simulation.config.models:
            path = Path(str(training_set).replace("{model}", model_id))
            simulation.training_set(training_rows, model_id=model_id).to_parquet(path, index=False)
            say(
                f"Wrote the training set of {model_id}: {path} (driftline reference build --model {model_id} "
                f"--version V --from {path} {simulation.reference_options()})"
            )
    if parquet is not None:
        written = simulation.to_parquet(parquet)
        say(f"Wrote {', '.join(map(str, written))}")
    if not send:
        return
    resolved = settings()
    _check_event_time_is_believable(
        simulation.config.start,
        duration_s=duration,
        predictions=predictions,
        rate=rate,
        speedup=speedup,
        config=resolved,
    )
    create_topics(resolved)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[sent]}"))
    with Progress(*columns, TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("predictions", total=predictions, sent="")

        def show(progress: Sent) -> None:
            stamp = datetime.fromtimestamp(progress.time_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
            bar.update(
                task,
                completed=progress.predictions,
                description=f"phase {progress.phase}",
                sent=f"{progress.events:,} events sent · event time {stamp}",
            )

        report = simulation.produce(resolved, rate=rate, speedup=speedup, fast=fast, envelopes=envelopes, progress=show)
    phases = ", ".join(f"{name} {count:,}" for name, count in report.by_phase.items())
    say(
        f"Sent {report.events:,} events to {resolved.kafka.bootstrap} in {report.seconds:.1f} s "
        f"({report.events_per_s:,.0f} events/s): {report.predictions:,} predictions ({phases}), "
        f"{report.feedback:,} labels, {report.malformed:,} malformed"
    )


@app.command()
def demo(seed: Annotated[int, typer.Option(help="Seed of the simulated stream.")] = 7) -> None:
    """Play a model's day in production through local Kafka, the worker and the sink: stable, covariate drift,
    a fairness gap, concept drift, a new version. Exits 0 only if every problem was detected in time and the
    stable period raised no trigger."""
    from driftline.demo.story import Story, print_summary, run_demo

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
    from datetime import UTC, timedelta

    sending_s = max(duration_s / speedup if speedup > 0 else 0.0, predictions / rate if rate > 0 else 0.0)
    ahead = start + timedelta(seconds=duration_s) - (datetime.now(UTC) + timedelta(seconds=sending_s))
    if ahead.total_seconds() > config.monitor.max_future_s:
        raise DriftlineError(
            f"the simulated events would be stamped up to {ahead.total_seconds():,.0f} s ahead of the time they are "
            f"sent, and the worker and the sink refuse events more than {config.monitor.max_future_s:g} s ahead "
            "(timestamp_in_future): start in the past (the default start is), or pace event time at most as fast as "
            "the clock (--speedup 1)"
        )


def main_entry() -> None:
    """Entry point: turn driftline's own errors into one line on stderr and exit code 2."""
    try:
        app()
    except DriftlineError as exc:
        err.print(f"error: {exc}", style="bold red", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
