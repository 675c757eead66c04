"""The partitions' saved states on the changelog of the worker's Faust table ``state``."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import msgspec
from faust.types import TableT

from driftline.schemas.errors import DriftlineError

log = logging.getLogger(__name__)


class ChangelogStore:
    """The partitions' saved states on the changelog of a Faust table, so the worker a partition moves to
    restores them (Faust reads a partition's changelog into the table before its events flow again).

    A state is split into chunks below Kafka's message limit, written under one of two slots that alternate,
    then a manifest (generation, slot, chunks, SHA-256) names the complete one: a crash mid-write leaves the
    previous manifest and its slot intact. A state equal to the one saved last is not written again, so an
    idle worker's changelog does not grow.
    """

    CHUNK_BYTES = 512 * 1024

    def __init__(self, table: TableT[bytes, bytes]) -> None:
        self.table = table
        self.generations: dict[str, int] = {}
        self.digests: dict[str, str] = {}  # SHA-256 of each state as last saved or loaded

    def load(self, name: str, partition: int) -> bytes | None:
        manifest = self.table.data.get(f"{name}/manifest".encode())
        if manifest is None:
            return None
        generation, slot, count, digest = msgspec.msgpack.decode(manifest)
        chunks = [self.table.data.get(f"{name}/{slot}/{i}".encode()) for i in range(count)]
        blob = b"".join(chunk or b"" for chunk in chunks)
        if hashlib.sha256(blob).hexdigest() != digest:
            raise DriftlineError(f"saved state {name} (generation {generation}) is incomplete on the changelog")
        self.generations[name], self.digests[name] = generation, digest
        log.info("restored %s from the changelog (generation %d, %d bytes)", name, generation, len(blob))
        return blob

    def save(self, blobs: dict[tuple[str, int], bytes]) -> list[Any]:
        """Send every state that changed; returns the futures of the messages (done once they are on the
        changelog)."""
        futures = []
        for (name, partition), blob in blobs.items():
            digest = hashlib.sha256(blob).hexdigest()
            if self.digests.get(name) == digest:
                continue
            generation = self.generations.get(name, 0) + 1
            slot = generation % 2
            pieces = [blob[i : i + self.CHUNK_BYTES] for i in range(0, len(blob), self.CHUNK_BYTES)]
            manifest = msgspec.msgpack.encode([generation, slot, len(pieces), digest])
            for key, value in [
                *((f"{name}/{slot}/{i}", p) for i, p in enumerate(pieces)),
                (f"{name}/manifest", manifest),
            ]:
                self.table.data[key.encode()] = value
                futures.append(self.table.send_changelog(partition, key.encode(), value))
            self.generations[name], self.digests[name] = generation, digest
        return futures
