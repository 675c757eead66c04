"""The latency run: ``driftline run`` (worker and sink in one process) under a steady stream of envelopes, and
how long after a window closes its row is in ClickHouse and its trigger on ``retrain-triggers``.

A window closes when the watermark passes its end plus the grace period: the wall time at which the producer
sent the first event at or past that event time (interpolated between the producer's reports, which come
every ~0.1 s). Its row counts as arrived half-way between the last query of ClickHouse (through the SQL
endpoint, every :data:`POLL_S`) that did not show it and the first that did. A trigger counts when a consumer
of ``retrain-triggers`` receives it, and is measured from the close of the window it names; triggers of the
streaming detectors (ADWIN, Page-Hinkley) are decided before their window closes and are counted, not timed.
Windows still open when the producer stops (they close by the idle timeout) are left out; the run waits for
every window that closed while it ran, up to :data:`ARRIVAL_TIMEOUT_S` after the producer stopped, and counts
those still missing as later than all others (a percentile that falls on one is reported as unknown, None).
When ``driftline run`` cannot keep up with the rate, latencies include its backlog: the run reports how far
behind the worker was when the producer stopped.
"""

from __future__ import annotations

import bisect
import math
import queue
import threading
import time
import urllib.error
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from bench.config import BenchConfig, Names, environment, overrides
from bench.measure import ProcessMeter
from bench.processes import Program, RunError, start, stop
from bench.worker import BIN, scrape
from driftline.kafka.reader import topic_reader
from driftline.kafka.topics import create_topics
from driftline.schemas.results import RetrainTrigger
from driftline.schemas.topics import RETRAIN_TRIGGERS
from driftline.settings import Settings, load_settings
from driftline.sinks.sql_endpoint import query_endpoint

POLL_S = 0.2
ARRIVAL_TIMEOUT_S = 60.0  # longest wait, after the producer stops, for the windows that closed meanwhile
SETTLE_S = 5.0  # then, for their triggers (published with the results that bring them)
READY_TIMEOUT_S = 120.0
DETECTOR_RULES = frozenset({"adwin", "page_hinkley"})


@dataclass(frozen=True)
class Latency:
    """What the latency run measured; latencies in seconds."""

    rate: float
    events: int
    seconds: float
    behind_events: int  # how far the worker was behind when the producer stopped
    complete_after_s: float  # when, after that, the last window that closed during the run was in ClickHouse
    windows: int  # (model, window) rows timed
    windows_missing: int  # closed during the run, not in ClickHouse ARRIVAL_TIMEOUT_S after it (counted as later)
    window_p50_s: float | None
    window_p99_s: float | None
    triggers: int
    trigger_p50_s: float | None
    trigger_p99_s: float | None
    detector_triggers: int
    trigger_rules: dict[str, int]  # timed triggers per rule that fired (a trigger may name several)
    peak_rss_bytes: int

    def as_dict(self) -> dict[str, Any]:
        """For the history line."""
        return {**asdict(self), "peak_rss_mib": round(self.peak_rss_bytes / 2**20)}


class Closes:
    """When each event time was reached by the producer: (wall time, event time in ms), in order."""

    def __init__(self) -> None:
        self.walls: list[float] = []
        self.times: list[int] = []

    def add(self, wall: float, time_ms: int) -> None:
        """Record a producer report."""
        self.walls.append(wall)
        self.times.append(time_ms)

    def wall_at(self, time_ms: int) -> float | None:
        """The wall time the stream reached ``time_ms`` (None if it never did)."""
        i = bisect.bisect_left(self.times, time_ms)
        if i == len(self.times):
            return None
        if i == 0:
            return self.walls[0]
        t0, t1, w0, w1 = self.times[i - 1], self.times[i], self.walls[i - 1], self.walls[i]
        return w0 + (w1 - w0) * (time_ms - t0) / (t1 - t0)


class TriggerReader:
    """Receives every trigger of the topic in a thread, stamping its arrival."""

    def __init__(self, settings: Settings) -> None:
        topic = settings.topic(RETRAIN_TRIGGERS.name)
        self.received: list[tuple[float, RetrainTrigger]] = []
        self._stop = threading.Event()
        self._consumer, _partitions = topic_reader(settings.kafka, topic, "bench-triggers")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(0.05)
            if message is not None and message.error() is None and message.value():
                self.received.append((time.time(), RetrainTrigger.model_validate_json(message.value() or b"")))
        self._consumer.close()

    def close(self) -> None:
        """Stop reading."""
        self._stop.set()
        self._thread.join(10)


class WindowRows:
    """First sight of each (model, version, window start) row in ClickHouse, through the SQL endpoint."""

    def __init__(self, sql_port: int, window_ms: int) -> None:
        self.sql_port, self.window_ms = sql_port, window_ms
        self.first_seen: dict[tuple[str, str, int], float] = {}
        self._asked = time.time()

    def poll(self) -> None:
        """Ask once; stamp new rows half-way between the previous question and this one."""
        since = max((window_start for _m, _v, window_start in self.first_seen), default=0) - self.window_ms
        asked = time.time()
        rows = query_endpoint(
            self.sql_port,
            "SELECT DISTINCT model_id, model_version, toUnixTimestamp64Milli(window_start) AS start "
            f"FROM performance_windows WHERE window_start >= fromUnixTimestamp64Milli({max(since, 0)})",
        )
        for model, version, window_start in rows.itertuples(index=False):
            self.first_seen.setdefault((model, version, int(window_start)), (self._asked + asked) / 2)
        self._asked = asked


def measure_latency(
    config: BenchConfig, names: Names, rate: float, duration_s: float, progress: Callable[[int], None]
) -> Latency:
    """Produce ``rate × duration_s`` events at ``rate`` into a fresh prefix while ``driftline run`` works on
    them; wait until every window that closed meanwhile is in ClickHouse (at most :data:`ARRIVAL_TIMEOUT_S`
    after the producer stopped), then for the triggers a little longer; measure."""
    stream = replace(config, events=max(1000, int(rate * duration_s)))
    variables = overrides(config, names)
    settings = load_settings(**variables)
    create_topics(settings)
    names.data_dir.mkdir(parents=True, exist_ok=True)
    command = [str(BIN / "driftline"), "run", "--loglevel", "warn"]
    run = start(command, names.data_dir / "run.log", environment(variables), cwd=names.data_dir)
    producer: Program | None = None
    triggers: TriggerReader | None = None
    try:
        _wait_ready(run, names)
        triggers = TriggerReader(settings)
        rows = WindowRows(names.sql_port, int(config.window_s * 1000))
        closes = Closes()
        producer = Program(
            "bench.paced_producer",
            {"settings": variables, "config": asdict(stream), "rate": rate},
            names.data_dir / "producer.log",
        )
        watched = _watch(config, names, run=run, producer=producer, rows=rows, closes=closes, progress=progress)
        peak = ProcessMeter(run.pid).peak_rss_bytes()
    finally:
        if triggers is not None:
            triggers.close()
        if producer is not None:
            stop(producer.process)
        stop(run)
    return _measured(config, rate, watched, rows=rows, closes=closes, received=triggers.received, peak_rss_bytes=peak)


@dataclass(frozen=True)
class _Watched:
    """What a latency run saw: the producer's final report, how far behind the worker was then, the windows
    closed meanwhile still missing from ClickHouse, and when the watch ended (wall time)."""

    sent: dict[str, Any]
    behind: int
    missing: int
    complete: float


def _watch(
    config: BenchConfig,
    names: Names,
    *,
    run: Any,
    producer: Program,
    rows: WindowRows,
    closes: Closes,
    progress: Callable[[int], None],
) -> _Watched:
    """Poll ClickHouse and the producer until every window closed while producing is stored (or
    :data:`ARRIVAL_TIMEOUT_S` has passed since the producer stopped), then :data:`SETTLE_S` longer."""
    sent: dict[str, Any] | None = None
    behind = missing = 0
    complete: float | None = None
    close_ms = _close_after_ms(config)
    while complete is None or time.time() < complete + SETTLE_S:
        if run.poll() is not None:
            raise RunError(f"driftline run exited with code {run.returncode} (log: {names.data_dir / 'run.log'})")
        rows.poll()
        if sent is None:
            sent = _drain(producer, closes, progress)
            if sent is not None:
                seen = scrape(names.web_port)
                behind = sent["events"] - seen[0] if seen else 0
        elif complete is None:
            closed = [key for key in rows.first_seen if closes.wall_at(key[2] + close_ms) is not None]
            missing = config.models * _windows_closed(config, closes) - len(closed)
            if missing <= 0 or time.time() > sent["wall"] + ARRIVAL_TIMEOUT_S:
                complete = time.time()
        time.sleep(POLL_S)
    assert sent is not None
    return _Watched(sent, behind, max(missing, 0), complete)


def _measured(
    config: BenchConfig,
    rate: float,
    watched: _Watched,
    *,
    rows: WindowRows,
    closes: Closes,
    received: list[tuple[float, RetrainTrigger]],
    peak_rss_bytes: int,
) -> Latency:
    """The latencies of the windows and triggers a run saw."""
    close_ms = _close_after_ms(config)
    window_delays = [
        seen - close
        for (_m, _v, window_start), seen in rows.first_seen.items()
        if (close := closes.wall_at(window_start + close_ms)) is not None
    ] + [math.inf] * watched.missing  # not stored in time: later than any that were
    timed = [(at, t) for at, t in received if not DETECTOR_RULES & {r.rule for r in t.reasons}]
    trigger_delays = [
        at - close
        for at, trigger in timed
        if (close := closes.wall_at(int(trigger.window_start.timestamp() * 1000) + close_ms)) is not None
    ]
    return Latency(
        rate=rate,
        events=watched.sent["events"],
        seconds=watched.sent["seconds"],
        behind_events=watched.behind,
        complete_after_s=round(watched.complete - watched.sent["wall"], 1),
        windows=len(window_delays) - watched.missing,
        windows_missing=watched.missing,
        window_p50_s=_percentile(window_delays, 50),
        window_p99_s=_percentile(window_delays, 99),
        triggers=len(trigger_delays),
        trigger_p50_s=_percentile(trigger_delays, 50),
        trigger_p99_s=_percentile(trigger_delays, 99),
        detector_triggers=len(received) - len(timed),
        trigger_rules=dict(Counter(rule for _at, t in timed for rule in sorted({r.rule for r in t.reasons}))),
        peak_rss_bytes=peak_rss_bytes,
    )


def _close_after_ms(config: BenchConfig) -> int:
    """How long after its start a window closes: its length plus the grace period, in ms."""
    return int((config.window_s + config.grace_s) * 1000)


def _windows_closed(config: BenchConfig, closes: Closes) -> int:
    """How many windows (per model) the stream closed while it was produced."""
    if not closes.times:
        return 0
    first = config.simulation().start.timestamp() * 1000  # a window boundary: midnight
    reached = closes.times[-1] - first - _close_after_ms(config)
    return max(0, int(reached // (config.window_s * 1000)) + 1)


def _wait_ready(run: Any, names: Names) -> None:
    """Until the worker has its partitions and the sink serves SQL."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if run.poll() is not None:
            raise RunError(f"driftline run exited with code {run.returncode} (log: {names.data_dir / 'run.log'})")
        seen = scrape(names.web_port)
        if seen is not None and seen[1] is not None:  # partitions assigned
            try:
                query_endpoint(names.sql_port, "SELECT 1")
                return
            except (urllib.error.URLError, ConnectionError):
                pass
        time.sleep(0.2)
    raise RunError(f"driftline run was not ready in {READY_TIMEOUT_S:.0f} s (log: {names.data_dir / 'run.log'})")


def _drain(producer: Program, closes: Closes, progress: Callable[[int], None]) -> dict[str, Any] | None:
    """Take the producer's reports so far; its final report once it has finished."""
    while True:
        try:
            line = producer.reports.get_nowait()
        except queue.Empty:
            return None
        if line is None:
            raise RunError(f"the paced producer exited with code {producer.process.wait()} (log: {producer.log})")
        if "done" in line:
            return line
        if line["time_ms"] is not None:
            closes.add(line["wall"], line["time_ms"])
        progress(line["progress"])


def _percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile; None without values, or when it falls on a value that never came (inf)."""
    if not values:
        return None
    ranked = sorted(values)
    value = ranked[max(0, math.ceil(q / 100 * len(ranked)) - 1)]
    return round(value, 3) if math.isfinite(value) else None
