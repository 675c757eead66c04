"""The demo's story played through an in-process monitor (no broker, no ClickHouse): its window results and
triggers, for tests that judge decisions offline, as ``make demo`` judges them live."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import murmur2

from driftline.demo import MODEL_ID, Story, story_references
from driftline.detection import Verdict, rows_of
from driftline.schemas.results import ReferenceProfile, RetrainTrigger, WindowResult
from driftline.settings import Settings
from driftline.simulator import SimulatedEvent
from driftline.streams.monitor import LocalCheckpoints, StreamMonitor

TOPICS = {"predictions": "predictions", "feedback": "feedback", "window-parts": "window-parts"}


@dataclass
class Played:
    """What a monitor published for a story: every window result (each revision) and every trigger."""

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


def play(
    story: Story,
    path: Path,
    *,
    events: Sequence[SimulatedEvent] | None = None,
    envelope: int = 50,
    checkpoint_every: int = 2_000,
    references: bool = True,
) -> Played:
    """Feed ``events`` (the story's, by default) to a fresh monitor with its state under ``path``: up to
    ``envelope`` events per message per partition, a checkpoint every ``checkpoint_every`` events and one at the
    end; with ``references``, the story's reference profiles are known from the start, as the demo publishes
    them before it sends."""
    settings = story.settings(Settings())
    monitor_settings = settings.monitor.model_copy(update={"idle_timeout_s": 1e9})  # no processing-time cut
    partitions = settings.kafka.partitions
    profiles: dict[tuple[str, str], ReferenceProfile] = {}
    if references:
        profiles = {(MODEL_ID, p.model_version): p for p, _at in story_references(settings, story, story.simulation())}
    results: list[WindowResult] = []
    triggers: list[RetrainTrigger] = []
    monitor = StreamMonitor(
        monitor_settings,
        TOPICS,
        results.extend,
        triggers.extend,
        policy=settings.policy,
        profile_for=lambda model, version: profiles.get((model, version)),
        partitions=partitions,
    )
    checkpoints = LocalCheckpoints(monitor, path)
    offsets: Counter[tuple[str, int]] = Counter()
    pending: dict[tuple[str, int], list[bytes]] = defaultdict(list)

    def send(slot: tuple[str, int]) -> None:
        monitor.handle(slot[0], slot[1], offsets[slot], b"[" + b",".join(pending.pop(slot)) + b"]")
        offsets[slot] += 1

    for i, event in enumerate(story_events(story) if events is None else events, 1):
        slot = (event.topic, murmur2(event.key.encode(), partitions))
        pending[slot].append(event.payload)
        if len(pending[slot]) >= envelope:
            send(slot)
        if i % checkpoint_every == 0:
            checkpoints.run(monitor)
    for slot in list(pending):
        send(slot)
    checkpoints.run(monitor)
    return Played(story, settings, results, triggers)
