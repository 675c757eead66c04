"""What a threshold rule reads in a window result: per metric its point estimate, the bounds it is judged on at
the policy's confidence, its sample count, the rows it stands on and the reference value it compares with.

How each metric's bounds are made is in :mod:`driftline.streams.core.policy` (accuracy: Wilson's interval;
demographic parity: :func:`ratio_bounds`; equalized odds: :func:`spread_bounds`; KS p-values: Holm's
adjustment, :func:`holm_adjusted`); every other metric is judged on its point estimate.
"""

from __future__ import annotations

from collections.abc import Sequence

from driftline.schemas.policy import (
    AccuracyBelow,
    DriftAbove,
    EstimatedAccuracyBelow,
    FairnessRule,
    KsPvalueBelow,
    MissingRateIncreaseAbove,
    PerformanceBelow,
    ThresholdRule,
)
from driftline.schemas.results import FeatureDrift, GroupFairness, WindowResult
from driftline.streams.core.metrics.fairness import wilson_interval

SPECIAL_FEATURES = frozenset({"__score__", "__predicted_label__", "__label__"})
"""Drift rows that are not input features: read by a drift rule only when it names them."""
Bounds = tuple[float, float]
"""(low, high): the interval a metric is judged on; (value, value) for a point estimate."""
Evidence = tuple[tuple[str, ...], ...]
"""The rows a reading stands on, each as its table and key columns (made into keys only for a breach)."""
Reading = tuple[str, float, Bounds, int, Evidence, float | None]
"""(metric, observed value, bounds, sample count, evidence rows, the reference's value) read from a window result."""


def readings(rule: ThresholdRule, result: WindowResult, confidence: float) -> list[Reading]:
    """The values ``rule`` reads in ``result``, with the bounds it judges (at ``confidence``; 0: the value
    itself), their sample counts and evidence rows."""
    if isinstance(rule, PerformanceBelow):
        return _performance_readings(rule, result, confidence)
    if isinstance(rule, DriftAbove):
        rows = [
            row
            for row in result.drift
            if (row.feature in rule.features if rule.features else row.feature not in SPECIAL_FEATURES)
        ]
        return (
            _holm_readings(rule, result, rows)
            if isinstance(rule, KsPvalueBelow)
            else _drift_readings(rule, result, rows)
        )
    if isinstance(rule, FairnessRule):
        return _fairness_readings(rule, result, confidence)
    raise TypeError(f"no readings defined for {type(rule).__name__}")


def _performance_readings(rule: PerformanceBelow, result: WindowResult, confidence: float) -> list[Reading]:
    performance = result.performance
    samples = performance.labelled
    if isinstance(rule, EstimatedAccuracyBelow):
        if performance.label_coverage is not None and performance.label_coverage > rule.max_label_coverage:
            return []
        samples = performance.predictions
    value: float | None = getattr(performance, rule.metric)
    if value is None:
        return []
    bounds: Bounds | None = (value, value)
    if confidence and isinstance(rule, AccuracyBelow):
        bounds = wilson_interval(round(value * samples), samples)
    evidence = (("performance_windows",),)
    reference: float | None = getattr(performance, f"reference_{rule.metric}")
    return [] if bounds is None else [(rule.metric, value, bounds, samples, evidence, reference)]


def _drift_readings(rule: DriftAbove, result: WindowResult, rows: list[FeatureDrift]) -> list[Reading]:
    readings: list[Reading] = []
    for row in rows:
        value: float | None = getattr(row, rule.metric)
        if value is not None:
            samples = result.performance.predictions if isinstance(rule, MissingRateIncreaseAbove) else row.count
            evidence = (("drift_windows", row.feature),)
            readings.append((f"{rule.metric}:{row.feature}", value, (value, value), samples, evidence, None))
    return readings


def holm_adjusted(pvalues: Sequence[float]) -> list[float]:
    """Holm's adjusted p-values of a family of m tests, in the order given.

    With the p-values sorted ascending, p₍₁₎ ≤ … ≤ p₍ₘ₎: p̃₍ᵢ₎ = max over j ≤ i of min(1, (m − j + 1)·p₍ⱼ₎).
    p̃ < α rejects exactly what Holm's step-down procedure rejects at family-wise error rate α (Bonferroni's
    m·p holds the same rate but rejects less). An empty family gives an empty list.

    >>> holm_adjusted([0.004, 0.001, 0.5])
    [0.008, 0.003, 0.5]
    """
    adjusted = [1.0] * len(pvalues)
    running = 0.0
    for rank, index in enumerate(sorted(range(len(pvalues)), key=pvalues.__getitem__)):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


def _holm_readings(rule: KsPvalueBelow, result: WindowResult, rows: list[FeatureDrift]) -> list[Reading]:
    """Holm-adjusted KS p-values; the family: the features read that have a p-value and ``min_samples`` values."""
    family = [(row, row.ks_pvalue) for row in rows if row.ks_pvalue is not None and row.count >= rule.min_samples]
    adjusted = holm_adjusted([pvalue for _row, pvalue in family])
    return [
        (
            f"ks_pvalue:{row.feature}",
            pvalue,
            (pvalue, pvalue),
            row.count,
            (("drift_windows", row.feature),),
            None,
        )
        for (row, _raw), pvalue in zip(family, adjusted, strict=True)
    ]


def ratio_bounds(intervals: Sequence[Bounds]) -> Bounds | None:
    """The least and the greatest min / max ratio of group rates that lie in the groups' ``intervals``.

    With [l_g, u_g] the interval of group g: low = min l_g / max u_g; high = min u_g / max l_g, or 1 when
    min u_g ≥ max l_g (the intervals share a point: the rates may all be equal). Both are attained; the high
    one with the group of the least upper bound at it, the group of the greatest lower bound at it and the
    others between. None for fewer than two groups or when every upper bound is 0.

    >>> ratio_bounds([(0.125, 0.25), (0.5, 1.0)])
    (0.125, 0.5)
    >>> ratio_bounds([(0.125, 0.375), (0.25, 0.5), (0.3125, 0.625)])
    (0.2, 1.0)
    """
    lows, highs = [low for low, _high in intervals], [high for _low, high in intervals]
    if len(intervals) < 2 or max(highs) == 0:
        return None
    return min(lows) / max(highs), 1.0 if min(highs) >= max(lows) else min(highs) / max(lows)


def spread_bounds(intervals: Sequence[Bounds]) -> Bounds | None:
    """The least and the greatest max − min of group rates that lie in the groups' ``intervals``.

    With [l_g, u_g] the interval of group g: low = max(0, max l_g − min u_g) (0 when the intervals share a
    point), high = max u_g − min l_g. None for fewer than two groups.

    >>> spread_bounds([(0.5, 0.75), (0.875, 1.0)])
    (0.125, 0.5)
    >>> spread_bounds([(0.5, 0.75), (0.625, 1.0)])
    (0.0, 0.5)
    """
    lows, highs = [low for low, _high in intervals], [high for _low, high in intervals]
    if len(intervals) < 2:
        return None
    return max(0.0, max(lows) - min(highs)), max(highs) - min(lows)


def _fairness_bounds(rule: FairnessRule, groups: list[GroupFairness]) -> Bounds | None:
    """The interval of ``rule``'s metric allowed by the groups' Wilson intervals of its ``rates``."""
    combine = ratio_bounds if rule.combine == "ratio" else spread_bounds
    per_rate = []
    for rate in rule.rates:
        intervals = [interval for group in groups if (interval := getattr(group, f"{rate}_ci")) is not None]
        bounds = combine(intervals)
        if bounds is None:
            return None
        per_rate.append(bounds)
    return max(low for low, _high in per_rate), max(high for _low, high in per_rate)


def _fairness_readings(rule: FairnessRule, result: WindowResult, confidence: float) -> list[Reading]:
    """Per attribute: its attribute-wide value (repeated on each group row) over the judged groups, bounded by
    their intervals; samples: the smallest judged group's count."""
    judged: dict[str, list[GroupFairness]] = {}
    for row in result.fairness:
        if not row.below_min_count:
            judged.setdefault(row.attribute, []).append(row)
    readings: list[Reading] = []
    for attribute, groups in judged.items():
        value: float | None = getattr(groups[0], rule.metric)
        if value is None:
            continue
        bounds = _fairness_bounds(rule, groups) if confidence else (value, value)
        if bounds is not None:
            evidence = tuple(("fairness_windows", attribute, group.group) for group in groups)
            samples = min(group.count for group in groups)
            readings.append((f"{rule.metric}:{attribute}", value, bounds, samples, evidence, None))
    return readings
