"""The window engine: join, event-time windows, watermarks, revisions, late and orphaned events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from driftline.schemas.events import FeedbackEvent, PredictionEvent
from driftline.schemas.monitoring import MonitorSettings
from driftline.streams.core import deltas, shares
from driftline.streams.core.metrics.profile import build_profile
from driftline.streams.worker import snapshots, snapshotting
from tests.two_stage import TwoStages

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SETTINGS = MonitorSettings(
    window_s=60, grace_s=5, horizon_s=300, idle_timeout_s=1e9, min_group_count=2, republish_s=0
)  # (republish_s 0: a changed window goes out at the next emission; its pacing has tests of its own)


def prediction(i: int, second: float, label: int, score: float, **extra: object) -> PredictionEvent:
    return PredictionEvent.model_validate(
        {
            "prediction_id": f"p{i}",
            "model_id": "m",
            "model_version": "1",
            "timestamp": T0 + timedelta(seconds=second),
            "features": {"x": float(i % 7), "city": "abc"[i % 3]},
            "prediction": {"label": label, "score": score},
            "sensitive": {"gender": "fm"[i % 2]},
            **extra,
        }
    )


def feedback(i: int, second: float, label: int) -> FeedbackEvent:
    return FeedbackEvent(prediction_id=f"p{i}", timestamp=T0 + timedelta(seconds=second), label=label, model_id="m")


def tick(engine: TwoStages, second: float, partition: int = 0, model: str = "m") -> None:
    """Move the event time of ``model`` version 1 on ``partition``: a prediction of it at ``second`` (in a window
    the test never closes)."""
    engine.add_prediction(
        prediction(0, second, 0, 0.5, prediction_id=f"tick-{second}-{partition}", model_id=model), partition
    )


def results_of(engine: TwoStages, model: str = "m") -> list:
    return [r for r in engine.advance().results if r.model_id == model]


def test_a_scripted_stream_yields_exact_windows_with_metrics_equal_to_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    engine = TwoStages(SETTINGS)
    truth: dict[int, list[tuple[int, int, float]]] = {0: [], 1: []}
    for i in range(80):
        second = i * 1.5  # window 0: i < 40, window 1: i >= 40
        score = float(rng.random())
        label = int(rng.random() < score)
        engine.add_prediction(prediction(i, second, int(score >= 0.5), score), partition=i % 2)
        engine.add_feedback(feedback(i, second + 1, label), partition=i % 2)
        truth[int(second // 60)].append((label, int(score >= 0.5), score))
    for partition in (0, 1):
        tick(engine, 126, partition)

    results = results_of(engine)

    assert [r.window_start for r in results] == [T0, T0 + timedelta(seconds=60)]
    for result, rows in zip(results, (truth[0], truth[1]), strict=True):
        y, y_hat, scores = map(np.array, zip(*rows, strict=True))
        assert result.revision == 2 * len(rows)
        assert result.performance.predictions == result.performance.labelled == len(rows)
        assert result.performance.accuracy == pytest.approx(accuracy_score(y, y_hat))
        bound = engine.engine.windows[("m", "1", result.window_start)].summary().roc_auc_bound()  # binned scores
        assert bound is not None and abs(result.performance.roc_auc - roc_auc_score(y, scores)) <= bound + 1e-12
        assert {(f.group, f.count) for f in result.fairness} == {("f", len(rows) // 2), ("m", len(rows) // 2)}


def test_window_stays_open_until_watermark_passes_end_plus_grace() -> None:
    engine = TwoStages(SETTINGS)
    engine.add_prediction(prediction(1, 10, 1, 0.9), 0)
    tick(engine, 64)
    assert results_of(engine) == []
    tick(engine, 65)
    assert len(results_of(engine)) == 1


def test_late_label_raises_the_revision_and_re_emits_the_window() -> None:
    engine = TwoStages(SETTINGS)
    engine.add_prediction(prediction(1, 10, 1, 0.9), 0)
    engine.add_prediction(prediction(2, 20, 0, 0.2), 0)
    engine.add_feedback(feedback(1, 30, 1), 0)
    tick(engine, 70)
    [first] = results_of(engine)
    assert (first.revision, first.performance.accuracy, first.performance.labelled) == (3, 1.0, 1)

    engine.add_feedback(feedback(2, 100, 1), 0)  # after the window closed, within the horizon
    [second] = results_of(engine)

    assert (second.revision, second.performance.accuracy, second.performance.labelled) == (4, 0.5, 2)
    assert results_of(engine) == []  # nothing changed: nothing re-emitted


def test_a_closed_window_changed_by_late_labels_goes_out_again_at_most_once_per_republish_interval() -> None:
    now = [0.0]
    engine = TwoStages(SETTINGS.model_copy(update={"republish_s": 30.0}), clock=lambda: now[0])
    for i in (1, 2):
        engine.add_prediction(prediction(i, 10 * i, 1, 0.9), 0)
    tick(engine, 70)
    [closed] = results_of(engine)  # the close itself is never held back

    engine.add_feedback(feedback(1, 80, 1), 0)
    now[0] = 29.0
    assert results_of(engine) == []  # within 30 s of the window's last publication: the change waits
    now[0] = 30.0
    [again] = results_of(engine)
    assert (again.revision, again.performance.labelled) == (closed.revision + 1, 1)

    engine.add_feedback(feedback(2, 90, 0), 0)
    assert results_of(engine) == []
    tick(engine, 365)  # the window's end + horizon + grace: no label can change it any more, so it goes out now
    [final] = [r for r in results_of(engine) if r.window_start == T0]
    assert (final.revision, final.performance.labelled, final.performance.accuracy) == (closed.revision + 2, 2, 0.5)
    assert ("m", "1", T0) not in engine.engine.windows  # and it was the last time


def test_a_held_change_goes_out_once_its_model_version_is_quiet_on_the_partition() -> None:
    now = [0.0]
    engine = TwoStages(SETTINGS.model_copy(update={"republish_s": 30.0, "idle_timeout_s": 10.0}), clock=lambda: now[0])
    engine.add_prediction(prediction(1, 10, 1, 0.9), 0)
    tick(engine, 70)
    [closed] = results_of(engine)
    engine.add_feedback(feedback(1, 80, 1), 0)
    now[0] = 9.0
    assert results_of(engine) == []

    now[0] = 10.0  # no prediction of the version here for the idle timeout: nothing may be held for later

    [again] = [r for r in results_of(engine) if r.window_start == T0]
    assert (again.revision, again.performance.labelled) == (closed.revision + 1, 1)


def test_feedback_before_its_prediction_joins_and_duplicates_count_once() -> None:
    engine = TwoStages(SETTINGS)
    engine.add_feedback(feedback(1, 5, 0), 0)
    engine.add_prediction(prediction(1, 1, 1, 0.8), 0)
    engine.add_prediction(prediction(1, 1, 1, 0.8), 0)  # a duplicate prediction id
    engine.add_feedback(feedback(1, 6, 1), 0)  # a second label for the same prediction
    tick(engine, 70)

    [result] = results_of(engine)

    assert (result.performance.predictions, result.performance.labelled, result.revision) == (1, 1, 2)
    assert result.performance.accuracy == 0.0


@pytest.mark.parametrize("restart", [False, True])
def test_a_labelled_prediction_stops_waiting_yet_a_second_label_or_a_repeat_still_counts_once(restart: bool) -> None:
    """Once labelled, a prediction leaves the index and its id is forgotten (only a 64-bit hash stays, also
    through a saved state); a second label is ignored rather than left waiting to be orphaned, and the same
    prediction read again counts once."""
    engine = TwoStages(SETTINGS)
    engine.add_prediction(prediction(1, 10, 1, 0.9), 0)
    engine.add_prediction(prediction(2, 20, 0, 0.2), 0)
    engine.add_feedback(feedback(1, 30, 1), 0)
    join = engine.joins[0]
    assert (join.waiting_predictions, "p1" in join.pending, "p2" in join.pending) == (1, False, True)
    join.fold(engine.context)  # added up (as before a checkpoint): the share holds no id of a labelled row
    assert join.shares[("m", "1", T0)].ids == ["", "p2"]
    if restart:
        state = snapshots.encode(snapshotting.join_snapshot(join, {}))
        engine.joins[0] = snapshotting.restore_join(snapshots.decode(state, "join"), SETTINGS, engine.context, 0.0)  # type: ignore[arg-type]
        assert engine.joins[0].pending.keys() == {"p2"} and engine.joins[0].settled == join.settled

    engine.add_feedback(feedback(1, 40, 0), 0)  # a second label: counts no more
    engine.add_prediction(prediction(1, 10, 1, 0.9), 0)  # the same prediction again: counts once
    engine.add_feedback(feedback(2, 50, 1), 0)
    tick(engine, 70)
    [result] = results_of(engine)
    assert (result.performance.predictions, result.performance.labelled, result.performance.accuracy) == (2, 2, 0.5)
    assert engine.joins[0].early == {} and engine.joins[0].waiting_predictions == 1  # the tick's prediction

    tick(engine, 400)  # past the window's end + horizon + grace: nothing was orphaned, the share and hashes go
    assert all(r.performance.orphan_feedback == 0 for r in results_of(engine))
    assert ("m", "1", T0) not in engine.joins[0].shares
    assert engine.joins[0].settled == set()


@pytest.mark.parametrize("restart", [False, True])
def test_an_open_window_sends_scores_and_errors_as_they_come_and_adds_its_events_up_once_it_closes(
    restart: bool,
) -> None:
    """Detector inputs go out at every deltas; the share adds its predictions and labels up only when it goes out
    (or before a checkpoint), so each input is sent once, also through a state saved in between."""
    engine = TwoStages(SETTINGS)
    for i in range(1, 5):
        engine.add_prediction(prediction(i, 10 * i, i % 2, 0.2 * i), 0)
    engine.add_feedback(feedback(1, 45, 0), 0)  # predicted 1: an error
    engine.advance()
    key = ("m", "1", T0)
    received = engine.engine.windows[key].shares[0]
    assert (received.scores_received, received.errors_received) == (4, 1)
    assert (engine.joins[0].shares[key].summary.predictions, engine.joins[0].unfolded) == (0, 4)
    if restart:
        state = snapshots.encode(snapshotting.join_snapshot(engine.joins[0], {}))
        engine.joins[0] = snapshotting.restore_join(snapshots.decode(state, "join"), SETTINGS, engine.context, 0.0)  # type: ignore[arg-type]

    engine.add_feedback(feedback(2, 46, 0), 0)  # predicted 0: right
    engine.advance()
    assert (received.scores_received, received.errors_received) == (4, 2)
    tick(engine, 70)
    [result] = results_of(engine)
    assert (received.scores_received, received.errors_received) == (4, 2)
    assert (result.performance.predictions, result.performance.labelled, result.performance.accuracy) == (4, 2, 0.5)


def test_prediction_after_grace_is_counted_late_and_left_out() -> None:
    engine = TwoStages(SETTINGS)
    engine.add_prediction(prediction(1, 10, 1, 0.9), 0)
    tick(engine, 70)
    results_of(engine)

    engine.add_prediction(prediction(2, 20, 1, 0.9), 0)
    [result] = results_of(engine)

    assert result.performance.predictions == 1 and result.performance.late_predictions == 1


def test_feedback_whose_prediction_never_comes_is_counted_orphan_after_the_horizon() -> None:
    engine = TwoStages(SETTINGS)
    engine.add_prediction(prediction(1, 10, 1, 0.9), 0)
    engine.add_feedback(feedback(99, 20, 1), 0)
    tick(engine, 70)
    results_of(engine)
    tick(engine, 330)  # the feedback is older than the horizon: orphaned, counted in its window

    [result] = [r for r in results_of(engine) if r.window_start == T0]

    assert result.performance.orphan_feedback == 1 and engine.joins[0].early == {}
    tick(engine, 366)  # past the window's end + horizon + grace: its state is dropped
    results_of(engine)
    assert T0 not in {key[2] for key in engine.engine.windows}
    assert "p1" not in engine.joins[0].pending


def test_an_idle_partition_stops_holding_the_watermark_back() -> None:
    now = [0.0]
    engine = TwoStages(MonitorSettings(window_s=60, grace_s=5, idle_timeout_s=10), clock=lambda: now[0])
    engine.add_prediction(prediction(1, 10, 1, 0.9), 0)
    tick(engine, 0, partition=1)  # partition 1 lags behind
    tick(engine, 100, partition=0)
    assert results_of(engine) == []

    now[0] = 11.0  # partition 1 has said nothing for longer than the idle timeout
    tick(engine, 101, partition=0)

    assert len(results_of(engine)) == 1


def test_drift_uses_the_provided_profile_or_else_one_built_from_the_first_events() -> None:
    reference = build_profile(pd.DataFrame({"x": np.arange(100.0) % 7, "city": [*"abc" * 33, "a"]}), "m", "1")
    provided = TwoStages(SETTINGS, profile_for=lambda m, v: reference if (m, v) == ("m", "1") else None)
    learned = TwoStages(MonitorSettings(window_s=60, grace_s=5, reference_first_n=10))
    for engine in (provided, learned):
        for i in range(30):
            engine.add_prediction(prediction(i, i, 1, 0.7), 0)
        tick(engine, 70)

    [with_profile] = results_of(provided)
    [with_own] = results_of(learned)

    assert with_profile.reference == "provided"
    assert {d.feature for d in with_profile.drift} == {"x", "city"}
    assert with_own.reference == "first_events"
    assert {d.feature for d in with_own.drift} >= {"x", "city", "__score__", "__predicted_label__"}
    assert all(d.psi is not None and d.psi < 0.1 for d in with_own.drift if d.feature == "x")
    own = learned.engine.own_profiles[("m", "1")]
    assert learned.engine.unpublished_profiles == [own]  # offered to reference-profiles, for every worker's joins

    # read back from reference-profiles by another worker: still the first-events reference, the same drift
    elsewhere = TwoStages(MonitorSettings(window_s=60, grace_s=5, reference_first_n=10), profile_for=lambda m, v: own)
    for i in range(30):
        elsewhere.add_prediction(prediction(i, i, 1, 0.7), 0)
    tick(elsewhere, 70)
    [read_back] = results_of(elsewhere)
    assert read_back.reference == "first_events" and read_back.drift == with_own.drift


def test_a_partition_back_from_idleness_adds_its_predictions_to_a_window_already_emitted() -> None:
    now = [0.0]
    engine = TwoStages(MonitorSettings(window_s=60, grace_s=5, idle_timeout_s=10), clock=lambda: now[0])
    engine.add_prediction(prediction(1, 10, 1, 0.9), 0)
    tick(engine, 10, partition=1)
    now[0] = 11.0  # partition 1 idles out: partition 0 alone moves the watermark past the first window
    tick(engine, 100, partition=0)
    [closed] = results_of(engine)
    assert engine.watermark() == T0 + timedelta(seconds=100)

    tick(engine, 20, partition=1)  # back, far behind: the watermark does not go back with it
    engine.add_prediction(prediction(2, 30, 1, 0.9), 1)  # in time on its partition, for a window already emitted
    assert results_of(engine) == []  # its share goes out when the window closes on partition 1 too
    tick(engine, 70, partition=1)
    [again] = results_of(engine)

    assert engine.watermark() == T0 + timedelta(seconds=100)
    assert (again.performance.predictions, again.performance.late_predictions) == (4, 0)  # and 2 ticks
    assert again.revision == closed.revision + 2  # prediction 2 and the tick at 20 s
    assert {d.feature: d.count for d in again.drift} == {d.feature: d.count + 1 for d in closed.drift}


def mixed_stream(engine: TwoStages) -> None:
    """Three partitions of predictions and labels over two windows, some labels first, then clocks past both."""
    rng = np.random.default_rng(3)
    for i in range(120):
        score = float(rng.random())
        partition = i % 3
        if i % 10 == 0:
            engine.add_feedback(feedback(i, i * 0.9, int(rng.random() < score)), partition)
        engine.add_prediction(prediction(i, i * 0.9, int(score >= 0.5), score), partition)
        if i % 10 != 0 and i % 4:
            engine.add_feedback(feedback(i, i * 0.9 + 3, int(rng.random() < score)), partition)
    for partition in range(3):
        tick(engine, 200, partition)


def chunked_mixed_stream(monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict[str, object]], TwoStages]:
    """The mixed stream's windows through three partitions, and the same stream joined again (not merged yet) with
    many small deltas per window."""
    settings = MonitorSettings(window_s=60, grace_s=5, horizon_s=3000, idle_timeout_s=1e9, min_group_count=2)
    straight = TwoStages(settings, partitions=3)
    mixed_stream(straight)
    expected = [r.model_dump() for r in straight.advance().results]
    monkeypatch.setattr(shares, "VALUES_PER_DELTA", 50)
    chunked = TwoStages(settings, partitions=3)
    mixed_stream(chunked)
    return expected, chunked


def test_replayed_and_reordered_deltas_give_the_same_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    expected, replayed = chunked_mixed_stream(monkeypatch)
    sent = [
        deltas.encode(d) for p in (2, 1, 0) for d in replayed.joins[p].deltas(0.0, replayed.context)
    ]  # partitions out of order
    for data in sent + sent[: len(sent) // 2]:  # and half of them again, as after a crash
        replayed.engine.apply(deltas.decode(data))

    assert len(sent) > 3 * 4  # chunked
    assert [r.model_dump() for r in replayed.engine.advance().results] == expected


def test_deltas_travel_several_to_a_message_in_order_under_the_bound_and_a_single_delta_still_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected, batched = chunked_mixed_stream(monkeypatch)
    encoded = [(p % 2, deltas.encode(d)) for p in (2, 1, 0) for d in batched.joins[p].deltas(0.0, batched.context)]
    bound = 4 * max(len(data) for _p, data in encoded)
    messages = deltas.batches(encoded, bound)

    assert len(encoded) > len(messages) > 2  # several deltas to a message, more than one message per partition
    assert all(len(message) <= bound for _p, message in messages)
    for target in (0, 1):  # each partition's deltas in their order
        unpacked = [d for p, message in messages if p == target for d in deltas.decode_batch(message)]
        assert [deltas.encode(d) for d in unpacked] == [data for p, data in encoded if p == target]
    for _p, message in messages:
        for delta in deltas.decode_batch(message):
            batched.engine.apply(delta)
    assert [r.model_dump() for r in batched.engine.advance().results] == expected
    [alone] = deltas.decode_batch(encoded[0][1])  # a message of one delta, as releases before sent
    assert deltas.encode(alone) == encoded[0][1]


class EarlierShareDelta(msgspec.Struct, frozen=True, tag="share"):
    """A share delta as earlier releases sent it: its rows a plain list, no row count."""

    model_id: str
    model_version: str
    window_start: datetime
    partition: int
    task: str
    revision: int
    summary: None
    first_row: int = 0
    rows: list[deltas.UnbinnedRow] = []


def test_rows_travel_encoded_are_held_so_and_rows_of_an_earlier_release_still_count() -> None:
    rows: list[deltas.UnbinnedRow] = [({"x": 1.0, "city": "a"}, 0.9, "1"), ({"x": 2.0, "city": "b"}, 0.2, "0")]
    old = msgspec.msgpack.encode(EarlierShareDelta("m", "1", T0, 0, "binary", 2, None, 0, rows))
    engine = TwoStages(SETTINGS)
    delta = deltas.decode(old)
    assert isinstance(delta, deltas.ShareDelta) and delta.rows_in() == 2
    engine.engine.apply(delta)
    again = deltas.ShareDelta(
        "m",
        "1",
        T0,
        0,
        "binary",
        3,
        deltas.NO_SUMMARY,
        first_row=1,
        rows=deltas.encode_rows([*rows[1:], rows[0]]),
        row_count=2,
    )
    engine.engine.apply(deltas.decode(deltas.encode(again)))  # one row held already, one new

    [share] = engine.engine.windows[("m", "1", T0)].shares.values()
    assert share.rows_received == 3
    assert [row for _count, chunk in share.rows for row in deltas.decode_rows(chunk)] == [*rows, rows[0]]


def test_a_join_restored_from_an_older_state_sends_its_shares_batched_otherwise_with_the_same_windows() -> None:
    settings = MonitorSettings(window_s=60, grace_s=5, horizon_s=3000, idle_timeout_s=1e9, min_group_count=2)
    straight = TwoStages(settings, partitions=3)
    mixed_stream(straight)
    expected = [r.model_dump() for r in straight.advance().results]

    crashed = TwoStages(settings, partitions=3)
    events: list[tuple[str, object, int]] = []
    recorder = TwoStages(settings, partitions=3)
    recorder.add_prediction = lambda event, partition=0: events.append(("p", event, partition))  # type: ignore[method-assign]
    recorder.add_feedback = lambda event, partition=0: events.append(("f", event, partition))  # type: ignore[method-assign]
    mixed_stream(recorder)

    def feed(stages: TwoStages, part: list[tuple[str, object, int]]) -> None:
        for kind, event, partition in part:
            (stages.add_prediction if kind == "p" else stages.add_feedback)(event, partition)  # type: ignore[arg-type]

    third = len(events) // 3
    latest = {}
    feed(crashed, events[:third])
    crashed.advance()
    saved = {p: snapshots.encode(snapshotting.join_snapshot(join, {})) for p, join in crashed.joins.items()}
    feed(crashed, events[third : 2 * third])
    latest.update({(r.model_id, r.window_start): r.model_dump() for r in crashed.advance().results})
    crashed.joins = {  # restart: the state after the checkpoint was not saved
        p: snapshotting.restore_join(snapshots.decode(state, "join"), settings, crashed.context, 0.0)  # type: ignore[arg-type]
        for p, state in saved.items()
    }
    feed(crashed, events[third:])  # read again from the checkpoint, to the end
    latest.update({(r.model_id, r.window_start): r.model_dump() for r in crashed.advance().results})

    assert len(latest) == len(expected) and list(latest.values()) == expected


def model_stream(
    model: str, start_s: float, n: int, seed: int, version: str = "1"
) -> list[tuple[PredictionEvent, FeedbackEvent]]:
    """``n`` predictions of ``model`` from ``start_s``, one every 1.5 s, each with a label a second later."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        score = float(rng.random())
        stamp = T0 + timedelta(seconds=start_s + 1.5 * i)
        ids = {"prediction_id": f"{model}-{version}-{i}", "model_id": model, "model_version": version}
        pairs.append(
            (
                prediction(i, 0, int(score >= 0.5), score, **ids, timestamp=stamp),
                FeedbackEvent(
                    prediction_id=f"{model}-{version}-{i}",
                    timestamp=stamp + timedelta(seconds=1),
                    label=int(rng.random() < score),
                    model_id=model,
                ),
            )
        )
    return pairs


def play(engine: TwoStages, pairs: list[tuple[PredictionEvent, FeedbackEvent]], spread: int = 1) -> None:
    """Send the pairs to partitions 0 and 1 in turn, ``spread`` pairs at a time."""
    for i, (event, label) in enumerate(pairs):
        engine.add_prediction(event, partition=i // spread % 2)
        engine.add_feedback(label, partition=i // spread % 2)


def windows_by_key(results: list) -> dict:
    return {(r.model_id, r.model_version, r.window_start): r.model_dump(exclude={"revision"}) for r in results}


@pytest.mark.parametrize(("ahead", "behind"), [(("a", "1"), ("b", "1")), (("m", "2"), ("m", "1"))])
def test_a_model_or_version_running_ahead_on_the_same_partitions_never_makes_another_late(
    ahead: tuple[str, str], behind: tuple[str, str]
) -> None:
    """One model (or a canary version of the same model) sends an hour ahead of the other, interleaved on both
    partitions: each version's windows close on its own progress, and the one behind gets the windows it gets
    alone."""
    early = model_stream(ahead[0], 3600, 200, seed=1, version=ahead[1])
    late = model_stream(behind[0], 0, 200, seed=2, version=behind[1])
    together = TwoStages(SETTINGS, partitions=2)
    play(together, [pair for pairs in zip(early, late, strict=True) for pair in pairs], spread=2)
    alone = TwoStages(SETTINGS, partitions=2)
    play(alone, late)

    mixed = together.advance().results
    assert {(r.model_id, r.model_version) for r in mixed} == {ahead, behind}
    assert all(r.performance.late_predictions == 0 for r in mixed)
    by_version = windows_by_key([r for r in mixed if (r.model_id, r.model_version) == behind])
    assert len(by_version) == 4 and by_version == windows_by_key(alone.advance().results)  # 5 windows, last open


def test_a_backfill_of_a_new_model_after_live_traffic_gives_the_windows_of_its_events_sent_alone() -> None:
    """A day of live traffic of one model, then yesterday's events of another: the backfill is not late."""
    live, backfill = model_stream("live", 86_400, 200, seed=3), model_stream("backfilled", 0, 300, seed=4)
    engine = TwoStages(SETTINGS, partitions=2)
    play(engine, live)
    engine.advance()
    play(engine, backfill)
    alone = TwoStages(SETTINGS, partitions=2)
    play(alone, backfill)

    backfilled = [r for r in engine.advance().results if r.model_id == "backfilled"]

    assert len(backfilled) == 7 and all(r.performance.late_predictions == 0 for r in backfilled)
    assert windows_by_key(backfilled) == windows_by_key(alone.advance().results)


def test_the_last_window_of_a_version_that_stopped_closes_once_it_idles_and_other_traffic_passes_it() -> None:
    now = [0.0]
    engine = TwoStages(MonitorSettings(window_s=60, grace_s=5, idle_timeout_s=10), clock=lambda: now[0], partitions=2)
    play(engine, model_stream("m", 0, 60, seed=5, version="1"))  # up to 88.5 s
    play(engine, model_stream("m", 90, 60, seed=6, version="2"))  # the next version takes over, up to 178.5 s
    first = {(r.model_version, r.window_start) for r in engine.advance().results}
    assert first == {("1", T0), ("2", T0 + timedelta(seconds=60))}  # version 1's last window waits for it

    now[0] = 11.0  # version 1 has been silent longer than the idle timeout; version 2 goes on
    play(engine, model_stream("m", 180, 2, seed=7, version="2"))

    [closed] = engine.advance().results
    assert (closed.model_version, closed.window_start) == ("1", T0 + timedelta(seconds=60))
    assert closed.performance.predictions == 20 and closed.performance.late_predictions == 0


def test_two_models_may_use_the_same_prediction_ids_and_each_gets_its_own_windows() -> None:
    """Models "a" and "b" number their predictions alike (a-0 and b-0 are both "shared-0"): a prediction is
    identified by (model, id), and each model's windows equal those it gets alone."""

    def renamed(model: str, seed: int) -> list[tuple[PredictionEvent, FeedbackEvent]]:
        pairs = model_stream(model, 0, 120, seed=seed)
        return [
            (
                event.model_copy(update={"prediction_id": f"shared-{i}"}),
                label.model_copy(update={"prediction_id": f"shared-{i}"}),
            )
            for i, (event, label) in enumerate(pairs)
        ]

    first, second = renamed("a", 8), renamed("b", 9)
    together = TwoStages(SETTINGS, partitions=2)
    play(together, [pair for pairs in zip(first, second, strict=True) for pair in pairs], spread=2)
    tick(together, 200, 0, "a"), tick(together, 200, 1, "a"), tick(together, 200, 0, "b"), tick(together, 200, 1, "b")
    mixed = windows_by_key([r for r in together.advance().results if r.window_start < T0 + timedelta(seconds=180)])
    for model, pairs in (("a", first), ("b", second)):
        alone = TwoStages(SETTINGS, partitions=2)
        play(alone, pairs)
        tick(alone, 200, 0, model), tick(alone, 200, 1, model)
        expected = windows_by_key(alone.advance().results)
        assert len(expected) == 3 and {k: v for k, v in mixed.items() if k[0] == model} == expected
        assert all(v["performance"]["labelled"] == v["performance"]["predictions"] for v in expected.values())


def test_a_label_counts_by_its_own_time_whichever_topic_is_read_first() -> None:
    """A label 290 s after the end of its window (horizon 300 s) counts, one 310 s after does not, whether the
    labels are read after their predictions or the whole feedback topic first."""
    late_ones = [feedback(1, 60 + 290, 1), feedback(2, 60 + 310, 1)]

    def windows(feedback_first: bool) -> tuple[int, int]:
        engine = TwoStages(SETTINGS)
        if feedback_first:
            for label in late_ones:
                engine.add_feedback(label)
        engine.add_prediction(prediction(1, 10, 1, 0.9))
        engine.add_prediction(prediction(2, 20, 1, 0.9))
        tick(engine, 362)  # the predictions move past end + horizon, within the grace: the labels still count
        if not feedback_first:
            for label in late_ones:
                engine.add_feedback(label)
        tick(engine, 366)  # past end + horizon + grace
        [result] = [r for r in results_of(engine) if r.window_start == T0]
        return result.performance.labelled, result.performance.orphan_feedback

    assert windows(feedback_first=False) == windows(feedback_first=True) == (1, 0)
