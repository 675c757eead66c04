"""The worker's saved state as data: versioned msgspec structures, msgpack-encoded, never pickles.

A checkpoint saves, per owned partition, the join (:class:`JoinSnapshot`) and the merger (:class:`MergerSnapshot`:
windows, watermarks, first events and own profiles, detectors, trigger policy, outbox). Every field is plain
data (numbers, text, times, bytes, lists, maps), decoded against these types: a state that does not fit them is
refused, and a state written by another format (``SNAPSHOT_FORMAT``) is refused with a clear error, so whoever
can write the state topic can corrupt results but can no longer run code in the workers.

What is not saved and how it comes back: the join's index of pending predictions (rebuilt from its shares' rows);
the feature counts of an open share, saved as tallies and read again against the version's profile, which the
worker knows by its key (if that profile is gone, the share's later rows go to the merger uncounted); a window's
bound profile, saved by key and looked up again; ADWIN, saved as the bytes of River's own serialisation of its
state (bincode, no code); Page-Hinkley, as its attributes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from driftline.schemas.errors import ConfigError
from driftline.schemas.events import Task
from driftline.streams.core.deltas import DetectorInput, UnbinnedRow
from driftline.streams.core.encoding import decode_hook, encode_hook
from driftline.streams.core.feature_counts import Tally
from driftline.streams.core.policy import PolicyState
from driftline.streams.core.shares import NewLabel
from driftline.streams.core.summary import Combo, Summary
from driftline.streams.core.window_buffers import RowChunk
from driftline.streams.core.windows import QueuedChunk, Signal

SNAPSHOT_FORMAT = 11  # 4: windows hold summaries; 5: joins summarise; 6: data; 7: clocks per version, policy per
# problem; 8: verdicts keep the threshold judged (relative rules); 9: joins forget the ids of labelled predictions,
# mergers hold uncounted rows as they came; 10: joins queue scores as they come and add predictions up later; 11: a
# merger's detector inputs saved in chunks of a window, as they came

Record = tuple[str, str, str, datetime, Task, str | None, float, float, dict[str, Any], dict[str, str]]
Feedback = tuple[str, datetime, str | None, float | None, str | None, int, int]
WindowId = tuple[str, str, datetime]


class JoinShareSnapshot(msgspec.Struct, array_like=True):
    """One share of a join (see :class:`~driftline.streams.core.shares.Share`)."""

    model_id: str
    model_version: str
    window_start: datetime
    task: Task
    summary: Summary
    ids: list[str]
    settled: bytes
    positive: bytes
    scores: bytes
    codes: bytes
    combos: list[Combo]
    predicted: list[str]
    values: bytes
    labelled: bytes
    profile: str | None
    tallies: dict[str, Tally] | None
    new_rows: list[Record]
    new_labels: list[NewLabel]
    labels_checked: int
    unsent_rows: list[UnbinnedRow]
    unsent_scores: list[DetectorInput]
    unsent_errors: list[DetectorInput]
    rows_sent: int
    scores_sent: int
    errors_sent: int
    features_changed: bool
    revision_sent: int
    sending_whole: bool
    changed: bool


class JoinSnapshot(msgspec.Struct, tag="join"):
    """A source partition's join and the source offsets it covers."""

    format: int
    partition: int
    offsets: dict[str, int]
    shares: list[JoinShareSnapshot]
    early: list[Feedback]
    orphans: list[tuple[str, datetime, int]]
    changed_orphans: list[tuple[str, datetime]]
    marks: list[tuple[str, str, datetime]]
    labels_mark: datetime


class ReceivedShareSnapshot(msgspec.Struct, array_like=True):
    """One source partition's share of a merged window (see
    :class:`~driftline.streams.core.window_buffers.ReceivedShare`)."""

    partition: int
    summary: msgspec.Raw  # (held encoded by the merger: the same bytes as the summary itself)
    revision: int
    profile: str | None
    tallies: dict[str, bytes]
    rows: list[RowChunk]
    rows_received: int
    scores_received: int
    errors_received: int


class WindowSnapshot(msgspec.Struct, array_like=True):
    """One merged window (see :class:`~driftline.streams.core.window_buffers.WindowBuffer`)."""

    model_id: str
    model_version: str
    window_start: datetime
    task: Task
    shares: list[ReceivedShareSnapshot]
    reference: Literal["provided", "first_events", "none"]
    profile: str | None
    counted: dict[str, bytes]
    drift: list[dict[str, Any]] | None
    orphan_feedback: int
    alarms: list[dict[str, Any]]
    emitted_revision: int


class WatermarkSnapshot(msgspec.Struct, array_like=True):
    marks: dict[int, datetime]
    idle: dict[int, bool]
    reached: datetime


class ModelWatermarksSnapshot(msgspec.Struct, array_like=True):
    floors: dict[int, datetime]
    partition_idle: dict[int, bool]
    marks: list[tuple[str, str, dict[int, tuple[datetime, bool]]]]
    reached: list[tuple[str, str, datetime]]


class DetectorSnapshot(msgspec.Struct, array_like=True):
    """One model version's detectors: ADWIN as River's bytes, Page-Hinkley as its sums."""

    model_id: str
    model_version: str
    adwin: bytes
    adwin_detected: bool
    page_hinkley: dict[str, float]
    page_hinkley_detected: bool
    errors_seen: int
    scores_seen: int
    recent_scores: list[float]


class MergerSnapshot(msgspec.Struct, tag="merge"):
    """A ``window-parts`` partition's merger, its trigger policy and outbox, and the offset it covers."""

    format: int
    offset: int
    windows: list[WindowSnapshot]
    orphans: list[tuple[int, str, datetime, int]]
    predictions_seen: ModelWatermarksSnapshot
    labels_seen: WatermarkSnapshot
    first_events: list[tuple[str, str, list[RowChunk]]]
    own_profiles: list[dict[str, Any]]
    detectors: list[DetectorSnapshot]
    detector_inputs: dict[Signal, list[tuple[str, str, list[QueuedChunk]]]]
    detector_frontiers: dict[Signal, list[tuple[str, str, datetime]]]
    detector_late: int
    after_horizon: int
    unpublished_alarms: list[tuple[dict[str, Any], dict[str, Any]]]
    unpublished_profiles: list[dict[str, Any]]
    policy: PolicyState
    outbox: list[dict[str, Any]]


class _Format(msgspec.Struct):
    """What :func:`decode` reads first: the format alone (the rest is skipped, not built)."""

    format: int | None = None


Snapshot = JoinSnapshot | MergerSnapshot
_encoder = msgspec.msgpack.Encoder(enc_hook=encode_hook)
_decoder: msgspec.msgpack.Decoder[Snapshot] = msgspec.msgpack.Decoder(Snapshot, dec_hook=decode_hook)
_format_decoder = msgspec.msgpack.Decoder(_Format)


def encode(snapshot: Snapshot) -> bytes:
    """msgpack bytes of a snapshot."""
    return _encoder.encode(snapshot)


def decode(data: bytes, name: str) -> Snapshot:
    """The snapshot in ``data`` (saved under ``name``); :class:`ConfigError` when it is of another format or is
    not a snapshot at all."""
    try:
        found = _format_decoder.decode(data).format
    except msgspec.DecodeError:
        found = None
    if found != SNAPSHOT_FORMAT:
        # resuming without it would skip what it covers (the group's offsets are past it): refuse
        raise ConfigError(
            f"saved state {name} has format {found}, this driftline reads {SNAPSHOT_FORMAT}; finish with the "
            "release that wrote it, or replay the topics under a new worker.app_id"
        )
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"saved state {name} is not a driftline state of format {SNAPSHOT_FORMAT}: {exc}") from exc


# -- join ------------------------------------------------------------------------------------------


# -- merger ----------------------------------------------------------------------------------------
