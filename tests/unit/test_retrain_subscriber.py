"""examples/retrain_subscriber.py: a failing retraining command is run again, then reported and skipped; the
connection is read from driftline's own environment variables."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "retrain_subscriber.py"
TRIGGER = {"trigger_id": "t-1", "model_id": "churn", "model_version": "v2", "severity": "critical"}


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("retrain_subscriber", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_command_that_fails_once_is_run_again_and_not_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    command = f'echo "$DRIFTLINE_TRIGGER_ID" >> {runs}; [ $(wc -l < {runs}) -ge 2 ]'  # fails the first time

    _example().handle(TRIGGER, command, attempts=3, wait_s=0.0)

    assert runs.read_text().split() == ["t-1", "t-1"]
    assert capsys.readouterr().err == ""


def test_a_command_that_always_fails_is_reported_after_its_last_attempt_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"

    _example().handle(TRIGGER, f"cat >> {runs}; exit 3", attempts=2, wait_s=0.0)

    assert [json.loads(line)["trigger_id"] for line in runs.read_text().replace("}{", "}\n{").splitlines()] == [
        "t-1",
        "t-1",
    ]
    out, err = capsys.readouterr()
    assert json.loads(out) == TRIGGER
    assert json.loads(err) == {"trigger_id": "t-1", "status": "failed", "exit_code": 3, "attempts": 2}


def test_the_connection_comes_from_driftlines_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_USERNAME", "retrainer")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SSL_CHECK_HOSTNAME", "false")

    config = _example().kafka_config("kafka:9093")

    assert config == {
        "bootstrap.servers": "kafka:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "retrainer",
        "sasl.password": "s3cret",
        "ssl.endpoint.identification.algorithm": "none",
    }
