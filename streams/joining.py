"""The first stage of the worker: one source partition's join of predictions with their feedback.

Predictions and feedback are co-partitioned by ``prediction_id``, so the join of a partition needs nothing from
any other. Semantics, all a function of the partition's own events in their order (so a replay, or another
worker owning the partition, gives the same deltas):

- A prediction is a row of its window's share (tumbling event-time window of its timestamp, per model version),
  numbered in arrival order; a prediction id already seen counts once. A prediction whose window closed on this
  partition (its end plus the grace period is at or before the latest prediction time read here) is *late*:
  counted in the share, not a row.
- Feedback joins its prediction by id, in whichever order they arrive: feedback that comes first waits; a
  second label for the same prediction counts once. Feedback still waiting when the partition's prediction time
  passes its own time plus the horizon is *orphaned*: counted per model and window start of its time.
- State is dropped when the partition's prediction time passes a window's end plus the horizon.
- :meth:`PartitionJoin.deltas` gives what changed since the last :meth:`PartitionJoin.sent` (see
  :mod:`driftline.streams.deltas`), ending with the partition's :class:`~driftline.streams.deltas.Progress`
  when it changed; a partition without predictions for ``idle_timeout_s`` of processing time reports itself
  idle, so it stops holding the windows of the others back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from driftline.schemas.events import Task
from driftline.schemas.records import FeedbackRecord, PredictionRecord
from driftline.settings import MonitorSettings
from driftline.streams.deltas import Delta, Label, OrphanCount, Progress, WindowDelta
from driftline.streams.watermarks import EPOCH

WindowId = tuple[str, str, datetime]  # model_id, model_version, window start
VALUES_PER_DELTA = 40_000  # rows x their values (features, groups and 6 more) in one message: well under 1 MB


def window_start(stamp: datetime, window_s: float) -> datetime:
    """Start of the tumbling window holding ``stamp`` (aligned to the Unix epoch)."""
    seconds = (stamp - EPOCH).total_seconds()
    return EPOCH + timedelta(seconds=math.floor(seconds / window_s) * window_s)


@dataclass
class Share:
    """One window's rows on this partition: their count, ids, and what changed since the last delta."""

    task: Task
    ids: list[str] = field(default_factory=list)
    late_predictions: int = 0
    unsent_from: int = 0  # rows from here on were not sent yet
    unsent: list[PredictionRecord] = field(default_factory=list)
    unsent_labels: list[Label] = field(default_factory=list)
    changed: bool = False


class PartitionJoin:
    """The join of one source partition; plain data, pickled with the worker's checkpoint."""

    def __init__(self, settings: MonitorSettings, partition: int, now: float) -> None:
        self.settings = settings
        self.partition = partition
        self.shares: dict[WindowId, Share] = {}
        self.pending: dict[str, tuple[WindowId, int]] = {}
        self.labelled: set[str] = set()
        self.early: dict[str, FeedbackRecord] = {}
        self.orphans: dict[tuple[str, datetime], int] = {}
        self.changed_orphans: set[tuple[str, datetime]] = set()
        self.predictions_mark = EPOCH
        self.labels_mark = EPOCH
        self.predictions_heard = now
        self.labels_heard = now
        self.reported: Progress | None = None  # the progress last delivered
        self.reporting: Progress | None = None  # the progress in the last deltas, until they are delivered

    def add_prediction(self, event: PredictionRecord, now: float) -> None:
        """Include a prediction as a row (or count it late, or ignore a duplicate id)."""
        self.predictions_heard = now
        self.predictions_mark = max(self.predictions_mark, event.timestamp)
        if event.prediction_id in self.pending:
            return
        start = window_start(event.timestamp, self.settings.window_s)
        key = (event.model_id, event.model_version, start)
        share = self.shares.get(key)
        if share is None:
            share = self.shares[key] = Share(task=event.task)
        share.changed = True
        closes = start + timedelta(seconds=self.settings.window_s + self.settings.grace_s)
        if closes <= self.predictions_mark:
            share.late_predictions += 1
            return
        row = len(share.ids)
        share.ids.append(event.prediction_id)
        share.unsent.append(event)
        self.pending[event.prediction_id] = (key, row)
        early = self.early.pop(event.prediction_id, None)
        if early is not None:
            self._label(share, row, early)

    def add_feedback(self, event: FeedbackRecord, now: float) -> None:
        """Join a label to its prediction, or keep it until the prediction arrives (within the horizon)."""
        self.labels_heard = now
        self.labels_mark = max(self.labels_mark, event.timestamp)
        slot = self.pending.get(event.prediction_id)
        if slot is None:
            self.early.setdefault(event.prediction_id, event)
            return
        key, row = slot
        self._label(self.shares[key], row, event)

    def deltas(self, now: float) -> list[Delta]:
        """What changed since the last :meth:`sent`, then the partition's progress; expires old state first."""
        self._expire()
        out: list[Delta] = []
        for (model_id, version, start), share in self.shares.items():
            if share.changed:
                out.extend(_window_deltas(model_id, version, start, self.partition, share))
        for model_id, start in sorted(self.changed_orphans):
            out.append(OrphanCount(model_id, start, self.partition, self.orphans[(model_id, start)]))
        idle = self.settings.idle_timeout_s
        self.reporting = Progress(
            partition=self.partition,
            predictions_mark=self.predictions_mark,
            labels_mark=self.labels_mark,
            predictions_idle=now - self.predictions_heard >= idle,
            labels_idle=now - self.labels_heard >= idle,
        )
        if self.reporting != self.reported:
            out.append(self.reporting)
        return out

    def sent(self) -> None:
        """The last :meth:`deltas` were delivered: forget them."""
        for share in self.shares.values():
            if share.changed:
                share.unsent_from = len(share.ids)
                share.unsent, share.unsent_labels, share.changed = [], [], False
        self.changed_orphans.clear()
        self.reported = self.reporting

    def resume(self, now: float) -> None:
        """After a restart: the partition counts as just heard from (processing time starts anew)."""
        self.predictions_heard = self.labels_heard = now

    def _label(self, share: Share, row: int, event: FeedbackRecord) -> None:
        if event.prediction_id in self.labelled:
            return  # a second label for the same prediction counts once
        self.labelled.add(event.prediction_id)
        share.unsent_labels.append((row, event.label, event.value, event.timestamp))
        share.changed = True

    def _expire(self) -> None:
        """Drop windows past the horizon; count feedback that waited longer than the horizon as orphaned."""
        horizon = timedelta(seconds=self.settings.horizon_s)
        size = timedelta(seconds=self.settings.window_s)
        oldest = self.predictions_mark - horizon
        for prediction_id, feedback in list(self.early.items()):
            if feedback.timestamp >= oldest:
                continue
            del self.early[prediction_id]
            if feedback.model_id is not None:
                slot = (feedback.model_id, window_start(feedback.timestamp, self.settings.window_s))
                self.orphans[slot] = self.orphans.get(slot, 0) + 1
                self.changed_orphans.add(slot)
        for key in [key for key, share in self.shares.items() if key[2] + size <= oldest and not share.changed]:
            for prediction_id in self.shares.pop(key).ids:
                self.pending.pop(prediction_id, None)
                self.labelled.discard(prediction_id)
        for slot in [slot for slot in self.orphans if slot[1] + size <= oldest and slot not in self.changed_orphans]:
            del self.orphans[slot]


def _window_deltas(model_id: str, version: str, start: datetime, partition: int, share: Share) -> list[WindowDelta]:
    """A share's unsent rows, then its unsent labels, in messages of at most ``VALUES_PER_DELTA`` values."""
    rows, labels = share.unsent, share.unsent_labels
    width = 6 + (len(rows[0].features) + len(rows[0].sensitive) if rows else 0)
    step = max(1, VALUES_PER_DELTA // width)
    chunks: list[tuple[list[PredictionRecord], list[Label]]] = [
        (rows[i : i + step], []) for i in range(0, len(rows), step)
    ]
    label_step = VALUES_PER_DELTA // 4
    chunks += [([], labels[i : i + label_step]) for i in range(0, len(labels), label_step)]
    out: list[WindowDelta] = []
    first_row = share.unsent_from
    for chunk, chunk_labels in chunks or [([], [])]:
        out.append(
            WindowDelta(
                model_id=model_id,
                model_version=version,
                window_start=start,
                partition=partition,
                task=share.task,
                first_row=first_row,
                ids=[r.prediction_id for r in chunk],
                times=[r.timestamp for r in chunk],
                predicted=[r.predicted for r in chunk],
                scores=[r.score for r in chunk],
                values=[r.value for r in chunk],
                features=[dict(r.features) for r in chunk],
                sensitive=[dict(r.sensitive) for r in chunk],
                labels=list(chunk_labels),
                late_predictions=share.late_predictions,
            )
        )
        first_row += len(chunk)
    return out
