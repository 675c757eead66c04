"""The demo's live view: a :class:`ResultsWatcher` follows the window results and triggers on their topics, and
a :class:`LiveTable` shows each phase as the story plays: events sent, windows closed, accuracy, drifted
features, parity ratio and triggers."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pandas as pd
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from pydantic import ValidationError
from rich.console import Group
from rich.table import Table
from rich.text import Text

from driftline.demo.flags import WindowRows, drifted_features, rows_of
from driftline.demo.story import Story
from driftline.schemas.results import RetrainTrigger, WindowResult
from driftline.schemas.topics import RETRAIN_TRIGGERS, WINDOW_RESULTS
from driftline.settings import Settings
from driftline.simulation.traffic import Progress
from driftline.simulation.world import DEFAULT_START

REFRESH_PER_S = 4


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
            performance = windows_between(rows.performance, phase.start, phase.end)
            parity = windows_between(rows.fairness, phase.start, phase.end)["demographic_parity_ratio"].dropna()
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


def windows_between(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The rows of windows starting in ``[start, end)``, in window order."""
    return frame[(frame["window_start"] >= start) & (frame["window_start"] < end)].sort_values("window_start")


def trigger_line(trigger: RetrainTrigger) -> str:
    """One line for a person: the window, the version, the severity and each reason with its numbers."""
    reasons = "; ".join(r.text() for r in trigger.reasons)
    return (
        f"⚑ {trigger.severity} trigger for {trigger.model_id} {trigger.model_version}, window "
        f"{trigger.window_start:%H:%M}–{trigger.window_end:%H:%M}: {reasons}"
    )
