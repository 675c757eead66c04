"""The worker's processing core, independent of Faust: decode, join, merge into windows, publish, checkpoint.

A worker owns some partitions ``p`` (the same numbers of ``predictions``, ``feedback`` and ``window-parts``,
which are co-partitioned). For each it holds a :class:`~driftline.streams.core.joining.PartitionJoin` (stage 1:
source partition ``p``) and a :class:`Merger` (stage 2: the models whose ``window-parts`` partition is ``p``).
Its state is one value per stage and partition (``join-<p>``, ``merge-<p>``), saved in a
:class:`CheckpointStore`: the Faust table's changelog in the worker, so another worker that is given the
partition restores it; a local file in tests and the benchmark.

Contract (at-least-once input, exactly-once effect):
- :meth:`WorkerStages.handle` takes one Kafka message with its origin; a message at or below the offset already
  covered by the partition's restored state is skipped (a replay);
- a checkpoint runs in three steps, and only after the last may the caller acknowledge the messages it covers,
  so committed offsets never run ahead of durable state:
  1. :meth:`WorkerStages.deltas` gives each join's new deltas; once the caller has delivered them to
     ``window-parts``, :meth:`WorkerStages.deltas_delivered` marks them sent;
  2. :meth:`WorkerStages.checkpoint` has each merger publish the windows that closed or changed
     (``publish_results`` returns once they are delivered; if it raises, nothing is marked emitted and the next
     checkpoint offers them again), run the trigger policy over them and over the detector alarms raised, and
     publish its decisions (``publish_triggers``; those it cannot deliver wait in an outbox); steps 1 and this
     emission, :meth:`WorkerStages.emit`, also run alone every ``checkpoint_s`` between checkpoints (which a
     large state spaces further apart) and as soon as a window closes (:attr:`WorkerStages.close_due`); it
     returns the state of every join (with the last source offsets it includes) and every merger (with its
     policy, outbox and last ``window-parts`` offset), as data (:mod:`driftline.streams.worker.snapshots`: msgpack,
     never pickles);
  3. once the caller has made those durable (:meth:`CheckpointStore.save`), :meth:`WorkerStages.saved`
     publishes what is left in the outbox. A decision is published at least once, always with the same id: a
     crash before the state is saved re-decides it from the older state (the policy is a function of the
     events), a crash after it republishes it from the restored outbox; a subscriber deduplicates by
     ``trigger_id``.
- after a crash or a move, :meth:`WorkerStages.assign` loads a partition's last saved state; messages after it
  are read again and give the same deltas (same row numbers) and the same windows: their rows collapse in
  ClickHouse (same key and revision), and the merger skips what it already holds.

Invalid input is skipped and counted here; the sink publishes it to the dead letters.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar

import msgspec

from driftline.kafka.topics import partition_for
from driftline.schemas.dead_letters import DeadLetter, Reason
from driftline.schemas.decoding import Decoded, EventDecoder, Origin, latest_believable
from driftline.schemas.errors import BrokerError, ConfigError
from driftline.schemas.events import FeedbackEvent, PredictionEvent
from driftline.schemas.fast_decoding import FastDecoder
from driftline.schemas.model_contracts import ModelContract, contract_check
from driftline.schemas.monitoring import MonitorSettings
from driftline.schemas.policy import PolicySettings
from driftline.schemas.records import feedback_record, prediction_record
from driftline.schemas.results import ReferenceProfile, RetrainTrigger, WindowResult
from driftline.streams.core import deltas
from driftline.streams.core.joining import PartitionJoin, rejected_label_letter
from driftline.streams.core.policy import TriggerPolicy
from driftline.streams.core.shares import JoinContext
from driftline.streams.core.watermarks import EPOCH
from driftline.streams.core.windows import WindowEngine
from driftline.streams.worker import snapshots, snapshotting

CHECKPOINT_SHARE = 10  # wait at least this many times the last checkpoint's duration before the next ...
CHECKPOINT_STRETCH_MAX_S = 30.0  # ... but no longer than this: windows close and state expires at checkpoints
CLOSE_EMIT_GAP_S = 0.2  # a window's close is emitted at once, but emissions on closes are this far apart at least

SnapshotT = TypeVar("SnapshotT", snapshots.JoinSnapshot, snapshots.MergerSnapshot)
log = logging.getLogger(__name__)


class CheckpointStore(Protocol):
    """Where the partitions' states are kept: ``load`` the last one saved under a name, or None."""

    def load(self, name: str, partition: int) -> bytes | None: ...


@dataclass
class Merger:
    """Stage 2 for one ``window-parts`` partition: its windows, trigger policy and undelivered decisions."""

    engine: WindowEngine
    policy: TriggerPolicy
    outbox: list[RetrainTrigger] = field(default_factory=list)


class WorkerStages:
    """One worker's two stages over the partitions it owns."""

    def __init__(
        self,
        settings: MonitorSettings,
        topics: Mapping[str, str],
        publish_results: Callable[[list[WindowResult]], None],
        publish_triggers: Callable[[list[RetrainTrigger]], None],
        *,
        policy: PolicySettings | None = None,
        profile_for: Callable[[str, str], ReferenceProfile | None] = lambda _m, _v: None,
        publish_profiles: Callable[[list[ReferenceProfile]], None] = lambda _profiles: None,
        publish_dead_letters: Callable[[list[DeadLetter]], None] = lambda _letters: None,
        contracts: Mapping[str, ModelContract] | None = None,
        max_message_bytes: int = 1_048_576,
        partitions: int = 1,
    ) -> None:
        self.settings = settings
        self.publish_results = publish_results
        self.publish_triggers = publish_triggers
        self.policy_settings = policy or PolicySettings()
        self.profile_for = profile_for
        self.publish_profiles = publish_profiles
        self.publish_dead_letters = publish_dead_letters
        self.feedback_topic = topics["feedback"]
        self.contracts = dict(contracts or {})
        self.partitions = partitions
        self.predictions_topic = topics["predictions"]
        self.parts_topic = topics["window-parts"]
        check = contract_check(self.contracts)
        self.decoders: dict[str, EventDecoder[Any]] = {
            topic: EventDecoder(model, kind, max_message_bytes, check, settings.max_future_s)
            for topic, model, kind in (
                (topics["predictions"], PredictionEvent, "prediction"),
                (topics["feedback"], FeedbackEvent, "feedback"),
            )
        }
        self.fast = FastDecoder(frozenset(self.contracts), max_message_bytes)
        self.max_message_bytes = max_message_bytes
        self.joins: dict[int, PartitionJoin] = {}
        self.join_context = JoinContext(self._reference_for, self.contracts)
        self.mergers: dict[int, Merger] = {}
        self.offsets: dict[tuple[str, int], int] = {}
        self.counts: Counter[str] = Counter()
        self.last_checkpoint = self.checkpoint_started = self.last_emit = time.monotonic()
        self.last_checkpoint_s = 0.0
        self.merger_closed = False  # a merger's watermark closed a window since the last emission
        self.applied_in_process: dict[int, int] = {}  # per window-parts partition: last offset applied in process

    # -- ownership -----------------------------------------------------------------------------------

    def assign(self, partitions: Iterable[int], store: CheckpointStore) -> None:
        """Own ``partitions`` (those not owned yet): load their last saved states, or start them empty."""
        now = time.monotonic()
        new = sorted(set(partitions) - set(self.joins))
        for partition in new:  # the mergers first: the joins look their versions' own profiles up in them
            merger = self.mergers[partition] = self._new_merger()
            merge_state = _load(store, f"merge-{partition}", partition, snapshots.MergerSnapshot)
            if merge_state is not None:
                policy, merger.outbox = snapshotting.restore_merger(merge_state, merger.engine)
                merger.policy.restore(policy)
                self.offsets[(self.parts_topic, partition)] = merge_state.offset
        for partition in new:
            join_state = _load(store, f"join-{partition}", partition, snapshots.JoinSnapshot)
            if join_state is None:
                self.joins[partition] = PartitionJoin(self.settings, partition, now)
            else:
                self.joins[partition] = snapshotting.restore_join(join_state, self.settings, self.join_context, now)
                self.offsets.update({(topic, partition): offset for topic, offset in join_state.offsets.items()})

    def revoke(self, partitions: Iterable[int]) -> None:
        """Give ``partitions`` up: their states stay where they were last saved, for their next owner."""
        for partition in partitions:
            self.joins.pop(partition, None)
            self.mergers.pop(partition, None)
            for key in [key for key in self.offsets if key[1] == partition]:
                del self.offsets[key]
            self.applied_in_process.pop(partition, None)

    # -- input ---------------------------------------------------------------------------------------

    def handle(
        self, topic: str, partition: int, offset: int, value: bytes | None, written_at: float | None = None
    ) -> bool:
        """Process one message of an owned partition, stored by Kafka at ``written_at`` (the record's timestamp,
        seconds; events stamped more than ``max_future_s`` after it are dead letters); False when it was already
        covered by the saved state (a replay)."""
        if offset <= self.offsets.get((topic, partition), -1):
            if topic != self.parts_topic or offset > self.applied_in_process.get(partition, -1):
                self.counts["replayed"] += 1
            return False
        if topic == self.parts_topic:
            self._merge(partition, offset, value)
        else:
            self._join(Origin(topic, partition, offset, written_at), value)
        self.offsets[(topic, partition)] = offset
        return True

    def owns(self, partition: int) -> bool:
        """True when ``partition`` was assigned (and not revoked since)."""
        return partition in self.joins

    def _join(self, origin: Origin, value: bytes | None) -> None:
        now = time.monotonic()
        join = self.joins[origin.partition]
        latest = latest_believable(origin.written_at, self.settings.max_future_s)
        if origin.topic == self.predictions_topic:
            predictions = self.fast.predictions(value, latest)
            if predictions is None:
                predictions = [prediction_record(d.event) for d in self._decode_slowly(origin, value)]
            for prediction in predictions:
                join.add_prediction(prediction, now)
            self.counts["predictions"] += len(predictions)
        else:
            feedback = self.fast.feedback(value, latest, origin.offset)
            if feedback is None:
                feedback = [
                    feedback_record(d.event, origin.offset, d.envelope_index)
                    for d in self._decode_slowly(origin, value)
                ]
            for label in feedback:
                join.add_feedback(label, now)
            self.counts["feedback"] += len(feedback)

    def _merge(self, partition: int, offset: int, value: bytes | None) -> None:
        merger = self.mergers[partition]
        try:
            received = deltas.decode_batch(value or b"")
        except msgspec.DecodeError as exc:  # only driftline writes this topic: say where, and go on
            log.error("undecodable message at %s[%d]@%d skipped: %s", self.parts_topic, partition, offset, exc)
            self.counts["parts_undecodable"] += 1
            return
        for delta in received:
            merger.engine.apply(delta)
        if not self.merger_closed and any(isinstance(delta, deltas.Progress) for delta in received):
            self.merger_closed = merger.engine.closable()

    def _decode_slowly(self, origin: Origin, value: bytes | None) -> list[Decoded[Any]]:
        """pydantic's verdict on a message the fast decoder left to it; invalid events are counted."""
        result = self.decoders[origin.topic].decode(value, origin)
        for letter in result.dead_letters:
            self.counts[f"dead_letter:{letter.reason.value}"] += 1
        return result.events

    # -- checkpoint ----------------------------------------------------------------------------------

    def deltas(self) -> list[tuple[int, bytes]]:
        """Every join's new deltas as messages ``(window-parts partition, value)``: window rows and orphan
        counts to their model's partition, progress to every partition (after the deltas it covers), each with the
        marks of the models routed to it; several deltas to a message (:func:`deltas.batches`, at most half the
        message limit), in their order."""
        now = self.checkpoint_started = time.monotonic()
        out: list[tuple[int, bytes]] = []
        for join in self.joins.values():
            for delta in join.deltas(now, self.join_context):
                if isinstance(delta, deltas.Progress):
                    routed: dict[int, list[tuple[str, str, datetime, bool]]] = {t: [] for t in range(self.partitions)}
                    for mark in delta.models:
                        routed[self._route(mark[0])].append(mark)
                    for target, models in routed.items():
                        out.append((target, deltas.encode(msgspec.structs.replace(delta, models=models))))
                else:
                    out.append((self._route(delta.model_id), deltas.encode(delta)))
        self._reject_labels()
        return deltas.batches(out, self.max_message_bytes // 2)

    def _reject_labels(self) -> None:
        """Publish a dead letter for each label the joins refused since the last deltas (and wait for them), so
        they are on their topic before the state that no longer holds them is saved."""
        letters = [
            rejected_label_letter(self.feedback_topic, join.partition, rejected)
            for join in self.joins.values()
            for rejected in join.rejected
        ]
        if letters:
            self.publish_dead_letters(letters)
            self.counts[f"dead_letter:{Reason.LABEL_TYPE_MISMATCH.value}"] += len(letters)
        for join in self.joins.values():
            join.rejected = []

    def _route(self, model_id: str) -> int:
        """The ``window-parts`` partition of a model's deltas (its merger): murmur2 of its id, as Kafka's."""
        return partition_for(model_id, self.partitions)

    def apply_delivered(self, delivered: Iterable[tuple[int, int, bytes]]) -> None:
        """Apply deltas this worker just delivered to ``window-parts``, ``(partition, offset, value)``, to its own
        mergers, as reading them back would: on a partition where they are all that follows what the merger
        applied (the first at the next offset, the rest contiguous), so their order is the topic's. The merger's
        offset moves past them (when they are read, they are skipped), and a closed window goes out at this
        emission rather than a round trip through the consumer later. Deltas on any other partition (another
        worker's merger, or records before them not read yet) are left to be read."""
        records: dict[int, list[tuple[int, bytes]]] = {}
        for partition, offset, value in delivered:
            records.setdefault(partition, []).append((offset, value))
        for partition, sent in sorted(records.items()):
            sent.sort()
            first = self.offsets.get((self.parts_topic, partition), -1) + 1
            if partition not in self.mergers or [o for o, _v in sent] != list(range(first, first + len(sent))):
                continue
            for offset, value in sent:
                self._merge(partition, offset, value)
            self.offsets[(self.parts_topic, partition)] = self.applied_in_process[partition] = sent[-1][0]
            self.counts["parts_in_process"] += len(sent)

    def deltas_delivered(self) -> None:
        """The last :meth:`deltas` are on ``window-parts``: the joins forget them."""
        for join in self.joins.values():
            join.sent()

    def emit(self) -> None:
        """Publish what closed or changed, decide triggers and publish them (those not delivered wait in the
        outbox for :meth:`saved`).
        Safe between checkpoints: a window emitted again after a crash has the same revision and collapses."""
        self.last_emit = time.monotonic()
        self.merger_closed = False
        past_horizon = timedelta(seconds=self.settings.kept_s)
        for merger in self.mergers.values():
            emission = merger.engine.advance(lambda emitted: self.publish_results(emitted.results))
            if emission.results:
                newest = max(result.window_end for result in emission.results)
                log.info(
                    "published %d window results of %d model versions (newest window ending %s)",
                    len(emission.results),
                    len({(r.model_id, r.model_version) for r in emission.results}),
                    newest.isoformat(),
                )
            self.counts["windows_emitted"] += len(emission.results)
            self.counts["alarms"] += len(emission.alarms)
            policy = merger.policy
            merger.outbox.extend(policy.on_emission(emission.results, emission.alarms))
            try:
                self._publish_outbox(merger)
            except BrokerError as exc:  # kept in the outbox: saved with the state, published after it
                log.warning("retraining triggers not published yet (%s); they go out after the next checkpoint", exc)
            policy.expire(partial(_past_horizon, merger.engine, past_horizon))
            if merger.engine.unpublished_profiles:  # at least once: the same profile again is no change
                self.publish_profiles(merger.engine.unpublished_profiles)
                merger.engine.unpublished_profiles = []

    def completeness(self) -> list[tuple[str, str, datetime, datetime]]:
        """Per model version merged here: ``(model, version, closed until, final until)`` in event time. Every
        window ending by *closed until* (its watermark minus the grace) is closed and published with all its
        predictions; every window ending by *final until* (minus the horizon too) is final: no label changes it.
        Versions whose predictions have not been heard from yet are left out."""
        grace = timedelta(seconds=self.settings.grace_s)
        horizon = timedelta(seconds=self.settings.horizon_s)
        found = []
        for merger in self.mergers.values():
            for model_id, version in sorted(merger.engine.predictions_seen.marks):
                mark = merger.engine.watermark_of(model_id, version)
                if mark > EPOCH:
                    found.append((model_id, version, mark - grace, mark - grace - horizon))
        return found

    def checkpoint(self) -> dict[tuple[str, int], bytes]:
        """:meth:`emit`, then the state to save, ``{(name, partition): bytes}`` (the joins add up what they hold
        first: see :meth:`PartitionJoin.fold`)."""
        self.emit()
        for join in self.joins.values():
            join.fold(self.join_context)
        self._reject_labels()  # (a label checked only now is on the dead-letter topic before the state saved)
        states: dict[tuple[str, int], snapshots.Snapshot] = {}
        for partition, join in self.joins.items():
            offsets = {
                topic: offset
                for (topic, p), offset in self.offsets.items()
                if p == partition and topic != self.parts_topic
            }
            states[(f"join-{partition}", partition)] = snapshotting.join_snapshot(join, offsets)
        for partition, merger in self.mergers.items():
            offset = self.offsets.get((self.parts_topic, partition), -1)
            states[(f"merge-{partition}", partition)] = snapshotting.merger_snapshot(
                merger.engine, merger.policy.state(), merger.outbox, offset
            )
        return {name: snapshots.encode(state) for name, state in states.items()}

    def saved(self) -> None:
        """The state of the last :meth:`checkpoint` is durable: publish the decisions it holds (those whose
        publishing at their emission failed)."""
        for merger in self.mergers.values():
            self._publish_outbox(merger)  # at least once: the next checkpoint records the empty outbox
        self.last_checkpoint = time.monotonic()
        self.last_checkpoint_s = self.last_checkpoint - self.checkpoint_started

    def _publish_outbox(self, merger: Merger) -> None:
        if merger.outbox:
            self.publish_triggers(merger.outbox)
            for trigger in merger.outbox:
                log.info("retraining trigger: %s", trigger.describe())
            self.counts["triggers"] += len(merger.outbox)
            merger.outbox = []

    @property
    def emit_due(self) -> bool:
        """True when ``monitor.checkpoint_s`` has passed since the last emission: deltas and window results go
        out at that pace even when saving the state is spaced further apart (:attr:`checkpoint_due`)."""
        return time.monotonic() - self.last_emit >= self.settings.checkpoint_s

    @property
    def close_due(self) -> bool:
        """True when a window closed since the last emission (a version's prediction time on a source partition
        passed a window's end plus the grace, or a merger's watermark did for a window not emitted yet), at least
        ``CLOSE_EMIT_GAP_S`` after it: a closed window goes out now, not at the next paced emission."""
        closed = self.merger_closed or any(join.window_closed for join in self.joins.values())
        return closed and time.monotonic() - self.last_emit >= CLOSE_EMIT_GAP_S

    @property
    def checkpoint_due(self) -> bool:
        """True when ``monitor.checkpoint_s`` has passed since the last checkpoint, and at least
        ``CHECKPOINT_SHARE`` times as long as that checkpoint took: a large state is checkpointed less often,
        so checkpoints take about a tenth of the worker's time at most; but never more than
        ``CHECKPOINT_STRETCH_MAX_S`` (or ``checkpoint_s`` if longer), since windows close and old state is
        dropped only at checkpoints."""
        stretched = min(CHECKPOINT_SHARE * self.last_checkpoint_s, CHECKPOINT_STRETCH_MAX_S)
        interval = max(self.settings.checkpoint_s, stretched)
        return time.monotonic() - self.last_checkpoint >= interval

    def _reference_for(self, model_id: str, model_version: str) -> ReferenceProfile | None:
        """A version's reference profile as the joins see it: the published one, or the one a merger of this
        worker built from the version's first events (else the joins send rows uncounted for the merger)."""
        profile = self.profile_for(model_id, model_version)
        for merger in self.mergers.values():
            profile = profile or merger.engine.own_profiles.get((model_id, model_version))
        return profile

    def _new_merger(self) -> Merger:
        engine = WindowEngine(self.settings, self.profile_for, partitions=self.partitions, contracts=self.contracts)
        return Merger(engine, TriggerPolicy(self.policy_settings, self.settings.window_s))


def _past_horizon(engine: WindowEngine, past_horizon: timedelta, version: tuple[str, str]) -> datetime:
    """The start before which a model version's windows are never emitted again."""
    return engine.watermark_of(*version) - past_horizon


def _load(store: CheckpointStore, name: str, partition: int, kind: type[SnapshotT]) -> SnapshotT | None:
    blob = store.load(name, partition)
    if blob is None:
        return None
    saved = snapshots.decode(blob, name)
    if not isinstance(saved, kind):
        raise ConfigError(f"saved state {name} holds a {type(saved).__name__}, not a {kind.__name__}")
    return saved
