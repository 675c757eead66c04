"""Event-time progress of a set of source partitions: the watermarks that decide what is complete.

:class:`ModelWatermarks` gives each model version its own clock from its own predictions, so another model's
traffic, backfill or clock never closes its windows; :class:`Watermark` is one clock over whole partitions (the
feedback's). Each partition reports its mark (the latest event time read on it) and whether it has been idle (see
:class:`~driftline.streams.core.deltas.Progress`). The watermark is the minimum over the partitions that are not
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


ModelKey = tuple[str, str]  # model id, model version
ModelMark = tuple[datetime, bool]  # a version's latest prediction time on a partition, and whether it went idle there


class ModelWatermarks:
    """Per model version, the watermark of its predictions over the source partitions (plain data, saved with a
    checkpoint).

    Each partition reports, per model version, its mark (latest prediction time of that version read there)
    and whether the version has been idle there (none of its predictions read for ``idle_timeout_s``), and its
    *floor*: the least mark of its versions that are not idle (its reading position in event time; its latest
    mark when all are idle). A version's watermark is the minimum over partitions of: its mark where it is not
    idle; where it is idle, its mark or the partition's floor, whichever is later (so the last window of a
    version that stopped closes once the partition's other traffic passes it); the partition's floor where the
    partition never read the version (so a partition read late holds every version back, and one that holds
    none of a version's predictions does not stop it forever); nothing where the whole partition is idle. When
    that leaves nothing (all quiet), it is the latest of those marks and floors. Partitions not heard from yet
    sit at the epoch; a watermark never goes back. A version's own events decide what is late for it (in the
    joins): events of a version back from idleness for a window closed meanwhile are added to it, and the
    window is emitted again.
    """

    def __init__(self, partitions: int) -> None:
        self.floors: dict[int, datetime] = dict.fromkeys(range(partitions), EPOCH)
        self.partition_idle: dict[int, bool] = dict.fromkeys(range(partitions), False)
        self.marks: dict[ModelKey, dict[int, ModelMark]] = {}
        self.reached: dict[ModelKey, datetime] = {}

    def report(
        self, partition: int, floor: datetime, idle: bool, versions: list[tuple[str, str, datetime, bool]]
    ) -> None:
        """``partition`` has been read up to ``floor`` in event time (``idle``: no prediction for a while), and
        each model version in ``versions`` up to its mark (only those whose mark or idleness changed)."""
        self.floors[partition] = max(floor, self.floors.get(partition, EPOCH))
        self.partition_idle[partition] = idle
        for model_id, model_version, mark, version_idle in versions:
            per_partition = self.marks.setdefault((model_id, model_version), {})
            before = per_partition.get(partition, (EPOCH, False))[0]
            per_partition[partition] = (max(mark, before), version_idle)

    def current(self, version: ModelKey) -> datetime:
        """The watermark of a model version's predictions (see the class); the epoch before any of them."""
        seen = self.marks.get(version, {})
        holding, passed = [], []
        for partition, floor in self.floors.items():
            partition_idle = self.partition_idle.get(partition, False)
            if partition in seen:
                mark, idle = seen[partition]
                passed.append(max(mark, floor) if idle else mark)
                if not (idle and partition_idle):
                    holding.append(passed[-1])
            elif not partition_idle:
                holding.append(floor)
        reached = self.reached.get(version, EPOCH)
        if seen:
            value = min(holding) if holding else max(passed)
            reached = self.reached[version] = max(reached, value)
        return reached
