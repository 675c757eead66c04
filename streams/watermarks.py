"""Event-time progress of a set of source partitions: the watermark that decides what is complete.

Each partition's mark is the latest event time seen on it. The watermark is the minimum over partitions
heard from within ``idle_timeout_s`` of processing time, so one quiet partition does not hold everything back
forever; when every partition is idle it is the maximum. It never goes back: a partition that returns from
idleness behind it finds its windows closed (its events are late), never reopened. Partitions not heard from
yet sit at the epoch, so a partition that is read late cannot find the others' windows closed. Processing
time enters only here, to tell idle partitions; the numbers computed behind the watermark depend on event time
alone.
"""

from __future__ import annotations

from datetime import UTC, datetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Watermark:
    """Per-partition event-time marks and their combined watermark (plain data: pickles with a checkpoint)."""

    def __init__(self, partitions: int, idle_timeout_s: float, now: float) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.marks: dict[int, datetime] = dict.fromkeys(range(partitions), EPOCH)
        self.last_seen: dict[int, float] = dict.fromkeys(range(partitions), now)
        self.reached = EPOCH

    def saw(self, partition: int, stamp: datetime, now: float) -> None:
        """An event of time ``stamp`` arrived on ``partition`` at processing time ``now``."""
        self.last_seen[partition] = now
        if stamp > self.marks.get(partition, EPOCH):
            self.marks[partition] = stamp

    def current(self, now: float) -> datetime:
        """min over active partitions' marks; the max when all are idle; the epoch before any event; never
        less than it was."""
        if all(mark == EPOCH for mark in self.marks.values()):
            return self.reached
        active = [
            mark
            for partition, mark in self.marks.items()
            if now - self.last_seen.get(partition, now) < self.idle_timeout_s
        ]
        self.reached = max(self.reached, min(active) if active else max(self.marks.values()))
        return self.reached

    def resume(self, now: float) -> None:
        """After a restart: every partition counts as just heard from (processing time starts anew)."""
        self.last_seen = dict.fromkeys(self.marks, now)
