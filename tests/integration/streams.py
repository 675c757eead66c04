"""Event streams for the security and reliability tests: labelled predictions over a few event-time windows,
sent through the producer client, and what ClickHouse holds of them afterwards."""

from __future__ import annotations

import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from clickhouse_connect.driver.client import Client

from driftline.client.producer import Monitor
from driftline.settings import Settings
from driftline.sinks.sql_endpoint import query_endpoint

T0 = datetime(2026, 6, 1, tzinfo=UTC)
WINDOW_S = 60.0
MODEL = "credit-risk"
CLOCK_EVENTS = 16  # enough keys to reach every partition, so every partition's watermark moves on


def windowed(settings: Settings, **monitor: Any) -> Settings:
    """``settings`` with one-minute windows, a short grace, frequent checkpoints, no idle cut-off, and windows
    changed by late labels published again within a second."""
    values = {
        "window_s": WINDOW_S,
        "grace_s": 1.0,
        "checkpoint_s": 0.3,
        "idle_timeout_s": 1e6,
        "republish_s": 1.0,
        **monitor,
    }
    return settings.model_copy(update={"monitor": settings.monitor.model_copy(update=values)})


@dataclass(frozen=True)
class Stream:
    """Predictions of one model (each labelled one second later, in event-time order) over ``windows``
    windows, then its *clock*: one prediction per clock key after them (ids ``clock-*``, in a window that never
    closes, left out of :func:`stored`) that moves the model's event time past every window on every partition."""

    predictions: list[dict[str, Any]]
    feedback: list[dict[str, Any]]
    windows: int

    @classmethod
    def make(cls, windows: int, per_window: int, seed: int = 0, tag: str = "p") -> Stream:
        rng = np.random.default_rng(seed)
        predictions, feedback = [], []
        for window in range(windows):
            for i in range(per_window):
                stamp = T0 + timedelta(seconds=window * WINDOW_S + i * (WINDOW_S - 5) / per_window)
                score = round(float(rng.random()), 4)
                pid = f"{tag}-{window}-{i}"
                predictions.append(
                    {
                        "prediction_id": pid,
                        "timestamp": stamp,
                        "features": {"age": round(float(rng.normal(40, 9)), 2), "city": str(rng.choice(["a", "b"]))},
                        "label": int(score >= 0.5),
                        "score": score,
                        "sensitive": {"gender": str(rng.choice(["f", "m"]))},
                    }
                )
                feedback.append({"prediction_id": pid, "timestamp": stamp + timedelta(seconds=1), "label": i % 2})
        return cls(predictions, feedback, windows)

    @property
    def clock(self) -> list[dict[str, Any]]:
        """Predictions of the model after the last window (past any grace), on every partition."""
        stamp = T0 + timedelta(seconds=(self.windows + 3) * WINDOW_S)
        return [
            {"prediction_id": f"clock-{k}", "timestamp": stamp, "features": {}, "label": 0, "score": 0.5}
            for k in range(CLOCK_EVENTS)
        ]

    @property
    def events(self) -> int:
        """Predictions and labels of the model (the clock's not included)."""
        return len(self.predictions) + len(self.feedback)

    def send(
        self,
        settings: Settings,
        chunks: int = 1,
        between_chunks: Callable[[int], None] = lambda _chunk: None,
        clock: bool = True,
    ) -> None:
        """Send the predictions and their labels (each label after its prediction) through one producer client,
        in ``chunks`` parts with ``between_chunks(i)`` called after part ``i`` (pacing), then the clock."""
        size = -(-len(self.predictions) // chunks)
        with Monitor(MODEL, "1", settings=settings, max_batch=200) as monitor:
            for chunk in range(chunks):
                part = slice(chunk * size, (chunk + 1) * size)
                for prediction, label in zip(self.predictions[part], self.feedback[part], strict=True):
                    monitor.log_prediction(**prediction)  # the keys are log_prediction's and log_feedback's own
                    monitor.log_feedback(**label)
                between_chunks(chunk)
        if clock:
            with Monitor(MODEL, "1", settings=settings) as monitor:
                for event in self.clock:
                    monitor.log_prediction(**event)

    def expected_windows(self) -> list[tuple[datetime, int, int, float]]:
        """Each window's start, predictions, labelled predictions and accuracy, computed from the stream."""
        labels = {event["prediction_id"]: event["label"] for event in self.feedback}
        rows = []
        for window in range(self.windows):
            start = T0 + timedelta(seconds=window * WINDOW_S)
            inside = [p for p in self.predictions if start <= p["timestamp"] < start + timedelta(seconds=WINDOW_S)]
            right = sum(p["label"] == labels[p["prediction_id"]] for p in inside if p["prediction_id"] in labels)
            labelled = sum(p["prediction_id"] in labels for p in inside)
            rows.append((start.replace(tzinfo=None), len(inside), labelled, right / labelled))
        return rows


@dataclass(frozen=True)
class Stored:
    """What ClickHouse holds of a stream's events."""

    predictions: int  # rows as analysts see them (FINAL)
    feedback: int
    predictions_raw: int  # rows before ReplacingMergeTree collapses replays
    feedback_raw: int
    distinct_predictions: int  # prediction ids of the stream among them
    distinct_feedback: int

    @property
    def events(self) -> int:
        return self.predictions + self.feedback

    @property
    def duplicated(self) -> int:
        """Rows an analyst would count twice: FINAL rows beyond one per event."""
        return self.events - self.distinct_predictions - self.distinct_feedback

    @property
    def replayed(self) -> int:
        """Rows written again by a replay and collapsed by ClickHouse (not visible through FINAL)."""
        return self.predictions_raw + self.feedback_raw - self.events


def stored(ask: Callable[[str], int], model: str = MODEL) -> Stored:
    """Count a model's predictions and feedback in ClickHouse (its clock's left out), with FINAL and without;
    ``ask`` runs a query whose answer is one number (on a client, or through a running sink's SQL endpoint)."""
    where = f"WHERE model_id = '{model}' AND NOT startsWith(prediction_id, 'clock-')"

    def counted(table: str) -> tuple[int, int, int]:
        """Rows with FINAL, rows without, distinct prediction ids."""
        return (
            ask(f"SELECT count() FROM {table} FINAL {where}"),
            ask(f"SELECT count() FROM {table} {where}"),
            ask(f"SELECT uniqExact(prediction_id) FROM {table} FINAL {where}"),
        )

    (predictions, predictions_raw, distinct_predictions), (feedback, feedback_raw, distinct_feedback) = (
        counted("predictions"),
        counted("feedback"),
    )
    return Stored(predictions, feedback, predictions_raw, feedback_raw, distinct_predictions, distinct_feedback)


def on_client(client: Client) -> Callable[[str], int]:
    """``ask`` for :func:`stored` on a ClickHouse client of this process."""
    return lambda sql: int(client.command(sql))


def through_endpoint(port: int) -> Callable[[str], int]:
    """``ask`` for :func:`stored` through the SQL endpoint of a ``driftline sink`` on ``port``; -1 while no
    sink answers there (it is being restarted)."""

    def ask(sql: str) -> int:
        try:
            return int(query_endpoint(port, sql).iloc[0, 0])
        except urllib.error.URLError:
            return -1

    return ask
