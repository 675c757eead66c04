"""Both stages of the worker in one process, with its state in one local file: for the benchmark's monitor core and
tests."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from driftline.streams.core import deltas
from driftline.streams.worker.stages import WorkerStages


class LocalCheckpoints:
    """Both stages in one process without Kafka between them, state in one local file: for the benchmark's
    monitor core and tests. It gives ``stages`` every partition, restored from ``path`` if it exists (a msgpack
    list of (name, partition, state));
    :meth:`emit` delivers the deltas straight to the mergers and emits; :meth:`run` does so, then saves every state
    in one atomic file replace (write, fsync, rename)."""

    def __init__(self, stages: WorkerStages, path: Path) -> None:
        self.path = path
        self.saved: dict[tuple[str, int], bytes] = {}
        if path.exists():
            saved = msgspec.msgpack.decode(path.read_bytes(), type=list[tuple[str, int, bytes]])
            self.saved = {(name, partition): blob for name, partition, blob in saved}
        stages.assign(range(stages.partitions), self)

    def load(self, name: str, partition: int) -> bytes | None:
        return self.saved.get((name, partition))

    def emit(self, stages: WorkerStages) -> None:
        """One emission of ``stages`` between checkpoints, as the worker's: the joins' deltas to the mergers, then
        what closed or changed."""
        self._deliver(stages)
        stages.emit()

    def run(self, stages: WorkerStages) -> None:
        """One checkpoint of ``stages``."""
        self._deliver(stages)
        self.saved.update(stages.checkpoint())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_suffix(".tmp")
        with staging.open("wb") as handle:
            handle.write(msgspec.msgpack.encode([(name, p, blob) for (name, p), blob in self.saved.items()]))
            handle.flush()
            os.fsync(handle.fileno())
        staging.replace(self.path)
        stages.saved()

    @staticmethod
    def _deliver(stages: WorkerStages) -> None:
        for partition, value in stages.deltas():
            for delta in deltas.decode_batch(value):
                stages.mergers[partition].engine.apply(delta)
        stages.deltas_delivered()
