"""What one window holds while the merger builds it: a :class:`ReceivedShare` per source partition, as that
partition's join sent it (summary and tallies of its newest revision; numbered rows and detector inputs, each
taken once), in a :class:`WindowBuffer` with the window's reference profile, the features counted here, its
drift and alarms. How windows are merged, closed and emitted is :mod:`driftline.streams.core.windows`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal, NamedTuple

import msgspec

from driftline.schemas.errors import DriftlineError
from driftline.schemas.events import Task
from driftline.schemas.results import DetectorAlarm, FeatureDrift, ReferenceProfile
from driftline.streams.core import deltas
from driftline.streams.core.summary import Summary, merged, new_summary

RowChunk = tuple[int, msgspec.Raw]  # uncounted rows as they came (deltas.encode_rows), and how many: decoded only where
# counted or learnt from, never re-encoded to be saved


def decoded_rows(chunks: Iterable[RowChunk]) -> list[deltas.UnbinnedRow]:
    """The rows of ``chunks``, decoded, in order."""
    return [row for _count, raw in chunks for row in deltas.decode_rows(raw)]


@dataclass
class ReceivedShare:
    """One source partition's share of a window, as the merger received it from that partition's join: the
    absolute parts of its newest revision, the uncounted rows not counted here yet, and how many numbered inputs
    were received."""

    summary: msgspec.Raw  # encoded (deltas.encode_summary), decoded when the window is emitted
    revision: int = -1
    profile: str | None = None
    tallies: dict[str, msgspec.Raw] = field(default_factory=dict)  # encoded, decoded when drift is read
    rows: list[RowChunk] = field(default_factory=list)  # uncounted rows waiting for the window's profile
    rows_received: int = 0
    scores_received: int = 0
    errors_received: int = 0

    def receive(self, delta: deltas.ShareDelta, where: str) -> Received:
        """Take what ``delta`` brings that this share does not hold yet: a newer revision's summary and tallies
        (tallies counted against another profile are dropped), and the numbered rows and detector inputs after
        those received (a gap is an error naming ``where``)."""
        new_tallies = False
        if delta.summary != deltas.NO_SUMMARY and delta.revision >= self.revision:
            self.revision, self.summary = delta.revision, delta.summary.copy()  # (not a view of the message)
            if delta.features:
                if delta.profile != self.profile:
                    self.tallies = {}
                self.profile = delta.profile
                self.tallies.update({name: raw.copy() for name, raw in delta.features.items()})
                new_tallies = True
        rows = _new_rows(self.rows_received, delta, f"rows {where}")
        if rows is not None:
            self.rows_received += rows[0]
            self.rows.append(rows)
        scores = _new_items(self.scores_received, delta.first_score, delta.scores, f"scores {where}")
        errors = _new_items(self.errors_received, delta.first_error, delta.errors, f"errors {where}")
        self.scores_received += len(scores)
        self.errors_received += len(errors)
        return Received(rows is not None, new_tallies, scores, errors)


class Received(NamedTuple):
    """What a delta brought a share that it did not hold: new rows, new tallies, new detector inputs."""

    rows: bool
    tallies: bool
    scores: Sequence[deltas.DetectorInput]
    errors: Sequence[deltas.DetectorInput]


@dataclass
class WindowBuffer:
    """What one window holds: a :class:`ReceivedShare` per source partition; once its reference profile is bound, the
    features of the rows the joins sent uncounted, counted here (``counted``, encoded tallies); its drift from the
    close on (None when it must be read again)."""

    task: Task
    shares: dict[int, ReceivedShare] = field(default_factory=dict)
    reference: Literal["provided", "first_events", "none"] = "none"
    profile: ReferenceProfile | None = None
    counted: dict[str, msgspec.Raw] = field(default_factory=dict)
    drift: list[FeatureDrift] | None = None
    orphan_feedback: int = 0
    alarms: list[DetectorAlarm] = field(default_factory=list)
    emitted_revision: int = -1

    def summary(self) -> Summary:
        """The shares' summaries added up."""
        total = merged([deltas.decode_summary(share.summary) for _p, share in sorted(self.shares.items())])
        return total if total is not None else new_summary(self.task)

    @property
    def revision(self) -> int:
        """Every event the window accounts for: the shares' predictions, labels and late predictions, and the
        orphaned feedback and detector alarms it counts; only grows, so the latest revision is the most
        complete."""
        shares = sum(max(share.revision, 0) for share in self.shares.values())
        return shares + self.orphan_feedback + len(self.alarms)


@cache
def empty_summary(task: Task) -> msgspec.Raw:
    """An empty summary of ``task``, encoded once (a share holds it until its join sends the absolute parts)."""
    return deltas.encode_summary(new_summary(task))


def _new_rows(received: int, delta: deltas.ShareDelta, what: str) -> RowChunk | None:
    """How many of the delta's rows come after the ``received`` held, and those rows encoded (re-encoded only
    when the delta holds some already received); None when none are new (a gap is an error)."""
    count = delta.rows_in()
    new = len(_new_items(received, delta.first_row, range(count), what))
    if not new:
        return None
    if new == count:
        return new, delta.rows.copy()  # (its own bytes, not a view of the whole message)
    return new, deltas.encode_rows(deltas.decode_rows(delta.rows)[count - new :])


def _new_items(received: int, first: int, items: Sequence[Any], what: str) -> Sequence[Any]:
    """The items numbered ``first, first + 1, …`` that come after the ``received`` held (a gap is an error)."""
    if first > received:
        raise DriftlineError(
            f"{what} {received}..{first - 1} never arrived: the window-parts topic lost messages (retention "
            "shorter than the horizon?)"
        )
    return items[received - first :]
