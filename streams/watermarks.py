"""Event-time progress of a set of source partitions: the watermark that decides what is complete.

Each partition reports its mark (the latest event time read on it) and whether it has been idle (see
:class:`~driftline.streams.deltas.Progress`). The watermark is the minimum over the partitions that are not
idle, so one quiet partition does not hold everything back forever; when every partition is idle it is the
maximum. It never goes back: a partition that returns from idleness behind it finds the windows merged
without it closed (its rows count as late), never reopened. Partitions not heard from yet sit at the epoch and
hold the watermark, so a partition read late, or moved to another worker, cannot find the others' windows
closed. The watermark depends only on what the partitions reported, never on the clock of the process that
merges them.
"""

from __future__ import annotations

from datetime import UTC, datetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Watermark:
    """Per-partition event-time marks and their combined watermark (plain data, saved with a checkpoint)."""

    def __init__(self, partitions: int) -> None:
        self.marks: dict[int, datetime] = dict.fromkeys(range(partitions), EPOCH)
        self.idle: dict[int, bool] = dict.fromkeys(range(partitions), False)
        self.reached = EPOCH

    def report(self, partition: int, mark: datetime, idle: bool) -> None:
        """``partition`` has been read up to event time ``mark``, and is (or is not) idle."""
        self.marks[partition] = max(mark, self.marks.get(partition, EPOCH))
        self.idle[partition] = idle

    def current(self) -> datetime:
        """min over active partitions' marks; the max when all are idle; the epoch before any event; never
        less than it was."""
        if all(mark == EPOCH for mark in self.marks.values()):
            return self.reached
        active = [mark for partition, mark in self.marks.items() if not self.idle.get(partition, False)]
        self.reached = max(self.reached, min(active) if active else max(self.marks.values()))
        return self.reached
