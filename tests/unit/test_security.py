"""Security settings: one derivation of the Kafka client configuration (librdkafka and Faust), validation that
names the setting, refused connections as clear errors, and secrets that never reach output or messages."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import faust
import pytest
from typer.testing import CliRunner

from driftline.cli import app as cli
from driftline.client.producer import Monitor
from driftline.schemas.errors import BrokerError, ConfigError, StorageError
from driftline.settings import KafkaSettings, load_settings
from driftline.sinks.clickhouse import open_configured
from driftline.streams.faust.app import create_app

SECRET = "s3cret-Pa55word"


pytestmark = pytest.mark.usefixtures("no_driftline_environment")


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    """A file standing in for a CA bundle (the settings only require it to exist)."""
    path = tmp_path / "ca.pem"
    path.write_text(Path(ssl.get_default_verify_paths().openssl_cafile).read_text())
    return path


def sasl_ssl(ca_file: Path, **extra: Any) -> KafkaSettings:
    values = {
        "bootstrap": "kafka-1:9093,kafka-2:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "driftline",
        "sasl_password": SECRET,
        "ssl_ca_location": ca_file,
        **extra,
    }
    return KafkaSettings.model_validate(values)


def test_plaintext_client_config_is_the_bootstrap_and_the_protocol() -> None:
    config = KafkaSettings().client_config()

    assert {k: v for k, v in config.items() if k not in ("error_cb", "logger")} == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "PLAINTEXT",
    }
    assert callable(config["error_cb"])


def test_sasl_ssl_client_config_carries_login_and_trust(ca_file: Path) -> None:
    config = sasl_ssl(ca_file).client_config()

    assert {k: v for k, v in config.items() if k not in ("error_cb", "logger")} == {
        "bootstrap.servers": "kafka-1:9093,kafka-2:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "driftline",
        "sasl.password": SECRET,
        "ssl.ca.location": str(ca_file),
        "ssl.endpoint.identification.algorithm": "https",
    }


def test_ssl_without_hostname_check_tells_librdkafka_and_the_python_context(ca_file: Path) -> None:
    kafka = KafkaSettings(security_protocol="SSL", ssl_ca_location=ca_file, ssl_check_hostname=False)

    config = kafka.client_config()
    context = kafka.ssl_context()

    assert config["ssl.endpoint.identification.algorithm"] == "none"
    assert "sasl.username" not in config
    assert context is not None and context.check_hostname is False and context.verify_mode == ssl.CERT_REQUIRED
    assert KafkaSettings().ssl_context() is None


def test_faust_gets_the_same_security_as_credentials(tmp_path: Path, ca_file: Path) -> None:
    secured = load_settings(data_dir=tmp_path, kafka=sasl_ssl(ca_file).model_dump())
    tls_only = load_settings(data_dir=tmp_path, kafka={"security_protocol": "SSL", "ssl_ca_location": ca_file})

    sasl = create_app(secured).conf.broker_credentials
    tls = create_app(tls_only).conf.broker_credentials

    assert isinstance(sasl, faust.SASLCredentials)
    assert (sasl.protocol.value, sasl.mechanism.value, sasl.username, sasl.password) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "driftline",
        SECRET,
    )
    assert isinstance(sasl.ssl_context, ssl.SSLContext) and sasl.ssl_context.check_hostname
    assert SECRET not in repr(sasl)
    assert isinstance(tls, faust.SSLCredentials) and tls.protocol.value == "SSL"
    assert create_app(load_settings(data_dir=tmp_path)).conf.broker_credentials is None


@pytest.mark.parametrize(
    ("kafka", "expected"),
    [
        ({"security_protocol": "SASL_SSL", "sasl_password": SECRET}, "DRIFTLINE_KAFKA_SASL_USERNAME=None"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u"}, "DRIFTLINE_KAFKA_SASL_PASSWORD=None"),
        ({"sasl_username": "u", "sasl_password": SECRET}, "DRIFTLINE_KAFKA_SASL_PASSWORD='****': Value error, set"),
        ({"security_protocol": "TLS"}, "DRIFTLINE_KAFKA_SECURITY_PROTOCOL='TLS'"),
        ({"security_protocol": "SSL", "ssl_ca_location": "/no/ca.pem"}, "DRIFTLINE_KAFKA_SSL_CA_LOCATION='/no/ca.pem'"),
        ({"sasl_mechanism": "GSSAPI"}, "DRIFTLINE_KAFKA_SASL_MECHANISM='GSSAPI'"),
    ],
)
def test_inconsistent_security_settings_name_the_setting_and_never_echo_the_password(
    kafka: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(kafka=kafka)

    assert expected in str(error.value)
    assert SECRET not in str(error.value)


def test_password_of_the_wrong_type_from_the_environment_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA", f'{{"sasl_password": ["{SECRET}"]}}')

    with pytest.raises(ConfigError) as error:
        load_settings()

    assert "DRIFTLINE_KAFKA_SASL_PASSWORD='****': Input should be a valid string" in str(error.value)
    assert SECRET not in str(error.value)


class FakeKafkaError:
    """What librdkafka hands its error callback."""

    def __init__(self, name: str, text: str) -> None:
        self._name, self._text = name, text

    def name(self) -> str:
        return self._name

    def str(self) -> str:
        return self._text


def test_refused_login_and_failed_tls_raise_broker_errors_that_name_the_bootstrap_and_the_user(ca_file: Path) -> None:
    on_error = sasl_ssl(ca_file).client_config()["error_cb"]

    with pytest.raises(BrokerError) as refused:
        on_error(FakeKafkaError("_AUTHENTICATION", "SASL authentication error: Authentication failed"))
    with pytest.raises(BrokerError) as handshake:
        on_error(FakeKafkaError("_SSL", "SSL handshake failed: certificate verify failed"))
    on_error(FakeKafkaError("_TRANSPORT", "Connection refused"))  # librdkafka reconnects by itself

    assert "Kafka at kafka-1:9093,kafka-2:9093 refused authentication" in str(refused.value)
    assert "as user 'driftline'" in str(refused.value) and "DRIFTLINE_KAFKA_SASL_PASSWORD" in str(refused.value)
    assert "TLS handshake with Kafka at kafka-1:9093,kafka-2:9093 failed" in str(handshake.value)
    assert "DRIFTLINE_KAFKA_SSL_CA_LOCATION" in str(handshake.value)
    assert SECRET not in str(refused.value) + str(handshake.value)


def test_config_show_masks_the_kafka_password_in_the_table_and_in_json(
    monkeypatch: pytest.MonkeyPatch, ca_file: Path
) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_USERNAME", "driftline")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("DRIFTLINE_KAFKA_SSL_CA_LOCATION", str(ca_file))

    table = CliRunner().invoke(cli, ["config", "show"])
    as_json = CliRunner().invoke(cli, ["config", "show", "--json"])

    assert table.exit_code == 0 and as_json.exit_code == 0, table.output + as_json.output
    assert SECRET not in table.output and SECRET not in as_json.output
    assert '"sasl_password": "**********"' in as_json.output
    assert "kafka.sasl_password" in table.output and "SASL_SSL" in table.output


@pytest.fixture
def clickhouse_server() -> Iterator[tuple[int, list[str]]]:
    """A stand-in ClickHouse HTTP server that records the Authorization header and refuses every query."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _refuse(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            body = b"Code: 516. DB::Exception: analyst: Authentication failed. (AUTHENTICATION_FAILED)"
            self.send_response(401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._refuse()

        def do_POST(self) -> None:
            self._refuse()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port, seen
    finally:
        server.shutdown()
        server.server_close()


def test_clickhouse_password_reaches_an_http_server_and_not_the_error(
    clickhouse_server: tuple[int, list[str]],
) -> None:
    import base64

    port, seen = clickhouse_server
    settings = load_settings(clickhouse={"dsn": f"http://analyst@127.0.0.1:{port}", "password": SECRET})

    with pytest.raises(StorageError) as error:
        open_configured(settings)

    assert seen and seen[0] == "Basic " + base64.b64encode(f"analyst:{SECRET}".encode()).decode()
    assert f"127.0.0.1:{port}" in str(error.value)
    assert SECRET not in str(error.value)


def test_the_documented_sasl_ssl_example_configures_every_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ca_file: Path
) -> None:
    security = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    section = security.split("## A secured Kafka and a ClickHouse server", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "secured.toml"
    config.write_text(example.replace("/etc/driftline/kafka-ca.pem", str(ca_file)))
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("DRIFTLINE_CLICKHOUSE_PASSWORD", "ch-" + SECRET)

    settings = load_settings(config)

    client = settings.kafka.client_config()
    assert (client["security.protocol"], client["sasl.mechanism"], client["sasl.username"]) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "driftline",
    )
    assert client["sasl.password"] == SECRET and client["ssl.ca.location"] == str(ca_file)
    assert (
        settings.clickhouse.password is not None and settings.clickhouse.password.get_secret_value() == "ch-" + SECRET
    )
    assert settings.clickhouse.store_raw_features is False


def test_a_refusal_met_by_the_linger_thread_is_raised_by_the_next_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monitor = Monitor("credit-risk", "1", settings=load_settings(data_dir=tmp_path), linger_s=0.02)
    refusal = BrokerError("Kafka at 127.0.0.1:9092 refused authentication (SASL_SSL PLAIN as user 'alice')")

    def refused(force: bool) -> None:
        raise refusal

    monkeypatch.setattr(monitor, "_send_due", refused)  # what librdkafka's error callback raises mid-run
    deadline = time.monotonic() + 10
    while monitor._refused is None and time.monotonic() < deadline:
        time.sleep(0.01)

    with pytest.raises(BrokerError) as error:
        monitor.log_prediction({"age": 41}, label=1, score=0.8)
    assert error.value is refusal
