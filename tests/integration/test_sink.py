"""Producer client → real broker → sink → embedded ClickHouse: every good event once, every bad one a dead
letter with its reason, replays and ClickHouse outages change nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError
from confluent_kafka import Producer
from typer.testing import CliRunner

from driftline.cli import app
from driftline.client.backfill import backfill
from driftline.client.producer import Monitor
from driftline.kafka.topics import create_topics
from driftline.schemas.ddl import SCHEMA_VERSION
from driftline.schemas.errors import ConfigError
from driftline.schemas.results import (
    FeatureDrift,
    FeatureProfile,
    GroupFairness,
    Performance,
    ReferenceProfile,
    RetrainTrigger,
    TriggerReason,
    WindowResult,
    trigger_id,
)
from driftline.schemas.tables import PERFORMANCE_WINDOWS
from driftline.settings import Settings
from driftline.sinks.clickhouse import open_configured
from driftline.sinks.sink import Sink
from tests.integration.running import read_topic, sink_running, wait_for, worker_env, worker_running

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in epoch ms

BAD_MESSAGES: dict[str, bytes] = {
    "not_json": b"\xff\xfenot json",
    "wrong_shape": b'"just a string"',
    "missing_field": b'{"prediction_id": "bad-1", "model_id": "m", "timestamp": 1767225600000,'
    b' "prediction": {"label": 1, "score": 0.5}}',
    "wrong_type": b'{"prediction_id": "bad-2", "model_id": "m", "model_version": "1", "timestamp": 1767225600000,'
    b' "features": {"age": [1, 2]}, "prediction": {"label": 1, "score": 0.5}}',
    "not_finite": b'{"prediction_id": "bad-3", "model_id": "m", "model_version": "1", "timestamp": 1767225600000,'
    b' "prediction": {"value": NaN}}',
    "unknown_model_type": b'{"prediction_id": "bad-4", "model_id": "m", "model_version": "1",'
    b' "timestamp": 1767225600000, "prediction": {"class": "cat"}}',
    "timestamp_out_of_range": b'{"prediction_id": "bad-5", "model_id": "m", "model_version": "1",'
    b' "timestamp": 1767225600, "prediction": {"label": 1, "score": 0.5}}',
    "oversized": b'{"prediction_id": "bad-6", "pad": "' + b"x" * 1_100_000 + b'"}',
}


def produce_raw(settings: Settings, messages: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap, "message.max.bytes": 8_000_000})
    for value in messages:
        producer.produce(settings.topic("predictions"), value, partition=0)
    assert producer.flush(30) == 0


def documented_queries() -> list[str]:
    """The queries of docs/tables.md (its first SQL block)."""
    tables = (Path(__file__).resolve().parents[2] / "docs" / "tables.md").read_text()
    block = tables.split("```sql\n", 1)[1].split("```", 1)[0]
    return [q.strip() for q in block.split(";") if q.strip()]


def count(client: Client, table: str) -> int:
    return int(client.command(f"SELECT count() FROM {table} FINAL"))


def run_sink_until(sink: Sink, done: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    sink.run(lambda: done() or time.monotonic() > deadline)
    assert done(), f"sink stopped at the deadline with {dict(sink.stats.rows)}"


def send_good_events(settings: Settings, envelopes: bool, prefix: str, n: int) -> list[str]:
    with Monitor("credit-risk", "1.0", settings=settings, envelopes=envelopes, max_batch=7) as monitor:
        ids = [
            monitor.log_prediction(
                {"age": 20 + i, "city": "Lyon" if i % 2 else "Oslo", "vip": i % 3 == 0, "income": None},
                label=i % 2,
                score=(i % 10) / 10,
                prediction_id=f"{prefix}-{i}",
                timestamp=T0 + i * 1000,
                sensitive={"gender": "f" if i % 2 else "m"},
            )
            for i in range(n)
        ]
        for i, prediction_id in enumerate(ids[: n // 2]):
            monitor.log_feedback(prediction_id, label=(i + 1) % 2, timestamp=T0 + 60_000 + i)
    return ids


def test_good_events_land_once_bad_ones_are_dead_letters_and_a_replay_adds_nothing(
    settings: Settings, clickhouse: Client
) -> None:
    create_topics(settings)
    single = send_good_events(settings, envelopes=False, prefix="single", n=20)
    batched = send_good_events(settings, envelopes=True, prefix="batch", n=30)
    produce_raw(settings, list(BAD_MESSAGES.values()))
    expected = {"predictions": 50, "feedback": 25, "dead_letters": len(BAD_MESSAGES)}

    sink = Sink(settings, clickhouse)
    run_sink_until(sink, lambda: all(count(clickhouse, t) == n for t, n in expected.items()))

    assert sorted(clickhouse.query("SELECT prediction_id FROM predictions FINAL").result_columns[0]) == sorted(
        single + batched
    )
    reasons = dict(clickhouse.query("SELECT reason, count() FROM dead_letters FINAL GROUP BY reason").result_rows)
    assert reasons == dict.fromkeys(BAD_MESSAGES, 1)
    original, message = clickhouse.query(
        "SELECT original, message FROM dead_letters FINAL WHERE reason = 'wrong_type'"
    ).result_rows[0]
    assert original.encode() == BAD_MESSAGES["wrong_type"] if isinstance(original, str) else original
    assert "bad-2" in message and "features.age" in message and "[1, 2]" in message
    row = clickhouse.query(
        "SELECT features_numeric['age'], features_categorical['city'], features_numeric['vip'], features_missing, "
        "sensitive['gender'], label, score FROM predictions FINAL WHERE prediction_id = 'batch-3'"
    ).result_rows[0]
    assert row == (23.0, "Lyon", 1.0, ["income"], "f", "1", 0.3)

    # replay everything from offset 0 under a new consumer group: no new rows
    replay = Settings.model_validate(
        {
            **settings.model_dump(),
            "sink": {**settings.sink.model_dump(), "group_id": settings.sink.group_id + "-replay"},
        }
    )
    again = Sink(replay, clickhouse)
    # it re-reads every event, and every dead letter twice: the first run's and the one it republishes
    reread = {**expected, "dead_letters": 2 * len(BAD_MESSAGES)}
    run_sink_until(again, lambda: all(again.stats.rows[t] >= n for t, n in reread.items()))
    assert dict(again.stats.rows) == reread
    assert {t: count(clickhouse, t) for t in expected} == expected


class FlakyClient:
    """A ClickHouse client whose first ``failures`` inserts fail as if the server were unreachable."""

    def __init__(self, client: Client, failures: int) -> None:
        self.client = client
        self.failures = failures

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise OperationalError("connection refused (injected outage)")
        return self.client.insert(*args, **kwargs)


def test_clickhouse_outage_mid_stream_loses_nothing_and_duplicates_nothing(
    settings: Settings, clickhouse: Client
) -> None:
    create_topics(settings)
    ids = send_good_events(settings, envelopes=True, prefix="outage", n=40)
    flaky = FlakyClient(clickhouse, failures=4)

    sink = Sink(settings, flaky)  # type: ignore[arg-type]
    run_sink_until(sink, lambda: count(clickhouse, "predictions") == len(ids) and count(clickhouse, "feedback") == 20)

    assert sink.stats.insert_retries >= 4
    assert clickhouse.command("SELECT count() FROM predictions") == len(ids)  # not even unmerged duplicates


def window_result(revision: int, accuracy: float) -> WindowResult:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return WindowResult(
        model_id="credit-risk",
        model_version="1.0",
        window_start=start,
        window_end=start + timedelta(hours=1),
        revision=revision,
        reference="provided",
        performance=Performance(task="binary", predictions=100, labelled=revision - 100, accuracy=accuracy),
        drift=[
            FeatureDrift(feature="age", kind="numeric", count=100, psi=0.31, ks_pvalue=0.001),
            FeatureDrift(feature="city", kind="categorical", count=98, missing_rate=0.02, new_category_share=0.1),
        ],
        fairness=[
            GroupFairness(
                attribute="gender",
                group=g,
                count=50,
                below_min_count=False,
                selection_rate=rate,
                selection_rate_ci=(rate - 0.1, rate + 0.1),
                demographic_parity_ratio=0.75,
            )
            for g, rate in (("f", 0.3), ("m", 0.4))
        ],
    )


def accuracy_trigger(start: datetime, evidence: list[str] | None = None) -> RetrainTrigger:
    """An accuracy_below decision on credit-risk 1.0 for the hour from ``start``."""
    reason = TriggerReason(
        rule="accuracy_below",
        metric="accuracy",
        observed=0.7,
        threshold=0.85,
        window_start=start,
        window_end=start + timedelta(hours=1),
        sample_count=60,
    )
    return RetrainTrigger(
        trigger_id=trigger_id("credit-risk", "1.0", start, ["accuracy_below"]),
        model_id="credit-risk",
        model_version="1.0",
        created_at=start + timedelta(hours=1),
        window_start=start,
        window_end=start + timedelta(hours=1),
        severity="critical",
        reasons=[reason],
        evidence=evidence or [],
    )


def test_window_results_keep_the_latest_revision_and_triggers_and_profiles_land_once(
    settings: Settings, clickhouse: Client
) -> None:
    create_topics(settings)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    trigger = accuracy_trigger(start, ["performance_windows/credit-risk/1.0/2026-01-01T00:00:00+00:00"])
    profile = ReferenceProfile(
        model_id="credit-risk",
        model_version="1.0",
        source="training_data",
        rows=1000,
        created_at=start,
        features={"age": FeatureProfile(kind="numeric", count=1000, missing_rate=0.0, spread=12.0)},
    )
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap})
    for topic, message in [
        ("window-results", window_result(140, 0.9)),
        ("window-results", window_result(160, 0.7)),  # late labels: a higher revision
        ("window-results", window_result(140, 0.9)),  # a replayed older revision must not win
        ("retrain-triggers", trigger),
        ("retrain-triggers", trigger),  # published twice (at-least-once): one row
        ("reference-profiles", profile),
    ]:
        producer.produce(settings.topic(topic), message.model_dump_json().encode(), key=message.key.encode())
    assert producer.flush(30) == 0

    sink = Sink(settings, clickhouse)
    run_sink_until(sink, lambda: sink.stats.messages >= 6)

    assert clickhouse.query("SELECT revision, accuracy, labelled FROM performance_windows_latest").result_rows == [
        (160, 0.7, 60)
    ]
    drift = clickhouse.query("SELECT feature, psi, new_category_share FROM drift_windows_latest ORDER BY feature")
    assert drift.result_rows == [("age", 0.31, None), ("city", None, 0.1)]
    fairness = clickhouse.query(
        "SELECT `group`, selection_rate, selection_rate_ci FROM fairness_windows_latest ORDER BY `group`"
    ).result_rows
    assert fairness == [("f", 0.3, pytest.approx([0.2, 0.4])), ("m", 0.4, pytest.approx([0.3, 0.5]))]
    assert clickhouse.query("SELECT trigger_id, rules, severity FROM retrain_triggers FINAL").result_rows == [
        (trigger.trigger_id, ["accuracy_below"], "critical")
    ]
    assert clickhouse.query("SELECT features, rows FROM reference_profiles FINAL").result_rows == [(["age"], 1000)]


def test_a_batch_holding_a_window_result_is_stored_without_waiting_for_the_batch_to_fill(
    settings: Settings, clickhouse: Client
) -> None:
    create_topics(settings)
    settings = settings.model_copy(
        update={"sink": settings.sink.model_copy(update={"batch_seconds": 120.0, "results_seconds": 0.1})}
    )
    send_good_events(settings, envelopes=True, prefix="raw", n=20)  # raw events alone wait for the batch
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap})
    result = window_result(140, 0.9)
    producer.produce(settings.topic("window-results"), result.model_dump_json().encode(), key=result.key.encode())
    assert producer.flush(30) == 0

    sink = Sink(settings, clickhouse)
    sink.consumer.subscribe(list(sink.topics.values()))
    started = time.monotonic()
    stored = 0
    while not sink.stats.rows["performance_windows"] and time.monotonic() - started < 60:
        stored += sink.step()
    sink.consumer.close()
    sink.dead_letters.close()

    assert time.monotonic() - started < 60  # long before the 120 s a batch of raw events may collect for
    assert sink.stats.rows["performance_windows"] == 1
    assert count(clickhouse, "performance_windows") == 1 and stored >= 1


def test_backfill_sends_a_parquet_of_predictions_and_a_csv_of_labels(
    settings: Settings, clickhouse: Client, tmp_path: Path
) -> None:
    create_topics(settings)
    predictions = pd.DataFrame(
        {
            "prediction_id": [f"bf-{i}" for i in range(30)],
            "timestamp": pd.date_range("2026-02-01", periods=30, freq="min", tz="UTC"),
            "age": range(30),
            "city": ["Oslo", "Lyon", None] * 10,
            "gender": ["f", "m"] * 15,
            "label": [i % 2 for i in range(30)],
            "score": [i / 30 for i in range(30)],
        }
    )
    predictions.to_parquet(tmp_path / "predictions.parquet")
    predictions[["prediction_id", "label"]].head(10).to_csv(tmp_path / "labels.csv", index=False)
    seen: list[tuple[int, int]] = []

    sent = backfill(
        settings,
        tmp_path / "predictions.parquet",
        "churn",
        "3",
        sensitive_columns=("gender",),
        progress=lambda done, total: seen.append((done, total)),
    )
    labels = backfill(settings, tmp_path / "labels.csv", "churn", "3", feedback=True)

    assert (sent.rows, labels.rows, seen[-1]) == (30, 10, (30, 30))
    assert (sent.first, sent.last) == (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 1, 0, 29, tzinfo=UTC))
    assert labels.first is None  # the labels file has no timestamps: they were stamped as sent
    sink = Sink(settings, clickhouse)
    run_sink_until(sink, lambda: count(clickhouse, "predictions") == 30 and count(clickhouse, "feedback") == 10)
    row = clickhouse.query(
        "SELECT features_numeric['age'], features_missing, sensitive['gender'], toString(timestamp) "
        "FROM predictions FINAL WHERE prediction_id = 'bf-5'"
    ).result_rows
    assert row == [(5.0, ["city"], "m", "2026-02-01 00:05:00.000")]
    with pytest.raises(ConfigError, match=r"missing column\(s\) \['region'\]"):
        backfill(settings, tmp_path / "predictions.parquet", "churn", "3", sensitive_columns=("region",))


def test_documented_queries_answer_on_what_the_sink_stored(settings: Settings, clickhouse: Client) -> None:
    create_topics(settings)
    send_good_events(settings, envelopes=True, prefix="readme", n=40)
    produce_raw(settings, [BAD_MESSAGES["not_json"], BAD_MESSAGES["not_json"], BAD_MESSAGES["missing_field"]])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    trigger = accuracy_trigger(start)
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap})
    for topic, message in [("window-results", window_result(160, 0.7)), ("retrain-triggers", trigger)]:
        producer.produce(settings.topic(topic), message.model_dump_json().encode(), key=message.key.encode())
    assert producer.flush(30) == 0
    sink = Sink(settings, clickhouse)
    run_sink_until(
        sink,
        lambda: (
            count(clickhouse, "dead_letters") == 3
            and count(clickhouse, "retrain_triggers") == 1
            and count(clickhouse, "predictions") == 40
            and count(clickhouse, "performance_windows") == 1
        ),
    )

    queries = documented_queries()
    assert len(queries) == 6
    accuracy, drift, fairness, coverage, letters, triggers = (clickhouse.query(q).result_rows for q in queries)

    naive = start.replace(tzinfo=None)  # clickhouse-connect returns UTC times without a zone
    assert accuracy == [("credit-risk", "1.0", naive, 0.7, None, None, None)]
    assert [(feature, psi) for _, feature, psi, _ in drift] == [("age", 0.31), ("city", None)]
    assert [(group, ratio) for _, _, _, group, _, ratio in fairness] == [("f", 0.75), ("m", 0.75)]
    assert coverage == [("credit-risk", 0.5)]
    assert letters == [("not_json", 2), ("missing_field", 1)]
    assert triggers == [(naive + timedelta(hours=1), "credit-risk", "1.0", "critical", ["accuracy_below"])]


def test_a_second_label_is_stored_and_feedback_counted_shows_the_one_the_windows_count(
    settings: Settings, clickhouse: Client
) -> None:
    create_topics(settings)
    with Monitor("credit-risk", "1.0", settings=settings, envelopes=False) as monitor:
        monitor.log_prediction({"age": 30}, label=1, score=0.9, prediction_id="twice", timestamp=T0)
        monitor.log_prediction({"age": 31}, label=1, score=0.9, prediction_id="other", timestamp=T0)
        monitor.log_feedback("twice", label=1, timestamp=T0 + 1000)
        monitor.log_feedback("twice", label=0, timestamp=T0 + 2000)  # a correction: stored, not counted
        monitor.log_feedback("other", label=0, timestamp=T0 + 1000)
    sink = Sink(settings, clickhouse)
    run_sink_until(sink, lambda: count(clickhouse, "feedback") == 3)

    counted = clickhouse.query("SELECT prediction_id, label FROM feedback_counted ORDER BY prediction_id")
    assert counted.result_rows == [("other", "0"), ("twice", "1")]


def test_a_label_contradicting_its_prediction_is_a_dead_letter_of_the_worker_and_feedback_counted_leaves_it_out(
    settings: Settings, clickhouse: Client, tmp_path: Path
) -> None:
    """A model never pinned predicts 0/1; a 'yes' label is stored in feedback (it is a valid event), the worker
    refuses it when it meets its prediction and publishes a label_type_mismatch dead letter at its origin, and
    feedback_counted shows no label for that prediction (its first label decided) while the other keeps its own."""
    create_topics(settings)
    with Monitor("churn", "1", settings=settings, envelopes=False) as monitor:
        monitor.log_prediction({"age": 30}, label=1, score=0.9, prediction_id="yes-man", timestamp=T0)
        monitor.log_prediction({"age": 31}, label=0, score=0.2, prediction_id="plain", timestamp=T0)
        monitor.log_feedback("yes-man", label="yes", timestamp=T0 + 1000)
        monitor.log_feedback("yes-man", label=1, timestamp=T0 + 2000)  # after the first: not counted either
        monitor.log_feedback("plain", label=0, timestamp=T0 + 1000)

    def refused() -> list[tuple[Any, ...]]:
        return clickhouse.query(
            "SELECT reason, message FROM dead_letters FINAL WHERE reason = 'label_type_mismatch'"
        ).result_rows

    with worker_running(worker_env(settings, tmp_path)), sink_running(settings, clickhouse):
        wait_for(lambda: count(clickhouse, "feedback") == 3 and len(refused()) == 1, timeout_s=120)

    [(_reason, message)] = refused()
    assert "'yes-man'" in message and "got 'yes'" in message
    counted = clickhouse.query("SELECT prediction_id, label FROM feedback_counted ORDER BY prediction_id")
    assert counted.result_rows == [("plain", "0")]


def test_the_backfill_command_says_what_it_sent_and_when_its_windows_are_complete(
    settings: Settings, tmp_path: Path
) -> None:
    create_topics(settings)
    path = tmp_path / "predictions.csv"
    stamps = pd.date_range("2026-02-01 10:00", periods=30, freq="min", tz="UTC")
    pd.DataFrame({"prediction_id": [f"c-{i}" for i in range(30)], "timestamp": stamps, "age": range(30)}).assign(
        label=1, score=0.9
    ).to_csv(path, index=False)
    env = worker_env(settings, tmp_path, DRIFTLINE_MONITOR_WINDOW_S="3600", DRIFTLINE_MONITOR_IDLE_TIMEOUT_S="10")

    result = CliRunner().invoke(app, ["backfill", str(path), "--model", "churn", "--version", "4"], env=env)

    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Sent 30 prediction events for churn 4, event time 2026-02-01 10:00:00 to 2026-02-01 10:29:00" in text
    assert "the last one, ending 2026-02-01 11:00:00, once churn 4 has been quiet for 10 s" in text
    assert "model_id = 'churn' AND model_version = '4'" in text


def test_reference_build_takes_the_columns_by_name_and_refuses_an_unnamed_label(
    settings: Settings, tmp_path: Path
) -> None:
    create_topics(settings)
    path = tmp_path / "training.csv"
    pd.DataFrame(
        {"age": range(40), "gender": ["f", "m"] * 20, "p": [0, 1, 1, 1] * 10, "label": [0, 1] * 20, "score": 0.5}
    ).to_csv(path, index=False)
    env = worker_env(settings, tmp_path)
    build = ["reference", "build", "--model", "churn", "--version", "5", "--from", str(path)]

    refused = CliRunner().invoke(app, build, env=env)
    columns = ["--label-column", "label", "--prediction-column", "p", "-s", "gender"]
    named = CliRunner().invoke(app, [*build, *columns], env=env)

    assert isinstance(refused.exception, ConfigError)  # `driftline` prints it as one line and exits with 2
    assert "column 'label' is ambiguous" in str(refused.exception)
    assert named.exit_code == 0, named.output
    [profile] = [ReferenceProfile.model_validate_json(value) for value in read_topic(settings, "reference-profiles")]
    assert set(profile.features) == {"age", "__score__", "__predicted_label__"}
    assert profile.features["__predicted_label__"].category_shares == {"1": 0.75, "0": 0.25}
    assert profile.performance is not None and profile.performance.accuracy == 0.75  # (p, label): 3 of 4 agree
    assert "Reference performance: binary, 40 predictions, 40 labelled, accuracy 0.7500" in named.output


def test_tables_of_an_older_release_get_the_new_columns_and_their_views_show_them(
    settings: Settings, clickhouse: Client
) -> None:
    """A database made before ``too_few_samples`` and the reference's accuracy existed (those columns dropped,
    its view made on the old columns) gains them at the next start, old rows keeping their defaults."""
    database = settings.clickhouse.database
    new = ["too_few_samples", "reference_accuracy", "reference_estimated_accuracy"]
    for column in new:
        clickhouse.command(f"ALTER TABLE {database}.performance_windows DROP COLUMN {column}")
    clickhouse.command(
        f"CREATE OR REPLACE VIEW {database}.performance_windows_latest AS "
        f"SELECT * FROM {database}.performance_windows FINAL"
    )
    clickhouse.command(
        f"INSERT INTO {database}.performance_windows (model_id, model_version, window_start, window_end, revision, "
        "reference, task, predictions, labelled) VALUES ('old', '1', '2026-01-01', '2026-01-01 01:00:00', 1, "
        "'none', 'binary', 5, 0)"
    )
    assert (
        "too_few_samples" not in clickhouse.query(f"SELECT * FROM {database}.performance_windows_latest").column_names
    )

    reopened = open_configured(settings)
    try:
        answer = reopened.query(f"SELECT * FROM {database}.performance_windows_latest")
        row = dict(zip(answer.column_names, answer.result_rows[0], strict=True))
        assert [name for name in answer.column_names if name in new] == new
        assert list(answer.column_names) == PERFORMANCE_WINDOWS.column_names
        assert (row["model_id"], row["too_few_samples"], row["reference_accuracy"]) == ("old", False, None)
        assert reopened.query(f"SELECT max(version) FROM {database}.schema_version").result_rows == [(SCHEMA_VERSION,)]
    finally:
        reopened.close()
