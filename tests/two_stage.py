"""Both stages of the worker in one object, fed events directly (no Kafka, no bytes): the reference the tests
compare the real worker with, and the driver of the window engine's unit tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from driftline.schemas.events import FeedbackEvent, PredictionEvent
from driftline.schemas.model_contracts import ModelContract
from driftline.schemas.monitoring import MonitorSettings
from driftline.schemas.records import feedback_record, prediction_record
from driftline.schemas.results import ReferenceProfile
from driftline.streams.core import deltas
from driftline.streams.core.joining import PartitionJoin
from driftline.streams.core.shares import JoinContext
from driftline.streams.core.windows import Emission, WindowEngine


class TwoStages:
    """One :class:`PartitionJoin` per partition and the :class:`WindowEngine` merging them; ``advance`` hands
    every join's deltas to the engine, encoded and decoded (as a checkpoint does), then advances it; the joins
    see the engine's reference profiles (as in one worker). ``clock`` is processing time."""

    def __init__(
        self,
        settings: MonitorSettings,
        profile_for: Callable[[str, str], ReferenceProfile | None] = lambda _m, _v: None,
        contracts: Mapping[str, ModelContract] | None = None,
        clock: Callable[[], float] = lambda: 0.0,
        partitions: int = 1,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.engine = WindowEngine(settings, profile_for, partitions=partitions)
        self.context = JoinContext(self.engine.reference_for, contracts or {})
        self.joins = {partition: PartitionJoin(settings, partition, clock()) for partition in range(partitions)}

    def join(self, partition: int) -> PartitionJoin:
        if partition not in self.joins:
            self.joins[partition] = PartitionJoin(self.settings, partition, self.clock())
        return self.joins[partition]

    def add_prediction(self, event: PredictionEvent, partition: int = 0) -> None:
        self.join(partition).add_prediction(prediction_record(event), self.clock())

    def add_feedback(self, event: FeedbackEvent, partition: int = 0) -> None:
        self.join(partition).add_feedback(feedback_record(event), self.clock())

    def advance(self) -> Emission:
        for join in self.joins.values():
            for delta in join.deltas(self.clock(), self.context):
                self.engine.apply(deltas.decode(deltas.encode(delta)))  # as through window-parts
            join.sent()
        return self.engine.advance()

    def watermark(self, model_id: str = "m", model_version: str = "1") -> datetime:
        return self.engine.watermark_of(model_id, model_version)
