"""Settings resolve from defaults, TOML and DRIFTLINE_* variables, and bad values name the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from driftline.schemas.errors import ConfigError
from driftline.settings import env_var_name, load_settings


@pytest.fixture(autouse=True)
def no_driftline_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("DRIFTLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


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
