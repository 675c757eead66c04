"""The worker's core without Kafka: decisions are published when taken, or kept in an outbox in the checkpoint
when they cannot be, so a crash before or after the checkpoint publishes a decision again with the same id,
never a different one; replayed messages are skipped."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from driftline.demo.story import Story
from driftline.schemas.dead_letters import DeadLetter, Reason
from driftline.schemas.errors import BrokerError
from driftline.schemas.monitoring import MonitorSettings
from driftline.schemas.policy import PolicySettings
from driftline.schemas.results import RetrainTrigger, WindowResult
from driftline.streams.faust.app import _Worker
from driftline.streams.faust.changelog import ChangelogStore
from driftline.streams.worker import snapshots
from driftline.streams.worker.local import LocalCheckpoints
from driftline.streams.worker.stages import WorkerStages
from tests.story_offline import play, story_events

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TOPICS = {"predictions": "p", "feedback": "f", "window-parts": "w"}
SETTINGS = MonitorSettings(window_s=60, grace_s=1, horizon_s=600, idle_timeout_s=1e9)
POLICY = PolicySettings.model_validate({"accuracy_below": {"threshold": 0.85, "min_samples": 10}})


def envelope(events: list[dict[str, object]]) -> bytes:
    return json.dumps(events).encode()


def predictions(start_s: float, n: int, prefix: str) -> bytes:
    return envelope(
        [
            {
                "prediction_id": f"{prefix}{i}",
                "model_id": "m",
                "model_version": "1",
                "timestamp": (T0 + timedelta(seconds=start_s + i)).isoformat(),
                "prediction": {"label": 1, "score": 0.9},
            }
            for i in range(n)
        ]
    )


def wrong_labels(start_s: float, n: int, prefix: str) -> bytes:
    return envelope(
        [
            {
                "prediction_id": f"{prefix}{i}",
                "timestamp": (T0 + timedelta(seconds=start_s + i + 1)).isoformat(),
                "label": 0,
            }
            for i in range(n)
        ]
    )


class Local:
    """Worker stages with their state in a local file (restored from it when it exists)."""

    def __init__(self, stages: WorkerStages, path: Path) -> None:
        self.stages = stages
        self.checkpoints = LocalCheckpoints(stages, path)
        self.handle = stages.handle
        self.counts = stages.counts

    def checkpoint(self) -> None:
        self.checkpoints.run(self.stages)


class Recorder:
    def __init__(self, crash_on_triggers: bool = False) -> None:
        self.results: list[WindowResult] = []
        self.triggers: list[RetrainTrigger] = []
        self.crash_on_triggers = crash_on_triggers

    def stages(self, path: Path) -> Local:
        return Local(WorkerStages(SETTINGS, TOPICS, self.results.extend, self.publish_triggers, policy=POLICY), path)

    def publish_triggers(self, triggers: list[RetrainTrigger]) -> None:
        if self.crash_on_triggers:
            raise BrokerError("the broker is unreachable: triggers not delivered")
        self.triggers.extend(triggers)


def feed_breaching_window(stages: Local) -> None:
    stages.handle("p", 0, 0, predictions(0, 40, "a"))
    stages.handle("f", 0, 0, wrong_labels(0, 40, "a"))
    stages.handle("p", 0, 1, predictions(70, 1, "b"))  # the watermark passes window 0's end + grace


def test_a_decision_is_published_once_at_the_checkpoint_that_takes_it(tmp_path: Path) -> None:
    recorder = Recorder()
    stages = recorder.stages(tmp_path / "cp")
    feed_breaching_window(stages)

    stages.checkpoint()
    stages.checkpoint()

    [trigger] = recorder.triggers
    assert [r.rule for r in trigger.reasons] == ["accuracy_below"] and trigger.window_start == T0
    assert stages.counts["triggers"] == 1


def test_a_decision_not_delivered_is_saved_and_republished_after_a_crash(tmp_path: Path) -> None:
    crashed = Recorder(crash_on_triggers=True)
    first = crashed.stages(tmp_path / "cp")
    feed_breaching_window(first)
    with pytest.raises(BrokerError):  # at its emission the decision waits in the outbox; the state is saved with
        first.checkpoint()  # it, then publishing after the save fails too: the process dies

    recorder = Recorder()
    restarted = recorder.stages(tmp_path / "cp")
    assert restarted.checkpoints.saved  # restored from the file
    feed_breaching_window(restarted)  # the same messages read again: skipped, already in the checkpoint
    restarted.checkpoint()
    restarted.checkpoint()

    assert restarted.counts["replayed"] == 3
    [trigger] = recorder.triggers
    assert trigger.window_start == T0
    assert crashed.triggers == []


def test_a_crash_before_the_checkpoint_decides_again_from_the_older_state_with_the_same_id(tmp_path: Path) -> None:
    baseline = Recorder()
    uninterrupted = baseline.stages(tmp_path / "a")
    feed_breaching_window(uninterrupted)
    uninterrupted.checkpoint()

    lost = Recorder()
    lost_stages = lost.stages(tmp_path / "b")
    lost_stages.checkpoint()  # an empty checkpoint; what follows dies with the process
    feed_breaching_window(lost_stages)
    recorder = Recorder()
    restarted = recorder.stages(tmp_path / "b")
    feed_breaching_window(restarted)
    restarted.checkpoint()

    assert [t.trigger_id for t in recorder.triggers] == [t.trigger_id for t in baseline.triggers]
    assert len(recorder.triggers) == 1


class StubTable:
    """The two things ChangelogStore uses of a Faust table: its local data and its changelog."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.changelog: list[tuple[int, bytes, bytes]] = []

    def send_changelog(self, partition: int, key: bytes, value: bytes) -> None:
        self.changelog.append((partition, key, value))


def restored_from(changelog: list[tuple[int, bytes, bytes]]) -> StubTable:
    """A table as Faust rebuilds it from its changelog: the last value of each key."""
    table = StubTable()
    for _partition, key, value in changelog:
        table.data[key] = value
    return table


def test_a_window_that_closes_is_emitted_at_once_and_its_decision_published_with_it(tmp_path: Path) -> None:
    recorder = Recorder()
    stages = recorder.stages(tmp_path / "cp").stages
    stages.handle("p", 0, 0, predictions(0, 40, "a"))
    stages.handle("f", 0, 0, wrong_labels(0, 40, "a"))
    stages.last_emit -= 1  # past the least gap between emissions on closes
    assert not stages.close_due  # window 0 is open
    stages.handle("p", 0, 1, predictions(70, 1, "b"))  # the partition's time passes window 0's end + grace
    assert stages.close_due

    for offset, (partition, value) in enumerate(stages.deltas()):  # onto window-parts and read back
        stages.handle("w", partition, offset, value)
    stages.deltas_delivered()
    assert stages.close_due  # now for the merger: its watermark closed window 0, not emitted yet
    stages.emit()

    assert not stages.close_due
    assert [r.window_start for r in recorder.results] == [T0]
    [trigger] = recorder.triggers  # published at its emission, before any checkpoint
    assert trigger.window_start == T0 and [r.rule for r in trigger.reasons] == ["accuracy_below"]
    stages.handle("p", 0, 2, predictions(80, 1, "c"))  # the same window still open: nothing new closed
    stages.last_emit -= 1
    assert not stages.close_due


def test_deltas_for_its_own_merger_apply_at_delivery_in_topic_order_and_their_read_is_skipped(
    tmp_path: Path,
) -> None:
    recorder = Recorder()
    stages = recorder.stages(tmp_path / "cp").stages
    feed_breaching_window(stages)  # window 0 closes on the partition
    out = stages.deltas()
    stages.deltas_delivered()
    stages.apply_delivered([(p, 3 + i, value) for i, (p, value) in enumerate(out)])  # offsets 0-2 unread
    stages.emit()
    assert recorder.results == []  # left to the read: records before them are not applied yet

    for i, (p, value) in enumerate(out):
        stages.handle("w", p, 3 + i, value)
    stages.emit()
    assert [r.window_start for r in recorder.results] == [T0]

    stages.handle("p", 0, 2, predictions(130, 1, "c"))  # window 1 (60-120 s) closes too
    out = stages.deltas()
    stages.deltas_delivered()
    first = 3 + len(out)  # right after what the merger read
    stages.apply_delivered([(p, first + i, value) for i, (p, value) in enumerate(out)])
    stages.emit()
    assert [r.window_start for r in recorder.results] == [T0, T0 + timedelta(seconds=60)]  # no read needed
    replayed = stages.counts["replayed"]
    assert not any(stages.handle("w", p, first + i, value) for i, (p, value) in enumerate(out))
    assert stages.counts["replayed"] == replayed  # read back: skipped, and not counted as a replay


def test_changelog_store_chunks_a_state_and_a_half_written_one_leaves_the_previous_intact() -> None:
    table = StubTable()
    store = ChangelogStore(table)  # type: ignore[arg-type]
    store.CHUNK_BYTES = 1000
    first, second = bytes(range(256)) * 10, b"second" * 900

    store.save({("join-1", 1): first})
    store.save({("join-1", 1): second})
    assert {p for p, _k, _v in table.changelog} == {1}
    assert len(table.changelog) == 3 + 1 + 6 + 1  # chunks and a manifest, twice
    assert ChangelogStore(restored_from(table.changelog)).load("join-1", 1) == second  # type: ignore[arg-type]

    store.save({("join-1", 1): first})  # a crash after two of its three chunks: no new manifest
    crashed = ChangelogStore(restored_from(table.changelog[:-2]))  # type: ignore[arg-type]
    assert crashed.load("join-1", 1) == second
    assert ChangelogStore(restored_from(table.changelog)).load("join-1", 1) == first  # type: ignore[arg-type]
    assert ChangelogStore(StubTable()).load("join-1", 1) is None  # type: ignore[arg-type]


def test_changelog_store_writes_a_state_only_when_it_changed(tmp_path: Path) -> None:
    """An idle worker checkpoints the same state again and again: nothing more reaches the changelog."""
    table = StubTable()
    store = ChangelogStore(table)  # type: ignore[arg-type]
    local = Recorder().stages(tmp_path / "cp")
    feed_breaching_window(local)
    store.save(local.stages.checkpoint())
    written = len(table.changelog)
    for _ in range(3):
        store.save(local.stages.checkpoint())  # no input in between
    assert written > 0 and len(table.changelog) == written
    local.handle("p", 0, 2, predictions(71, 1, "c"))
    store.save(local.stages.checkpoint())
    assert len(table.changelog) > written
    restored = ChangelogStore(restored_from(table.changelog))  # type: ignore[arg-type]
    assert restored.load("join-0", 0) is not None and restored.digests["join-0"] == store.digests["join-0"]


class StubConsumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[str, int, int]] = []

    async def seek(self, tp: Any, offset: int) -> None:
        raise AssertionError("Consumer.seek runs aiokafka's seek outside the consumer thread: it races the fetcher")

    async def seek_wait(self, partitions: dict[Any, int]) -> None:  # runs in the consumer thread
        self.seeks.extend((tp.topic, tp.partition, offset) for tp, offset in partitions.items())


def event_at(offset: int) -> Any:
    message = SimpleNamespace(topic="p", partition=0, offset=offset, tp=TP("p", 0))
    return SimpleNamespace(message=message)


def test_an_offset_jump_reads_the_partition_again_and_a_real_gap_is_accepted_after(tmp_path: Path) -> None:
    local = Recorder().stages(tmp_path / "cp")
    local.stages.offsets[("p", 0)] = 9  # handled up to 9
    consumer = StubConsumer()
    app = SimpleNamespace(consumer=consumer, topic=lambda *_a, **_k: None)
    worker = _Worker(app, local.stages, ["p", "f", "w"], None)  # type: ignore[arg-type]

    async def offsets_taken(offsets: list[int]) -> list[int]:
        return [offset for offset in offsets if await worker.in_sequence(event_at(offset))]

    # 10 and 11 were dropped on the way: 12 sends the partition back to 10; 13 and 14 of the old read are left
    assert asyncio.run(offsets_taken([12, 13, 14])) == []
    assert consumer.seeks == [("p", 0, 10)]
    assert asyncio.run(offsets_taken([10])) == [10]  # read again: in sequence from there
    local.stages.offsets[("p", 0)] = 14
    # a real gap (15 is a transaction marker): read again, 16 comes first again and is taken
    assert asyncio.run(offsets_taken([16, 16])) == [16]
    local.stages.offsets[("p", 0)] = 16
    assert asyncio.run(offsets_taken([17])) == [17]
    assert consumer.seeks == [("p", 0, 10), ("p", 0, 15)]


def test_events_stamped_in_2099_are_dead_letters_and_every_model_keeps_its_windows(tmp_path: Path) -> None:
    """Eight predictions stamped 2099 amid the traffic of two models (Kafka stored every message in March 2026):
    they are dead letters, and every window equals the one the stream gives without them."""

    def stream(with_future: bool) -> tuple[Recorder, Local]:
        recorder = Recorder()
        stages = recorder.stages(tmp_path / f"cp-{with_future}")
        offsets = {"p": 0, "f": 0}
        for minute in range(6):
            for model in ("m", "n"):
                events = json.loads(predictions(60 * minute, 40, f"{model}{minute}-"))
                for event in events:
                    event["model_id"] = model
                if with_future and minute == 2:
                    events[:4] = [{**event, "timestamp": "2099-01-01T00:00:00+00:00"} for event in events[:4]]
                written = (T0 + timedelta(seconds=60 * minute + 40)).timestamp()
                stages.handle("p", 0, offsets["p"], envelope(events), written)
                stages.handle("f", 0, offsets["f"], wrong_labels(60 * minute, 40, f"{model}{minute}-"), written)
                offsets["p"] += 1
                offsets["f"] += 1
        stages.checkpoint()
        return recorder, stages

    clean, _ = stream(with_future=False)
    recorder, stages = stream(with_future=True)

    assert stages.counts["dead_letter:timestamp_in_future"] == 8
    windows = {(r.model_id, r.window_start): r.performance for r in recorder.results}
    expected = {(r.model_id, r.window_start): r.performance for r in clean.results}
    assert len(windows) == 10 and {model for model, _start in windows} == {"m", "n"}
    for key, performance in windows.items():
        assert performance.late_predictions == 0
        missing = 4 if key[1] == T0 + timedelta(seconds=120) else 0
        assert performance.predictions == expected[key].predictions - missing == 40 - missing


def test_the_same_story_delivered_six_ways_gives_the_same_triggers(tmp_path: Path) -> None:
    """The demo's story (drift, a fairness gap, concept drift, a new version) as single events, as envelopes,
    with checkpoints far apart, with the whole feedback topic read before the predictions, and split across two
    and three workers: the triggers, ids included, are the same: decisions are a function of the events, not
    of how they were delivered or which worker read what."""
    story = Story(seed=3, windows_per_phase=2, cooldown_windows=1, predictions_per_window=3_000)
    events = story_events(story)

    def deliver(name: str, order: list[Any], envelope: int, checkpoint_every: int, workers: int = 1) -> list[str]:
        played = play(
            story, tmp_path / name, events=order, envelope=envelope, checkpoint_every=checkpoint_every, workers=workers
        )
        return sorted(trigger.trigger_id for trigger in played.triggers)

    single = deliver("single", events, 1, 2_000)
    assert len(single) >= 4
    assert deliver("envelopes", events, 50, 2_000) == single
    assert deliver("far-apart", events, 1, 9_000) == single
    feedback_first = sorted(events, key=lambda event: event.topic != "feedback")
    assert deliver("feedback-first", feedback_first, 50, 5_000) == single
    assert deliver("two-workers", events, 50, 3_000, workers=2) == single
    assert deliver("three-workers", feedback_first, 20, 4_000, workers=3) == single


def test_a_label_that_contradicts_its_prediction_is_a_dead_letter_and_leaves_it_unlabelled(tmp_path: Path) -> None:
    """A model never pinned: its binary predictions use 0/1, so 'yes' cannot be their outcome; a regression's
    outcome is a value. Each such label is a dead letter keyed where it was read; the prediction's first label
    decided, so a valid label after it counts no more than a second label would."""
    letters: list[DeadLetter] = []
    results: list[WindowResult] = []
    stages = WorkerStages(
        SETTINGS, TOPICS, results.extend, lambda _t: None, publish_dead_letters=letters.extend, policy=POLICY
    )
    local = Local(stages, tmp_path / "state")
    regression = {**json.loads(predictions(0, 1, "r"))[0], "model_id": "r", "prediction": {"value": 2.0}}
    local.handle("p", 0, 0, envelope([*json.loads(predictions(0, 4, "a")), regression]))
    labels = [("a0", "yes"), ("a1", 0), ("a2", "maybe"), ("a2", 1), ("r0", 1)]
    feedback = [
        {"prediction_id": pid, "timestamp": (T0 + timedelta(seconds=9)).isoformat(), "label": label}
        for pid, label in labels
    ]
    local.handle("f", 0, 0, envelope(feedback[:3]))
    local.handle("f", 0, 1, envelope(feedback[3:]))
    local.handle("p", 0, 1, predictions(SETTINGS.window_s + SETTINGS.grace_s + 1, 1, "clock"))  # closes the window
    local.checkpoint()

    assert [(letter.key, letter.reason) for letter in letters] == [
        ("f:0:0:0", Reason.LABEL_TYPE_MISMATCH),
        ("f:0:0:2", Reason.LABEL_TYPE_MISMATCH),
        ("f:0:1:1", Reason.LABEL_TYPE_MISMATCH),
    ]
    assert "0/1 or true/false; got 'yes'" in letters[0].message and "expected 'value'" in letters[2].message
    assert json.loads(letters[0].original) == {
        "prediction_id": "a0",
        "timestamp": feedback[0]["timestamp"],
        "label": "yes",
    }
    assert stages.counts["dead_letter:label_type_mismatch"] == 3
    window = {r.model_id: r.performance for r in results if r.window_start == T0}
    assert window["m"].labelled == 1 and window["m"].accuracy == 0.0  # a1 only: predicted 1, labelled 0


def test_a_label_refused_as_the_state_is_saved_is_a_dead_letter_before_that_state(tmp_path: Path) -> None:
    """The joins add up what they hold before a checkpoint saves them, checking labels not checked yet: one
    refused then is published before the state that no longer holds it."""
    letters: list[DeadLetter] = []
    stages = WorkerStages(
        SETTINGS, TOPICS, lambda _r: None, lambda _t: None, publish_dead_letters=letters.extend, policy=POLICY
    )
    local = Local(stages, tmp_path / "state")
    local.handle("p", 0, 0, predictions(0, 2, "a"))
    label = {"prediction_id": "a0", "timestamp": (T0 + timedelta(seconds=9)).isoformat(), "label": "yes"}
    local.handle("f", 0, 0, envelope([label]))

    state = stages.checkpoint()  # no deltas read since the label

    assert [letter.reason for letter in letters] == [Reason.LABEL_TYPE_MISMATCH]
    saved = snapshots.decode(state[("join-0", 0)], "join-0")
    assert isinstance(saved, snapshots.JoinSnapshot)
    assert [(share.new_rows, share.new_labels) for share in saved.shares] == [([], [])]
