"""``driftline demo``: a model in production told from start to finish, through the real broker, worker and sink.

What a run does, in its own namespace (topics ``driftline-demo.*``, database ``driftline_demo``, a fresh
worker app id and sink group, so it can run again and again beside a real deployment):

1. starts the local Kafka broker unless one answers at the bootstrap address, and creates the topics;
2. publishes reference profiles built from simulated training sets: version 1.0's from the world at the
   start, 2.0's (the retrained model of the last phase) from the world at its release;
3. runs the worker (:func:`driftline.pipeline.run_in_process`, in this process) and the sink (a thread)
   while the simulator plays the ``story`` scenario (:mod:`driftline.demo.story`) through the producer client,
   event time sped up: stable → covariate drift → a fairness gap for group g3 → concept drift, revealed as late
   labels arrive → a new version that recovers, shown live (:mod:`driftline.demo.live`);
4. once everything sent is processed and stored, reads the windows, alarms, triggers and dead letters back
   from ClickHouse, judges them (:mod:`driftline.demo.flags`, :mod:`driftline.demo.judge`) and writes the HTML report
   (:mod:`driftline.demo.report`, with the ``report`` extra).

:func:`driftline.demo.summary.print_summary` tells what was found.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.live import Live

from driftline.client.reference import publish_profile, reference_performance_line
from driftline.demo.flags import WindowRows
from driftline.demo.judge import Verdict
from driftline.demo.live import REFRESH_PER_S, LiveTable, ResultsWatcher, trigger_line
from driftline.demo.story import DEMO_DATABASE, DEMO_PREFIX, MODEL_ID, Story, story_references
from driftline.devtools.local_broker import LocalKafka
from driftline.kafka.topics import broker_answers, create_topics, delete_topics
from driftline.pipeline import run_in_process
from driftline.schemas.errors import BrokerError, DriftlineError
from driftline.schemas.results import RetrainTrigger
from driftline.settings import Settings
from driftline.simulation.simulator import Simulation
from driftline.simulation.traffic import Progress, SendReport, send
from driftline.simulation.world import DEFAULT_START
from driftline.sinks.clickhouse import drop_database, open_configured
from driftline.sinks.sink import Sink
from driftline.streams.worker.stages import WorkerStages

STORE_TIMEOUT_S = 120.0

WORKER_TIMEOUT_S = 600.0  # beyond the play time


@dataclass
class Outcome:
    """What a demo run found: the verdict, the rows it was judged on and where everything is."""

    story: Story
    settings: Settings
    verdict: Verdict
    rows: WindowRows
    sent: SendReport
    dead_letters: pd.DataFrame
    seconds: float
    broker: str
    report: Path | None
    report_note: str = ""


def run_demo(settings: Settings, story: Story, console: Console) -> Outcome:
    """Run ``story`` through the real pipeline in the demo's namespace and judge what it found."""
    started = time.monotonic()
    settings = story.settings(settings)
    simulation = story.simulation()
    broker = _set_up(settings, story, simulation, console)
    client = open_configured(settings)
    sink = Sink(settings, client)
    failures: list[BaseException] = []
    stop = threading.Event()
    loader = threading.Thread(target=_guarded(sink.run, failures), args=(stop.is_set,), name="driftline-demo-sink")
    loader.start()
    view = LiveTable(story, settings)
    watcher: ResultsWatcher | None = None
    try:
        with Live(view, console=console, refresh_per_second=REFRESH_PER_S, transient=False) as live:

            def announce(trigger: RetrainTrigger) -> None:
                live.console.print(trigger_line(trigger), highlight=False)

            watcher = ResultsWatcher(settings, announce)
            view.watcher = watcher
            sent = _play(settings, story, simulation, view, watcher=watcher, console=live.console, failures=failures)
        if not console.is_terminal:
            console.line()  # Live ends its last line itself only on a terminal
        _wait_until_stored(sink, sent, view.worker, failures)
        rows = _stored_rows(client)
        dead_letters = client.query_df(
            "SELECT reason, count() AS letters FROM dead_letters FINAL GROUP BY reason ORDER BY letters DESC, reason"
        )
    finally:
        stop.set()
        loader.join()
        if watcher is not None:
            watcher.close()
        client.close()
    verdict = story.judge(rows, settings)
    report, note = _write_report(settings, rows, verdict)
    return Outcome(
        story=story,
        settings=settings,
        verdict=verdict,
        rows=rows,
        sent=sent,
        dead_letters=dead_letters,
        seconds=time.monotonic() - started,
        broker=broker,
        report=report,
        report_note=note,
    )


def _set_up(settings: Settings, story: Story, simulation: Simulation, console: Console) -> str:
    """Find or start the broker, make the demo's topics afresh, publish the story's reference profiles and drop
    the previous demo's database; the broker, in words for the summary."""
    broker = _ensure_broker(settings, console)
    if deleted := delete_topics(settings):
        console.print(f"Removed the previous demo's {len(deleted)} topics", highlight=False)
    create_topics(settings)
    console.print(f"Topics: {DEMO_PREFIX}* at {settings.kafka.bootstrap}", highlight=False)
    for profile, at_s in story_references(settings, story, simulation):
        publish_profile(settings, profile)
        trained_at = pd.Timestamp(DEFAULT_START) + timedelta(seconds=at_s)
        console.print(
            f"Published the reference profile of {MODEL_ID} {profile.model_version}, built from "
            f"{story.training_rows:,} simulated training rows of the world at {trained_at:%H:%M}. "
            + reference_performance_line(profile),
            highlight=False,
        )
    client = open_configured(settings)
    drop_database(client, DEMO_DATABASE)  # the previous demo's rows
    client.close()
    return broker


def _ensure_broker(settings: Settings, console: Console) -> str:
    """Use the broker that answers, or start the local one; say which, for the summary."""
    local = LocalKafka(settings, log=lambda line: console.print(line, highlight=False))
    if broker_answers(settings.kafka, timeout_s=3.0):
        status = local.status()
        own = f" (the local broker, pid {status.pid})" if status.running else ""
        console.print(f"Using the Kafka broker that answers at {settings.kafka.bootstrap}{own}", highlight=False)
        return f"{settings.kafka.bootstrap}{own}: it was running before the demo and stays up"
    if settings.kafka.bootstrap != local.bootstrap:
        raise BrokerError(f"no Kafka answers at {settings.kafka.bootstrap} (DRIFTLINE_KAFKA_BOOTSTRAP)")
    status = local.start()
    return (
        f"{settings.kafka.bootstrap} (the local broker, pid {status.pid}, started by the demo): it stays up; "
        f"`driftline kafka stop` stops it, its log is {local.log_file}"
    )


def _guarded(target: Callable[..., object], failures: list[BaseException]) -> Callable[..., None]:
    """``target`` for a thread: an exception it raises is kept in ``failures`` for the main thread."""

    def run(*args: object) -> None:
        try:
            target(*args)
        except BaseException as error:  # re-raised by the main thread
            failures.append(error)

    return run


def _play(
    settings: Settings,
    story: Story,
    simulation: Simulation,
    view: LiveTable,
    *,
    watcher: ResultsWatcher,
    console: Console,
    failures: list[BaseException],
) -> SendReport:
    """Run the worker until it has processed and checkpointed everything the producer sent; return what was sent.

    The producer starts once the worker runs, in a thread, paced at the story's speed-up, and waits whenever
    its event time is more than one and a half windows past the end of the latest window the worker has
    closed (as the watcher saw it): on a busy machine the story plays slower rather than reaching the worker
    in large catch-up batches, so each checkpoint closes a window or two, and the policy decides them in the
    order a live deployment would. (A worker that stretches its checkpoints closes many windows at once,
    and then decides a later window's detector alarm before the earlier windows' results.)
    """
    sent: list[SendReport] = []
    producer: threading.Thread | None = None
    caught_up_at: list[float] = []
    halt = threading.Event()
    max_lead_ms = story.window_s * 1000 * 1.5
    to_send = simulation.config.predictions

    def produce() -> None:
        last_phase = ""

        def progress(step: Progress) -> None:
            nonlocal last_phase
            view.on_sent(step)
            if step.phase != last_phase:
                last_phase = step.phase
                console.print(f"▶ phase {step.phase} (event time {view.event_time})", highlight=False)
            # windows close on predictions: the labels after the last one are never held back
            while step.predictions < to_send and step.time_ms - watcher.closed_until_ms > max_lead_ms:
                if halt.wait(0.05):
                    return

        sent.append(send(simulation, settings, speedup=story.speedup, progress=progress))

    def done(stages: WorkerStages) -> bool:
        nonlocal producer
        if failures:
            raise failures[0]
        view.worker = stages.counts.copy()
        if producer is None:
            producer = threading.Thread(target=_guarded(produce, failures), name="driftline-demo-producer", daemon=True)
            producer.start()
        if not sent:
            return False
        total = sent[0]
        if not caught_up_at:
            if stages.counts["predictions"] >= total.predictions and stages.counts["feedback"] >= total.feedback:
                caught_up_at.append(time.monotonic())
            return False
        return stages.last_checkpoint > caught_up_at[0]  # the windows and triggers of the last events are out

    try:
        stages = run_in_process(settings, done, timeout_s=WORKER_TIMEOUT_S + 3 * story.play_s)
    finally:
        halt.set()
    view.worker = stages.counts.copy()
    return sent[0]


def _wait_until_stored(
    sink: Sink,
    sent: SendReport,
    published: Counter[str],
    failures: list[BaseException],
    timeout_s: float = STORE_TIMEOUT_S,
) -> None:
    """Wait until the sink has stored every event sent, a dead letter per malformed message, and every window
    result and trigger the worker published (its final ``counts``); raise :class:`DriftlineError` after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if failures:
            raise failures[0]
        rows, letters = sink.stats.rows, sum(sink.stats.dead_letters_by_reason.values())
        wanted = {
            "predictions": sent.predictions,
            "feedback": sent.feedback,
            "performance_windows": published["windows_emitted"],
            "retrain_triggers": published["triggers"],
        }
        if all(rows[table] >= count for table, count in wanted.items()) and letters >= sent.malformed:
            return
        if time.monotonic() > deadline:
            stored = {table: rows[table] for table in wanted} | {"dead_letters": letters}
            raise DriftlineError(
                f"the sink did not store everything within {timeout_s:.0f} s: stored {stored}, expected "
                f"{wanted | {'dead_letters': sent.malformed}}"
            )
        time.sleep(0.2)


def _stored_rows(client: object) -> WindowRows:
    """The demo model's windows, alarms and triggers, as the views and tables in ClickHouse hold them."""

    def rows(sql: str) -> pd.DataFrame:
        return client.query_df(sql, parameters={"model": MODEL_ID})  # type: ignore[attr-defined, no-any-return]

    where = "WHERE model_id = {model:String}"
    return WindowRows(
        performance=rows(f"SELECT * FROM performance_windows_latest {where} ORDER BY window_start, model_version"),
        drift=rows(f"SELECT * FROM drift_windows_latest {where} ORDER BY window_start, model_version, feature"),
        fairness=rows(f"SELECT * FROM fairness_windows_latest {where} ORDER BY window_start, attribute, `group`"),
        alarms=rows(f"SELECT * FROM detector_alarms_latest {where} ORDER BY fired_at"),
        triggers=rows(f"SELECT * FROM retrain_triggers FINAL {where} ORDER BY window_start"),
    )


def _write_report(settings: Settings, rows: WindowRows, verdict: Verdict) -> tuple[Path | None, str]:
    """Write the HTML report when the ``report`` extra is installed; else say how to get it."""
    try:
        from driftline.demo.report import write_report
    except ImportError:
        return None, "install the report extra for the HTML report: pip install 'driftline[report]'"
    path = settings.data_path / "demo" / "report.html"
    write_report(path, rows, verdict, settings.policy.for_model(MODEL_ID), title=f"driftline demo: {MODEL_ID}")
    return path, ""
