"""Window summaries: split across partitions in any way and merged in any order, what they give equals a direct
computation from the rows (scikit-learn, scipy, fairlearn): exact metrics to 1e-9, ROC AUC and Wasserstein
within their stated bounds, and the merged summary is the same to the last bit whatever the split."""

from __future__ import annotations

import math
from fractions import Fraction

import msgspec
import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp, wasserstein_distance
from sklearn import metrics

from driftline.streams.core.encoding import decode_hook, encode_hook
from driftline.streams.core.exact_sum import ExactSum
from driftline.streams.core.feature_counts import NumericCounts
from driftline.streams.core.metrics.profile import feature_profile
from driftline.streams.core.summary import (
    BinarySummary,
    MulticlassSummary,
    RegressionSummary,
    Scored,
    Summary,
    merged,
)

EXACT = 1e-9


def close(ours: float | None, expected: float) -> bool:
    return ours is not None and math.isclose(ours, expected, rel_tol=EXACT, abs_tol=EXACT)


@st.composite
def binary_windows(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    """Scores (with ties), predicted labels, true labels, a label mask, groups and a split into partitions."""
    n = draw(st.integers(2, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scores = rng.random(n).round(draw(st.sampled_from([2, 3, 16])))
    truth = rng.random(n) < scores
    truth[:2] = [True, False]  # both classes
    predicted = scores >= draw(st.floats(0.2, 0.8))
    labelled = rng.random(n) < draw(st.floats(0.3, 1.0))
    labelled[:2] = True
    groups = rng.choice(["a", "b", "c"], n)
    parts = rng.integers(0, draw(st.integers(1, 5)), n)
    return scores, truth, predicted, labelled, groups, parts, rng.permutation(n)


def binary_share(rows: np.ndarray, *, scores, truth, predicted, labelled, groups) -> BinarySummary:
    combos = [(("g", g),) for g in "abc"]
    codes = np.searchsorted(np.array(list("abc")), groups)
    scored = Scored(predicted, scores, codes, combos)
    summary = BinarySummary()
    summary.add_predictions(scored.rows(rows))
    known = rows[labelled[rows]]
    summary.add_labels(scored.rows(known), truth[known])
    return summary


def shares_in_order(parts: np.ndarray, order: np.ndarray, build) -> list[Summary]:
    """One summary per partition, its rows taken in ``order``, merged in a shuffled partition order."""
    shares = [build(order[parts[order] == p]) for p in np.unique(parts)]
    return shares[::-1] if len(shares) % 2 else shares


@settings(max_examples=60, deadline=None)
@given(binary_windows())
def test_binary_summaries_merged_from_any_split_equal_scikit_learn_and_fairlearn(window) -> None:
    scores, truth, predicted, labelled, groups, parts, order = window
    args = {"scores": scores, "truth": truth, "predicted": predicted, "labelled": labelled, "groups": groups}
    whole = binary_share(np.arange(len(scores)), **args)
    split = merged(shares_in_order(parts, order, lambda rows: binary_share(rows, **args)))
    assert isinstance(split, BinarySummary)

    decoded = msgspec.msgpack.decode(
        msgspec.msgpack.encode(split, enc_hook=encode_hook), type=BinarySummary, dec_hook=decode_hook
    )
    for summary in (split, decoded):  # the same to the last bit, and through its encoding
        assert (summary.predictions, summary.labelled, summary.groups) == (
            whole.predictions,
            whole.labelled,
            whole.groups,
        )
        assert (summary.estimated, summary.log_loss, summary.brier) == (whole.estimated, whole.log_loss, whole.brier)
        assert np.array_equal(summary.roc, whole.roc)
    ours = split.performance()
    y, y_hat, p = truth[labelled], predicted[labelled], scores[labelled]
    assert close(ours["accuracy"], metrics.accuracy_score(y, y_hat))
    assert close(ours["f1"], metrics.f1_score(y, y_hat, zero_division=0.0)) or ours["f1"] is None
    assert close(ours["log_loss"], metrics.log_loss(y, p, labels=[False, True]))
    assert close(ours["brier"], metrics.brier_score_loss(y, p))
    assert close(ours["estimated_accuracy"], float(np.mean(np.where(predicted, scores, 1 - scores))))
    bound = split.roc_auc_bound()
    assert ours["roc_auc"] is not None and bound is not None
    assert abs(ours["roc_auc"] - metrics.roc_auc_score(y, p)) <= bound + 1e-12
    rows = split.fairness(min_count=1)
    judged = {row.group for row in rows}
    assert judged == set(groups)
    for row in rows:
        member = groups == row.group
        assert row.count == member.sum() and close(row.selection_rate, float(predicted[member].mean()))
    if len(judged) >= 2:
        selection = demographic_parity_difference(predicted, predicted, sensitive_features=groups)
        assert close(rows[0].demographic_parity_difference, selection)
        y_groups = groups[labelled]
        if all(len(set(y[y_groups == g])) == 2 for g in judged):  # every rate defined
            odds = equalized_odds_difference(y, y_hat, sensitive_features=y_groups)
            assert close(rows[0].equalized_odds_difference, odds)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 400), st.integers(1, 4))
def test_multiclass_and_regression_summaries_equal_scikit_learn(seed: int, n: int, partitions: int) -> None:
    rng = np.random.default_rng(seed)
    parts, order = rng.integers(0, partitions, n), rng.permutation(n)
    truth = rng.choice(["cat", "dog", "eel"], n)
    predicted = np.where(rng.random(n) < 0.6, truth, rng.choice(["cat", "dog", "fox"], n))

    def classes(rows: np.ndarray) -> MulticlassSummary:
        summary = MulticlassSummary()
        summary.add_labels(list(predicted[rows]), list(truth[rows]))
        return summary

    multiclass = merged(shares_in_order(parts, order, classes))
    assert isinstance(multiclass, MulticlassSummary)
    assert close(multiclass.performance()["accuracy"], metrics.accuracy_score(truth, predicted))
    assert close(multiclass.performance()["f1"], metrics.f1_score(truth, predicted, average="macro"))

    values = rng.normal(rng.choice([0.0, 1e6]), rng.choice([1e-3, 1.0, 1e3]), n)
    outputs = values + rng.normal(0, 0.5, n)

    def regression(rows: np.ndarray) -> RegressionSummary:
        summary = RegressionSummary()
        summary.add_labels(outputs[rows], values[rows])
        return summary

    ours = merged(shares_in_order(parts, order, regression))
    assert isinstance(ours, RegressionSummary)
    assert ours == regression(np.arange(n))
    assert close(ours.performance()["mae"], metrics.mean_absolute_error(values, outputs))
    assert close(ours.performance()["rmse"], metrics.root_mean_squared_error(values, outputs))
    assert close(ours.performance()["r2"], metrics.r2_score(values, outputs))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 600), st.sampled_from([0.0, 0.5, 3.0]), st.integers(1, 4))
def test_numeric_counts_give_exact_ks_and_bounded_wasserstein_against_the_sample(
    seed: int, n: int, shift: float, partitions: int
) -> None:
    rng = np.random.default_rng(seed)
    reference = feature_profile(pd.Series(rng.normal(0, 1, int(rng.integers(5, 3000))).round(1)))
    values = rng.normal(shift, 1, n).round(int(rng.integers(1, 4)))
    counts = NumericCounts(reference)
    for part in np.array_split(rng.permutation(values), partitions):
        counts.add(part, 0)

    drift = counts.drift("x")
    sample = np.asarray(reference.sample)
    assert close(drift.ks_statistic, ks_2samp(values, sample).statistic)
    bound = counts.wasserstein_bound()
    assert drift.wasserstein is not None and bound is not None
    assert abs(drift.wasserstein - wasserstein_distance(values, sample) / reference.spread) <= bound + 1e-9


@given(st.lists(st.floats(-1e300, 1e300), max_size=50), st.randoms())
def test_an_exact_sum_is_the_correctly_rounded_sum_whatever_the_order_and_batches(values, random) -> None:
    shuffled = list(values)
    random.shuffle(shuffled)
    cut = random.randint(0, len(shuffled))
    first, second = ExactSum(), ExactSum()
    first.add(np.array(shuffled[:cut], dtype=np.float64))
    second.add(np.array(shuffled[cut:], dtype=np.float64))

    assert (first + second).value() == math.fsum(values)


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=120))
def test_an_exact_sum_holds_the_exact_total_in_python_and_in_numpy_alike(values) -> None:
    exact = sum((Fraction(v) for v in values), Fraction(0))
    whole, one_by_one = ExactSum(), ExactSum()  # one batch (numpy from 48 terms), and single terms (Python)
    whole.add(np.array(values, dtype=np.float64))
    for value in values:
        one_by_one.add(np.array([value]))

    assert Fraction(whole.total, 2**1126) == exact
    assert one_by_one.total == whole.total
    with pytest.raises(ValueError, match="finite"):
        one_by_one.add(np.array([1.0, math.inf]))
