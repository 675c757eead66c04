"""A join's share of one window: what it holds per prediction, how new predictions and labels are added to its
summary (folded, in batches), and how it goes out as deltas.

A share is one window's predictions on one source partition (:class:`~driftline.streams.core.joining.PartitionJoin`
keeps one per window it holds). Folding is vectorised: :func:`fold_rows` adds the new predictions to the summary
and counts their features, :func:`check_labels` refuses labels of the wrong type and queues the others' errors for
the detectors, :func:`fold_labels` adds the checked labels. :func:`share_deltas` packs what changed into
:class:`~driftline.streams.core.deltas.ShareDelta` messages of bounded size.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import msgspec
import numpy as np

from driftline.schemas.events import Task
from driftline.schemas.model_contracts import ModelContract, label_mismatch, positive_texts
from driftline.schemas.records import FeedbackRecord, PredictionRecord
from driftline.schemas.results import ReferenceProfile
from driftline.streams.core.deltas import (
    NO_SUMMARY,
    DetectorInput,
    ShareDelta,
    UnbinnedRow,
    encode_rows,
    encode_summary,
    encode_tally,
)
from driftline.streams.core.feature_counts import FeatureCounts, count_columns, feature_counts
from driftline.streams.core.metrics.profile import profile_key
from driftline.streams.core.summary import (
    BinarySummary,
    Combo,
    MulticlassSummary,
    Scored,
    Summary,
    group_key,
)

WindowId = tuple[str, str, datetime]  # model_id, model_version, window start
VALUES_PER_DELTA = 40_000  # values in one message (a tally's cells, a row's features, ...): well under 1 MB
NewLabel = tuple[int, FeedbackRecord]  # the row it labels, the feedback


class RejectedLabel(NamedTuple):
    """Feedback whose label contradicts its prediction (:func:`label_mismatch`): for a dead letter."""

    feedback: FeedbackRecord
    reason: str


@dataclass(frozen=True)
class JoinContext:
    """What a join reads from outside its partition: the versions' reference profiles (None until one is
    known) and the models' contracts."""

    profile_for: Callable[[str, str], ReferenceProfile | None] = lambda _m, _v: None
    contracts: Mapping[str, ModelContract] = field(default_factory=dict)

    def positive(self, model_id: str) -> set[str]:
        return positive_texts(self.contracts.get(model_id))


@dataclass
class Share:
    """One window's predictions on one source partition: their summary, per row what a label needs, and what is
    new since the last delta."""

    task: Task
    summary: Summary
    ids: list[str] = field(default_factory=list)  # per folded row: its prediction id, "" once labelled
    settled: array[int] = field(default_factory=lambda: array("Q"))  # prediction_hash of each labelled row
    positive: bytearray = field(default_factory=bytearray)  # binary: the predicted label is the positive one
    scores: array[float] = field(default_factory=lambda: array("d"))
    codes: array[int] = field(default_factory=lambda: array("q"))  # binary: index of the row's combo in combos
    combos: list[Combo] = field(default_factory=list)
    combo_codes: dict[Combo, int] = field(default_factory=dict)
    predicted: list[str] = field(default_factory=list)  # multiclass: the predicted label
    values: array[float] = field(default_factory=lambda: array("d"))  # regression: the predicted value
    labelled: bytearray = field(default_factory=bytearray)  # per row (folded or new): a label was joined
    profile: str | None = None  # key of the profile the features are counted against
    features: dict[str, FeatureCounts] | None = None
    new_rows: list[PredictionRecord] = field(default_factory=list)  # not in the summary yet
    new_labels: list[NewLabel] = field(default_factory=list)
    labels_checked: int = 0  # of new_labels: checked against the contract, their errors queued
    unsent_rows: list[UnbinnedRow] = field(default_factory=list)
    unsent_scores: list[DetectorInput] = field(default_factory=list)
    unsent_errors: list[DetectorInput] = field(default_factory=list)
    rows_sent: int = 0
    scores_sent: int = 0
    errors_sent: int = 0
    features_changed: bool = False
    revision_sent: int = -1  # the revision of the summary last delivered
    resend_after: float = 0.0  # closed and delivered: its changes wait until this processing time (not saved)
    sending_whole: bool = False  # the last deltas carry the summary and tallies
    changed: bool = False  # something to fold or to send

    @property
    def revision(self) -> int:
        """Predictions, labels and late predictions the share accounts for (after
        :meth:`~driftline.streams.core.joining.PartitionJoin.deltas` folded the new ones in)."""
        return self.summary.predictions + self.summary.labelled + self.summary.late

    def combo_code(self, sensitive: Mapping[str, str]) -> int:
        combo = group_key(sensitive)
        code = self.combo_codes.get(combo)
        if code is None:
            code = self.combo_codes[combo] = len(self.combos)
            self.combos.append(combo)
        return code


def fold_rows(key: WindowId, share: Share, context: JoinContext) -> None:
    """Add the share's new predictions to its summary, and their features to its counts once its version has a
    reference profile (until then, to the rows it sends)."""
    rows, share.new_rows = share.new_rows, []
    ids, _models, _versions, _stamps, _tasks, predicted, scores, values, features, sensitive = zip(*rows, strict=True)
    summary = share.summary
    labelled = share.labelled
    first = len(share.ids)
    share.ids.extend("" if labelled[first + i] else prediction_id for i, prediction_id in enumerate(ids))
    if isinstance(summary, BinarySummary):
        texts = context.positive(key[0])
        positive = np.array([label in texts for label in predicted], dtype=bool)
        score_array = np.array(scores, dtype=np.float64)
        codes = np.array([share.combo_code(groups) for groups in sensitive], dtype=np.intp)
        summary.add_predictions(Scored(positive, score_array, codes, share.combos))
        share.positive.extend(positive.tobytes())
        share.scores.extend(score_array)
        share.codes.extend(codes.tolist())
    else:
        summary.add_predictions(len(rows))
        if isinstance(summary, MulticlassSummary):
            share.predicted.extend(label or "" for label in predicted)
        else:
            share.values.extend(values)
    if share.features is None:
        profile = context.profile_for(key[0], key[1])
        if profile is not None and share.profile is None:  # never twice: counts of before would be lost
            share.profile = profile_key(profile)
            share.features = {name: feature_counts(f) for name, f in sorted(profile.features.items())}
    if share.features is None:
        share.unsent_rows.extend(zip(map(dict, features), scores, predicted, strict=True))
    else:
        count_columns(share.features, features, scores, predicted)
        share.features_changed = True


def check_labels(key: WindowId, share: Share, context: JoinContext) -> list[RejectedLabel]:
    """Check the share's labels not checked yet against the model's contract (a label of the wrong type is
    refused: its prediction stays unlabelled, its first label decided), and queue the errors of the others
    for the detectors; the labels refused."""
    unchecked = share.new_labels[share.labels_checked :]
    if not unchecked:
        return []
    contract = context.contracts.get(key[0])
    kept, rejected = [], []
    for row, feedback in unchecked:
        reason = label_mismatch(share.task, feedback.label, feedback.value, contract)
        if reason is None:
            kept.append((row, feedback))
        else:
            rejected.append(RejectedLabel(feedback, f"model {key[0]!r}: {reason}"))
    share.new_labels[share.labels_checked :] = kept
    share.labels_checked = len(share.new_labels)
    if share.task == "regression":
        return rejected
    folded, positive = len(share.ids), context.positive(key[0])
    for row, feedback in kept:
        pending = share.new_rows[row - folded] if row >= folded else None  # (not added up yet)
        if share.task == "binary":
            predicted = pending.predicted in positive if pending else bool(share.positive[row])
            wrong = predicted != (feedback.label in positive)
        else:
            label = (pending.predicted if pending else share.predicted[row]) or ""
            wrong = label != (feedback.label or "")
        share.unsent_errors.append((feedback.timestamp, feedback.prediction_id, float(wrong)))
    return rejected


def fold_labels(share: Share, positive_texts: set[str]) -> None:
    """Add the share's new labels (checked; their rows are folded) to its summary."""
    labels, share.new_labels, share.labels_checked = share.new_labels, [], 0
    summary = share.summary
    index = np.array([row for row, _feedback in labels], dtype=np.intp)
    feedback = [record for _row, record in labels]
    if isinstance(summary, BinarySummary):
        positive = np.frombuffer(share.positive, dtype=bool)[index]
        truth = np.array([record.label in positive_texts for record in feedback], dtype=bool)
        scores = np.frombuffer(share.scores, dtype=np.float64)[index]
        codes = np.frombuffer(share.codes, dtype=np.int64)[index].astype(np.intp)
        summary.add_labels(Scored(positive, scores, codes, share.combos), truth)
    elif isinstance(summary, MulticlassSummary):
        summary.add_labels([share.predicted[row] for row, _record in labels], [r.label or "" for r in feedback])
    else:
        values = np.array([record.value for record in feedback], dtype=np.float64)
        summary.add_labels(np.frombuffer(share.values, dtype=np.float64)[index], values)


@dataclass
class _Message:
    """What one delta of a share carries besides its summary, and its weight in values."""

    features: dict[str, msgspec.Raw] = field(default_factory=dict)
    rows: list[UnbinnedRow] = field(default_factory=list)
    scores: list[DetectorInput] = field(default_factory=list)
    errors: list[DetectorInput] = field(default_factory=list)
    weight: int = 0


class _Packing:
    """Messages of at most ``VALUES_PER_DELTA`` values, filled in order (a new one when the last is full)."""

    def __init__(self) -> None:
        self.messages = [_Message()]

    def room(self, cost: int) -> _Message:
        """The message that takes something weighing ``cost`` values (the last, or a new one)."""
        last = self.messages[-1]
        if last.weight and last.weight + cost > VALUES_PER_DELTA:
            last = _Message()
            self.messages.append(last)
        last.weight += cost
        return last

    def fill(self, items: list[DetectorInput], inputs_of: Callable[[_Message], list[DetectorInput]]) -> None:
        """Put detector inputs (3 values each) into the messages in whole slices, as many to a message as fit."""
        taken = 0
        while taken < len(items):
            last = self.messages[-1]
            fit = (VALUES_PER_DELTA - last.weight) // 3 if last.weight else VALUES_PER_DELTA // 3
            if fit <= 0:
                self.messages.append(_Message())
                continue
            chunk = items[taken : taken + fit]
            inputs_of(last).extend(chunk)
            last.weight += 3 * len(chunk)
            taken += len(chunk)


def share_deltas(key: WindowId, partition: int, share: Share) -> list[ShareDelta]:
    """The share's summary and changed tallies, and its unsent rows and detector inputs, in messages of at most
    ``VALUES_PER_DELTA`` values (a tally weighs its encoded bytes / 8, a row its features + 3, an input 3)."""
    if not share.sending_whole and not (share.unsent_rows or share.unsent_scores or share.unsent_errors):
        return []
    packing = _Packing()
    if share.sending_whole and share.features_changed:
        for name, counts in (share.features or {}).items():
            raw = encode_tally(counts.tally)
            packing.room(len(raw) // 8 + 1).features[name] = raw
    for row in share.unsent_rows:
        packing.room(len(row[0]) + 3).rows.append(row)
    packing.fill(share.unsent_scores, lambda message: message.scores)
    packing.fill(share.unsent_errors, lambda message: message.errors)
    out: list[ShareDelta] = []
    rows, scores, errors = share.rows_sent, share.scores_sent, share.errors_sent
    summary = encode_summary(share.summary) if share.sending_whole else NO_SUMMARY
    for message in packing.messages:
        out.append(
            ShareDelta(
                *key,  # model_id, model_version, window_start
                partition=partition,
                task=share.task,
                revision=share.revision,
                summary=summary,
                profile=share.profile,
                features=message.features,
                first_row=rows,
                rows=encode_rows(message.rows),
                first_score=scores,
                scores=message.scores,
                first_error=errors,
                errors=message.errors,
                row_count=len(message.rows),
            )
        )
        rows, scores, errors = rows + len(message.rows), scores + len(message.scores), errors + len(message.errors)
    return out
