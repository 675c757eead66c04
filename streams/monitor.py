"""The worker's processing core, independent of Faust: decode, window, publish, checkpoint.

Contract (at-least-once input, exactly-once effect):
- :meth:`StreamMonitor.handle` takes one Kafka message of ``predictions`` or ``feedback`` with its origin; a
  message at or below the offset already covered by the restored checkpoint is skipped (a replay);
- :meth:`StreamMonitor.checkpoint` publishes the windows that closed or changed (``publish_results`` returns
  once they are delivered; if it raises, nothing is marked emitted and the next checkpoint offers them again),
  runs the trigger policy over them and over the detector alarms raised, and puts its decisions in an outbox;
  then it writes the engine's state, the policy's state, the outbox and the last offset included per
  partition in one atomic file replace (write, fsync, rename), and only then publishes the outbox
  (``publish_triggers``). A crash before the file is replaced re-decides from the older state, having
  published nothing; a crash after it republishes the same decisions, same ids, from the restored outbox: a
  decision is never taken twice. Only after the checkpoint returns may the caller acknowledge the messages it
  covers, so committed offsets never run ahead of durable state;
- after a crash, :meth:`StreamMonitor.restore` loads the last checkpoint; messages after it are read again and give
  the same state, so the same results: their rows collapse in ClickHouse (same key and revision).

Invalid input is skipped and counted here; the sink publishes it to the dead letters.
"""

from __future__ import annotations

import os
import pickle
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from driftline.schemas.decoding import Decoded, EventDecoder, Origin
from driftline.schemas.errors import ConfigError
from driftline.schemas.events import FeedbackEvent, PredictionEvent
from driftline.schemas.fast_decoding import FastDecoder
from driftline.schemas.model_contracts import ModelContract, contract_check
from driftline.schemas.policy import PolicySettings
from driftline.schemas.records import feedback_record, prediction_record
from driftline.schemas.results import ReferenceProfile, RetrainTrigger, WindowResult
from driftline.settings import MonitorSettings
from driftline.streams.joining import PartitionJoin
from driftline.streams.policy import TriggerPolicy
from driftline.streams.windows import Emission, WindowEngine

CHECKPOINT_VERSION = 3
CHECKPOINT_SHARE = 10  # wait at least this many times the last checkpoint's duration before the next ...
CHECKPOINT_STRETCH_MAX_S = 30.0  # ... but no longer than this: windows close and state expires at checkpoints
STATE_FIELDS = (
    "windows",
    "orphans",
    "predictions_seen",
    "labels_seen",
    "first_events",
    "own_profiles",
    "detectors",
    "detector_inputs",
    "detector_frontiers",
    "detector_late",
    "after_horizon",
    "unpublished_alarms",
)


class StreamMonitor:
    """One worker's monitors over the partitions it owns, with checkpoints in ``checkpoint_path``."""

    def __init__(
        self,
        settings: MonitorSettings,
        topics: Mapping[str, str],
        publish_results: Callable[[list[WindowResult]], None],
        publish_triggers: Callable[[list[RetrainTrigger]], None],
        checkpoint_path: Path,
        *,
        policy: PolicySettings | None = None,
        profile_for: Callable[[str, str], ReferenceProfile | None] = lambda _m, _v: None,
        contracts: Mapping[str, ModelContract] | None = None,
        max_message_bytes: int = 1_048_576,
        partitions: int = 0,
    ) -> None:
        self.settings = settings
        self.publish_results = publish_results
        self.publish_triggers = publish_triggers
        self.outbox: list[RetrainTrigger] = []
        self.checkpoint_path = checkpoint_path
        self.engine = WindowEngine(settings, profile_for, contracts, partitions=partitions)
        now = time.monotonic()
        self.joins = {partition: PartitionJoin(settings, partition, now) for partition in range(partitions)}
        self.policy = TriggerPolicy(policy or PolicySettings(), settings.window_s)
        check = contract_check(contracts or {})
        self.predictions_topic = topics["predictions"]
        self.decoders: dict[str, EventDecoder[Any]] = {
            topics["predictions"]: EventDecoder(PredictionEvent, "prediction", max_message_bytes, check),
            topics["feedback"]: EventDecoder(FeedbackEvent, "feedback", max_message_bytes, check),
        }
        self.fast = FastDecoder(frozenset(contracts or {}), max_message_bytes)
        self.offsets: dict[tuple[str, int], int] = {}
        self.counts: Counter[str] = Counter()
        self.last_checkpoint = time.monotonic()
        self.last_checkpoint_s = 0.0

    def restore(self) -> bool:
        """Load the last checkpoint, if any; True when one was loaded."""
        if not self.checkpoint_path.exists():
            return False
        with self.checkpoint_path.open("rb") as handle:
            saved = pickle.load(handle)  # our own file, written by checkpoint()
        if saved.get("version") != CHECKPOINT_VERSION:
            # resuming without it would skip what it covers (the group's offsets are past it): refuse
            raise ConfigError(
                f"checkpoint {self.checkpoint_path} has format {saved.get('version')}, this driftline reads "
                f"{CHECKPOINT_VERSION}; finish with the release that wrote it, or delete it and replay the topics "
                "under a new worker.app_id"
            )
        for name in STATE_FIELDS:
            setattr(self.engine, name, saved["engine"][name])
        self.joins = saved["joins"]
        self.offsets = saved["offsets"]
        self.policy.restore(saved["policy"])
        self.outbox = saved["outbox"]
        now = time.monotonic()
        for join in self.joins.values():
            join.resume(now)
        return True

    def handle(self, topic: str, partition: int, offset: int, value: bytes | None) -> bool:
        """Process one message; False when it was already covered by the checkpoint (a replay)."""
        if offset <= self.offsets.get((topic, partition), -1):
            self.counts["replayed"] += 1
            return False
        join = self.joins.get(partition)
        now = time.monotonic()
        if join is None:
            join = self.joins[partition] = PartitionJoin(self.settings, partition, now)
        if topic == self.predictions_topic:
            predictions = self.fast.predictions(value)
            if predictions is None:
                predictions = [prediction_record(d.event) for d in self._decode_slowly(topic, partition, offset, value)]
            for prediction in predictions:
                join.add_prediction(prediction, now)
            self.counts["predictions"] += len(predictions)
        else:
            feedback = self.fast.feedback(value)
            if feedback is None:
                feedback = [feedback_record(d.event) for d in self._decode_slowly(topic, partition, offset, value)]
            for label in feedback:
                join.add_feedback(label, now)
            self.counts["feedback"] += len(feedback)
        self.offsets[(topic, partition)] = offset
        return True

    def _decode_slowly(self, topic: str, partition: int, offset: int, value: bytes | None) -> list[Decoded[Any]]:
        """pydantic's verdict on a message the fast decoder left to it; invalid events are counted."""
        result = self.decoders[topic].decode(value, Origin(topic, partition, offset))
        for letter in result.dead_letters:
            self.counts[f"dead_letter:{letter.reason.value}"] += 1
        return result.events

    def checkpoint(self) -> Emission:
        """Publish what closed or changed, decide triggers, make state, offsets and decisions durable
        together, then publish the decisions."""
        started = time.monotonic()
        for join in self.joins.values():
            for delta in join.deltas(started):
                self.engine.apply(delta)
            join.sent()
        emission = self.engine.advance(lambda emitted: self.publish_results(emitted.results))
        self.counts["windows_emitted"] += len(emission.results)
        self.counts["alarms"] += len(emission.alarms)
        self.outbox.extend(t for key, alarm in emission.alarms if (t := self.policy.on_alarm(key, alarm)) is not None)
        for result in emission.results:
            self.outbox.extend(self.policy.on_window(result))
        self.policy.expire(self.engine.watermark - timedelta(seconds=self.settings.horizon_s + self.settings.window_s))
        state = {
            "version": CHECKPOINT_VERSION,
            "engine": {name: getattr(self.engine, name) for name in STATE_FIELDS},
            "joins": self.joins,
            "offsets": dict(self.offsets),
            "policy": self.policy.state(),
            "outbox": list(self.outbox),
        }
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.checkpoint_path.with_suffix(".tmp")
        with staging.open("wb") as handle:
            pickle.dump(state, handle, protocol=pickle.HIGHEST_PROTOCOL)
            handle.flush()
            os.fsync(handle.fileno())
        staging.replace(self.checkpoint_path)
        self.last_checkpoint = time.monotonic()
        self.last_checkpoint_s = self.last_checkpoint - started
        if self.outbox:
            self.publish_triggers(self.outbox)  # at least once: the next checkpoint records the empty outbox
            self.counts["triggers"] += len(self.outbox)
            self.outbox = []
        return emission

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
