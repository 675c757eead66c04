"""A simulated stream reaches the real broker whole: every event once, on its key's partition, every
malformed message a dead letter with the reason the simulator expected."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from confluent_kafka import Consumer, murmur2

from driftline.kafka.topics import create_topics
from driftline.schemas.decoding import EventDecoder, Origin
from driftline.schemas.events import FeedbackEvent, PredictionEvent
from driftline.settings import Settings
from driftline.simulation.scenarios import scenario
from driftline.simulation.simulator import Simulation
from driftline.simulation.traffic import send
from driftline.simulation.world import SimulationConfig, model_names

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("fast", "envelopes"), [(False, True), (True, False)], ids=["producer-client-envelopes", "fast-single-events"]
)
def test_simulated_stream_arrives_whole_and_co_partitioned(settings: Settings, fast: bool, envelopes: bool) -> None:
    create_topics(settings)
    config = SimulationConfig(
        models=model_names(2),
        predictions=600,
        duration_s=600,
        label_delay_s=30,
        malformed_share=0.05,
        scenario=scenario("story", 600),
    )
    report = send(Simulation(config), settings, fast=fast, envelopes=envelopes)
    assert report.events == report.predictions + report.feedback + report.malformed
    assert (report.predictions, report.malformed > 10) == (600, True)

    decoders = {
        settings.topic("predictions"): EventDecoder(PredictionEvent, "prediction"),
        settings.topic("feedback"): EventDecoder(FeedbackEvent, "feedback"),
    }
    partition_of: dict[tuple[str, str], int] = {}
    reasons: Counter[str] = Counter()
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(list(decoders))
    deadline = time.monotonic() + 60
    try:
        while len(partition_of) + sum(reasons.values()) < report.events and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            origin = Origin(str(message.topic()), int(message.partition() or 0), int(message.offset() or 0))
            result = decoders[origin.topic].decode(message.value(), origin)
            for decoded in result.events:
                partition_of[(origin.topic, decoded.event.prediction_id)] = origin.partition
            reasons.update(str(letter.reason) for letter in result.dead_letters)
    finally:
        consumer.close()

    topics = Counter(topic for topic, _ in partition_of)
    assert topics == {settings.topic("predictions"): report.predictions, settings.topic("feedback"): report.feedback}
    assert reasons == report.by_reason
    for (topic, prediction_id), partition in partition_of.items():
        assert partition == murmur2(prediction_id.encode(), settings.kafka.partitions), topic
