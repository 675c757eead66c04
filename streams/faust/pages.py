"""The worker's web pages: ``/health`` (checkpoint age) and ``/metrics`` (Prometheus, read from the stages at
scrape time)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from driftline.settings import Settings
from driftline.streams.worker.stages import WorkerStages


def add_pages(app: faust.App, settings: Settings, stages: WorkerStages, topics: list[str]) -> None:
    """``/metrics`` (Prometheus, read from the stages at scrape time) and ``/health`` (checkpoint age)."""
    registry = CollectorRegistry()
    registry.register(_StagesCollector(stages, app, topics))

    @app.page("/metrics")
    async def metrics(web: Any, _request: Any) -> Any:
        return web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health(web: Any, _request: Any) -> Any:
        age = time.monotonic() - stages.last_checkpoint
        healthy = age < max(30.0, 10 * settings.monitor.checkpoint_s)
        return web.json({"status": "ok" if healthy else "stale", "checkpoint_age_s": round(age, 3)})


class _StagesCollector:
    """Prometheus metrics read from the stages at scrape time."""

    def __init__(self, stages: WorkerStages, app: faust.App, topics: list[str]) -> None:
        self.stages = stages
        self.app = app
        self.topics = topics

    def collect(self) -> Iterator[Any]:
        counts = self.stages.counts
        events = CounterMetricFamily("driftline_events_in", "Valid events consumed", labels=["kind"])
        for kind in ("predictions", "feedback"):
            events.add_metric([kind], counts[kind])
        yield events
        letters = CounterMetricFamily("driftline_dead_letters", "Invalid input skipped, by reason", labels=["reason"])
        for name, value in counts.items():
            if name.startswith("dead_letter:"):
                letters.add_metric([name.split(":", 1)[1]], value)
        yield letters
        yield CounterMetricFamily(
            "driftline_windows_emitted", "Window results published", value=counts["windows_emitted"]
        )
        yield CounterMetricFamily(
            "driftline_replayed", "Messages skipped as already checkpointed", value=counts["replayed"]
        )
        windows = [buffer for merger in self.stages.mergers.values() for buffer in merger.engine.windows.values()]
        late = sum(share.summary.late for join in self.stages.joins.values() for share in join.shares.values())
        orphans = sum(buffer.orphan_feedback for buffer in windows)
        yield GaugeMetricFamily("driftline_open_windows", "Windows held in state", value=len(windows))
        yield GaugeMetricFamily(
            "driftline_pending_predictions",
            "Predictions awaiting labels",
            value=sum(join.waiting_predictions for join in self.stages.joins.values()),
        )
        yield GaugeMetricFamily(
            "driftline_late_predictions", "Late predictions in windows held by this worker's joins", value=late
        )
        yield GaugeMetricFamily("driftline_orphan_feedback", "Orphaned feedback in held windows", value=orphans)
        yield GaugeMetricFamily(
            "driftline_detector_late",
            "Labels and scores left out of the detectors (slice already fed)",
            value=sum(merger.engine.detector_late for merger in self.stages.mergers.values()),
        )
        yield GaugeMetricFamily(
            "driftline_after_horizon",
            "Share updates that reached a window already dropped (past the label horizon)",
            value=sum(merger.engine.after_horizon for merger in self.stages.mergers.values()),
        )
        yield CounterMetricFamily(
            "driftline_parts_undecodable",
            "window-parts messages that could not be decoded",
            value=counts["parts_undecodable"],
        )
        yield CounterMetricFamily("driftline_alarms", "Streaming detector alarms raised", value=counts["alarms"])
        yield CounterMetricFamily("driftline_triggers", "Retraining triggers published", value=counts["triggers"])
        yield self._lag()
        yield from self._completeness()
        yield GaugeMetricFamily(
            "driftline_checkpoint_age_seconds",
            "Seconds since the last checkpoint",
            value=time.monotonic() - self.stages.last_checkpoint,
        )

    def _completeness(self) -> Iterator[GaugeMetricFamily]:
        """Per model version merged by this worker, the event time (Unix seconds) up to which its windows are
        closed (published with every prediction) and final (no label changes them):
        :meth:`WorkerStages.completeness`."""
        labels = ["model_id", "model_version"]
        closed = GaugeMetricFamily(
            "driftline_windows_closed_until_seconds", "Windows ending by this event time are closed", labels=labels
        )
        final = GaugeMetricFamily(
            "driftline_windows_final_until_seconds", "Windows ending by this event time are final", labels=labels
        )
        for model_id, version, closed_until, final_until in self.stages.completeness():
            closed.add_metric([model_id, version], closed_until.timestamp())
            final.add_metric([model_id, version], final_until.timestamp())
        yield closed
        yield final

    def _lag(self) -> GaugeMetricFamily:
        """Messages behind the end of each assigned partition: high watermark minus the next offset to read."""
        lag = GaugeMetricFamily(
            "driftline_consumer_lag", "Messages not yet processed, per source partition", labels=["topic", "partition"]
        )
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic not in self.topics:
                continue  # the state table's changelog is read only to restore
            high = consumer.highwater(tp)
            if high is None:
                continue
            processed = self.stages.offsets.get((tp.topic, tp.partition), -1)
            lag.add_metric([tp.topic, str(tp.partition)], max(0, high - (processed + 1)))
        return lag
