"""The producer client against the real broker: it never builds a message the pipeline refuses, a message it
cannot send is an error its caller sees, and one client serves many models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from driftline.client.producer import Monitor
from driftline.kafka.topics import create_topics
from driftline.schemas.decoding import EventDecoder, Origin
from driftline.schemas.errors import ContractError
from driftline.schemas.events import PredictionEvent
from driftline.settings import Settings
from tests.integration.running import read_topic

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in epoch ms


def test_wide_events_with_a_long_linger_travel_in_envelopes_under_the_consumers_limit(settings: Settings) -> None:
    """250 numeric features, 500 events per envelope and 5 s of linger would make 3.5 MB envelopes: the client
    cuts them by bytes, so the worker's and the sink's decoder take every event and reject none."""
    create_topics(settings)
    rng = np.random.default_rng(0)
    with Monitor("wide", "1", settings=settings, max_batch=500, linger_s=5.0) as monitor:
        for i in range(2_000):
            features = {f"f{j:03d}": float(value) for j, value in enumerate(rng.normal(size=250))}
            monitor.log_prediction(features, label=i % 2, score=0.5, prediction_id=f"w-{i}", timestamp=T0 + i)
    assert monitor.errors == []

    limit = settings.kafka.max_message_bytes
    values = read_topic(settings, "predictions")
    decoder = EventDecoder(PredictionEvent, "prediction", limit)
    decoded = [decoder.decode(value, Origin("predictions", 0, i)) for i, value in enumerate(values)]
    assert max(len(value) for value in values) <= limit
    assert sum(len(result.events) for result in decoded) == 2_000
    assert [letter for result in decoded for letter in result.dead_letters] == []
    assert len(values) < 2_000 / 10  # still envelopes, not one event per message


def test_an_event_larger_than_a_message_may_be_is_refused_when_logged(settings: Settings) -> None:
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"max_message_bytes": 50_000})})
    create_topics(settings)
    wide = {f"text{j}": "x" * 1_000 for j in range(60)}  # valid, but 60 kB of JSON
    with Monitor("wide", "1", settings=settings) as monitor:
        with pytest.raises(ContractError, match="max_message_bytes") as refused:
            monitor.log_prediction(wide, label=1, score=0.5, prediction_id="huge")
        assert refused.value.field == "features"
        monitor.log_prediction({"text": "fits"}, label=1, score=0.5, prediction_id="small")  # the client goes on
    [value] = read_topic(settings, "predictions")
    assert [event["prediction_id"] for event in json.loads(value)] == ["small"]


def test_one_client_sends_for_many_models_named_per_call(settings: Settings) -> None:
    create_topics(settings)
    with Monitor(settings=settings) as monitor:
        for i in range(1_200):
            model = f"model-{i % 1_200}"
            pid = monitor.log_prediction(
                {"x": float(i)}, label=1, score=0.9, model_id=model, model_version="1", timestamp=T0 + i
            )
            monitor.log_feedback(pid, label=1, model_id=model, timestamp=T0 + i + 1)
        with pytest.raises(ContractError, match="model_id"):
            monitor.log_prediction({"x": 1.0}, label=1, score=0.9)  # no model named anywhere
    events = [event for value in read_topic(settings, "predictions") for event in json.loads(value)]
    labels = [event for value in read_topic(settings, "feedback") for event in json.loads(value)]
    assert len({event["model_id"] for event in events}) == 1_200
    assert {event["model_id"] for event in labels} == {event["model_id"] for event in events}
