"""Fairness of one window: outcome rates per sensitive group, with Wilson intervals, and the gaps between
groups, from each group's counts (:class:`GroupCounts`).

Per group g (predicted positive ŷ, true label y, among the group's predictions):
selection rate = P(ŷ=1) over all its predictions; TPR = P(ŷ=1 | y=1), FPR = P(ŷ=1 | y=0) and
precision = P(y=1 | ŷ=1) over its labelled predictions. Each comes with the Wilson score interval at 95%:
centre = (p̂ + z²/2n) / (1 + z²/n), half-width = z·√(p̂(1−p̂)/n + z²/4n²) / (1 + z²/n), z = 1.96.
Across the groups with at least ``min_count`` predictions (smaller groups are reported, not judged):
demographic-parity difference = max − min selection rate, ratio = min / max (the four-fifths rule reads
ratio < 0.8); equal-opportunity difference = max − min TPR; equalised-odds difference = max of the TPR and
FPR differences (fairlearn's definitions).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

from driftline.schemas.results import GroupFairness

Z_95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion; None for zero trials."""
    if trials == 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


class GroupCounts(NamedTuple):
    """One group's predictions, those predicted positive, and the outcomes of its labelled predictions."""

    predictions: int
    selected: int
    tp: int
    fp: int
    tn: int
    fn: int


def _rate(successes: int, trials: int) -> tuple[float | None, tuple[float, float] | None]:
    if trials == 0:
        return None, None
    return successes / trials, wilson_interval(successes, trials)


def _spread(values: list[float]) -> float | None:
    return max(values) - min(values) if len(values) >= 2 else None


def attribute_fairness(attribute: str, groups: Mapping[str, GroupCounts], *, min_count: int) -> list[GroupFairness]:
    """One row per group of ``attribute`` (in the order given).

    >>> rows = attribute_fairness("g", {"a": GroupCounts(40, 20, 15, 5, 15, 5), "b": GroupCounts(40, 10, 8, 2, 28, 2)},
    ...                           min_count=30)
    >>> rows[0].demographic_parity_ratio
    0.5
    """
    rows: list[dict[str, object]] = []
    for group, c in groups.items():
        selection, selection_ci = _rate(c.selected, c.predictions)
        tpr, tpr_ci = _rate(c.tp, c.tp + c.fn)
        fpr, fpr_ci = _rate(c.fp, c.fp + c.tn)
        precision, precision_ci = _rate(c.tp, c.tp + c.fp)
        rows.append(
            {
                "attribute": attribute,
                "group": group,
                "count": c.predictions,
                "below_min_count": c.predictions < min_count,
                "selection_rate": selection,
                "selection_rate_ci": selection_ci,
                "tpr": tpr,
                "tpr_ci": tpr_ci,
                "fpr": fpr,
                "fpr_ci": fpr_ci,
                "precision": precision,
                "precision_ci": precision_ci,
            }
        )
    judged = [row for row in rows if not row["below_min_count"]]
    selection_rates = [r for row in judged if isinstance(r := row["selection_rate"], float)]
    tpr_gap = _spread([r for row in judged if isinstance(r := row["tpr"], float)])
    fpr_gap = _spread([r for row in judged if isinstance(r := row["fpr"], float)])
    gaps = {
        "demographic_parity_difference": _spread(selection_rates),
        "demographic_parity_ratio": (
            min(selection_rates) / max(selection_rates)
            if len(selection_rates) >= 2 and max(selection_rates) > 0
            else None
        ),
        "equal_opportunity_difference": tpr_gap,
        "equalized_odds_difference": None if tpr_gap is None or fpr_gap is None else max(tpr_gap, fpr_gap),
    }
    return [GroupFairness.model_validate({**row, **gaps}) for row in rows]
