"""What the join of one source partition tells the windows: the contract between the two stages of the worker.

The worker runs in two stages so that partitions, and the workers that own them, can be moved apart:

1. per source partition, :class:`~driftline.streams.core.joining.PartitionJoin` decodes nothing itself but joins
   the partition's predictions with their feedback and, at each checkpoint, sends what changed as deltas;
2. :class:`~driftline.streams.core.windows.WindowEngine` merges the deltas of every source partition into windows
   per model version and computes the results.

Contract of the deltas (they travel on the ``window-parts`` topic, msgpack-encoded, several to a message in
their order (:func:`encode_batch`); a replay sends the same deltas again, or the same state batched
otherwise, so each is idempotent):

- :class:`ShareDelta`: one source partition's *share* of a window, as a summary, never as rows:
  - absolute parts, newest wins, sent once the window closed on the partition or while the partition is idle
    (``summary`` is msgpack nil, :data:`NO_SUMMARY`, in a delta without them): the share's ``revision`` (its
    predictions, labels joined and late predictions; only grows), its :mod:`~driftline.streams.core.summary`
    summary (carried encoded, :func:`encode_summary`, so a receiver may hold it so until it reads it), and the
    feature tallies
    (:mod:`~driftline.streams.core.feature_counts`) named in ``features``, counted against the reference
    profile ``profile`` names (features not named are unchanged since the last delta);
  - numbered parts, appended (a receiver skips what it holds, and a gap is an error): the rows whose features
    were not counted (the window opened on the partition before its version had a profile: they make the
    first-events reference, or are counted by the receiver), and the detectors' inputs (scores as predictions
    arrive, error indicators as labels are joined), each numbered from 0 per share in arrival order. The rows
    travel encoded (:func:`encode_rows`, ``row_count`` of them), and a receiver may hold them so until it counts
    them.
- :class:`OrphanCount`: the feedback of a model whose prediction never came within the horizon, per window
  start of the feedback's time (absolute count per source partition);
- :class:`Progress`: a source partition's event-time marks, each never going back: per model version its
  latest prediction time and whether it has been idle there (none of its predictions read for
  ``idle_timeout_s``), only for models whose mark changed, and to each ``window-parts`` partition only the
  models routed to it; the partition's floor (least mark of its model versions not idle) and latest feedback time,
  and whether each kind has been idle. Sent after the deltas it covers, so a window is merged only once
  every partition that holds it back is past it (:class:`~driftline.streams.core.watermarks.ModelWatermarks`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from driftline.schemas.events import Task
from driftline.streams.core.encoding import decode_hook, encode_hook
from driftline.streams.core.feature_counts import Tally
from driftline.streams.core.summary import Summary

BATCH_OVERHEAD = 5  # msgpack bytes a message of deltas may add per delta (array header, at most)
UnbinnedRow = tuple[dict[str, Any], float, str | None]  # features, score (NaN unless binary), predicted label
DetectorInput = tuple[datetime, str, float]  # event time, prediction id, value
NO_SUMMARY = msgspec.Raw(b"\xc0")  # msgpack nil: a share delta without the absolute parts


class ShareDelta(msgspec.Struct, frozen=True, tag="share"):
    """One source partition's share of one window: its summary (absolute) and new numbered inputs."""

    model_id: str
    model_version: str
    window_start: datetime
    partition: int
    task: Task
    revision: int
    summary: msgspec.Raw  # encode_summary; NO_SUMMARY: the absolute parts are not in this delta (still open there)
    profile: str | None = None
    features: dict[str, msgspec.Raw] = {}  # each a tally encoded by encode_tally, decoded when needed
    first_row: int = 0
    rows: msgspec.Raw = msgspec.Raw(b"\x90")  # a list of UnbinnedRow, by encode_rows (empty: msgpack [])
    first_score: int = 0
    scores: list[DetectorInput] = []
    first_error: int = 0
    errors: list[DetectorInput] = []
    row_count: int = -1  # the rows in ``rows``; -1 in messages of earlier releases: count them

    def rows_in(self) -> int:
        """How many rows ``rows`` holds."""
        return self.row_count if self.row_count >= 0 else len(decode_rows(self.rows))


class OrphanCount(msgspec.Struct, frozen=True, tag="orphans"):
    """Feedback of ``model_id`` whose prediction never came, by the window start of its time (absolute)."""

    model_id: str
    window_start: datetime
    partition: int
    count: int


class Progress(msgspec.Struct, frozen=True, tag="progress"):
    """How far one source partition has been read, in event time: per model version (those whose mark or
    idleness changed since its last progress; to each ``window-parts`` partition the models routed to it), and
    as a whole."""

    partition: int
    models: list[tuple[str, str, datetime, bool]]  # model id, version, latest prediction time, idle
    floor: datetime  # the least mark of the models not idle here (the partition's reading position)
    predictions_idle: bool
    labels_mark: datetime
    labels_idle: bool


Delta = ShareDelta | OrphanCount | Progress

_encoder = msgspec.msgpack.Encoder(enc_hook=encode_hook)
_decoder: msgspec.msgpack.Decoder[Delta] = msgspec.msgpack.Decoder(Delta, dec_hook=decode_hook)


_batch_decoder: msgspec.msgpack.Decoder[list[Delta] | Delta] = msgspec.msgpack.Decoder(
    list[Delta] | Delta, dec_hook=decode_hook
)


def encode(delta: Delta) -> bytes:
    """msgpack bytes of a delta (its kind is a tag inside)."""
    return _encoder.encode(delta)


def decode(data: bytes) -> Delta:
    """The delta encoded by :func:`encode`; raises ``msgspec.ValidationError`` on anything else."""
    return _decoder.decode(data)


def encode_batch(encoded: Sequence[bytes]) -> bytes:
    """One message of deltas already encoded by :func:`encode`, in their order (a msgpack array of them)."""
    return _encoder.encode([msgspec.Raw(delta) for delta in encoded])


def decode_batch(data: bytes) -> list[Delta]:
    """The deltas of a message of :func:`encode_batch` (or of a single delta, as earlier releases sent them);
    raises ``msgspec.ValidationError`` on anything else."""
    decoded = _batch_decoder.decode(data)
    return decoded if isinstance(decoded, list) else [decoded]


def batches(encoded: Iterable[tuple[int, bytes]], max_bytes: int) -> list[tuple[int, bytes]]:
    """``(partition, encoded delta)`` pairs as messages of :func:`encode_batch` per partition, each at most
    ``max_bytes`` (a delta larger alone is a message alone), the deltas of a partition in their order."""
    pending: dict[int, list[bytes]] = {}
    size: dict[int, int] = {}
    out: list[tuple[int, bytes]] = []
    for partition, delta in encoded:
        held = pending.setdefault(partition, [])
        if held and size[partition] + len(delta) + BATCH_OVERHEAD > max_bytes:
            out.append((partition, encode_batch(held)))
            held.clear()
            size[partition] = 0
        held.append(delta)
        size[partition] = size.get(partition, 0) + len(delta) + BATCH_OVERHEAD
    out.extend((partition, encode_batch(held)) for partition, held in pending.items() if held)
    return out


_tally_decoder: msgspec.msgpack.Decoder[Tally] = msgspec.msgpack.Decoder(Tally, dec_hook=decode_hook)


_summary_decoder: msgspec.msgpack.Decoder[Summary] = msgspec.msgpack.Decoder(Summary, dec_hook=decode_hook)


def encode_summary(summary: Summary) -> msgspec.Raw:
    """A share's summary as a :class:`ShareDelta` carries it, and a merger holds it until it emits the window
    (sparse: a histogram costs its non-zero cells)."""
    return msgspec.Raw(_encoder.encode(summary))


def decode_summary(data: msgspec.Raw | bytes) -> Summary:
    """The summary encoded by :func:`encode_summary`."""
    return _summary_decoder.decode(data)


_rows_decoder: msgspec.msgpack.Decoder[list[UnbinnedRow]] = msgspec.msgpack.Decoder(list[UnbinnedRow])


def encode_rows(rows: list[UnbinnedRow]) -> msgspec.Raw:
    """Uncounted rows as a :class:`ShareDelta` carries them, and a merger holds them until it counts them."""
    return msgspec.Raw(_encoder.encode(rows))


def decode_rows(data: msgspec.Raw | bytes) -> list[UnbinnedRow]:
    """The rows encoded by :func:`encode_rows`."""
    return _rows_decoder.decode(data)


def encode_tally(tally: Tally) -> msgspec.Raw:
    """A feature tally as the bytes a :class:`ShareDelta` carries (sparse: the non-zero cells)."""
    return msgspec.Raw(_encoder.encode(tally))


def decode_tally(data: msgspec.Raw | bytes) -> Tally:
    """The tally encoded by :func:`encode_tally`."""
    return _tally_decoder.decode(data)
