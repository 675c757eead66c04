"""``driftline triggers tail`` on the real broker: each decision printed once, whatever the topic holds besides,
until Ctrl-C; a topic that does not exist is named in one line, not a traceback."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from confluent_kafka import Producer

from driftline.kafka.topics import create_topics
from driftline.settings import Settings
from tests.integration.running import DRIFTLINE, worker_env
from tests.unit.demo.story_rows import trigger

pytestmark = pytest.mark.integration


def test_tail_prints_each_decision_once_and_stops_on_ctrl_c(settings: Settings, tmp_path: Path) -> None:
    create_topics(settings)
    first, second = (trigger(hour, "accuracy_below", "accuracy", 0.7, 0.85) for hour in (0, 1))
    producer = Producer(settings.kafka.client_config())
    topic = settings.topic("retrain-triggers")
    for value in (first.model_dump_json(), first.model_dump_json(), "not a trigger", second.model_dump_json()):
        producer.produce(topic, value.encode(), key=b"m")  # one partition: read in this order
    assert producer.flush(30) == 0

    command = [DRIFTLINE, "triggers", "tail", "--from-beginning", "--json"]
    env = worker_env(settings, tmp_path)
    tail = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def read_stdout() -> None:
        for line in tail.stdout or ():
            lines.put(line)

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        printed = [json.loads(lines.get(timeout=60)) for _ in range(2)]  # the second comes after the rest was read
        tail.send_signal(signal.SIGINT)
        returncode = tail.wait(30)
        reader.join(10)  # everything it printed until it stopped
    finally:
        tail.kill()
    errors = tail.stderr.read() if tail.stderr else ""

    assert returncode == 0, errors
    assert [p["trigger_id"] for p in printed] == [first.trigger_id, second.trigger_id]
    assert lines.empty()  # neither the duplicate nor the malformed message printed anything
    assert f"Following {topic}" in errors and "Traceback" not in errors


def test_tail_of_a_topic_that_does_not_exist_says_so_in_one_line(settings: Settings, tmp_path: Path) -> None:
    result = subprocess.run(
        [DRIFTLINE, "triggers", "tail"],
        env=worker_env(settings, tmp_path),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    following, error = result.stderr.strip().splitlines()
    assert result.returncode != 0 and following.startswith("Following")
    assert error == (
        f"error: topic {settings.topic('retrain-triggers')} does not exist at {settings.kafka.bootstrap}; "
        "run `driftline topics create`"
    )
