"""A window's performance and fairness as a constant-size, mergeable summary (numpy; no rows kept).

One summary per model version, window and source partition, updated vectorised from batches of predictions
and of labels joined to them, and merged by addition: every field is an integer count or an
:class:`~driftline.streams.core.exact_sum.ExactSum`, so the merged summary, and every number read from it,
is the same whatever the order, batching or split of the events across partitions.

What is kept, per task (``y`` true label, ``ŷ`` predicted label, ``p`` score, over labelled predictions unless
said otherwise):

- every task: predictions, late predictions (counted, not included), labelled predictions;
- binary: per combination of sensitive groups (``Combo``, the sorted ``(attribute, group)`` pairs of a
  prediction; ``()`` without any): predictions, predicted positive (all predictions), TP, FP, TN, FN; the
  exact sums Σ(p if ŷ else 1 − p) over all predictions (estimated accuracy), Σ −ln(p clipped if y else 1 − p
  clipped) (log loss) and Σ(p − y)² (Brier); and a histogram of ``p`` per true class on ``ROC_BINS`` equal
  bins of [0, 1];
- multiclass: the confusion counts per (y, ŷ);
- regression: exact sums of |y − ŷ|, (y − ŷ)², y and y² (the square split exactly into two floats, so R² has
  no cancellation error).

Every metric read from a summary is exact (up to the one rounding of each exact sum to float64), except
ROC AUC, read from the histograms: pairs of a positive and a negative in different bins are ordered
correctly, pairs in the same bin count ½, so with ``P`` positives, ``N`` negatives and ``pos_b``, ``neg_b``
the counts of bin b,

    |AUC_summary − AUC| ≤ Σ_b pos_b · neg_b / (2 · P · N)   (:meth:`BinarySummary.roc_auc_bound`),

at most 1 / (2 · ROC_BINS) ≈ 5e-4 for scores spread evenly, and usually far less (ties within a bin cancel).
Definitions of the metrics: :mod:`driftline.streams.core.metrics.performance` and
:mod:`driftline.streams.core.metrics.fairness`.

The shape leaves room for more keys without a redesign: a segment's summary is one more summary per segment
value, intersectional fairness reads the combinations already kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple, cast

import msgspec
import numpy as np
from numpy.typing import NDArray

from driftline.schemas.results import GroupFairness, Performance
from driftline.streams.core.exact_sum import ExactSum
from driftline.streams.core.metrics.fairness import GroupCounts, attribute_fairness

ROC_BINS = 1024
EPSILON = float(np.finfo(np.float64).eps)
MISSING_GROUP = "__missing__"
Combo = tuple[tuple[str, str], ...]  # a prediction's sorted (attribute, group) pairs
Metrics = dict[str, float | None]
_COUNTS = 6  # per combination: predictions, predicted positive, TP, FP, TN, FN


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else float(numerator / denominator)


def _sum(terms: NDArray[np.float64]) -> ExactSum:
    total = ExactSum()
    total.add(terms)
    return total


class Scored(NamedTuple):
    """A binary model's predictions as arrays: ``positive`` (ŷ is the positive label), ``scores``, and ``codes``,
    the index of each one's combination of groups in ``combos``."""

    positive: NDArray[np.bool_]
    scores: NDArray[np.float64]
    codes: NDArray[np.intp]
    combos: Sequence[Combo]

    def rows(self, index: NDArray[np.intp] | NDArray[np.bool_]) -> Scored:
        """The predictions at ``index`` (positions, or a mask)."""
        return Scored(self.positive[index], self.scores[index], self.codes[index], self.combos)


class BinarySummary(msgspec.Struct, tag="binary"):
    """Counts and sums of a binary model's window (see the module docstring)."""

    predictions: int = 0
    late: int = 0
    labelled: int = 0
    groups: dict[Combo, list[int]] = msgspec.field(default_factory=dict)
    estimated: ExactSum = msgspec.field(default_factory=ExactSum)
    log_loss: ExactSum = msgspec.field(default_factory=ExactSum)
    brier: ExactSum = msgspec.field(default_factory=ExactSum)
    roc: NDArray[np.int64] = msgspec.field(default_factory=lambda: np.zeros(2 * ROC_BINS, dtype=np.int64))

    def add_predictions(self, scored: Scored) -> None:
        """Count the predictions ``scored``."""
        positive, scores, codes, combos = scored
        self.predictions += len(scores)
        self.estimated.add(np.where(positive, scores, 1.0 - scores))
        selected = np.bincount(codes * 2 + positive, minlength=2 * len(combos)).reshape(-1, 2)
        self._count(np.column_stack([selected.sum(axis=1), selected[:, 1]]), combos, first=0)

    def add_labels(self, scored: Scored, truth: NDArray[np.bool_]) -> None:
        """Count labels joined to the predictions ``scored`` (``truth``: y is the positive label, one per
        prediction)."""
        positive, scores, codes, combos = scored
        self.labelled += len(truth)
        clipped = np.clip(scores, EPSILON, 1 - EPSILON)
        self.log_loss.add(-np.where(truth, np.log(clipped), np.log(1 - clipped)))
        self.brier.add((scores - truth) ** 2)
        bins = np.minimum((scores * ROC_BINS).astype(np.intp), ROC_BINS - 1)
        self.roc += np.bincount(bins + ROC_BINS * truth, minlength=2 * ROC_BINS)
        outcome = np.where(positive, np.where(truth, 0, 1), np.where(truth, 3, 2))  # TP, FP, TN, FN
        self._count(np.bincount(codes * 4 + outcome, minlength=4 * len(combos)).reshape(-1, 4), combos, first=2)

    def _count(self, counts: NDArray[np.int64], combos: Sequence[Combo], first: int) -> None:
        """Add ``counts`` (a row per combination) to the groups' counters ``first`` onwards."""
        for code in np.flatnonzero(counts.sum(axis=1)):
            cell = self.groups.setdefault(combos[int(code)], [0] * _COUNTS)
            for i, count in enumerate(counts[code].tolist()):
                cell[first + i] += count

    def merge(self, other: BinarySummary) -> None:
        """Add ``other`` into this summary."""
        self.predictions += other.predictions
        self.late += other.late
        self.labelled += other.labelled
        for combo, counts in other.groups.items():
            cell = self.groups.setdefault(combo, [0] * _COUNTS)
            for i, count in enumerate(counts):
                cell[i] += count
        self.estimated, self.log_loss, self.brier = (
            self.estimated + other.estimated,
            self.log_loss + other.log_loss,
            self.brier + other.brier,
        )
        self.roc = self.roc + other.roc

    def totals(self) -> list[int]:
        """Predictions, predicted positive, TP, FP, TN, FN over every combination."""
        return [sum(cell[i] for cell in self.groups.values()) for i in range(_COUNTS)]

    def performance(self) -> Metrics:
        """Accuracy, precision, recall, F1, ROC AUC, log loss, Brier and estimated accuracy."""
        _n, _selected, tp, fp, tn, fn = self.totals()
        labelled = tp + fp + tn + fn
        metrics: Metrics = {"estimated_accuracy": _ratio(self.estimated.value(), self.predictions)}
        if labelled == 0:
            return metrics | dict.fromkeys(("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier"))
        return metrics | {
            "accuracy": (tp + tn) / labelled,
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "roc_auc": self.roc_auc(),
            "log_loss": self.log_loss.value() / labelled,
            "brier": self.brier.value() / labelled,
        }

    def roc_auc(self) -> float | None:
        """ROC AUC from the histograms, within :meth:`roc_auc_bound` of the exact value; None with one class."""
        negatives, positives = self.roc[:ROC_BINS], self.roc[ROC_BINS:]
        n_pos, n_neg = int(positives.sum()), int(negatives.sum())
        if n_pos == 0 or n_neg == 0:
            return None
        below = np.cumsum(negatives) - negatives
        doubled = 2 * int(np.dot(positives, below)) + int(np.dot(positives, negatives))
        return doubled / (2 * n_pos * n_neg)

    def roc_auc_bound(self) -> float | None:
        """Σ pos_b · neg_b / (2 · P · N): how far :meth:`roc_auc` may be from the exact ROC AUC."""
        negatives, positives = self.roc[:ROC_BINS], self.roc[ROC_BINS:]
        n_pos, n_neg = int(positives.sum()), int(negatives.sum())
        if n_pos == 0 or n_neg == 0:
            return None
        return int(np.dot(positives, negatives)) / (2 * n_pos * n_neg)

    def fairness(self, min_count: int) -> list[GroupFairness]:
        """Per sensitive attribute and group, the rates and gaps of
        :func:`~driftline.streams.core.metrics.fairness.attribute_fairness`; a prediction without the attribute
        counts in the group ``__missing__``."""
        attributes = sorted({attribute for combo in self.groups for attribute, _group in combo})
        totals = self.totals()
        rows: list[GroupFairness] = []
        for attribute in attributes:
            per_group: dict[str, list[int]] = {}
            for combo, counts in self.groups.items():
                group = dict(combo).get(attribute)
                if group is not None:
                    cell = per_group.setdefault(group, [0] * _COUNTS)
                    for i, count in enumerate(counts):
                        cell[i] += count
            missing = [total - sum(cell[i] for cell in per_group.values()) for i, total in enumerate(totals)]
            if missing[0]:
                per_group[MISSING_GROUP] = missing
            groups = {group: GroupCounts(*cell) for group, cell in sorted(per_group.items())}
            rows.extend(attribute_fairness(attribute, groups, min_count=min_count))
        return rows


class MulticlassSummary(msgspec.Struct, tag="multiclass"):
    """Counts of a multiclass model's window: the confusion counts per (true, predicted) label."""

    predictions: int = 0
    late: int = 0
    labelled: int = 0
    confusion: dict[tuple[str, str], int] = msgspec.field(default_factory=dict)

    def add_predictions(self, count: int) -> None:
        """Count ``count`` predictions."""
        self.predictions += count

    def add_labels(self, predicted: Sequence[str], truth: Sequence[str]) -> None:
        """Count labels ``truth`` joined to predictions of ``predicted`` labels."""
        self.labelled += len(truth)
        for pair, count in Counter(zip(truth, predicted, strict=True)).items():
            self.confusion[pair] = self.confusion.get(pair, 0) + count

    def merge(self, other: MulticlassSummary) -> None:
        """Add ``other`` into this summary."""
        self.predictions += other.predictions
        self.late += other.late
        self.labelled += other.labelled
        for pair, count in other.confusion.items():
            self.confusion[pair] = self.confusion.get(pair, 0) + count

    def performance(self) -> Metrics:
        """Accuracy and macro F1 over the classes that occur as a true or a predicted label."""
        labelled = sum(self.confusion.values())
        if labelled == 0:
            return {"accuracy": None, "f1": None}
        classes = sorted({label for pair in self.confusion for label in pair})
        f1s = []
        for label in classes:
            tp = self.confusion.get((label, label), 0)
            fp = sum(count for (truth, predicted), count in self.confusion.items() if predicted == label) - tp
            fn = sum(count for (truth, predicted), count in self.confusion.items() if truth == label) - tp
            f1s.append(2 * tp / (2 * tp + fp + fn))
        correct = sum(count for (truth, predicted), count in self.confusion.items() if truth == predicted)
        return {"accuracy": correct / labelled, "f1": float(np.mean(f1s))}


class RegressionSummary(msgspec.Struct, tag="regression"):
    """Exact sums of a regression model's window: |y − ŷ|, (y − ŷ)², y and y²."""

    predictions: int = 0
    late: int = 0
    labelled: int = 0
    absolute_error: ExactSum = msgspec.field(default_factory=ExactSum)
    squared_error: ExactSum = msgspec.field(default_factory=ExactSum)
    truth: ExactSum = msgspec.field(default_factory=ExactSum)
    truth_squared: ExactSum = msgspec.field(default_factory=ExactSum)

    def add_predictions(self, count: int) -> None:
        """Count ``count`` predictions."""
        self.predictions += count

    def add_labels(self, predicted: NDArray[np.float64], truth: NDArray[np.float64]) -> None:
        """Add true values ``truth`` joined to predictions of ``predicted`` values."""
        self.labelled += len(truth)
        error = truth - predicted
        self.absolute_error.add(np.abs(error))
        self.squared_error.add(error**2)
        self.truth.add(truth)
        square, remainder = _exact_square(truth)
        self.truth_squared.add(square)
        self.truth_squared.add(remainder)

    def merge(self, other: RegressionSummary) -> None:
        """Add ``other`` into this summary."""
        self.predictions += other.predictions
        self.late += other.late
        self.labelled += other.labelled
        self.absolute_error = self.absolute_error + other.absolute_error
        self.squared_error = self.squared_error + other.squared_error
        self.truth = self.truth + other.truth
        self.truth_squared = self.truth_squared + other.truth_squared

    def performance(self) -> Metrics:
        """MAE, RMSE and R² = 1 − Σ(y − ŷ)² / (Σy² − (Σy)²/n), the latter in exact integer arithmetic."""
        n = self.labelled
        if n == 0:
            return {"mae": None, "rmse": None, "r2": None}
        scale = 1 << 1126  # ExactSum's unit is 2**-1126
        total = n * self.truth_squared.total * scale - self.truth.total**2  # n · Σ(y − ȳ)² in units of 2**-2252
        return {
            "mae": self.absolute_error.value() / n,
            "rmse": float(np.sqrt(self.squared_error.value() / n)),
            "r2": None if total == 0 else 1.0 - (n * self.squared_error.total * scale) / total,
        }


def _exact_square(values: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(s, r)`` with s + r = values² exactly (Dekker's product: Veltkamp split into 26-bit halves)."""
    split = values * 134217729.0  # 2**27 + 1
    high = split - (split - values)
    low = values - high
    square = values * values
    return square, ((high * high - square) + 2 * high * low) + low * low


Summary = BinarySummary | MulticlassSummary | RegressionSummary


_KINDS: dict[str, type[Summary]] = {
    "binary": BinarySummary,
    "multiclass": MulticlassSummary,
    "regression": RegressionSummary,
}


def binary_summary_of(
    positive: NDArray[np.bool_],
    scores: NDArray[np.float64],
    groups: Sequence[Combo],
    truth: NDArray[np.bool_],
    labelled: NDArray[np.bool_],
) -> BinarySummary:
    """The summary of predictions given as arrays (``positive``: ŷ is the positive label; ``scores``; each one's
    combination of groups) with their true labels ``truth`` where ``labelled`` (``truth`` holds one value per
    labelled prediction)."""
    combos = sorted(set(groups))
    index = {combo: code for code, combo in enumerate(combos)}
    codes = np.array([index[combo] for combo in groups], dtype=np.intp)
    scored = Scored(positive, scores, codes, combos)
    summary = BinarySummary()
    summary.add_predictions(scored)
    summary.add_labels(scored.rows(labelled), truth)
    return summary


def new_summary(task: str) -> Summary:
    """An empty summary for ``task``."""
    return _KINDS[task]()


def merged(summaries: Iterator[Summary] | Sequence[Summary]) -> Summary | None:
    """The sum of ``summaries`` (of one task), or None when there is none."""
    total: Any = None
    for summary in summaries:
        if total is None:
            total = new_summary(_task(summary))
        total.merge(summary)
    return cast(Summary | None, total)


def performance_of(summary: Summary, **window: object) -> Performance:
    """The performance row read from ``summary``: its task, predictions, labelled predictions, label coverage
    and metrics; ``window`` adds what only the window knows (late predictions, orphan feedback, ...)."""
    predictions, labelled = summary.predictions, summary.labelled
    return Performance.model_validate(
        {
            "task": _task(summary),
            "predictions": predictions,
            "labelled": labelled,
            "label_coverage": labelled / predictions if predictions else None,
            **window,
            **summary.performance(),
        }
    )


def _task(summary: Summary) -> str:
    return next(task for task, kind in _KINDS.items() if isinstance(summary, kind))


def group_key(sensitive: Mapping[str, str]) -> Combo:
    """The combination of groups of a prediction's ``sensitive`` attributes."""
    return tuple(sorted(sensitive.items()))
