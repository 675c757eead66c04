"""``driftline demo``: a model in production, from the producer to windows in ClickHouse.

Starts the local broker (or uses one that answers), creates the topics, publishes a reference profile built
from simulated training data, then streams a binary classifier's predictions and late labels through the
real worker and sink: a stable period, then covariate drift in ``income`` and an accuracy drop. It prints
what the windows show. (The scenario simulator of a later release tells the longer story.)
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from driftline.local_kafka import LocalKafka
from driftline.pipeline import run_in_process
from driftline.producer import Monitor
from driftline.reference import build_and_publish
from driftline.schemas.errors import BrokerError
from driftline.settings import Settings
from driftline.sinks.clickhouse import drop_database, open_configured
from driftline.sinks.sink import Sink
from driftline.topics import broker_answers, create_topics, delete_topics

MODEL = ("credit-risk", "1.0")
DEMO_PREFIX = "driftline-demo."
DEMO_DATABASE = "driftline_demo"
START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Scenario:
    """How many windows, how many predictions each, and from which window the world changes."""

    windows: int = 6
    per_window: int = 400
    drift_from: int = 3
    window_s: float = 60.0


def simulate(rng: np.random.Generator, n: int, drifted: bool) -> pd.DataFrame:
    """``n`` applicants with a calibrated score; when ``drifted``, incomes fall and the score goes stale."""
    age = rng.normal(42, 11, n).clip(18, 90).round()
    income = rng.lognormal(10.6 if not drifted else 10.1, 0.4, n).round(2)
    city = rng.choice(["Oslo", "Lyon", "Porto"], n, p=[0.5, 0.3, 0.2])
    gender = rng.choice(["f", "m"], n)
    logit = -4 + 0.35 * np.log(income) - 0.01 * (age - 40)
    score = 1 / (1 + np.exp(-logit))
    truth_logit = logit if not drifted else -logit  # the relation the model learnt no longer holds
    label = (rng.random(n) < 1 / (1 + np.exp(-truth_logit))).astype(int)
    return pd.DataFrame(
        {"age": age, "income": income, "city": city, "gender": gender, "score": score.round(4), "truth": label}
    )


def produce(settings: Settings, scenario: Scenario, seed: int) -> int:
    """Send every window's predictions, then their labels (late, as in production); return events sent."""
    rng = np.random.default_rng(seed)
    events: list[tuple[datetime, int, dict[str, object]]] = []  # (event time, order, event)
    for window in range(scenario.windows + 1):  # one more window, so the last one closes
        frame = simulate(rng, scenario.per_window, drifted=window >= scenario.drift_from)
        start = START + timedelta(seconds=window * scenario.window_s)
        age, income, city, gender = (frame[c].tolist() for c in ("age", "income", "city", "gender"))
        score, truth = frame["score"].tolist(), frame["truth"].tolist()
        for i in range(len(frame)):
            stamp = start + timedelta(seconds=float(rng.uniform(0, scenario.window_s)))
            prediction_id = f"w{window}-{i}-{seed}"
            prediction = {
                "features": {"age": age[i], "income": income[i], "city": city[i]},
                "label": int(score[i] >= 0.5),
                "score": float(score[i]),
                "prediction_id": prediction_id,
                "timestamp": stamp,
                "sensitive": {"gender": gender[i]},
            }
            events.append((stamp, len(events), prediction))
            if rng.random() < 0.8:  # a fifth never gets a label; the rest arrive later, as in production
                labelled = stamp + timedelta(seconds=float(rng.exponential(20)))
                events.append(
                    (
                        labelled,
                        len(events),
                        {"prediction_id": prediction_id, "label": int(truth[i]), "timestamp": labelled},
                    )
                )
    events.sort(key=lambda item: (item[0], item[1]))  # each stream in event-time order
    with Monitor(*MODEL, settings=settings) as monitor:
        for _stamp, _order, event in events:
            if "features" in event:
                monitor.log_prediction(**event)  # type: ignore[arg-type]
            else:
                monitor.log_feedback(**event)  # type: ignore[arg-type]
    sent = len(events)
    return sent


def demo_settings(settings: Settings, scenario: Scenario) -> Settings:
    """The demo's own namespace (topic prefix, database, consumer groups), so it can run again and again and
    never touches a real deployment's data; its windows are a minute of event time."""
    run = uuid.uuid4().hex[:8]
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"topic_prefix": DEMO_PREFIX}),
            "clickhouse": settings.clickhouse.model_copy(update={"database": DEMO_DATABASE}),
            "worker": settings.worker.model_copy(update={"app_id": f"driftline-demo-{run}"}),
            "sink": settings.sink.model_copy(update={"group_id": f"driftline-demo-sink-{run}"}),
            "monitor": settings.monitor.model_copy(update={"window_s": scenario.window_s, "grace_s": 5.0}),
        }
    )


def run_demo(
    settings: Settings, seed: int, say: Callable[[str], None], scenario: Scenario | None = None
) -> pd.DataFrame:
    """Run the demo in its own namespace; return the windows it produced, read back from ClickHouse."""
    scenario = scenario or Scenario()
    settings = demo_settings(settings, scenario)
    if broker_answers(settings.kafka, timeout_s=3.0):
        say(f"Using the Kafka broker that answers at {settings.kafka.bootstrap}")
    elif settings.kafka.bootstrap == LocalKafka(settings).bootstrap:
        LocalKafka(settings, log=say).start()
    else:
        raise BrokerError(f"no Kafka answers at {settings.kafka.bootstrap} (DRIFTLINE_KAFKA_BOOTSTRAP)")
    if deleted := delete_topics(settings):
        say(f"Removed the previous demo's {len(deleted)} topics")
    for old in (settings.data_path / "worker").glob("driftline-demo-*.checkpoint"):
        old.unlink()
    say(f"Topics: {', '.join(sorted(create_topics(settings)))}")
    training = simulate(np.random.default_rng(seed + 1), 5000, drifted=False)
    build_and_publish(settings, training.rename(columns={"truth": "label"}), *MODEL, ["age", "income", "city"])
    say("Published the reference profile built from 5,000 simulated training rows")
    sent = produce(settings, scenario, seed)
    say(
        f"Sent {sent} events ({scenario.windows} windows of {scenario.window_s:.0f} s event time; drift from window "
        f"{scenario.drift_from + 1})"
    )

    client = open_configured(settings)
    drop_database(client, DEMO_DATABASE)  # the previous demo's rows
    client.close()
    client = open_configured(settings)
    stop = threading.Event()
    sink = Sink(settings, client)
    loader = threading.Thread(target=sink.run, args=(stop.is_set,), name="driftline-sink")
    loader.start()
    try:
        say("Running the worker and the sink ...")
        run_in_process(settings, lambda m: m.counts["windows_emitted"] >= scenario.windows, timeout_s=180)
        deadline = datetime.now(UTC) + timedelta(seconds=60)
        while sink.stats.rows["performance_windows"] < scenario.windows and datetime.now(UTC) < deadline:
            stop.wait(0.2)
        return client.query_df(
            """
            SELECT p.window_start AS window, p.predictions, p.labelled,
                   round(p.accuracy, 3) AS accuracy, round(p.estimated_accuracy, 3) AS estimated,
                   round(d.psi, 3) AS income_psi, round(f.demographic_parity_ratio, 3) AS parity_ratio
            FROM performance_windows_latest AS p
            LEFT JOIN (SELECT * FROM drift_windows_latest WHERE feature = 'income') AS d
                USING (model_id, model_version, window_start)
            LEFT JOIN (SELECT * FROM fairness_windows_latest WHERE `group` = 'f') AS f
                USING (model_id, model_version, window_start)
            WHERE p.model_id = {m:String} ORDER BY window
            """,
            parameters={"m": MODEL[0]},
        )
    finally:
        stop.set()
        loader.join()
        client.close()
