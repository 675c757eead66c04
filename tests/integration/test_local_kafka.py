"""`driftline kafka start | stop | status | logs` against a real broker of its own (not the session's)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from driftline.devtools.local_broker import free_port
from tests.integration.running import DRIFTLINE

pytestmark = pytest.mark.integration


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DRIFTLINE, *args], env=env, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture
def broker_env(tmp_path: Path) -> dict[str, str]:
    port = free_port()
    return {
        **os.environ,
        "DRIFTLINE_DATA_DIR": str(tmp_path),
        "DRIFTLINE_BROKER_PORT": str(port),
        "DRIFTLINE_BROKER_CONTROLLER_PORT": str(free_port()),
        "DRIFTLINE_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
    }


def test_start_is_idempotent_status_tells_and_a_killed_broker_starts_again(
    broker_env: dict[str, str],
) -> None:
    bootstrap = broker_env["DRIFTLINE_KAFKA_BOOTSTRAP"]
    try:
        first = run(broker_env, "kafka", "start")
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == bootstrap

        second = run(broker_env, "kafka", "start")
        assert second.returncode == 0 and "already running" in second.stderr

        status = run(broker_env, "kafka", "status")
        assert status.returncode == 0 and "running (pid" in status.stdout and bootstrap in status.stdout
        pid = int(status.stdout.split("pid ")[1].split(")")[0])
        assert "Kafka Server started" in run(broker_env, "kafka", "logs", "-n", "400").stdout

        os.kill(pid, signal.SIGKILL)
        dead = run(broker_env, "kafka", "status")
        assert dead.returncode == 1 and dead.stdout.startswith("not running")

        again = run(broker_env, "kafka", "start")
        assert again.returncode == 0, again.stderr
        assert run(broker_env, "topics", "create").returncode == 0
    finally:
        stop = run(broker_env, "kafka", "stop")
    assert stop.returncode == 0 and "Kafka stopped" in stop.stderr
    assert run(broker_env, "kafka", "status").returncode == 1


def test_broken_java_path_gives_one_line_error_naming_it(broker_env: dict[str, str]) -> None:
    result = run({**broker_env, "DRIFTLINE_BROKER_JAVA": "/nonexistent/bin/java"}, "kafka", "start")

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "Java not found" in lines[0] and "/nonexistent/bin/java" in lines[0]


def test_broker_that_dies_at_start_reports_the_tail_of_its_log(broker_env: dict[str, str]) -> None:
    # a heap this small makes the JVM refuse to start: the error must carry the broker's own words
    result = run({**broker_env, "DRIFTLINE_BROKER_HEAP": "1k"}, "kafka", "start")

    assert result.returncode == 2
    assert "Kafka exited with code" in result.stderr
    assert "heap" in result.stderr.lower()


def test_taken_port_is_reported_with_the_setting_to_change(broker_env: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(broker_env["DRIFTLINE_BROKER_PORT"])))
        squatter.listen()
        result = run(broker_env, "kafka", "start")

    assert result.returncode == 2
    assert f"port {broker_env['DRIFTLINE_BROKER_PORT']} on 127.0.0.1 is taken" in result.stderr
    assert "DRIFTLINE_BROKER_PORT" in result.stderr
