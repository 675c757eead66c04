"""The second stage of the worker: windows per model version, merged from the deltas of every source partition,
and their results.

Plain Python over the monitors; no Faust, no Kafka, no clock in the numbers. The deltas come from
:class:`~driftline.streams.core.joining.PartitionJoin` (one per source partition; contract in
:mod:`driftline.streams.core.deltas`). Semantics:

- A window ``[start, start + window)`` of a model version holds one *share* per source partition, as the
  partition's join sent it (:class:`~driftline.streams.core.deltas.ShareDelta`): its summary
  (:mod:`driftline.streams.core.summary`: counts and exact sums) and feature tallies, replaced by newer
  revisions, and the numbered rows and detector inputs, appended (what is held already is skipped). A replayed
  delta changes nothing. Summaries and tallies merge by exact addition, so results do not depend on which worker
  read which partition, or when, and an emission costs the size of the summaries, never the number of rows.
- Which predictions a window includes is decided by each partition's join alone (a prediction its own
  partition read after the window closed there is late), never by the order the merger hears of them: a
  partition back from idleness with predictions for a window already emitted adds them, and the window is
  emitted again with a higher revision.
- Drift is read at the close against the window's reference profile (bound then: the provided one, or the
  version's first-events one): the tallies of the shares counted against that same profile, plus the rows a
  join sent uncounted, counted here (:mod:`driftline.streams.core.feature_counts`); shares counted against
  another profile (one replaced while the window was open) are left out of the drift. It is read again when a
  share's features change after the close.
- Watermark, per model version (:class:`~driftline.streams.core.watermarks.ModelWatermarks`): the minimum over
  source partitions of the version's latest prediction time there (where it is not idle; a partition that never
  read it holds it at its own floor). A window closes when its version's watermark passes ``end + grace``:
  it is emitted, and re-emitted each time it changes, until the watermark passes ``end + horizon + grace``, when its
  state is dropped; a share reaching a dropped window is counted in ``after_horizon``. Another model's (or
  version's) events never close a version's windows. Orphaned feedback expires by the latest of its model's
  versions. Feedback orphaned on a partition
  counts in ``orphan_feedback`` of its model's window of that start (the first version, by name, when several
  have one).
- Without a provided reference profile, a model version's profile is built from its first
  ``reference_first_n`` predictions in window order (then partition, then row), as its windows close, from the
  rows the joins sent uncounted (a join counts features itself only once the version has a profile). It is
  offered for publishing (``unpublished_profiles``) to ``reference-profiles``, so the joins of every worker
  count against it (the same profile, built the same from the same events, whichever merger built it).
- Streaming detectors (:mod:`driftline.streams.core.metrics.detectors`) are fed per model version in event-time
  slices of ``detector_slice_s``: once the version's watermark passes a slice's end plus the grace period, its labelled
  predictions go to ADWIN (error indicator, ordered by feedback time, then prediction id) and its scores to
  Page-Hinkley (ordered by prediction time, then prediction id); the joins send both. Errors also wait for the
  feedback marks of the partitions. An alarm lands in the window of the prediction that raised it and is
  published at once. A label or score whose slice was already fed is left out of the detectors (counted in
  ``detector_late``) but still counts in its window's numbers.
- ``revision`` = the shares' revisions (predictions and labels included, late predictions), plus the orphaned
  feedback and detector alarms it counts. It only grows and is a function of the data, so the latest revision
  after a replay equals the one before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import pandas as pd

from driftline.schemas.model_contracts import ModelContract, positive_texts
from driftline.schemas.monitoring import MonitorSettings
from driftline.schemas.results import (
    DetectorAlarm,
    FeatureDrift,
    ReferenceProfile,
    WindowKey,
    WindowResult,
)
from driftline.streams.core import deltas
from driftline.streams.core.feature_counts import (
    FeatureCounts,
    Tally,
    count_rows,
    counts_of,
    drift_rows,
    feature_counts,
)
from driftline.streams.core.joining import window_start
from driftline.streams.core.metrics.detectors import DetectorSettings, Fired, ModelDetectors
from driftline.streams.core.metrics.profile import build_profile, profile_key
from driftline.streams.core.shares import WindowId
from driftline.streams.core.summary import BinarySummary, performance_of
from driftline.streams.core.watermarks import EPOCH, ModelKey, ModelWatermarks, Watermark
from driftline.streams.core.window_buffers import (
    ReceivedShare,
    RowChunk,
    WindowBuffer,
    decoded_rows,
    empty_summary,
)

QueuedChunk = tuple[WindowId, list[deltas.DetectorInput]]  # a window's inputs as one delta brought them
Signal = Literal["errors", "scores"]


@dataclass(frozen=True)
class Emission:
    """What one :meth:`WindowEngine.advance` offers for publishing: window results (closed or changed) and
    detector alarms raised since the last emission, each with the window it falls in."""

    results: list[WindowResult]
    alarms: list[tuple[WindowKey, DetectorAlarm]]


class WindowEngine:
    """Merges the deltas of the source partitions into windows; emits :class:`WindowResult` rows.

    ``profile_for(model_id, model_version)`` returns the reference profile when one was published.
    ``partitions`` is how many source partitions feed the engine: each holds the watermark back until it
    reports progress or reports itself idle.
    """

    def __init__(
        self,
        settings: MonitorSettings,
        profile_for: Callable[[str, str], ReferenceProfile | None] = lambda _m, _v: None,
        partitions: int = 0,
        contracts: Mapping[str, ModelContract] | None = None,
    ) -> None:
        self.settings = settings
        self.profile_for = profile_for
        self.contracts = dict(contracts or {})
        self.windows: dict[WindowId, WindowBuffer] = {}
        self.orphans: dict[tuple[int, str, datetime], int] = {}
        self.predictions_seen = ModelWatermarks(partitions)
        self.labels_seen = Watermark(partitions)
        self.first_events: dict[ModelKey, list[RowChunk]] = {}
        self.own_profiles: dict[ModelKey, ReferenceProfile] = {}
        self.detector_settings = DetectorSettings(
            adwin_delta=settings.adwin_delta,
            ph_delta=settings.page_hinkley_delta,
            ph_threshold=settings.page_hinkley_threshold,
            ph_min_instances=settings.page_hinkley_min_instances,
        )
        self.detectors: dict[ModelKey, ModelDetectors] = {}
        # per signal: inputs not fed yet (per model, in chunks as they came), and per model the frontier before
        # which every slice was fed
        self.detector_inputs: dict[Signal, dict[ModelKey, list[QueuedChunk]]] = {"errors": {}, "scores": {}}
        self.detector_frontiers: dict[Signal, dict[ModelKey, datetime]] = {"errors": {}, "scores": {}}
        self.detector_late = 0
        self.after_horizon = 0
        self.unpublished_alarms: list[tuple[WindowKey, DetectorAlarm]] = []
        self.unpublished_profiles: list[ReferenceProfile] = []  # built from first events, for reference-profiles

    def reference_for(self, model_id: str, model_version: str) -> ReferenceProfile | None:
        """The version's reference profile: the one published, or the one built from its first events."""
        return self.profile_for(model_id, model_version) or self.own_profiles.get((model_id, model_version))

    # -- input ---------------------------------------------------------------------------------------

    def apply(self, delta: deltas.Delta) -> None:
        """Take one delta of a source partition (idempotent: a replayed delta changes nothing)."""
        if isinstance(delta, deltas.Progress):
            self.predictions_seen.report(delta.partition, delta.floor, delta.predictions_idle, delta.models)
            self.labels_seen.report(delta.partition, delta.labels_mark, delta.labels_idle)
        elif isinstance(delta, deltas.OrphanCount):
            slot = (delta.partition, delta.model_id, delta.window_start)
            self.orphans[slot] = max(delta.count, self.orphans.get(slot, 0))
        else:
            self._merge(delta)

    def _merge(self, delta: deltas.ShareDelta) -> None:
        key = (delta.model_id, delta.model_version, delta.window_start)
        buffer = self.windows.get(key)
        if buffer is None:
            reached = self.predictions_seen.reached.get((delta.model_id, delta.model_version), EPOCH)
            if delta.window_start + timedelta(seconds=self.settings.kept_s) <= reached:  # dropped already
                self.after_horizon += 1
                return
            buffer = self.windows[key] = WindowBuffer(task=delta.task)
        share = buffer.shares.get(delta.partition)
        if share is None:
            share = buffer.shares[delta.partition] = ReceivedShare(empty_summary(delta.task))
        received = share.receive(delta, f"of partition {delta.partition} in window {key}")
        if received.tallies or received.rows:
            buffer.drift = None
        if received.rows:
            if buffer.profile is None:
                self._bind_reference(key, buffer)
            else:
                self._count_rows(buffer)
        self._detector_inputs("scores", key, received.scores)
        self._detector_inputs("errors", key, received.errors)

    # -- output --------------------------------------------------------------------------------------

    def advance(self, publish: Callable[[Emission], None] = lambda _emission: None) -> Emission:
        """Feed the detectors the slices behind the watermark; offer the results of windows that closed or
        changed since they were last emitted, and the alarms raised; expire old state.

        ``publish`` receives them before any window is marked emitted: if it raises, nothing is marked emitted
        or dropped and the alarms stay unpublished, so the next call offers them again.
        """
        marks = {version: self.watermark_of(*version) for version in self.predictions_seen.marks}
        model_marks: dict[str, datetime] = {}  # per model, its latest version's: orphaned feedback expires by it
        for (model_id, _version), mark in marks.items():
            model_marks[model_id] = max(mark, model_marks.get(model_id, EPOCH))
        latest = max(marks.values(), default=EPOCH)
        grace = timedelta(seconds=self.settings.grace_s)
        kept = timedelta(seconds=self.settings.kept_s)  # as long as the joins keep labels
        size = timedelta(seconds=self.settings.window_s)
        self._attribute_orphans()
        self._feed_detectors(marks)
        results, emitted, expired = [], [], []
        for key in sorted(self.windows, key=lambda k: (k[2], k[0], k[1])):
            buffer = self.windows[key]
            end = key[2] + size
            watermark = marks.get(key[:2], EPOCH)
            if watermark < end + grace:
                continue
            if buffer.revision != buffer.emitted_revision:
                results.append(self._result(key, buffer))
                emitted.append(buffer)
            if watermark >= key[2] + kept:
                expired.append(key)
        emission = Emission(results, list(self.unpublished_alarms))
        if results or emission.alarms:
            publish(emission)
        self.unpublished_alarms.clear()
        for buffer in emitted:
            buffer.emitted_revision = buffer.revision
        for key in expired:
            del self.windows[key]
        for slot in [slot for slot in self.orphans if model_marks.get(slot[1], latest) >= slot[2] + kept]:
            del self.orphans[slot]
        return emission

    def closable(self) -> bool:
        """True when a window never emitted has closed (its version's watermark passed its end plus the grace):
        :meth:`advance` would emit it now."""
        closes = timedelta(seconds=self.settings.window_s + self.settings.grace_s)
        marks: dict[tuple[str, str], datetime] = {}
        for key, buffer in self.windows.items():
            if buffer.emitted_revision < 0:
                version = key[:2]
                if version not in marks:
                    marks[version] = self.watermark_of(*version)
                if marks[version] >= key[2] + closes:
                    return True
        return False

    # -- internals -----------------------------------------------------------------------------------

    def watermark_of(self, model_id: str, model_version: str) -> datetime:
        """The watermark of a model version's predictions: its windows close against it."""
        return self.predictions_seen.current((model_id, model_version))

    def _attribute_orphans(self) -> None:
        """Each window's orphaned feedback: the partitions' counts for its model and start, given to the first
        version (by name) that has a window there."""
        counts: dict[tuple[str, datetime], int] = {}
        for (_partition, model_id, start), count in self.orphans.items():
            counts[(model_id, start)] = counts.get((model_id, start), 0) + count
        taken: set[tuple[str, datetime]] = set()
        for model_id, version, start in sorted(self.windows):
            buffer = self.windows[(model_id, version, start)]
            first = (model_id, start) not in taken
            taken.add((model_id, start))
            buffer.orphan_feedback = counts.get((model_id, start), 0) if first else 0

    def _detector_inputs(self, signal: Signal, key: WindowId, items: Sequence[deltas.DetectorInput]) -> None:
        """Queue a window's new inputs of ``signal`` for the detectors; those behind the frontier are late."""
        if not items:
            return
        frontier = self.detector_frontiers[signal].get(key[:2], EPOCH)
        fresh = list(items) if min(items)[0] >= frontier else [item for item in items if item[0] >= frontier]
        self.detector_late += len(items) - len(fresh)
        if fresh:
            self.detector_inputs[signal].setdefault((key[0], key[1]), []).append((key, fresh))

    def _feed_detectors(self, marks: dict[ModelKey, datetime]) -> None:
        """Feed every model version's inputs of the slices behind its watermark (``marks``, as :meth:`advance`
        read them), in (event time, prediction id) order. Scores are complete up to the version's watermark;
        errors carry the feedback's time, so they wait for the feedback partitions' watermark too (feedback may be
        read behind the predictions)."""
        grace = timedelta(seconds=self.settings.grace_s)
        labels = self.labels_seen.current()
        feeds: tuple[tuple[Signal, Callable[[ModelDetectors, list[float]], list[Fired]]], ...] = (
            ("errors", ModelDetectors.feed_errors),
            ("scores", ModelDetectors.feed_scores),
        )
        for signal, feed in feeds:
            inputs, frontiers = self.detector_inputs[signal], self.detector_frontiers[signal]
            for model in sorted(inputs):
                mark = marks.get(model, EPOCH)
                mark = min(mark, labels) if signal == "errors" else mark
                frontier = window_start(mark - grace, self.settings.detector_slice_s)
                if mark == EPOCH or frontier <= frontiers.get(model, EPOCH):
                    continue
                due, inputs[model] = _split_due(inputs[model], frontier)
                frontiers[model] = frontier
                if due:
                    detectors = self.detectors.setdefault(model, ModelDetectors(self.detector_settings))
                    for fired in feed(detectors, [value for _stamp, _pid, _window, value in due]):
                        self._alarm(fired, due[fired.index])

    def _alarm(self, fired: Fired, item: tuple[datetime, str, WindowId, float]) -> None:
        stamp, prediction_id, window, _value = item
        alarm = DetectorAlarm(
            detector=fired.detector,
            signal="error_rate" if fired.detector == "adwin" else "score_mean",
            fired_at=stamp,
            prediction_id=prediction_id,
            observations=fired.observations,
            estimate=fired.estimate,
        )
        buffer = self.windows.get(window)
        if buffer is not None:
            buffer.alarms.append(alarm)
        start = window[2]
        key = WindowKey(
            model_id=window[0],
            model_version=window[1],
            window_start=start,
            window_end=start + timedelta(seconds=self.settings.window_s),
        )
        self.unpublished_alarms.append((key, alarm))

    def _learn_reference(self, key: WindowId, buffer: WindowBuffer) -> None:
        """Add a closing window's uncounted rows to its version's first events; build the profile at N (dated at
        the end of the window that completed it)."""
        model = (key[0], key[1])
        if self.reference_for(*model) is not None:
            return
        chunks = self.first_events.setdefault(model, [])
        chunks.extend(chunk for _partition, share in sorted(buffer.shares.items()) for chunk in share.rows)
        if sum(count for count, _raw in chunks) < self.settings.reference_first_n:
            return
        binary = buffer.task == "binary"
        rows = [
            {**features, "score": score if binary else None, "prediction": predicted}
            for features, score, predicted in decoded_rows(chunks)[: self.settings.reference_first_n]
        ]
        profile = build_profile(
            pd.DataFrame(rows).dropna(axis=1, how="all"),
            *model,
            task=buffer.task,
            positive=positive_texts(self.contracts.get(model[0])),
            source="first_events",
            created_at=key[2] + timedelta(seconds=self.settings.window_s),
        )
        self.own_profiles[model] = profile
        self.unpublished_profiles.append(profile)
        del self.first_events[model]

    def _bind_reference(self, key: WindowId, buffer: WindowBuffer) -> None:
        """Bind the window to its version's reference profile, if it has one by now (a published one, or one
        built from its first events), and count the rows held uncounted against it."""
        profile = self.reference_for(key[0], key[1])
        if profile is None:
            return
        buffer.reference = "first_events" if profile.source == "first_events" else "provided"
        buffer.profile = profile
        self._count_rows(buffer)

    def _count_rows(self, buffer: WindowBuffer) -> None:
        """Count the uncounted rows of every share into the window's ``counted`` tallies, and drop them."""
        assert buffer.profile is not None
        rows = decoded_rows(chunk for _p, share in sorted(buffer.shares.items()) for chunk in share.rows)
        if not rows:
            return
        counts = {}
        for name, feature in sorted(buffer.profile.features.items()):
            held = buffer.counted.get(name)
            counts[name] = (
                counts_of(feature, deltas.decode_tally(held)) if held is not None else None
            ) or feature_counts(feature)
        count_rows(counts, rows)
        buffer.counted = {name: deltas.encode_tally(c.tally) for name, c in counts.items()}
        for share in buffer.shares.values():
            share.rows = []

    def _result(self, key: WindowId, buffer: WindowBuffer) -> WindowResult:
        model_id, version, start = key
        drift = buffer.drift if buffer.drift is not None else self._read_drift(key, buffer)
        summary = buffer.summary()
        reference = buffer.profile.performance if buffer.profile is not None else None
        return WindowResult(
            model_id=model_id,
            model_version=version,
            window_start=start,
            window_end=start + timedelta(seconds=self.settings.window_s),
            revision=buffer.revision,
            reference=buffer.reference,
            performance=performance_of(
                summary,
                late_predictions=summary.late,
                orphan_feedback=buffer.orphan_feedback,
                too_few_samples=summary.predictions < self.settings.min_samples,
                final_at=start + timedelta(seconds=self.settings.kept_s),
                reference_accuracy=reference.accuracy if reference else None,
                reference_estimated_accuracy=reference.estimated_accuracy if reference else None,
            ),
            drift=drift,
            fairness=summary.fairness(self.settings.min_group_count) if isinstance(summary, BinarySummary) else [],
            alarms=list(buffer.alarms),
        )

    def _read_drift(self, key: WindowId, buffer: WindowBuffer) -> list[FeatureDrift]:
        """The drift of a closed window (binding its reference first, learning the first-events one from it if
        need be): per feature of the profile, the tallies counted against it added up."""
        if buffer.profile is None:
            self._learn_reference(key, buffer)
            self._bind_reference(key, buffer)
        profile = buffer.profile
        if profile is None:
            buffer.drift = []
            return buffer.drift
        own = profile_key(profile)
        sources = [buffer.counted] + [s.tallies for _p, s in sorted(buffer.shares.items()) if s.profile == own]
        counts: dict[str, FeatureCounts] = {}
        for name, feature in sorted(profile.features.items()):
            total: Tally | None = None
            for tallies in sources:
                raw = tallies.get(name)
                if raw is None:
                    continue
                tally = deltas.decode_tally(raw)
                if total is None:
                    total = tally
                elif type(tally) is type(total):
                    total.merge(tally)  # type: ignore[arg-type]
            counts[name] = (counts_of(feature, total) if total is not None else None) or feature_counts(feature)
        drift = [
            row.model_copy(update={"too_few_samples": row.count < self.settings.min_samples})
            for row in drift_rows(counts)
        ]
        buffer.drift = drift
        return drift


def _split_due(
    chunks: list[QueuedChunk], frontier: datetime
) -> tuple[list[tuple[datetime, str, WindowId, float]], list[QueuedChunk]]:
    """The queued inputs before ``frontier`` as ``(event time, prediction id, window, value)`` in that order (the
    order the detectors are fed in), and the chunks of those left queued."""
    due: list[tuple[datetime, str, WindowId, float]] = []
    kept: list[QueuedChunk] = []
    for window, items in chunks:
        if min(items)[0] >= frontier:
            kept.append((window, items))
            continue
        due.extend((stamp, pid, window, value) for stamp, pid, value in items if stamp < frontier)
        later = [item for item in items if item[0] >= frontier]
        if later:
            kept.append((window, later))
    due.sort()
    return due, kept
