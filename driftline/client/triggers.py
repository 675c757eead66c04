"""``driftline triggers``: follow retraining decisions on their topic, or list recent ones from ClickHouse.

``tail`` reads the ``retrain-triggers`` topic without a consumer group's commits (it never takes messages
away from a real subscriber) and shows each decision once, by ``trigger_id``, as it arrives. ``recent`` asks
the ``retrain_triggers`` table (through a running sink's read-only endpoint, or the database itself).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END
from pydantic import ValidationError

from driftline.kafka.reader import topic_reader
from driftline.schemas.results import RetrainTrigger
from driftline.schemas.topics import RETRAIN_TRIGGERS
from driftline.settings import Settings
from driftline.sinks.sql_endpoint import query

POLL_S = 0.5


def tail(
    settings: Settings,
    show: Callable[[RetrainTrigger], None],
    *,
    from_beginning: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    timeout_s: float | None = None,
) -> int:
    """Call ``show`` once per new decision until ``should_stop()`` or ``timeout_s``; return how many."""
    topic = settings.topic(RETRAIN_TRIGGERS.name)
    consumer, _partitions = topic_reader(
        settings.kafka, topic, "tail", OFFSET_BEGINNING if from_beginning else OFFSET_END
    )
    seen: set[str] = set()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while not should_stop() and (deadline is None or time.monotonic() < deadline):
            message = consumer.poll(POLL_S)
            if message is None or message.error() is not None or message.value() is None:
                continue
            try:
                trigger = RetrainTrigger.model_validate_json(message.value())  # type: ignore[arg-type]
            except ValidationError:
                continue  # the sink stores it as a dead letter
            if trigger.trigger_id not in seen:
                seen.add(trigger.trigger_id)
                show(trigger)
    finally:
        consumer.close()
    return len(seen)


def recent(settings: Settings, limit: int = 20, model_id: str | None = None) -> pd.DataFrame:
    """The latest ``limit`` decisions stored in ClickHouse, newest first (optionally of one model)."""
    where = "" if model_id is None else f"WHERE model_id = '{model_id.replace(chr(39), chr(39) * 2)}'"
    return query(
        settings,
        "SELECT created_at, model_id, model_version, severity, rules, window_start, window_end, trigger_id "
        f"FROM retrain_triggers FINAL {where} ORDER BY created_at DESC, trigger_id LIMIT {int(limit)}",
    )
