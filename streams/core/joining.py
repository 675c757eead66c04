"""The first stage of the worker: one source partition's join of predictions with their feedback, summarised.

Predictions and feedback are co-partitioned by ``prediction_id``, so the join of a partition needs nothing from
any other. Semantics, all a function of the partition's own events in their order (so a replay, or another
worker owning the partition, gives the same shares):

- A prediction counts in its window's *share* (tumbling event-time window of its timestamp, per model version):
  its :mod:`~driftline.streams.core.summary` summary, and its features counted against the version's reference
  profile (:mod:`~driftline.streams.core.feature_counts`) once the join knows one; until then the share keeps
  the rows' features to send. A prediction already seen (model and id) counts once. Event time is kept per
  model version: a prediction whose window closed on this partition (its end plus the grace period is at or
  before the latest prediction time of its model version read here) is *late*: counted in the share's summary,
  not included. Another model's (or version's) events never make it late.
- Per prediction still open to a label the join keeps only what the label needs: its window, and in the share
  its predicted label (or value), score and combination of sensitive groups. A prediction is identified by
  (model, prediction id): another model may use the same id. Once labelled, nothing can change what it counts
  (a second label counts no more), so it leaves the index of waiting predictions and its id is forgotten: its
  share keeps only :func:`prediction_hash` of (model, id), 8 bytes, so that a second label is still recognised
  (and ignored) and a prediction seen again still counts once, until the share is dropped.
- Feedback joins its prediction by (model, id), or by id alone when it names no model (then the id's first
  model among the predictions waiting for a label), in whichever order they arrive: feedback that comes first
  waits; a second label for the same prediction counts once (the first read); a label updates the
  label-dependent counts of its share. Feedback
  still waiting when its model's prediction time (the partition's latest prediction time, for feedback that
  does not name its model) passes its own time plus the horizon is *orphaned*: counted per model and window
  start of its time. Waiting feedback is kept in heaps by time, one per model, so expiry takes the oldest and
  never looks at the rest.
- A label counts in its prediction's window when its own time is before the window's end plus the horizon
  (event time alone, so the order in which the two topics are read does not matter), and it is read before its
  model version's prediction time here passes that plus the grace period, when the window's state is dropped.
  Whether a label joins never depends on when the dropping happens: a label for a window past it, or feedback
  older than the horizon meeting its prediction, is treated as if the state were gone already.
- What the detectors need goes out as it comes: a binary prediction's score as soon as it is read, a label's
  error (and a refusal of a label of the wrong type) at the next deltas. Events are added to the summaries and
  feature counts later, in batches, vectorised (:meth:`PartitionJoin.fold`): when the share is about to go out
  (its window closed here, or its model version is idle), when the join holds ``UNFOLDED_MAX`` predictions not
  added yet, and before a checkpoint saves the state; so the cost of adding follows the events, not how often
  deltas are read.
- :meth:`PartitionJoin.deltas` gives what changed since the last :meth:`PartitionJoin.sent` (see
  :mod:`driftline.streams.core.deltas`), ending with the partition's :class:`~driftline.streams.core.deltas.Progress`
  when it changed: per model version its latest prediction time and whether it has been idle (none of its
  predictions for ``idle_timeout_s`` of processing time, so the partition stops holding its windows back).
"""

from __future__ import annotations

import heapq
import json
import math
from datetime import datetime, timedelta

import xxhash

from driftline.schemas.dead_letters import DeadLetter, Reason
from driftline.schemas.monitoring import MonitorSettings
from driftline.schemas.records import FeedbackRecord, PredictionRecord
from driftline.streams.core.deltas import (
    Delta,
    OrphanCount,
    Progress,
)
from driftline.streams.core.shares import (
    JoinContext,
    RejectedLabel,
    Share,
    WindowId,
    check_labels,
    fold_labels,
    fold_rows,
    share_deltas,
)
from driftline.streams.core.summary import (
    new_summary,
)
from driftline.streams.core.watermarks import EPOCH, ModelKey, ModelMark

UNFOLDED_MAX = 20_000  # predictions a join holds as records (~1.5 KB each with 13 features) before adding them up


def rejected_label_letter(topic: str, partition: int, rejected: RejectedLabel) -> DeadLetter:
    """The dead letter of a refused label, keyed by where the feedback was read (so a replay gives the same
    key); ``original`` is the event's JSON as the join holds it (its label as text)."""
    feedback = rejected.feedback
    event: dict[str, object] = {"prediction_id": feedback.prediction_id, "timestamp": feedback.timestamp.isoformat()}
    if feedback.model_id is not None:
        event["model_id"] = feedback.model_id
    event["label" if feedback.label is not None else "value"] = (
        feedback.label if feedback.label is not None else feedback.value
    )
    return DeadLetter(
        source_topic=topic,
        source_partition=partition,
        source_offset=max(feedback.offset, 0),
        envelope_index=feedback.position,
        reason=Reason.LABEL_TYPE_MISMATCH,
        error_class="ContractError",
        message=f"feedback {feedback.prediction_id!r} for {rejected.reason}",
        original=json.dumps(event, separators=(",", ":")).encode(),
    )


def prediction_hash(model_id: str, prediction_id: str) -> int:
    """The 64-bit XXH3 hash of ``model_id``, a NUL and ``prediction_id`` (UTF-8), by which a join remembers a
    labelled prediction. Two predictions share one with odds of about n / 2**64 for n remembered (below 1e-10 for
    a billion): the later would count as seen already."""
    return xxhash.xxh3_64_intdigest(f"{model_id}\0{prediction_id}".encode())


def window_start(stamp: datetime, window_s: float) -> datetime:
    """Start of the tumbling window holding ``stamp`` (aligned to the Unix epoch)."""
    seconds = (stamp - EPOCH).total_seconds()
    return EPOCH + timedelta(seconds=math.floor(seconds / window_s) * window_s)


class PartitionJoin:
    """The join of one source partition; saved with the worker's checkpoint
    (:mod:`driftline.streams.worker.snapshots`)."""

    def __init__(self, settings: MonitorSettings, partition: int, now: float) -> None:
        self.settings = settings
        self.partition = partition
        self.shares: dict[WindowId, Share] = {}
        # index of the shares' rows (rebuilt, not saved): by prediction id for the first model that used an id,
        # by (model, prediction id) for another model using it again
        self.pending: dict[str, tuple[WindowId, int]] = {}
        self.reused: dict[tuple[str, str], tuple[WindowId, int]] = {}
        self.settled: set[int] = set()  # prediction_hash of the shares' labelled predictions (rebuilt, not saved)
        self.early: dict[tuple[str | None, str], FeedbackRecord] = {}  # by (model it names, prediction id)
        # per model named by the feedback (None: not named), a heap of the waiting feedback's (time, id)
        self.early_by_time: dict[str | None, list[tuple[datetime, str]]] = {}
        self.rejected: list[RejectedLabel] = []  # labels refused since the last deltas, for dead letters
        self.orphans: dict[tuple[str, datetime], int] = {}
        self.changed_orphans: set[tuple[str, datetime]] = set()
        self.marks: dict[ModelKey, datetime] = {}  # per model version: its latest prediction time read here
        self.heard: dict[ModelKey, float] = {}  # per model version: when (processing time) it was last read
        self.model_marks: dict[str, datetime] = {}  # per model: the latest of its versions' marks
        self.predictions_mark = EPOCH  # the latest prediction time of any model (the clock of unnamed feedback)
        self.labels_mark = EPOCH
        self.predictions_heard = now
        self.labels_heard = now
        self.reported: dict[ModelKey, ModelMark] = {}  # per model version, the mark last delivered
        self.reported_partition: tuple[datetime, bool, datetime, bool] | None = None
        self.reporting: Progress | None = None  # the progress in the last deltas, until they are delivered
        self.next_close: dict[ModelKey, datetime] = {}  # per model version: when (its mark) its next window closes
        self.window_closed = False  # a version's mark passed a window's end plus the grace since the last deltas
        self._last_window = (EPOCH, EPOCH, EPOCH)  # start, end and close of the window last looked up
        self._window = timedelta(seconds=settings.window_s)
        self._horizon = timedelta(seconds=settings.horizon_s)
        self._closes = self._window + timedelta(seconds=settings.grace_s)  # after a window's start: it closes
        self._labels_until = self._window + self._horizon  # after a window's start: labels later than it miss it
        self._kept = timedelta(seconds=settings.kept_s)  # after a window's start: its state, for labels read late
        self._deltas_at = now  # processing time of the last deltas

    def add_prediction(self, event: PredictionRecord, now: float) -> None:
        """Include a prediction (or count it late, or ignore a duplicate id)."""
        model_id, prediction_id, stamp = event.model_id, event.prediction_id, event.timestamp
        version = (model_id, event.model_version)
        self.predictions_heard = self.heard[version] = now
        mark = self.marks.get(version, EPOCH)
        if stamp > mark:
            mark = self.marks[version] = stamp
            if mark >= self.next_close.get(version, mark):
                self._closing(version, mark)
            if model_id not in self.model_marks:  # its first prediction here: the model's clock starts
                self._expire_waiting(model_id)
            self.model_marks[model_id] = max(mark, self.model_marks.get(model_id, EPOCH))
            self.predictions_mark = max(self.predictions_mark, mark)
        if self._slot(model_id, prediction_id) is not None or self._is_settled(model_id, prediction_id):
            return
        start, closes = self._window_of(stamp)
        key = (model_id, event.model_version, start)
        share = self.shares.get(key)
        if share is None:
            share = self.shares[key] = Share(event.task, new_summary(event.task))
        share.changed = True
        if closes <= mark:
            share.summary.late += 1
            return
        row = len(share.labelled)
        share.new_rows.append(event)
        share.labelled.append(0)
        if event.task == "binary":
            share.unsent_scores.append((stamp, prediction_id, event.score))
        self._index(model_id, prediction_id, (key, row))
        if not self.early:  # (no feedback waits: the usual case, labels come after their predictions)
            return
        early = self.early.get((model_id, prediction_id)) or self.early.get((None, prediction_id))
        if (
            early is not None
            and early.timestamp >= self._clock(early.model_id) - self._horizon  # (else orphaned, expired yet or not)
            and early.timestamp < start + self._labels_until
        ):
            del self.early[(early.model_id, early.prediction_id)]
            self._label(key, share, row, early)

    def _closing(self, version: ModelKey, mark: datetime) -> None:
        """The version's mark reached the close of the window that held its previous marks (or is its first):
        note the close (a window for the merger to emit now), and that the window holding ``mark`` closes at its
        end plus the grace."""
        self.window_closed = self.window_closed or version in self.next_close
        self.next_close[version] = self._window_of(mark)[1]

    def add_feedback(self, event: FeedbackRecord, now: float) -> None:
        """Join a label to its prediction, or keep it until the prediction arrives (within the horizon)."""
        self.labels_heard = now
        self.labels_mark = max(self.labels_mark, event.timestamp)
        if event.model_id is None:
            slot = self.pending.get(event.prediction_id)  # feedback naming no model: the id's first model
        else:
            slot = self._slot(event.model_id, event.prediction_id)
        start = slot[0][2] if slot is not None else EPOCH
        if (
            slot is not None
            and start + self._kept > self.marks[slot[0][:2]]
            and event.timestamp < start + self._labels_until
        ):
            key, row = slot
            self._label(key, self.shares[key], row, event)
        elif slot is None and event.model_id is not None and self._is_settled(event.model_id, event.prediction_id):
            return  # a second label for the same prediction counts once
        elif (event.model_id, event.prediction_id) not in self.early:  # (too late, or its state gone, dropped or not)
            self.wait(event)

    def wait(self, event: FeedbackRecord) -> None:
        """Keep feedback whose prediction has not come (yet)."""
        self.early[(event.model_id, event.prediction_id)] = event
        heapq.heappush(self.early_by_time.setdefault(event.model_id, []), (event.timestamp, event.prediction_id))

    @property
    def unfolded(self) -> int:
        """Predictions held as records, not added to their shares' summaries yet."""
        return sum(len(share.new_rows) for share in self.shares.values())

    @property
    def waiting_predictions(self) -> int:
        """Predictions waiting for a label here (their window still open to labels)."""
        return len(self.pending) + len(self.reused)

    def _is_settled(self, model_id: str, prediction_id: str) -> bool:
        """Whether ``(model_id, prediction_id)`` is a labelled prediction of a share still held."""
        return prediction_hash(model_id, prediction_id) in self.settled

    def _slot(self, model_id: str, prediction_id: str) -> tuple[WindowId, int] | None:
        """Where the prediction ``(model_id, prediction_id)`` is held, if it is."""
        slot = self.pending.get(prediction_id)
        if slot is not None and slot[0][0] == model_id:
            return slot
        return self.reused.get((model_id, prediction_id)) if self.reused else None

    def _unindex(self, model_id: str, prediction_id: str) -> None:
        """Take the prediction ``(model_id, prediction_id)`` out of the index, if it is there."""
        slot = self.pending.get(prediction_id)
        if slot is not None and slot[0][0] == model_id:
            del self.pending[prediction_id]
        else:
            self.reused.pop((model_id, prediction_id), None)

    def _index(self, model_id: str, prediction_id: str, slot: tuple[WindowId, int]) -> None:
        if prediction_id in self.pending:
            self.reused[(model_id, prediction_id)] = slot
        else:
            self.pending[prediction_id] = slot

    def deltas(self, now: float, context: JoinContext) -> list[Delta]:
        """What changed since the last :meth:`sent`, then the partition's progress; expires old state first.
        Calling it again before :meth:`sent` gives the same deltas.

        A share's summary and tallies go out once its window closed on this partition, or while the partition is
        idle: no window closes anywhere before every partition that is not idle is past it, so the merger has
        every share it needs by then, and an open window costs no traffic. Late labels (or late predictions)
        that change a closed share send it again at most once per ``republish_s`` of processing time, and at
        once when no label can join it any more or its version is idle here, so its last revision reaches the
        merger before the merger drops the window. Its numbered parts (uncounted rows, detector inputs) go out
        as they come."""
        self._expire()
        self.window_closed = False
        self._deltas_at = now
        progress = self.reporting = self._progress(now)
        out: list[Delta] = []
        crowded = self.unfolded >= UNFOLDED_MAX
        for key, share in self.shares.items():
            if share.changed:
                self.rejected += check_labels(key, share, context)
                due = self._due(key, share, now)
                if due or crowded:
                    self._fold(key, share, context)
                share.sending_whole = due and (share.revision != share.revision_sent or share.features_changed)
                out.extend(share_deltas(key, self.partition, share))
        for model_id, start in sorted(self.changed_orphans):
            out.append(OrphanCount(model_id, start, self.partition, self.orphans[(model_id, start)]))
        if progress is not None:
            out.append(progress)
        return out

    def _due(self, key: WindowId, share: Share, now: float) -> bool:
        """Whether the share's summary and tallies go out now: its window closed here, or its version is idle here;
        but a closed share already delivered waits for its ``resend_after`` while labels may still join it and
        its version is not idle (so late labels re-publish a window at most once per ``republish_s``)."""
        mark, idle = self.marks[key[:2]], self._idle(key[:2], now)
        if key[2] + self._closes > mark:
            return idle
        return now >= share.resend_after or idle or key[2] + self._kept <= mark

    def _idle(self, version: ModelKey, now: float) -> bool:
        return now - self.heard.get(version, now) >= self.settings.idle_timeout_s

    def _progress(self, now: float) -> Progress | None:
        """The partition's progress, with the models whose mark or idleness changed since the last delivered;
        None when nothing changed."""
        idle = self.settings.idle_timeout_s
        models = {version: (mark, self._idle(version, now)) for version, mark in self.marks.items()}
        active = [mark for mark, model_idle in models.values() if not model_idle]
        floor = min(active) if active else self.predictions_mark
        partition = (floor, now - self.predictions_heard >= idle, self.labels_mark, now - self.labels_heard >= idle)
        changed = [(*version, *mark) for version, mark in models.items() if self.reported.get(version) != mark]
        if not changed and partition == self.reported_partition:
            return None
        return Progress(self.partition, changed, *partition)

    def sent(self) -> None:
        """The last :meth:`deltas` were delivered: forget them. A share whose window closed here drops its feature
        counts once they went out (no prediction joins it any more)."""
        for (model_id, version, start), share in self.shares.items():
            if not share.changed:
                continue
            share.rows_sent += len(share.unsent_rows)
            share.scores_sent += len(share.unsent_scores)
            share.errors_sent += len(share.unsent_errors)
            share.unsent_rows, share.unsent_scores, share.unsent_errors = [], [], []
            if share.sending_whole:
                share.revision_sent, share.features_changed, share.sending_whole = share.revision, False, False
                if start + self._closes <= self.marks[(model_id, version)]:
                    share.features = None
                    share.resend_after = self._deltas_at + self.settings.republish_s
            share.changed = (
                share.revision != share.revision_sent
                or share.features_changed
                or bool(share.new_rows or share.new_labels)
            )
        self.changed_orphans.clear()
        if self.reporting is not None:
            self.reported.update({(m, v): (mark, idle) for m, v, mark, idle in self.reporting.models})
            progress = self.reporting
            self.reported_partition = (
                progress.floor,
                progress.predictions_idle,
                progress.labels_mark,
                progress.labels_idle,
            )
        self._drop_expired()  # what just went out for the last time

    def index_pending(self) -> None:
        """Rebuild the index of the predictions waiting for a label, and the set of labelled ones, from the shares
        (neither is saved)."""
        self.pending, self.reused, self.settled = {}, {}, set()
        for key, share in self.shares.items():
            self.settled.update(share.settled)
            for row, prediction_id in enumerate([*share.ids, *(event.prediction_id for event in share.new_rows)]):
                if not share.labelled[row]:
                    self._index(key[0], prediction_id, (key, row))

    def _window_of(self, stamp: datetime) -> tuple[datetime, datetime]:
        """:func:`window_start` of ``stamp``, and when that window closes (its end plus the grace), remembering the
        last window (most predictions fall in it)."""
        start, end, closes = self._last_window
        if not start <= stamp < end:
            start = window_start(stamp, self.settings.window_s)
            end, closes = start + self._window, start + self._closes
            self._last_window = (start, end, closes)
        return start, closes

    def resume(self, now: float) -> None:
        """After a restart: the partition and its models count as just heard from (processing time starts
        anew), and its whole progress is reported again."""
        self.predictions_heard = self.labels_heard = now
        self.heard = dict.fromkeys(self.marks, now)
        self.reported, self.reported_partition = {}, None

    def _label(self, key: WindowId, share: Share, row: int, event: FeedbackRecord) -> None:
        """Join the first label of the prediction in ``row`` of ``share``; the prediction stops waiting: it leaves
        the index, and only its :func:`prediction_hash` stays, in :attr:`settled` and the share."""
        share.labelled[row] = 1
        share.new_labels.append((row, event))
        share.changed = True
        model_id, prediction_id = key[0], event.prediction_id
        self._unindex(model_id, prediction_id)
        settled = prediction_hash(model_id, prediction_id)
        self.settled.add(settled)
        share.settled.append(settled)
        if row < len(share.ids):
            share.ids[row] = ""

    def fold(self, context: JoinContext) -> None:
        """Add every share's new predictions and labels to its summary and feature counts (before a checkpoint:
        the state saved holds no predictions as records, and no label left to check)."""
        for key, share in self.shares.items():
            if share.new_rows or share.new_labels:
                self._fold(key, share, context)

    def _fold(self, key: WindowId, share: Share, context: JoinContext) -> None:
        """Add the share's new predictions, then its new labels (checked first), to its summary and feature
        counts."""
        self.rejected += check_labels(key, share, context)
        if share.new_rows:
            fold_rows(key, share, context)
        if share.new_labels:
            fold_labels(share, context.positive(key[0]))

    def _clock(self, model_id: str | None) -> datetime:
        """The prediction time waiting feedback is judged by: its model's on this partition, once it has been
        read here (the latest of its versions'); the partition's latest prediction time before that, or when the
        feedback names no model."""
        return self.predictions_mark if model_id is None else self.model_marks.get(model_id, self.predictions_mark)

    def _expire(self) -> None:
        """Drop windows past the horizon; count feedback that waited longer than the horizon as orphaned."""
        for model_id in list(self.early_by_time):
            self._expire_waiting(model_id)
        self._drop_expired()

    def _expire_waiting(self, model_id: str | None) -> None:
        """Orphan the feedback of ``model_id`` that waited longer than the horizon by :meth:`_clock`.

        Also run when a model's first prediction is read here, before the clock switches to the model's own, so
        what expired never depends on when expiry ran."""
        waiting = self.early_by_time.get(model_id)
        oldest = self._clock(model_id) - self._horizon
        while waiting and waiting[0][0] < oldest:
            stamp, prediction_id = heapq.heappop(waiting)
            feedback = self.early.get((model_id, prediction_id))
            if feedback is None or feedback.timestamp != stamp:
                continue  # joined its prediction since
            del self.early[(model_id, prediction_id)]
            if feedback.model_id is None:
                continue
            slot = (feedback.model_id, window_start(feedback.timestamp, self.settings.window_s))
            self.orphans[slot] = self.orphans.get(slot, 0) + 1
            self.changed_orphans.add(slot)
        if not waiting:
            self.early_by_time.pop(model_id, None)

    def _drop_expired(self) -> None:
        """Drop the shares and orphan counts past the horizon that have nothing left to send."""
        past = self._kept
        for key in [
            key for key, share in self.shares.items() if key[2] <= self.marks[key[:2]] - past and not share.changed
        ]:
            share = self.shares.pop(key)
            self.settled.difference_update(share.settled)
            for prediction_id in share.ids:
                if prediction_id:  # ("": labelled, not in the index)
                    self._unindex(key[0], prediction_id)
        expired = [
            slot for slot in self.orphans if slot[1] <= self._clock(slot[0]) - past and slot not in self.changed_orphans
        ]
        for slot in expired:
            del self.orphans[slot]
