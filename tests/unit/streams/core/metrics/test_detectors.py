"""Streaming detectors: ADWIN on the error indicator and Page-Hinkley on the score mean, fed by the window
engine in event-time slices so that the same events fire at the same event whatever their arrival order."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
from river.drift import ADWIN, PageHinkley

from driftline.schemas.events import FeedbackEvent, PredictionEvent
from driftline.schemas.monitoring import MonitorSettings
from driftline.streams.core.metrics.detectors import DetectorSettings, ModelDetectors
from tests.two_stage import TwoStages

T0 = datetime(2026, 3, 1, tzinfo=UTC)
# the grace covers the reordering below (up to 20 s of event time): within it, arrival order does not matter
SETTINGS = MonitorSettings(window_s=600, grace_s=25, horizon_s=3600, idle_timeout_s=1e9, detector_slice_s=30)


def first_river_detection(detector: ADWIN | PageHinkley, values: list[float]) -> int | None:
    for index, value in enumerate(values):
        detector.update(value)
        if detector.drift_detected:
            return index
    return None


def test_adwin_alarm_is_at_the_event_where_river_adwin_detects_a_rise_in_errors() -> None:
    rng = np.random.default_rng(3)
    errors = [float(e) for e in (rng.random(3000) < np.where(np.arange(3000) < 1500, 0.1, 0.4))]

    alarms = ModelDetectors(DetectorSettings()).feed_errors(errors)

    expected = first_river_detection(ADWIN(), errors)
    assert expected is not None and 1500 <= expected < 1800
    assert alarms[0].index == expected and alarms[0].detector == "adwin"
    assert alarms[0].estimate > 0.15  # above the 10% before the change


def test_adwin_stays_quiet_when_the_error_rate_falls() -> None:
    rng = np.random.default_rng(4)
    errors = [float(e) for e in (rng.random(3000) < np.where(np.arange(3000) < 1500, 0.4, 0.05))]

    assert first_river_detection(ADWIN(), errors) is not None  # River sees the change ...
    assert ModelDetectors(DetectorSettings()).feed_errors(errors) == []  # ... good news


def test_page_hinkley_alarm_is_at_the_event_where_river_detects_the_score_shift() -> None:
    rng = np.random.default_rng(5)
    scores = [float(s) for s in np.clip(rng.normal(np.where(np.arange(4000) < 2000, 0.3, 0.45), 0.1), 0, 1)]

    alarms = ModelDetectors(DetectorSettings()).feed_scores(scores)

    expected = first_river_detection(PageHinkley(), scores)
    assert expected is not None and expected >= 2000
    assert alarms[0].index == expected and alarms[0].detector == "page_hinkley"
    assert 0.4 < alarms[0].estimate < 0.5


def stream(seed: int) -> list[PredictionEvent | FeedbackEvent]:
    """A model whose error rate jumps from 10% to 50% at 20 minutes; each label 2 s after its prediction."""
    rng = np.random.default_rng(seed)
    events: list[PredictionEvent | FeedbackEvent] = []
    for i in range(2400):
        second = i * 1.0
        score = float(rng.uniform(0.6, 1.0))
        wrong = rng.random() < (0.1 if second < 1200 else 0.5)
        events.append(
            PredictionEvent.model_validate(
                {
                    "prediction_id": f"p{i:05d}",
                    "model_id": "m",
                    "model_version": "1",
                    "timestamp": T0 + timedelta(seconds=second),
                    "prediction": {"label": 1, "score": score},
                }
            )
        )
        events.append(
            FeedbackEvent(
                prediction_id=f"p{i:05d}",
                timestamp=T0 + timedelta(seconds=second + 2),
                label=0 if wrong else 1,
                model_id="m",
            )
        )
    return events


def clock(at: datetime) -> PredictionEvent:
    """A prediction of another model that moves the watermark to ``at``."""
    return PredictionEvent.model_validate(
        {
            "prediction_id": "clock",
            "model_id": "clock",
            "model_version": "0",
            "timestamp": at,
            "prediction": {"value": 0.0},
        }
    )


def run(events: list[PredictionEvent | FeedbackEvent], advance_every: int) -> list:
    engine = TwoStages(SETTINGS)
    alarms = []
    for n, event in enumerate(events):
        if isinstance(event, PredictionEvent):
            engine.add_prediction(event, 0)
        else:
            engine.add_feedback(event, 0)
        if n % advance_every == 0:
            alarms += engine.advance().alarms
    engine.add_prediction(clock(T0 + timedelta(hours=2)), 0)
    return alarms + engine.advance().alarms


def test_adwin_fires_in_the_window_of_the_change_at_the_same_event_whatever_the_arrival_order() -> None:
    events = stream(seed=11)
    shuffled = list(events)
    block = 40  # reorder within 40-event blocks (20 s of event time): producers' batching skew
    for start in range(0, len(shuffled), block):
        chunk = shuffled[start : start + block]
        random.Random(start).shuffle(chunk)
        shuffled[start : start + block] = chunk

    in_order = [(key, alarm) for key, alarm in run(events, advance_every=97) if alarm.detector == "adwin"]
    reordered = [(key, alarm) for key, alarm in run(shuffled, advance_every=13) if alarm.detector == "adwin"]

    assert in_order and in_order == reordered
    key, alarm = in_order[0]
    assert key.window_start == T0 + timedelta(seconds=1200)  # the window in which the errors rose
    assert alarm.fired_at < T0 + timedelta(seconds=1200 + 300)  # within five minutes of event time


def test_window_result_carries_its_alarms_and_their_count_raises_the_revision() -> None:
    engine = TwoStages(SETTINGS)
    for event in stream(seed=12):
        if isinstance(event, PredictionEvent):
            engine.add_prediction(event, 0)
        else:
            engine.add_feedback(event, 0)
    engine.add_prediction(clock(T0 + timedelta(hours=2)), 0)

    emission = engine.advance()

    [changed] = [r for r in emission.results if r.window_start == T0 + timedelta(seconds=1200)]
    assert any(alarm.detector == "adwin" for alarm in changed.alarms)
    assert changed.revision == changed.performance.predictions + changed.performance.labelled + len(changed.alarms)
    assert [alarm for _key, alarm in emission.alarms if _key.window_start == changed.window_start] == changed.alarms


def test_a_label_behind_the_detector_frontier_is_counted_late_but_still_joins_its_window() -> None:
    engine = TwoStages(SETTINGS)
    engine.add_prediction(
        PredictionEvent.model_validate(
            {
                "prediction_id": "p",
                "model_id": "m",
                "model_version": "1",
                "timestamp": T0,
                "prediction": {"label": 1, "score": 0.9},
            }
        ),
        0,
    )
    engine.add_prediction(
        PredictionEvent.model_validate(
            {
                "prediction_id": "q",
                "model_id": "m",
                "model_version": "1",
                "timestamp": T0 + timedelta(seconds=100),
                "prediction": {"label": 1, "score": 0.9},
            }
        ),
        0,
    )
    engine.add_feedback(FeedbackEvent(prediction_id="q", timestamp=T0 + timedelta(seconds=101), label=1), 0)
    engine.advance()  # both watermarks are at 100 s: the first slices are fed

    engine.add_feedback(FeedbackEvent(prediction_id="p", timestamp=T0 + timedelta(seconds=1), label=0), 0)
    engine.advance()

    assert engine.engine.detector_late == 1
    join = engine.joins[0]
    join.fold(engine.context)  # (an open window's share adds its events up when it goes out, or at a checkpoint)
    assert join.shares[("m", "1", T0)].summary.labelled == 2  # p and q: both count in their window
