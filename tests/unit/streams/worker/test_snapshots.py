"""Saved state is data: a worker restored from its snapshots continues exactly as one that never stopped, and a
state that is not a snapshot of this format (another format, a pickle, garbage) is refused, never run."""

from __future__ import annotations

import pickle
from collections import defaultdict
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import murmur2

from driftline.schemas.errors import ConfigError
from driftline.schemas.monitoring import MonitorSettings
from driftline.schemas.results import RetrainTrigger, WindowResult
from driftline.simulation.scenarios import scenario
from driftline.simulation.simulator import Simulation
from driftline.simulation.world import SimulationConfig, model_names
from driftline.streams.worker import snapshots
from driftline.streams.worker.local import LocalCheckpoints
from driftline.streams.worker.stages import WorkerStages

TOPICS = {"predictions": "predictions", "feedback": "feedback", "window-parts": "window-parts"}
PARTITIONS = 2
SETTINGS = MonitorSettings(
    window_s=300, grace_s=30, horizon_s=1800, reference_first_n=150, detector_slice_s=60, idle_timeout_s=1e9
)


def stream() -> list[tuple[str, int, bytes]]:
    """Envelopes of a drifting stream of two models (labels late, some never), by partition in send order."""
    config = SimulationConfig(
        seed=5,
        models=model_names(2),
        predictions=3_000,
        duration_s=3 * 3600,
        label_delay_s=600,
        malformed_share=0.0,
        scenario=scenario("concept-drift", 3 * 3600, starts=[3 * 3600 / 2]),
    )
    pending: dict[tuple[str, int], list[bytes]] = defaultdict(list)
    out = []
    for event in Simulation(config).events():
        slot = (event.topic, murmur2(event.key.encode(), PARTITIONS))
        pending[slot].append(event.payload)
        if len(pending[slot]) == 40:
            out.append((*slot, b"[" + b",".join(pending.pop(slot)) + b"]"))
    out.extend((*slot, b"[" + b",".join(events) + b"]") for slot, events in pending.items())
    return out


class Run:
    """Worker stages over the stream, their state in ``path``; what they published."""

    def __init__(self, path: Path, results: list[WindowResult], triggers: list[RetrainTrigger]) -> None:
        self.stages = WorkerStages(SETTINGS, TOPICS, results.extend, triggers.extend, partitions=PARTITIONS)
        self.checkpoints = LocalCheckpoints(self.stages, path)

    def feed(self, messages: list[tuple[str, int, bytes]], offsets: dict[tuple[str, int], int]) -> None:
        for topic, partition, value in messages:
            offset = offsets[(topic, partition)] = offsets.get((topic, partition), -1) + 1
            self.stages.handle(topic, partition, offset, value)
            if offset % 7 == 0:
                self.checkpoints.run(self.stages)
        self.checkpoints.run(self.stages)


def latest(results: list[WindowResult]) -> dict[tuple[str, str, str], dict[str, object]]:
    out: dict[tuple[str, str, str], dict[str, object]] = {}
    for result in sorted(results, key=lambda r: r.revision):
        out[(result.model_id, result.model_version, result.window_start.isoformat())] = result.model_dump()
    return out


def test_a_monitor_restored_from_its_snapshots_publishes_what_an_uninterrupted_one_does(tmp_path: Path) -> None:
    messages = stream()
    straight_results: list[WindowResult] = []
    straight_triggers: list[RetrainTrigger] = []
    Run(tmp_path / "straight", straight_results, straight_triggers).feed(messages, {})

    results: list[WindowResult] = []
    triggers: list[RetrainTrigger] = []
    first = Run(tmp_path / "restarted", results, triggers)
    half = len(messages) // 2
    offsets: dict[tuple[str, int], int] = {}
    first.feed(messages[:half], offsets)
    engine = first.stages.mergers[0].engine
    assert engine.detectors and engine.own_profiles and any(j.early for j in first.stages.joins.values())
    again = Run(tmp_path / "restarted", results, triggers)  # a new process: every part of the state from the file
    again.feed(messages[half:], offsets)

    assert latest(results) == latest(straight_results)
    assert any(r.alarms for r in straight_results) and any(r.reference == "first_events" for r in straight_results)
    assert {t.trigger_id for t in triggers} == {t.trigger_id for t in straight_triggers}


def test_a_state_of_another_format_or_not_a_snapshot_is_refused_never_run(tmp_path: Path) -> None:
    run = Run(tmp_path / "state", [], [])
    run.feed(stream()[:20], {})
    blob = run.checkpoints.saved[("join-0", 0)]

    older = msgspec.msgpack.decode(blob)
    older["format"] = snapshots.SNAPSHOT_FORMAT - 1
    with pytest.raises(ConfigError, match=f"format {snapshots.SNAPSHOT_FORMAT - 1}, this driftline reads"):
        snapshots.decode(msgspec.msgpack.encode(older), "join-0")

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("this must never run",))

    for hostile in (pickle.dumps(Payload()), b"\x00garbage"):
        with pytest.raises(ConfigError, match="join-0"):
            snapshots.decode(hostile, "join-0")

    broken = msgspec.msgpack.decode(blob)
    broken["shares"] = "not shares"
    with pytest.raises(ConfigError, match="is not a driftline state"):
        snapshots.decode(msgspec.msgpack.encode(broken), "join-0")
