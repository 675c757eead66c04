"""Security basics against a local broker whose listener is SASL_SSL (keytool certificates, SASL/PLAIN users in
the broker's JAAS config): the producer client, the sink and the worker work with the right credentials and
never log the password; a wrong password fails fast with an error naming the bootstrap. The privacy setting
keeps raw feature values out of ClickHouse and the window aggregates unchanged."""

from __future__ import annotations

import logging
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from driftline.client.producer import Monitor
from driftline.devtools.local_broker import LocalKafka
from driftline.devtools.secured_broker import SecuredListener
from driftline.kafka.topics import create_topics
from driftline.pipeline import run_in_process
from driftline.schemas.errors import BrokerError
from driftline.settings import KafkaSettings, Settings
from driftline.sinks.clickhouse import drop_database, open_client
from driftline.sinks.sink import Sink
from tests.conftest import local_broker_settings
from tests.integration.running import DRIFTLINE, sink_running, wait_for, worker_env, worker_running
from tests.integration.streams import MODEL, Stream, on_client, stored, windowed

pytestmark = pytest.mark.integration

PASSWORD = secrets.token_urlsafe(16)
WRONG = "not-" + PASSWORD


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka, SecuredListener]]:
    """A broker of this module's own whose only client listener is SASL_SSL; user ``alice`` may log in."""
    home = tmp_path_factory.mktemp("secured")
    listener = SecuredListener.create(home / "tls", {"alice": PASSWORD})
    broker = LocalKafka(local_broker_settings(home), log=print, secured=listener)
    broker.start()
    try:
        yield broker, listener
    finally:
        broker.stop()


def secured(settings: Settings, broker: LocalKafka, listener: SecuredListener, password: str = PASSWORD) -> Settings:
    """The test's settings pointed at the secured broker, logging in as alice with ``password``."""
    kafka: dict[str, Any] = {
        **settings.kafka.model_dump(),
        "bootstrap": broker.bootstrap,
        **listener.kafka_settings("alice", password),
    }
    return windowed(settings).model_copy(update={"kafka": KafkaSettings.model_validate(kafka)})


def security_env(kafka: KafkaSettings) -> dict[str, str]:
    """The ``DRIFTLINE_KAFKA_*`` variables of a process that logs in as ``kafka`` says."""
    assert kafka.sasl_username is not None and kafka.sasl_password is not None
    return {
        "DRIFTLINE_KAFKA_SECURITY_PROTOCOL": kafka.security_protocol,
        "DRIFTLINE_KAFKA_SASL_MECHANISM": kafka.sasl_mechanism,
        "DRIFTLINE_KAFKA_SASL_USERNAME": kafka.sasl_username,
        "DRIFTLINE_KAFKA_SASL_PASSWORD": kafka.sasl_password.get_secret_value(),
        "DRIFTLINE_KAFKA_SSL_CA_LOCATION": str(kafka.ssl_ca_location),
    }


def test_producer_sink_and_worker_work_through_sasl_ssl_and_never_log_the_password(
    *,
    secured_broker: tuple[LocalKafka, SecuredListener],
    settings: Settings,
    clickhouse: Client,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = secured(settings, *secured_broker)
    create_topics(settings)
    stream = Stream.make(windows=2, per_window=100)
    stream.send(settings)

    windows = (
        f"SELECT predictions, labelled FROM performance_windows_latest WHERE model_id = '{MODEL}' ORDER BY window_start"
    )

    with (
        worker_running(worker_env(settings, tmp_path, **security_env(settings.kafka))),
        sink_running(settings, clickhouse),
    ):
        # (a window's labels read after it closed come in its next revision, monitor.republish_s later)
        wait_for(
            lambda: (
                clickhouse.query(windows).result_rows == [(100, 100), (100, 100)]
                and stored(on_client(clickhouse)).events == stream.events
            ),
            timeout_s=90,
        )

    result = stored(on_client(clickhouse))
    assert (result.predictions, result.feedback, result.duplicated) == (200, 200, 0)
    assert clickhouse.query(windows).result_rows == [(100, 100), (100, 100)]
    worker_log = (tmp_path / "worker.log").read_text(errors="replace")
    out, err = capfd.readouterr()
    for output in (worker_log, caplog.text, out, err):
        assert PASSWORD not in output


def test_a_wrong_password_fails_fast_naming_the_bootstrap_in_the_producer_the_sink_and_the_worker(
    secured_broker: tuple[LocalKafka, SecuredListener], settings: Settings, clickhouse: Client, tmp_path: Path
) -> None:
    broker, listener = secured_broker
    wrong = secured(settings, broker, listener, WRONG)
    refused = f"Kafka at {broker.bootstrap} refused authentication (SASL_SSL PLAIN as user 'alice')"

    started = time.monotonic()
    with pytest.raises(BrokerError) as producer_error:
        Monitor(MODEL, "1", settings=wrong, envelopes=False).log_prediction({"age": 1}, label=1, score=0.9)
    producer_s = time.monotonic() - started

    started = time.monotonic()
    with pytest.raises(BrokerError) as sink_error:
        Sink(wrong, clickhouse).run(lambda: time.monotonic() - started > 60)
    sink_s = time.monotonic() - started

    started = time.monotonic()
    worker = subprocess.run(
        [DRIFTLINE, "worker"],
        env=worker_env(wrong, tmp_path, **security_env(wrong.kafka)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    worker_s = time.monotonic() - started

    assert refused in str(producer_error.value) and producer_s < 10
    assert refused in str(sink_error.value) and sink_s < 10
    assert worker.returncode == 2, worker.stderr[-2000:]
    assert f"error: {refused}" in worker.stderr and worker_s < 60
    for text in (str(producer_error.value), str(sink_error.value), worker.stdout, worker.stderr):
        assert WRONG not in text and PASSWORD not in text


def test_privacy_setting_stores_raw_predictions_without_features_and_the_same_window_aggregates(
    settings: Settings, clickhouse: Client
) -> None:
    settings = windowed(settings, reference_first_n=50)  # drift against the first 50 predictions
    create_topics(settings)
    stream = Stream.make(windows=2, per_window=60, seed=3)
    stream.send(settings)
    run_in_process(settings, lambda stages: stages.counts["windows_emitted"] >= 2, timeout_s=90)
    private_database = f"{settings.clickhouse.database}_private"
    private = settings.model_copy(
        update={
            "clickhouse": settings.clickhouse.model_copy(
                update={"database": private_database, "store_raw_features": False}
            ),
            "sink": settings.sink.model_copy(update={"group_id": f"{settings.sink.group_id}-private"}),
        }
    )
    private_client = open_client(settings.clickhouse_dsn, private_database)
    windows = f"SELECT count() FROM performance_windows_latest WHERE model_id = '{MODEL}'"
    try:
        for config, client in ((settings, clickhouse), (private, private_client)):
            with sink_running(config, client):
                wait_for(lambda c=client: stored(on_client(c)).events == stream.events and c.command(windows) == 2)

        features = (
            "SELECT countIf(length(features_numeric) > 0), countIf(length(features_categorical) > 0), "
            "countIf(length(features_missing) > 0), count() FROM predictions FINAL "
            f"WHERE model_id = '{MODEL}' AND NOT startsWith(prediction_id, 'clock-')"
        )
        aggregates = (
            "SELECT window_start, feature, count, psi, wasserstein, jensen_shannon, missing_rate "
            f"FROM drift_windows_latest WHERE model_id = '{MODEL}' AND feature IN ('age', 'city') "
            "ORDER BY window_start, feature"
        )
        assert clickhouse.query(features).result_rows == [(120, 120, 0, 120)]
        assert private_client.query(features).result_rows == [(0, 0, 0, 120)]
        kept = clickhouse.query(aggregates).result_rows
        assert len(kept) == 4 and all(row[2] == 60 and row[3] is not None for row in kept)  # age, city; 2 windows
        assert private_client.query(aggregates).result_rows == kept
    finally:
        drop_database(private_client, private_database)
        private_client.close()
