"""A stage's snapshot taken and the stage restored from one: a join (:func:`join_snapshot`,
:func:`restore_join`) and a merger with its policy memory and outbox (:func:`merger_snapshot`,
:func:`restore_merger`). The saved form and its codec are :mod:`driftline.streams.worker.snapshots`."""

from __future__ import annotations

from array import array
from typing import Any

import msgspec
from river.drift import ADWIN, PageHinkley
from river.stats import Mean

from driftline.schemas.monitoring import MonitorSettings
from driftline.schemas.records import FeedbackRecord, PredictionRecord
from driftline.schemas.results import DetectorAlarm, FeatureDrift, ReferenceProfile, RetrainTrigger, WindowKey
from driftline.streams.core.feature_counts import Tally, counts_of
from driftline.streams.core.joining import PartitionJoin
from driftline.streams.core.metrics.detectors import ModelDetectors
from driftline.streams.core.metrics.profile import profile_key
from driftline.streams.core.policy import PolicyState
from driftline.streams.core.shares import JoinContext, Share
from driftline.streams.core.watermarks import EPOCH, Watermark
from driftline.streams.core.window_buffers import ReceivedShare, WindowBuffer
from driftline.streams.core.windows import WindowEngine
from driftline.streams.worker.snapshots import (
    SNAPSHOT_FORMAT,
    DetectorSnapshot,
    JoinShareSnapshot,
    JoinSnapshot,
    MergerSnapshot,
    ModelWatermarksSnapshot,
    ReceivedShareSnapshot,
    WatermarkSnapshot,
    WindowId,
    WindowSnapshot,
)

_SHARE_FIELDS_AS_THEY_ARE = (
    "ids",
    "combos",
    "predicted",
    "profile",
    "new_labels",
    "labels_checked",
    "unsent_rows",
    "unsent_scores",
    "unsent_errors",
    "rows_sent",
    "scores_sent",
    "errors_sent",
    "features_changed",
    "revision_sent",
    "sending_whole",
    "changed",
)
"""The fields of a join's :class:`~driftline.streams.core.shares.Share` saved and restored unchanged (the others:
arrays saved as bytes, rows as tuples, feature counts as their tallies)."""
_PH_FIELDS = ("_sum_increase", "_sum_decrease", "_min_increase", "_max_decrease")


def join_snapshot(join: PartitionJoin, offsets: dict[str, int]) -> JoinSnapshot:
    """The saved form of ``join``, with the last source offsets (per topic) it includes."""
    return JoinSnapshot(
        format=SNAPSHOT_FORMAT,
        partition=join.partition,
        offsets=offsets,
        shares=[_join_share(key, share) for key, share in join.shares.items()],
        early=[tuple(feedback) for feedback in join.early.values()],  # type: ignore[misc]
        orphans=[(model, start, count) for (model, start), count in join.orphans.items()],
        changed_orphans=sorted(join.changed_orphans),
        marks=[(*version, mark) for version, mark in join.marks.items()],
        labels_mark=join.labels_mark,
    )


def _join_share(key: WindowId, share: Share) -> JoinShareSnapshot:
    return JoinShareSnapshot(
        *key,  # model_id, model_version, window_start
        task=share.task,
        summary=share.summary,
        **{name: getattr(share, name) for name in _SHARE_FIELDS_AS_THEY_ARE},
        settled=share.settled.tobytes(),
        positive=bytes(share.positive),
        scores=share.scores.tobytes(),
        codes=share.codes.tobytes(),
        values=share.values.tobytes(),
        labelled=bytes(share.labelled),
        tallies=None if share.features is None else {name: c.tally for name, c in share.features.items()},
        new_rows=[(*row[:8], dict(row.features), dict(row.sensitive)) for row in share.new_rows],
    )


def restore_join(snapshot: JoinSnapshot, settings: MonitorSettings, context: JoinContext, now: float) -> PartitionJoin:
    """The join saved in ``snapshot``, its feature counts read against the profiles ``context`` knows."""
    join = PartitionJoin(settings, snapshot.partition, now)
    for saved in snapshot.shares:
        key = (saved.model_id, saved.model_version, saved.window_start)
        share = Share(saved.task, saved.summary)
        for name in _SHARE_FIELDS_AS_THEY_ARE:
            setattr(share, name, getattr(saved, name))
        share.settled = _array("Q", saved.settled)
        share.positive = bytearray(saved.positive)
        share.scores = _array("d", saved.scores)
        share.codes = _array("q", saved.codes)
        share.combo_codes = {combo: code for code, combo in enumerate(saved.combos)}
        share.values = _array("d", saved.values)
        share.labelled = bytearray(saved.labelled)
        share.features = _counts(context, key, saved.profile, saved.tallies)
        share.new_rows = [PredictionRecord(*row) for row in saved.new_rows]
        join.shares[key] = share
    join.index_pending()
    for feedback in snapshot.early:
        record = FeedbackRecord(*feedback)
        join.wait(record)
    join.orphans = {(model, start): count for model, start, count in snapshot.orphans}
    join.changed_orphans = set(snapshot.changed_orphans)
    join.marks = {(model_id, version): mark for model_id, version, mark in snapshot.marks}
    for (model_id, _version), mark in join.marks.items():
        join.model_marks[model_id] = max(mark, join.model_marks.get(model_id, EPOCH))
    join.predictions_mark, join.labels_mark = max(join.marks.values(), default=EPOCH), snapshot.labels_mark
    join.resume(now)
    return join


def _counts(
    context: JoinContext, key: WindowId, profile: str | None, tallies: dict[str, Tally] | None
) -> dict[str, Any] | None:
    """The share's feature counts, read against its profile if the worker still knows it by its key."""
    if tallies is None or profile is None:
        return None
    reference = context.profile_for(key[0], key[1])
    if reference is None or profile_key(reference) != profile:
        return None
    counts = {}
    for name, feature in sorted(reference.features.items()):
        held = tallies.get(name)
        counted = counts_of(feature, held) if held is not None else None
        if counted is None:
            return None
        counts[name] = counted
    return counts


def _array(kind: str, data: bytes) -> array[Any]:
    values = array(kind)
    values.frombytes(data)
    return values


def merger_snapshot(
    engine: WindowEngine, policy: PolicyState, outbox: list[RetrainTrigger], offset: int
) -> MergerSnapshot:
    """The saved form of a merger: its engine, policy memory and undelivered decisions, and the ``window-parts``
    offset they cover."""
    inputs = {
        signal: [(model, version, chunks) for (model, version), chunks in queues.items()]
        for signal, queues in engine.detector_inputs.items()
    }
    seen = engine.predictions_seen
    return MergerSnapshot(
        format=SNAPSHOT_FORMAT,
        offset=offset,
        windows=[_window(key, buffer) for key, buffer in engine.windows.items()],
        orphans=[(p, model, start, count) for (p, model, start), count in engine.orphans.items()],
        predictions_seen=ModelWatermarksSnapshot(
            dict(seen.floors),
            dict(seen.partition_idle),
            [(*version, dict(marks)) for version, marks in seen.marks.items()],
            [(*version, mark) for version, mark in seen.reached.items()],
        ),
        labels_seen=_watermark(engine.labels_seen),
        first_events=[(model, version, rows) for (model, version), rows in engine.first_events.items()],
        own_profiles=[profile.model_dump(mode="json") for profile in engine.own_profiles.values()],
        detectors=[_detectors(model, detectors) for model, detectors in engine.detectors.items()],
        detector_inputs=inputs,
        detector_frontiers={
            signal: [(*version, frontier) for version, frontier in frontiers.items()]
            for signal, frontiers in engine.detector_frontiers.items()
        },
        detector_late=engine.detector_late,
        after_horizon=engine.after_horizon,
        unpublished_alarms=[
            (key.model_dump(mode="json"), alarm.model_dump(mode="json")) for key, alarm in engine.unpublished_alarms
        ],
        unpublished_profiles=[profile.model_dump(mode="json") for profile in engine.unpublished_profiles],
        policy=policy,
        outbox=[trigger.model_dump(mode="json") for trigger in outbox],
    )


def _window(key: WindowId, buffer: WindowBuffer) -> WindowSnapshot:
    return WindowSnapshot(
        *key,  # model_id, model_version, window_start
        task=buffer.task,
        shares=[
            ReceivedShareSnapshot(
                partition=partition,
                summary=share.summary,
                revision=share.revision,
                profile=share.profile,
                tallies={name: bytes(raw) for name, raw in share.tallies.items()},
                rows=share.rows,
                rows_received=share.rows_received,
                scores_received=share.scores_received,
                errors_received=share.errors_received,
            )
            for partition, share in sorted(buffer.shares.items())
        ],
        reference=buffer.reference,
        profile=None if buffer.profile is None else profile_key(buffer.profile),
        counted={name: bytes(raw) for name, raw in buffer.counted.items()},
        drift=None if buffer.drift is None else [row.model_dump(mode="json") for row in buffer.drift],
        orphan_feedback=buffer.orphan_feedback,
        alarms=[alarm.model_dump(mode="json") for alarm in buffer.alarms],
        emitted_revision=buffer.emitted_revision,
    )


def _watermark(watermark: Watermark) -> WatermarkSnapshot:
    return WatermarkSnapshot(dict(watermark.marks), dict(watermark.idle), watermark.reached)


def _detectors(model: tuple[str, str], detectors: ModelDetectors) -> DetectorSnapshot:
    ph = detectors.page_hinkley
    return DetectorSnapshot(
        *model,  # model_id, model_version
        adwin=detectors.adwin._helper.__getstate__(),
        adwin_detected=detectors.adwin.drift_detected,
        page_hinkley={"n": ph._x_mean.n, "mean": ph._x_mean.get(), **{name: getattr(ph, name) for name in _PH_FIELDS}},
        page_hinkley_detected=ph.drift_detected,
        errors_seen=detectors.errors_seen,
        scores_seen=detectors.scores_seen,
        recent_scores=list(detectors.recent_scores),
    )


def restore_merger(snapshot: MergerSnapshot, engine: WindowEngine) -> tuple[PolicyState, list[RetrainTrigger]]:
    """Load ``snapshot`` into the empty ``engine``; the policy memory and outbox it holds."""
    engine.own_profiles = {
        (p.model_id, p.model_version): p for p in map(ReferenceProfile.model_validate, snapshot.own_profiles)
    }
    for saved in snapshot.windows:
        key = (saved.model_id, saved.model_version, saved.window_start)
        buffer = WindowBuffer(task=saved.task, reference=saved.reference)
        for share in saved.shares:
            buffer.shares[share.partition] = ReceivedShare(
                summary=share.summary.copy(),
                revision=share.revision,
                profile=share.profile,
                tallies={name: msgspec.Raw(raw) for name, raw in share.tallies.items()},
                rows=[(count, raw.copy()) for count, raw in share.rows],
                rows_received=share.rows_received,
                scores_received=share.scores_received,
                errors_received=share.errors_received,
            )
        reference = engine.reference_for(key[0], key[1])
        if saved.profile is not None and reference is not None and profile_key(reference) == saved.profile:
            buffer.profile = reference
        buffer.counted = {name: msgspec.Raw(raw) for name, raw in saved.counted.items()}
        buffer.drift = None if saved.drift is None else [FeatureDrift.model_validate(row) for row in saved.drift]
        buffer.orphan_feedback = saved.orphan_feedback
        buffer.alarms = [DetectorAlarm.model_validate(alarm) for alarm in saved.alarms]
        buffer.emitted_revision = saved.emitted_revision
        engine.windows[key] = buffer
    engine.orphans = {(p, model, start): count for p, model, start, count in snapshot.orphans}
    seen, saved_seen = engine.predictions_seen, snapshot.predictions_seen
    seen.floors, seen.partition_idle = saved_seen.floors, saved_seen.partition_idle
    seen.marks = {(model_id, version): marks for model_id, version, marks in saved_seen.marks}
    seen.reached = {(model_id, version): mark for model_id, version, mark in saved_seen.reached}
    labels, saved_labels = engine.labels_seen, snapshot.labels_seen
    labels.marks, labels.idle, labels.reached = saved_labels.marks, saved_labels.idle, saved_labels.reached
    engine.first_events = {
        (model, version): [(count, raw.copy()) for count, raw in chunks]
        for model, version, chunks in snapshot.first_events
    }
    engine.detectors = {(d.model_id, d.model_version): _restore_detectors(d, engine) for d in snapshot.detectors}
    engine.detector_inputs = {
        signal: {(model, version): chunks for model, version, chunks in queues}
        for signal, queues in snapshot.detector_inputs.items()
    }
    engine.detector_frontiers = {
        signal: {(model_id, version): frontier for model_id, version, frontier in frontiers}
        for signal, frontiers in snapshot.detector_frontiers.items()
    }
    engine.detector_late, engine.after_horizon = snapshot.detector_late, snapshot.after_horizon
    engine.unpublished_alarms = [
        (WindowKey.model_validate(key), DetectorAlarm.model_validate(alarm))
        for key, alarm in snapshot.unpublished_alarms
    ]
    engine.unpublished_profiles = [ReferenceProfile.model_validate(p) for p in snapshot.unpublished_profiles]
    return snapshot.policy, [RetrainTrigger.model_validate(trigger) for trigger in snapshot.outbox]


def _restore_detectors(saved: DetectorSnapshot, engine: WindowEngine) -> ModelDetectors:
    detectors = ModelDetectors(engine.detector_settings)
    adwin: ADWIN = detectors.adwin
    adwin._helper.__setstate__(saved.adwin)
    adwin._drift_detected = saved.adwin_detected
    ph: PageHinkley = detectors.page_hinkley
    mean = Mean()
    mean.n, mean._mean = saved.page_hinkley["n"], saved.page_hinkley["mean"]
    ph._x_mean = mean
    for name in _PH_FIELDS:
        setattr(ph, name, saved.page_hinkley[name])
    ph._drift_detected = saved.page_hinkley_detected
    detectors.errors_seen, detectors.scores_seen = saved.errors_seen, saved.scores_seen
    detectors.recent_scores.extend(saved.recent_scores)
    return detectors
