"""``driftline demo``: a model in production told from start to finish, through the real broker, worker and sink.

What a run does, in its own namespace (topics ``driftline-demo.*``, database ``driftline_demo``, a fresh
worker app id and sink group, so it can run again and again beside a real deployment):

1. starts the local Kafka broker unless one answers at the bootstrap address, and creates the topics;
2. publishes reference profiles built from simulated training sets: version 1.0's from the world at the
   start, 2.0's (the retrained model of the last phase) from the world at its release;
3. runs the worker (:func:`driftline.pipeline.run_in_process`, in this process) and the sink (a thread)
   while the simulator plays the ``story`` scenario through the producer client, event time sped up:
   stable → covariate drift → a fairness gap for group g3 → concept drift, revealed as late labels arrive →
   a new version that recovers. A :class:`ResultsWatcher` follows the window results and triggers on their
   topics and a live table shows each phase: events sent, windows closed, accuracy, drifted features, parity
   ratio and triggers;
4. once everything sent is processed and stored, reads the windows, alarms, triggers and dead letters back
   from ClickHouse, judges them (:mod:`driftline.demo.judge`) and writes the HTML report
   (:mod:`driftline.demo.report`, with the ``report`` extra).

:class:`Story` holds the sizes: by default 5 phases of 5 one-hour windows of 6,000 predictions each, played
in about 75 s when the worker keeps up; the policy's cooldown (2 windows) is shorter than the spacing of the
phases, so each phase can raise its own trigger. :func:`print_summary` tells what was found.
"""

from __future__ import annotations

import json
import shlex
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from pydantic import ValidationError
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from driftline.client.reference import build_reference, publish_profile, reference_performance_line
from driftline.demo.judge import Verdict, WindowRows, drifted_features, judge, rows_of
from driftline.devtools.local_broker import LocalKafka, free_port
from driftline.kafka.topics import broker_answers, create_topics, delete_topics
from driftline.pipeline import run_in_process
from driftline.schemas.errors import BrokerError, DriftlineError
from driftline.schemas.policy import PolicySettings
from driftline.schemas.results import ReferenceProfile, RetrainTrigger, WindowResult
from driftline.schemas.topics import ALL_TOPICS, RETRAIN_TRIGGERS, WINDOW_RESULTS
from driftline.settings import Settings
from driftline.simulation.scenarios import Scenario, scenario
from driftline.simulation.simulator import DEFAULT_START, TRAINING_OUTCOME, Simulation, SimulationConfig
from driftline.simulation.traffic import Progress, SendReport, send
from driftline.sinks.clickhouse import drop_database, is_embedded, open_configured, redacted
from driftline.sinks.sink import Sink
from driftline.streams.worker.monitor import StreamMonitor

MODEL_ID = "credit-risk"
DEMO_PREFIX = "driftline-demo."
DEMO_DATABASE = "driftline_demo"
STORE_TIMEOUT_S = 120.0
WORKER_TIMEOUT_S = 600.0  # beyond the play time
REFRESH_PER_S = 4


@dataclass(frozen=True)
class Story:
    """The demo's script: the simulator's ``story`` scenario and the sizes it is played at.

    Phases start every ``windows_per_phase`` windows; the stream runs a tenth of a window past the last phase's
    end, so the watermark passes it and every judged window closes. Labels come for 80% of the predictions
    after an exponential delay (mean ``label_delay_s``); windows stay open for them ``horizon_windows``.
    Page–Hinkley's threshold λ is raised from the default 50 to ``page_hinkley_threshold``: with River's
    fading factor α = 0.9999 its statistic on calibrated scores (σ ≈ 0.4) wanders with a standard deviation
    of about σ/√(2(1−α)) ≈ 28, and at λ = 50 it fired about once per 15,000 stable scores; at 200 it stayed
    quiet over 600,000 and still caught a 0.05 shift of the score mean within 5,000 scores.
    """

    seed: int = 7
    windows_per_phase: int = 5
    predictions_per_window: int = 6_000
    window_s: float = 3600.0
    label_delay_s: float = 900.0
    horizon_windows: int = 2
    cooldown_windows: int = 2
    page_hinkley_threshold: float = 200.0
    play_s: float = 75.0
    training_rows: int = 5_000

    @property
    def phases(self) -> int:
        """Phases of the ``story`` scenario."""
        return len(scenario("story", 1.0).phases)

    @property
    def span_s(self) -> float:
        """Event time of the judged story: every phase, ``windows_per_phase`` windows each."""
        return self.phases * self.windows_per_phase * self.window_s

    @property
    def duration_s(self) -> float:
        """Event time simulated: the span and a tenth of a window, whose predictions close the last window."""
        return self.span_s + self.window_s / 10

    @property
    def speedup(self) -> float:
        """Event time per wall time, so the stream plays in ``play_s``."""
        return self.duration_s / self.play_s

    def scenario(self) -> Scenario:
        """The ``story`` scenario with a phase every ``windows_per_phase`` windows."""
        spacing = self.windows_per_phase * self.window_s
        return scenario("story", self.duration_s, [i * spacing for i in range(1, self.phases)])

    def simulation(self) -> Simulation:
        """The simulated stream of one model, ``credit-risk``."""
        windows = self.duration_s / self.window_s
        return Simulation(
            SimulationConfig(
                seed=self.seed,
                models=(MODEL_ID,),
                predictions=round(self.predictions_per_window * windows),
                duration_s=self.duration_s,
                label_delay_s=self.label_delay_s,
                scenario=self.scenario(),
            )
        )

    def judge(self, rows: WindowRows, settings: Settings) -> Verdict:
        """The verdict on ``rows`` of a run of this story with ``settings`` (its policy)."""
        return judge(
            self.scenario(),
            rows,
            settings.policy.for_model(MODEL_ID),
            start=DEFAULT_START,
            end=DEFAULT_START + timedelta(seconds=self.span_s),
            window_s=self.window_s,
        )

    def settings(self, base: Settings) -> Settings:
        """``base`` (broker, data directory, ClickHouse location) with the demo's namespace, windows and
        policy: its own topic prefix, database, worker app id and sink group (fresh per run), a free port for
        the worker's web page, and the default policy rules with the demo's cooldown."""
        run = uuid.uuid4().hex[:8]
        return base.model_copy(
            update={
                "kafka": base.kafka.model_copy(update={"topic_prefix": DEMO_PREFIX}),
                "clickhouse": base.clickhouse.model_copy(update={"database": DEMO_DATABASE}),
                "worker": base.worker.model_copy(update={"app_id": f"driftline-demo-{run}", "web_port": free_port()}),
                "sink": base.sink.model_copy(update={"group_id": f"driftline-demo-sink-{run}"}),
                "monitor": base.monitor.model_copy(
                    update={
                        "window_s": self.window_s,
                        "grace_s": self.window_s / 60,
                        "horizon_s": self.horizon_windows * self.window_s,
                        "page_hinkley_threshold": self.page_hinkley_threshold,
                    }
                ),
                "policy": PolicySettings(cooldown_s=self.cooldown_windows * self.window_s),
                "models": {},
            }
        )


@dataclass(frozen=True)
class AnalystQuery:
    """A question an analyst asks next, and the SQL that answers it from the demo's database."""

    question: str
    sql: str

    def command(self, database: str = DEMO_DATABASE) -> str:
        """The shell command that runs it with ``driftline sql`` (the SQL quoted for a POSIX shell)."""
        return f"DRIFTLINE_CLICKHOUSE_DATABASE={database} driftline sql {_shell_quoted(self.sql)}"


QUERIES = (
    AnalystQuery(
        "Accuracy per window as the late labels arrived, beside the estimate from the scores alone",
        "SELECT window_start, model_version, labelled, round(label_coverage, 2) AS coverage, "
        "round(accuracy, 3) AS accuracy, round(estimated_accuracy, 3) AS estimated "
        "FROM performance_windows_latest ORDER BY window_start, model_version",
    ),
    AnalystQuery(
        "Which features drifted, how far, and from which window",
        "SELECT feature, round(max(psi), 3) AS worst_psi, round(max(wasserstein), 3) AS worst_wasserstein, "
        "minIf(window_start, psi > 0.2) AS first_over_0_2 FROM drift_windows_latest "
        "WHERE model_version = '1.0' AND NOT too_few_samples "
        "GROUP BY feature HAVING worst_psi > 0.2 ORDER BY worst_psi DESC",
    ),
    AnalystQuery(
        "Selection rate and true-positive rate of each group, window by window",
        "SELECT window_start, groupArray(concat(group, ': ', toString(round(selection_rate, 3)))) AS selection_rate, "
        "groupArray(concat(group, ': ', toString(round(tpr, 3)))) AS tpr, "
        "any(round(demographic_parity_ratio, 3)) AS parity_ratio "
        "FROM (SELECT * FROM fairness_windows_latest ORDER BY attribute, group) "
        "GROUP BY window_start ORDER BY window_start",
    ),
    AnalystQuery(
        "Every retraining decision, with the metrics that made it",
        "SELECT window_start, model_version, severity, arrayMap(r -> concat(JSONExtractString(r, 'metric'), ' = ', "
        "toString(round(JSONExtractFloat(r, 'observed'), 3))), JSONExtractArrayRaw(reasons)) AS reasons "
        "FROM retrain_triggers FINAL ORDER BY window_start",
    ),
    AnalystQuery(
        "The raw predictions behind the drift: median income and share of Ghent, hour by hour",
        "SELECT toStartOfHour(timestamp) AS hour, count() AS predictions, "
        "round(median(features_numeric['income'])) AS median_income, "
        "round(avg(features_categorical['city'] = 'Ghent'), 3) AS ghent_share "
        "FROM predictions FINAL GROUP BY hour ORDER BY hour",
    ),
)
"""The five queries the summary offers (each is run by the integration test)."""


def _shell_quoted(sql: str) -> str:
    """``sql`` as one shell word, readable: in single quotes when it has none, else in double quotes when
    nothing in it is special there, else as :func:`shlex.quote` makes it."""
    if "'" not in sql:
        return f"'{sql}'"
    if not set(sql) & set('"$`\\!'):
        return f'"{sql}"'
    return shlex.quote(sql)


class ResultsWatcher:
    """Follows the window-results and retrain-triggers topics from their beginning, as any consumer may,
    keeping the latest revision of each window and each decision once; it never commits offsets."""

    def __init__(self, settings: Settings, on_trigger: Callable[[RetrainTrigger], None]) -> None:
        self.on_trigger = on_trigger
        self.results: dict[str, WindowResult] = {}
        self.triggers: dict[str, RetrainTrigger] = {}
        self.changes = 0
        self.closed_until_ms = DEFAULT_START.timestamp() * 1000  # end of the latest window seen closed
        self._lock = threading.Lock()  # the live view reads while the thread writes
        self._topics = {settings.topic(WINDOW_RESULTS.name): "result", settings.topic(RETRAIN_TRIGGERS.name): "trigger"}
        self._consumer = Consumer(
            {
                **settings.kafka.client_config(),
                "group.id": f"driftline-demo-watch-{uuid.uuid4().hex}",  # never commits: assign() below
                "enable.auto.commit": False,
            }
        )
        partitions = []
        for topic in self._topics:
            for partition in self._consumer.list_topics(topic, timeout=30).topics[topic].partitions:
                partitions.append(TopicPartition(topic, partition, OFFSET_BEGINNING))
        self._consumer.assign(partitions)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="driftline-demo-watch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop following."""
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()

    def rows(self) -> WindowRows:
        """The rows of what was seen so far, as the sink stores them."""
        with self._lock:
            results, triggers = list(self.results.values()), list(self.triggers.values())
        return rows_of(results, triggers)

    def _follow(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(500, timeout=0.2):
                if message.error() is None and message.value() is not None:
                    self._take(self._topics[message.topic() or ""], message.value() or b"")

    def _take(self, kind: str, value: bytes) -> None:
        try:
            if kind == "result":
                self._take_result(WindowResult.model_validate_json(value))
            else:
                self._take_trigger(RetrainTrigger.model_validate_json(value))
        except ValidationError:
            pass  # the sink stores it as a dead letter

    def _take_result(self, result: WindowResult) -> None:
        with self._lock:
            known = self.results.get(result.key)
            if known is None or result.revision > known.revision:
                self.results[result.key] = result
                self.changes += 1
            self.closed_until_ms = max(self.closed_until_ms, result.window_end.timestamp() * 1000)

    def _take_trigger(self, trigger: RetrainTrigger) -> None:
        with self._lock:
            if trigger.trigger_id in self.triggers:
                return
            self.triggers[trigger.trigger_id] = trigger
            self.changes += 1
        self.on_trigger(trigger)


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


class LiveTable:
    """The live view: one row per phase, from what was sent, what the worker took and what it published."""

    def __init__(self, story: Story, settings: Settings) -> None:
        self.story = story
        self.settings = settings
        self.scenario = story.scenario()
        self.start = pd.Timestamp(DEFAULT_START)
        self.sent: Counter[str] = Counter()
        self.event_time = ""
        self.phase = ""
        self.worker: Counter[str] = Counter()
        self.watcher: ResultsWatcher | None = None
        self._rendered_at = -1
        self._cells: dict[str, list[str]] = {}

    def on_sent(self, progress: Progress) -> None:
        """Producer progress: events sent so far and the phase of the latest."""
        already = sum(self.sent.values())
        self.sent[progress.phase] += progress.events - already
        self.phase = progress.phase
        self.event_time = pd.Timestamp(progress.time_ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")

    def __rich__(self) -> Group:
        if self.watcher is not None and self.watcher.changes != self._rendered_at:
            self._rendered_at = self.watcher.changes
            self._cells = self._phase_cells(self.watcher.rows())
        table = Table(title=f"credit-risk, {len(self.scenario.phases)} phases", title_justify="left")
        for column in ("phase", "from", "events sent", "windows closed", "accuracy", "drifted", "parity", "triggers"):
            table.add_column(column, justify="right" if column in ("events sent", "windows closed") else "left")
        for phase in self.scenario.phases:
            begins = self.start + timedelta(seconds=phase.start_s)
            style = "bold" if phase.name == self.phase else ""
            cells = self._cells.get(phase.name, ["", "", "", "", ""])
            table.add_row(phase.name, begins.strftime("%H:%M"), f"{self.sent[phase.name]:,}", *cells, style=style)
        worker = self.worker
        status = Text(
            f"event time {self.event_time or '-'} · worker: {worker['predictions']:,} predictions, "
            f"{worker['feedback']:,} labels, {worker['windows_emitted']:,} window results, "
            f"{worker['alarms']:,} detector alarms, {worker['triggers']:,} triggers",
            style="dim",
        )
        return Group(table, status)

    def _phase_cells(self, rows: WindowRows) -> dict[str, list[str]]:
        """Per phase: windows closed, the latest window's accuracy, drifted features, parity ratio, triggers."""
        cells = {}
        for phase in self.story.judge(rows, self.settings).phases:
            performance = _between(rows.performance, phase.start, phase.end)
            parity = _between(rows.fairness, phase.start, phase.end)["demographic_parity_ratio"].dropna()
            latest = performance.iloc[-1] if len(performance) else None
            rules = sorted({rule for listed in phase.triggers["rules"] for rule in listed})
            cells[phase.name] = [
                str(len(performance)),
                f"{latest['accuracy']:.3f} ({latest['label_coverage']:.0%} labelled)"
                if latest is not None and pd.notna(latest["accuracy"])
                else "",
                ", ".join(drifted_features(phase.flags)),
                f"{parity.iloc[-1]:.2f}" if len(parity) else "",
                f"{len(phase.triggers)}: {', '.join(rules)}" if len(phase.triggers) else "",
            ]
        return cells


def _between(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The rows of windows starting in ``[start, end)``, in window order."""
    return frame[(frame["window_start"] >= start) & (frame["window_start"] < end)].sort_values("window_start")


def run_demo(settings: Settings, story: Story, console: Console) -> Outcome:
    """Run ``story`` through the real pipeline in the demo's namespace and judge what it found."""
    started = time.monotonic()
    settings = story.settings(settings)
    broker = _ensure_broker(settings, console)
    if deleted := delete_topics(settings):
        console.print(f"Removed the previous demo's {len(deleted)} topics", highlight=False)
    create_topics(settings)
    console.print(f"Topics: {DEMO_PREFIX}* at {settings.kafka.bootstrap}", highlight=False)
    simulation = story.simulation()
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
                live.console.print(_trigger_line(trigger), highlight=False)

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


def story_references(settings: Settings, story: Story, simulation: Simulation) -> list[tuple[ReferenceProfile, float]]:
    """The reference profile of each version the story serves, built as ``driftline reference build`` would
    from a simulated training set (with its true outcomes and sensitive column) of the world at the time the
    version was trained, with that time (event-time seconds from the start)."""
    sensitive = tuple(attribute.name for attribute in simulation.config.sensitive)
    return [
        (
            build_reference(
                settings,
                simulation.training_set(story.training_rows, at_s=at_s),
                MODEL_ID,
                version,
                label_column=TRAINING_OUTCOME,
                sensitive=sensitive,
            ),
            at_s,
        )
        for version, at_s in _releases(story.scenario(), simulation)
    ]


def _releases(story: Scenario, simulation: Simulation) -> list[tuple[str, float]]:
    """Each model version the scenario serves and the event time (s) its training data comes from."""
    versions = [(simulation.config.version_name(0), 0.0)]
    for index, phase in enumerate(story.phases):
        released, since = story.releases(index)
        if since == phase.start_s:
            versions.append((simulation.config.version_name(simulation.config.versions + released - 1), since))
    return versions


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

    def done(monitor: StreamMonitor) -> bool:
        nonlocal producer
        if failures:
            raise failures[0]
        view.worker = monitor.counts.copy()
        if producer is None:
            producer = threading.Thread(target=_guarded(produce, failures), name="driftline-demo-producer", daemon=True)
            producer.start()
        if not sent:
            return False
        total = sent[0]
        if not caught_up_at:
            if monitor.counts["predictions"] >= total.predictions and monitor.counts["feedback"] >= total.feedback:
                caught_up_at.append(time.monotonic())
            return False
        return monitor.last_checkpoint > caught_up_at[0]  # the windows and triggers of the last events are out

    try:
        monitor = run_in_process(settings, done, timeout_s=WORKER_TIMEOUT_S + 3 * story.play_s)
    finally:
        halt.set()
    view.worker = monitor.counts.copy()
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


def _trigger_line(trigger: RetrainTrigger) -> str:
    """One line for a person: the window, the version, the severity and each reason with its numbers."""
    reasons = "; ".join(r.text() for r in trigger.reasons)
    return (
        f"⚑ {trigger.severity} trigger for {trigger.model_id} {trigger.model_version}, window "
        f"{trigger.window_start:%H:%M}–{trigger.window_end:%H:%M}: {reasons}"
    )


def _stored_trigger(row: pd.Series) -> RetrainTrigger:
    """A ``retrain_triggers`` row back as the decision it stores (its reasons are stored as JSON)."""
    plain = {
        name: row[name] for name in RetrainTrigger.model_fields if name not in ("schema_version", "reasons", "evidence")
    }
    return RetrainTrigger.model_validate(
        {**plain, "reasons": json.loads(row["reasons"]), "evidence": list(row["evidence"])}
    )


def print_summary(outcome: Outcome, console: Console) -> None:
    """The end of the story: per phase what was detected and when, each trigger with its reasons, dead
    letters by reason, the analyst's next queries, where the data lives and the verdict."""
    settings, story, verdict, sent = outcome.settings, outcome.story, outcome.verdict, outcome.sent
    console.rule("driftline demo: summary")
    console.print(
        f"{MODEL_ID}: {story.span_s / 3600:g} h of event time in {outcome.seconds:.0f} s of wall time; "
        f"{sent.events:,} events sent ({sent.predictions:,} predictions, {sent.feedback:,} late labels, "
        f"{sent.malformed:,} malformed); windows of {story.window_s / 60:g} min; phases "
        f"{story.windows_per_phase * story.window_s / 60:g} min apart, policy cooldown "
        f"{story.cooldown_windows * story.window_s / 60:g} min.",
        highlight=False,
    )
    phases = Table(title="What each phase injected, and when driftline saw it", title_justify="left")
    for column in ("phase", "windows", "accuracy", "injected", "first flag (window: metric)", "triggers (window)"):
        phases.add_column(column)
    performance = outcome.rows.performance
    for phase in verdict.phases:
        windows = _between(performance, phase.start, phase.end)
        if phase.findings:
            injected = "\n".join(f.expectation.problem for f in phase.findings)
            found = "\n".join(
                f"{f.flag.window_start:%H:%M}: {f.flag.metric} = {f.flag.observed:.3g}"
                if f.flag is not None
                else "[red]not flagged in time[/red]"
                for f in phase.findings
            )
        else:
            injected = "nothing" if phase.stable else "a remedy: " + ", ".join(sorted(set(windows["model_version"])))
            found = ", ".join(dict.fromkeys(flag.metric for flag in phase.flags)) or "no flags"
        phases.add_row(
            phase.name,
            f"{phase.start:%H:%M}–{phase.end:%H:%M} ({len(windows)})",
            f"{windows['accuracy'].mean():.3f}" if windows["accuracy"].notna().any() else "",
            injected,
            found,
            ", ".join(f"{start:%H:%M}" for start in phase.triggers["window_start"]) or "none",
        )
    console.print(phases)

    console.print(f"\n[bold]Retraining triggers[/bold] ({len(outcome.rows.triggers)})")
    for _index, row in outcome.rows.triggers.iterrows():
        console.print(f"  {_trigger_line(_stored_trigger(row))}", highlight=False, markup=False)

    letters = ", ".join(f"{row.reason} {row.letters}" for row in outcome.dead_letters.itertuples(index=False))
    stored = int(outcome.dead_letters["letters"].sum()) if len(outcome.dead_letters) else 0
    console.print(
        f"\n[bold]Dead letters[/bold] ({stored} stored, {sent.malformed} malformed messages sent): {letters or 'none'}",
        highlight=False,
    )

    console.print("\n[bold]Look further[/bold] (once the demo has finished, from this directory)")
    for number, query in enumerate(QUERIES, 1):
        console.print(f"  {number}. {query.question}", highlight=False)
        console.print(f"     {query.command()}", highlight=False, markup=False, soft_wrap=True)

    dsn = settings.clickhouse_dsn
    database = f"the embedded ClickHouse at {dsn.removeprefix('chdb://')}" if is_embedded(dsn) else redacted(dsn)
    topics = ", ".join(settings.topic(spec.name) for spec in ALL_TOPICS)
    console.print("\n[bold]Where the data lives[/bold]")
    for line in (
        f"Kafka: {outcome.broker}",
        f"topics: {topics}",
        f"follow the triggers: DRIFTLINE_KAFKA_TOPIC_PREFIX={DEMO_PREFIX} driftline triggers tail --from-beginning",
        f"ClickHouse: database {DEMO_DATABASE} in {database}",
        f"worker state: the changelog topic {settings.worker.app_id}-state-changelog",
        f"HTML report: {outcome.report}" if outcome.report else f"HTML report: none ({outcome.report_note})",
    ):
        console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)

    if verdict.passed:
        console.print(
            "\n[bold green]✓ Every injected problem was flagged, and got a retraining trigger of its own kind, in the "
            "window where it started or the next; the stable period and each version's first window stayed "
            "quiet.[/bold green]"
        )
    else:
        console.print("\n[bold red]✗ The demo's checks failed:[/bold red]")
        for failure in verdict.failures:
            console.print(f"  - {failure}", highlight=False, markup=False)
