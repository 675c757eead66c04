"""Fairness per group agrees with fairlearn; intervals agree with scipy's Wilson interval."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from scipy.stats import binomtest

from driftline.streams.core.metrics.fairness import wilson_interval
from tests.summaries import binary_summary

RNG = np.random.default_rng(5)


def sample(n: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    groups = RNG.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    y = RNG.random(n) < 0.4
    bias = np.select([groups == "a", groups == "b"], [0.1, 0.0], -0.15)
    predicted = RNG.random(n) < np.clip(np.where(y, 0.7, 0.2) + bias, 0, 1)
    return groups, y, predicted


def test_group_rates_and_gaps_equal_fairlearn() -> None:
    groups, y, predicted = sample()

    rows = binary_summary(y, predicted, groups={"segment": groups}).fairness(min_count=30)

    frame = MetricFrame(
        metrics={"selection": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
        y_true=y,
        y_pred=predicted,
        sensitive_features=groups,
    )
    for row in rows:
        expected = frame.by_group.loc[row.group]
        assert row.selection_rate == pytest.approx(expected["selection"])
        assert row.tpr == pytest.approx(expected["tpr"])
        assert row.fpr == pytest.approx(expected["fpr"])
    gaps = rows[0]
    kwargs = {"y_true": y, "y_pred": predicted, "sensitive_features": groups}
    assert gaps.demographic_parity_difference == pytest.approx(demographic_parity_difference(**kwargs))
    assert gaps.demographic_parity_ratio == pytest.approx(demographic_parity_ratio(**kwargs))
    assert gaps.equal_opportunity_difference == pytest.approx(equal_opportunity_difference(**kwargs))
    assert gaps.equalized_odds_difference == pytest.approx(equalized_odds_difference(**kwargs))


def test_groups_under_the_minimum_are_reported_but_not_judged() -> None:
    groups, y, predicted = sample(400)
    groups = groups.astype("<U8")
    groups[:5] = "tiny"
    predicted[:5] = False  # would make the parity ratio 0 if it were judged

    rows = {r.group: r for r in binary_summary(y, predicted, groups={"s": groups}).fairness(min_count=20)}

    assert rows["tiny"].below_min_count and rows["tiny"].count == 5 and rows["tiny"].selection_rate == 0.0
    assert rows["a"].demographic_parity_ratio is not None and rows["a"].demographic_parity_ratio > 0


def test_unlabelled_predictions_count_for_selection_but_not_for_error_rates() -> None:
    groups = np.array(["a"] * 4 + ["b"] * 4)
    predicted = np.array([1, 1, 0, 0, 1, 0, 0, 0], dtype=bool)
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0], dtype=bool)
    labelled = np.array([1, 1, 0, 0, 1, 1, 1, 1], dtype=bool)

    rows = {r.group: r for r in binary_summary(y, predicted, groups={"s": groups}, labelled=labelled).fairness(1)}

    assert rows["a"].selection_rate == 0.5 and rows["a"].tpr == 1.0 and rows["a"].fpr == 1.0
    assert rows["b"].selection_rate == 0.25 and rows["b"].fpr == 0.0


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (57, 400)])
def test_wilson_interval_equals_scipy(k: int, n: int) -> None:
    expected = binomtest(k, n).proportion_ci(method="wilson")
    assert wilson_interval(k, n) == pytest.approx((expected.low, expected.high))
    assert wilson_interval(0, 0) is None
