"""The demo's story played through in-process worker stages (no broker, no ClickHouse): its window results and
triggers, for tests that judge decisions offline, as ``make demo`` judges them live."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import murmur2

from driftline.demo.flags import rows_of
from driftline.demo.judge import Verdict
from driftline.demo.story import MODEL_ID, Story, story_references
from driftline.schemas.results import ReferenceProfile, RetrainTrigger, WindowResult
from driftline.settings import Settings
from driftline.simulation.payloads import SimulatedEvent
from driftline.streams.worker.local import LocalCheckpoints
from driftline.streams.worker.stages import WorkerStages

TOPICS = {"predictions": "predictions", "feedback": "feedback", "window-parts": "window-parts"}


@dataclass
class Played:
    """What the worker stages published for a story: every window result (each revision) and every trigger."""

    story: Story
    settings: Settings
    results: list[WindowResult]
    triggers: list[RetrainTrigger]

    def latest(self) -> list[WindowResult]:
        """The latest revision of each window."""
        newest: dict[tuple[str, str, object], WindowResult] = {}
        for result in self.results:
            key = (result.model_id, result.model_version, result.window_start)
            if key not in newest or result.revision > newest[key].revision:
                newest[key] = result
        return list(newest.values())

    def verdict(self) -> Verdict:
        """The demo's verdict on these results and triggers."""
        return self.story.judge(rows_of(self.latest(), self.triggers), self.settings)


def story_events(story: Story) -> list[SimulatedEvent]:
    """The story's valid events in the order the simulator sends them."""
    return [event for event in story.simulation().events() if event.kind != "malformed"]


class _Workers:
    """Worker stages sharing the partitions as workers of one app id would (worker k owns every partition p with
    p mod count = k, of both the source topics and window-parts), their states in memory; a checkpoint hands
    each worker's deltas to the owner of their window-parts partition as messages at that partition's next
    offsets, workers in order, then has every worker emit and save."""

    def __init__(self, workers: list[WorkerStages]) -> None:
        self.workers = workers
        self.saved: dict[tuple[str, int], bytes] = {}
        self.parts_offsets: Counter[int] = Counter()
        partitions = workers[0].partitions
        for k, stages in enumerate(workers):
            stages.assign([p for p in range(partitions) if p % len(workers) == k], self)

    def load(self, name: str, partition: int) -> bytes | None:
        return self.saved.get((name, partition))

    def owner(self, partition: int) -> WorkerStages:
        return self.workers[partition % len(self.workers)]

    def checkpoint(self) -> None:
        for stages in self.workers:
            for partition, value in stages.deltas():
                self.owner(partition).handle(TOPICS["window-parts"], partition, self.parts_offsets[partition], value)
                self.parts_offsets[partition] += 1
            stages.deltas_delivered()
        for stages in self.workers:
            self.saved.update(stages.checkpoint())
            stages.saved()


def play(
    story: Story,
    path: Path,
    *,
    events: Sequence[SimulatedEvent] | None = None,
    envelope: int = 50,
    checkpoint_every: int = 2_000,
    references: bool = True,
    workers: int = 1,
) -> Played:
    """Feed ``events`` (the story's, by default) to fresh worker stages: up to ``envelope`` events per message per
    partition, a checkpoint every ``checkpoint_every`` events and one at the end. One worker keeps its state
    in a local file under ``path`` (:class:`LocalCheckpoints`); several share the partitions (:class:`_Workers`).
    With ``references``, the story's reference profiles are known from the start, as the demo publishes them
    before it sends."""
    settings = story.settings(Settings())
    monitor_settings = settings.monitor.model_copy(update={"idle_timeout_s": 1e9})  # no processing-time cut
    partitions = settings.kafka.partitions
    profiles: dict[tuple[str, str], ReferenceProfile] = {}
    if references:
        profiles = {(MODEL_ID, p.model_version): p for p, _at in story_references(settings, story, story.simulation())}
    results: list[WindowResult] = []
    triggers: list[RetrainTrigger] = []
    workers = [
        WorkerStages(
            monitor_settings,
            TOPICS,
            results.extend,
            triggers.extend,
            policy=settings.policy,
            profile_for=lambda model, version: profiles.get((model, version)),
            partitions=partitions,
        )
        for _worker in range(workers)
    ]
    if workers == 1:
        local = LocalCheckpoints(workers[0], path)
        owner, checkpoint = (lambda _partition: workers[0]), (lambda: local.run(workers[0]))
    else:
        shared = _Workers(workers)
        owner, checkpoint = shared.owner, shared.checkpoint
    offsets: Counter[tuple[str, int]] = Counter()
    pending: dict[tuple[str, int], list[bytes]] = defaultdict(list)

    def send(slot: tuple[str, int]) -> None:
        owner(slot[1]).handle(slot[0], slot[1], offsets[slot], b"[" + b",".join(pending.pop(slot)) + b"]")
        offsets[slot] += 1

    for i, event in enumerate(story_events(story) if events is None else events, 1):
        slot = (event.topic, murmur2(event.key.encode(), partitions))
        pending[slot].append(event.payload)
        if len(pending[slot]) >= envelope:
            send(slot)
        if i % checkpoint_every == 0:
            checkpoint()
    for slot in list(pending):
        send(slot)
    checkpoint()
    return Played(story, settings, results, triggers)
