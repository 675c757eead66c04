"""``driftline demo``: the whole path on a few hundred events, from a producer to rows in ClickHouse.

For now it proves the foundation: start the local broker, create the topics, produce predictions with
confluent-kafka, consume them with the worker's Faust app and store them in the embedded ClickHouse, then
print what landed. The simulator's scenario story replaces the middle part.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer

from driftline.local_kafka import LocalKafka
from driftline.pipeline import run_until
from driftline.schemas.errors import BrokerError
from driftline.schemas.topics import PREDICTIONS
from driftline.settings import Settings
from driftline.sinks.clickhouse import is_embedded, open_configured
from driftline.topics import broker_answers, create_topics

MODELS = (("credit-risk", "1.0"), ("churn", "2.3"))


def sample_predictions(count: int, seed: int) -> list[dict[str, object]]:
    """``count`` plausible binary-classifier prediction events, seeded, one second apart in event time."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    events: list[dict[str, object]] = []
    for index in range(count):
        model_id, version = MODELS[index % len(MODELS)]
        score = rng.random()
        events.append(
            {
                "prediction_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "model_id": model_id,
                "model_version": version,
                "timestamp": int((start + timedelta(seconds=index)).timestamp() * 1000),
                "features": {"age": rng.randint(18, 90), "income": round(rng.lognormvariate(10, 0.5), 2)},
                "prediction": {"label": int(score >= 0.5), "score": round(score, 4)},
            }
        )
    return events


def produce(settings: Settings, events: list[dict[str, object]]) -> None:
    """Send one message per event to the predictions topic, keyed by prediction id; raise on delivery errors."""
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap, "enable.idempotence": True})
    errors: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    topic = settings.topic(PREDICTIONS.name)
    for event in events:
        producer.produce(
            topic,
            json.dumps(event).encode(),
            key=str(event["prediction_id"]).encode(),
            on_delivery=on_delivery,
        )
        producer.poll(0)
    if producer.flush(30) or errors:
        raise BrokerError(f"could not deliver every demo event to {topic}: {errors[:3] or 'flush timed out'}")


def run_demo(settings: Settings, events: int, seed: int, say: Callable[[str], None]) -> list[tuple[object, ...]]:
    """Run the demo and return the per-model rows read back from ClickHouse."""
    if broker_answers(settings.kafka.bootstrap, timeout_s=3.0):
        say(f"Using the Kafka broker that answers at {settings.kafka.bootstrap}")
    elif settings.kafka.bootstrap == LocalKafka(settings).bootstrap:
        LocalKafka(settings, log=say).start()
    else:
        raise BrokerError(f"no Kafka answers at {settings.kafka.bootstrap} (DRIFTLINE_KAFKA_BOOTSTRAP)")
    say(f"Topics: {create_topics(settings)}")
    dsn = settings.clickhouse_dsn
    client = open_configured(settings)
    try:
        say(f"Producing {events} prediction events to {settings.topic(PREDICTIONS.name)} ...")
        produce(settings, sample_predictions(events, seed))
        say("Consuming them with the Faust worker and storing them in ClickHouse ...")
        store = run_until(settings, client, lambda s: s.stored >= events)
        say(f"Stored {store.stored} predictions in {'embedded ' if is_embedded(dsn) else ''}ClickHouse ({dsn})")
        result = client.query(
            "SELECT model_id, model_version, count() AS predictions, min(timestamp) AS first, "
            "max(timestamp) AS last FROM predictions FINAL GROUP BY model_id, model_version ORDER BY model_id"
        )
        return [tuple(row) for row in result.result_rows]
    finally:
        client.close()
