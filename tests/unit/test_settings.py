"""Settings resolve from defaults, TOML and DRIFTLINE_* variables, and bad values name the variable."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from driftline.cli import app
from driftline.kafka import client_hooks
from driftline.schemas.errors import ConfigError
from driftline.settings import env_var_name, load_settings
from driftline.settings_report import setting_sources

pytestmark = pytest.mark.usefixtures("no_driftline_environment")


def test_defaults_point_at_the_local_broker_and_an_absolute_embedded_clickhouse(tmp_path: Path) -> None:
    settings = load_settings()

    assert settings.kafka.bootstrap == "127.0.0.1:9092"
    assert settings.topic("predictions") == "driftline.predictions"
    assert settings.clickhouse_dsn == f"chdb://{tmp_path.resolve() / '.driftline' / 'clickhouse'}"
    assert settings.clickhouse_dsn.startswith("chdb:///")


def test_environment_overrides_toml_which_overrides_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "custom.toml"
    config.write_text('data_dir = "/srv/dl"\n[kafka]\npartitions = 12\ntopic_prefix = "prod."\n')
    monkeypatch.setenv("DRIFTLINE_KAFKA_PARTITIONS", "6")

    settings = load_settings(config)

    assert settings.kafka.partitions == 6
    assert settings.kafka.topic_prefix == "prod."
    assert settings.clickhouse_dsn == "chdb:///srv/dl/clickhouse"


def test_driftline_toml_in_the_working_directory_is_read_and_driftline_config_points_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "driftline.toml").write_text("[worker]\nweb_port = 7000\n")
    assert load_settings().worker.web_port == 7000

    other = tmp_path / "other.toml"
    other.write_text("[worker]\nweb_port = 7001\n")
    monkeypatch.setenv("DRIFTLINE_CONFIG", str(other))
    assert load_settings().worker.web_port == 7001


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DRIFTLINE_KAFKA_PARTITIONS", "many", "valid integer"),
        ("DRIFTLINE_KAFKA_PARTITIONS", "0", "greater than or equal to 1"),
        ("DRIFTLINE_BROKER_PORT", "70000", "less than or equal to 65535"),
        ("DRIFTLINE_BROKER_HEAP", "lots", "match pattern"),
        ("DRIFTLINE_CLICKHOUSE_DATABASE", "drop table", "match pattern"),
    ],
)
def test_bad_value_names_the_variable_the_value_and_the_expectation(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as error:
        load_settings()

    assert f"{variable}={value!r}" in str(error.value)
    assert expected in str(error.value)


def test_unknown_key_in_toml_and_missing_config_file_are_errors(tmp_path: Path) -> None:
    config = tmp_path / "typo.toml"
    config.write_text("[kafka]\nbootstrapp = 'x:1'\n")
    with pytest.raises(ConfigError, match=r"DRIFTLINE_KAFKA_BOOTSTRAPP.*typo.toml"):
        load_settings(config)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")


def test_env_var_name_joins_the_location() -> None:
    assert env_var_name(("kafka", "topic_prefix")) == "DRIFTLINE_KAFKA_TOPIC_PREFIX"
    assert env_var_name(("data_dir",)) == "DRIFTLINE_DATA_DIR"


def test_a_misspelt_setting_in_the_environment_is_an_error_naming_the_closest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA_PARTITONS", "8")
    with pytest.raises(ConfigError, match=r"DRIFTLINE_KAFKA_PARTITONS \(did you mean DRIFTLINE_KAFKA_PARTITIONS\?\)"):
        load_settings()
    monkeypatch.delenv("DRIFTLINE_KAFKA_PARTITONS")
    monkeypatch.setenv("DRIFTLINE_MODEL_ID", "churn")  # not a section of settings: a retrain command's variable
    assert load_settings().kafka.partitions == 4


# -- where each setting comes from (`driftline config show`) --------------------------------------------------


def write_config(path: Path) -> Path:
    path.write_text(
        'data_dir = "/srv/dl"\n[kafka]\npartitions = 12\ntopic_prefix = "prod."\n'
        '[policy.psi_above]\nfeatures = ["age"]\n[policy.wasserstein_above]\nthreshold = 0.5\n'
    )
    return path


def test_each_setting_names_its_source_a_variable_the_file_or_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(Path("custom.toml"))  # relative to the test's working directory, as given
    monkeypatch.setenv("DRIFTLINE_KAFKA_PARTITIONS", "6")  # over the file's 12
    monkeypatch.setenv("DRIFTLINE_SINK_METRICS_PORT", "7067")

    sources = setting_sources(config)

    assert sources["kafka.partitions"] == "env DRIFTLINE_KAFKA_PARTITIONS"
    assert sources["sink.metrics_port"] == "env DRIFTLINE_SINK_METRICS_PORT"
    assert sources["kafka.topic_prefix"] == "file custom.toml"
    assert sources["data_dir"] == "file custom.toml"
    assert sources["kafka.bootstrap"] == "default"
    assert sources["clickhouse.dsn"] == "default"  # derived from data_dir, but not set
    assert sources["models"] == "default"
    dumped = load_settings(config).model_dump()
    sections = [name for name in dumped if name not in ("data_dir", "models")]
    assert list(sources) == ["data_dir", *(f"{s}.{key}" for s in sections for key in dumped[s]), "models"]


def test_the_file_found_without_config_is_named_by_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    Path("driftline.toml").write_text("[worker]\nweb_port = 7000\n")
    assert setting_sources()["worker.web_port"] == "file driftline.toml"

    other = write_config(Path("other.toml"))
    monkeypatch.setenv("DRIFTLINE_CONFIG", str(other.resolve()))
    sources = setting_sources()
    assert sources["worker.web_port"] == "default"  # driftline.toml is not read when DRIFTLINE_CONFIG names a file
    assert sources["kafka.partitions"] == f"file {other.resolve()}"


def test_a_section_variable_and_a_setting_merged_from_two_sources_name_what_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config(Path("custom.toml"))
    monkeypatch.setenv("DRIFTLINE_WORKER", '{"web_port": 7000}')  # a whole section as JSON
    monkeypatch.setenv("DRIFTLINE_POLICY_PSI_ABOVE", '{"threshold": 0.25}')  # merged with the file's features
    monkeypatch.setenv("DRIFTLINE_POLICY_WASSERSTEIN_ABOVE", '{"threshold": 0.4}')  # the file's only key, overridden
    monkeypatch.setenv("driftline_sink_batch_rows", "5")  # names match regardless of case

    settings, sources = load_settings(config), setting_sources(config)

    assert settings.worker.web_port == 7000 and sources["worker.web_port"] == "env DRIFTLINE_WORKER"
    assert sources["worker.app_id"] == "default"
    assert (settings.policy.psi_above.threshold, settings.policy.psi_above.features) == (0.25, ["age"])
    assert sources["policy.psi_above"] == "env DRIFTLINE_POLICY_PSI_ABOVE, file custom.toml"
    assert settings.policy.wasserstein_above.threshold == 0.4
    assert sources["policy.wasserstein_above"] == "env DRIFTLINE_POLICY_WASSERSTEIN_ABOVE"
    assert settings.sink.batch_rows == 5 and sources["sink.batch_rows"] == "env driftline_sink_batch_rows"


def test_config_show_prints_each_source_in_the_table_and_in_json_with_secrets_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_config(Path("custom.toml"))
    monkeypatch.setenv("DRIFTLINE_KAFKA_PARTITIONS", "6")
    monkeypatch.setenv("DRIFTLINE_CLICKHOUSE_PASSWORD", "hunter2")
    monkeypatch.setenv("DRIFTLINE_CLICKHOUSE_DSN", "http://analyst:s3cret@db:8123")

    table = CliRunner().invoke(app, ["--config", "custom.toml", "config", "show"])
    as_json = CliRunner().invoke(app, ["--config", "custom.toml", "config", "show", "--json"])

    assert table.exit_code == 0 and as_json.exit_code == 0, table.output + as_json.output
    rows = {line.split("│")[1].strip(): line for line in table.output.splitlines() if line.startswith("│ ")}
    assert "env DRIFTLINE_KAFKA_PARTITIONS" in rows["kafka.partitions"] and "│ 6 " in rows["kafka.partitions"]
    assert "file custom.toml" in rows["kafka.topic_prefix"] and "prod." in rows["kafka.topic_prefix"]
    assert "default" in rows["kafka.bootstrap"] and "127.0.0.1:9092" in rows["kafka.bootstrap"]
    assert "env DRIFTLINE_CLICKHOUSE_PASSWORD" in rows["clickhouse.password"]
    shown = json.loads(as_json.output)
    assert shown["kafka"]["partitions"] == 6 and shown["kafka"]["topic_prefix"] == "prod."
    assert shown["sources"] == setting_sources(Path("custom.toml"))
    assert shown["sources"]["clickhouse.dsn"] == "env DRIFTLINE_CLICKHOUSE_DSN"
    for output in (table.output, as_json.output):
        assert "hunter2" not in output and "s3cret" not in output
    assert shown["clickhouse"]["dsn"] == "http://analyst:****@db:8123"


def test_librdkafka_lines_go_through_logging_and_what_it_retries_is_info(caplog: pytest.LogCaptureFixture) -> None:
    config = load_settings().kafka.client_config()
    kafka = config["logger"]
    assert kafka.name == "driftline.kafka"
    client = f"rdkafka#producer-{uuid.uuid4().hex}"  # lines no earlier test showed (repeats are held back)

    with caplog.at_level(logging.WARNING, logger="driftline.kafka"):
        kafka.warning(f"GETPID [{client}]: Coordinator load in progress: retrying")
        kafka.error(f"FAIL [{client}]: Connect to ipv4#127.0.0.1:1 failed: Connection refused")
    assert [(r.levelname, r.getMessage()[:4]) for r in caplog.records] == [("ERROR", "FAIL")]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="driftline.kafka"):
        kafka.warning(f"GETPID [{client}]: Coordinator load in progress: retrying")
    assert [r.levelname for r in caplog.records] == ["INFO"]


def test_a_librdkafka_line_repeated_within_a_minute_is_held_back_then_shown_with_its_count() -> None:
    clock = [1000.0]
    lines = client_hooks._KafkaLines(clock=lambda: clock[0])  # a fresh memory, its own clock

    def shown(message: str, level: int = logging.ERROR) -> str | None:
        record = logging.LogRecord("driftline.kafka", level, __file__, 0, message, (), None)
        return record.getMessage() if lines.filter(record) else None

    refused = "FAIL [rdkafka#consumer-9]: 127.0.0.1:1 failed: Connection refused (after {}ms in state CONNECT)"
    other = "FAIL [rdkafka#consumer-9]: 127.0.0.1:2 failed: Connection refused"
    assert shown(refused.format(0)) == refused.format(0)
    assert [shown(refused.format(ms)) for ms in (1, 0, 3)] == [None, None, None]  # a broker that stays down
    assert shown(refused.format(1) + " (2 identical error(s) suppressed)") is None  # librdkafka's own count too
    assert shown(other) == other  # another problem shows at once
    assert shown(refused.format(0), logging.WARNING) == refused.format(0)  # so does another level
    clock[0] += client_hooks.REPEAT_S
    assert shown(refused.format(2)) == refused.format(2) + " (4 more like it held back since it last showed)"
    assert shown(refused.format(2)) is None
