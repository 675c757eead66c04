"""Both stages of the worker in one process, with its state in one local file: for the benchmark's monitor core and
tests."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from driftline.streams.core import deltas
from driftline.streams.worker.monitor import StreamMonitor


class LocalCheckpoints:
    """Both stages in one process without Kafka between them, state in one local file: for the benchmark's
    monitor core and tests. It gives ``monitor`` every partition, restored from ``path`` if it exists (a msgpack
    list of (name, partition, state));
    :meth:`emit` delivers the deltas straight to the mergers and emits; :meth:`run` does so, then saves every state
    in one atomic file replace (write, fsync, rename)."""

    def __init__(self, monitor: StreamMonitor, path: Path) -> None:
        self.path = path
        self.saved: dict[tuple[str, int], bytes] = {}
        if path.exists():
            saved = msgspec.msgpack.decode(path.read_bytes(), type=list[tuple[str, int, bytes]])
            self.saved = {(name, partition): blob for name, partition, blob in saved}
        monitor.assign(range(monitor.partitions), self)

    def load(self, name: str, partition: int) -> bytes | None:
        return self.saved.get((name, partition))

    def emit(self, monitor: StreamMonitor) -> None:
        """One emission of ``monitor`` between checkpoints, as the worker's: the joins' deltas to the mergers, then
        what closed or changed."""
        self._deliver(monitor)
        monitor.emit()

    def run(self, monitor: StreamMonitor) -> None:
        """One checkpoint of ``monitor``."""
        self._deliver(monitor)
        self.saved.update(monitor.checkpoint())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_suffix(".tmp")
        with staging.open("wb") as handle:
            handle.write(msgspec.msgpack.encode([(name, p, blob) for (name, p), blob in self.saved.items()]))
            handle.flush()
            os.fsync(handle.fileno())
        staging.replace(self.path)
        monitor.saved()

    @staticmethod
    def _deliver(monitor: StreamMonitor) -> None:
        for partition, value in monitor.deltas():
            for delta in deltas.decode_batch(value):
                monitor.mergers[partition].engine.apply(delta)
        monitor.deltas_delivered()
