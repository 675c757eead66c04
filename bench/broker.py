"""A private local Kafka broker for one benchmark run: free ports, a temporary directory, stopped after."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from driftline.devtools.local_broker import LocalKafka, free_port
from driftline.settings import load_settings


@contextmanager
def private_broker(home: Path, say: Callable[[str], None]) -> Iterator[str]:
    """Start a broker with its data under ``home`` on free ports (jars resolved by Maven on first use);
    yield its bootstrap address; stop it on the way out, also after Ctrl-C."""
    port, controller = free_port(), free_port()
    settings = load_settings(data_dir=home, broker={"port": port, "controller_port": controller})
    broker = LocalKafka(settings, log=say)
    try:
        broker.start()
        yield broker.bootstrap
    finally:
        broker.stop()
