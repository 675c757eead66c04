"""What the join of one source partition tells the windows: the contract between the two stages of the worker.

The worker runs in two stages so that partitions, and the workers that own them, can be moved apart:

1. per source partition, :class:`~driftline.streams.joining.PartitionJoin` decodes nothing itself but joins
   the partition's predictions with their feedback and, at each checkpoint, sends what changed as deltas;
2. :class:`~driftline.streams.windows.WindowEngine` merges the deltas of every source partition into windows
   per model version and computes the results.

Contract of the deltas (they travel on the ``window-parts`` topic, msgpack-encoded, keyed by ``model_id``;
a replay sends the same deltas again, so each is idempotent):

- :class:`WindowDelta`: rows ``first_row, first_row + 1, …`` of one source partition's share of a window (a
  row is one prediction; rows are numbered per partition and window in arrival order, so a replay numbers
  them the same), the labels joined to rows of that share since the last delta (``(row, label, value, time)``,
  assignments: applying one twice changes nothing), and the share's count of late predictions (absolute);
- :class:`OrphanCount`: the feedback of a model whose prediction never came within the horizon, per window
  start of the feedback's time (absolute count per source partition);
- :class:`Progress`: a source partition's event-time marks (latest prediction time and latest feedback time
  read, each never going back) and whether each kind has been idle (nothing read for ``idle_timeout_s``);
  sent after the deltas it covers, to every partition of ``window-parts``, so a window is merged only once
  every partition that is not idle is past it.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from driftline.schemas.events import Task

Label = tuple[int, str | None, float | None, datetime]  # row, label (classification), value (regression), time


class WindowDelta(msgspec.Struct, frozen=True, tag="window"):
    """New rows and labels of one source partition's share of one window."""

    model_id: str
    model_version: str
    window_start: datetime
    partition: int
    task: Task
    first_row: int
    ids: list[str]
    times: list[datetime]
    predicted: list[str | None]
    scores: list[float]
    values: list[float]
    features: list[dict[str, object]]
    sensitive: list[dict[str, str]]
    labels: list[Label]
    late_predictions: int


class OrphanCount(msgspec.Struct, frozen=True, tag="orphans"):
    """Feedback of ``model_id`` whose prediction never came, by the window start of its time (absolute)."""

    model_id: str
    window_start: datetime
    partition: int
    count: int


class Progress(msgspec.Struct, frozen=True, tag="progress"):
    """How far one source partition has been read, in event time."""

    partition: int
    predictions_mark: datetime
    labels_mark: datetime
    predictions_idle: bool
    labels_idle: bool


Delta = WindowDelta | OrphanCount | Progress

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Delta] = msgspec.msgpack.Decoder(Delta)


def encode(delta: Delta) -> bytes:
    """msgpack bytes of a delta (its kind is a tag inside)."""
    return _encoder.encode(delta)


def decode(data: bytes) -> Delta:
    """The delta encoded by :func:`encode`; raises ``msgspec.ValidationError`` on anything else."""
    return _decoder.decode(data)
