"""Window performance metrics read from summaries agree with scikit-learn on the same data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics

from tests.summaries import binary_summary, multiclass_summary, regression_summary

RNG = np.random.default_rng(11)


@pytest.mark.parametrize("n", [7, 200, 5000])
def test_binary_metrics_equal_scikit_learn(n: int) -> None:
    y = RNG.random(n) < 0.4
    scores = np.clip(RNG.normal(np.where(y, 0.65, 0.35), 0.2), 0, 1).round(2)  # rounding makes ties
    predicted = scores >= 0.5

    summary = binary_summary(y, predicted, scores)
    ours = summary.performance()

    assert ours["accuracy"] == pytest.approx(metrics.accuracy_score(y, predicted))
    assert ours["precision"] == pytest.approx(metrics.precision_score(y, predicted))
    assert ours["recall"] == pytest.approx(metrics.recall_score(y, predicted))
    assert ours["f1"] == pytest.approx(metrics.f1_score(y, predicted))
    bound = summary.roc_auc_bound()
    assert bound is not None and abs(ours["roc_auc"] - metrics.roc_auc_score(y, scores)) <= bound + 1e-12
    assert ours["log_loss"] == pytest.approx(metrics.log_loss(y, scores, labels=[False, True]))
    assert ours["brier"] == pytest.approx(metrics.brier_score_loss(y, scores))


def test_undefined_binary_metrics_are_none_not_zero() -> None:
    one_class = binary_summary(np.array([True, True]), np.array([False, False]), np.array([0.2, 0.3])).performance()
    assert one_class["roc_auc"] is None and one_class["precision"] is None
    assert one_class["recall"] == 0.0 and one_class["accuracy"] == 0.0
    empty = binary_summary(np.array([], dtype=bool), np.array([], dtype=bool)).performance()
    assert empty["accuracy"] is None and empty["estimated_accuracy"] is None


def test_multiclass_accuracy_and_macro_f1_equal_scikit_learn() -> None:
    y = RNG.choice(["cat", "dog", "eel"], 400, p=[0.5, 0.3, 0.2])
    predicted = np.where(RNG.random(400) < 0.7, y, RNG.choice(["cat", "dog", "fox"], 400))

    ours = multiclass_summary(list(y), list(predicted)).performance()

    assert ours["accuracy"] == pytest.approx(metrics.accuracy_score(y, predicted))
    assert ours["f1"] == pytest.approx(metrics.f1_score(y, predicted, average="macro"))


def test_regression_metrics_equal_scikit_learn() -> None:
    y = RNG.normal(10, 3, 300)
    predicted = y + RNG.normal(0.5, 1, 300)

    ours = regression_summary(y, predicted).performance()

    assert ours["mae"] == pytest.approx(metrics.mean_absolute_error(y, predicted))
    assert ours["rmse"] == pytest.approx(metrics.root_mean_squared_error(y, predicted))
    assert ours["r2"] == pytest.approx(metrics.r2_score(y, predicted))
    assert regression_summary(np.full(3, 0.1), np.ones(3)).performance()["r2"] is None


def test_estimated_accuracy_from_calibrated_scores_is_close_to_the_realized_one() -> None:
    scores = RNG.beta(2, 2, 20_000)
    y = RNG.random(20_000) < scores  # calibrated: P(y=1 | score) = score
    predicted = scores >= 0.5

    realized = float(np.mean(y == predicted))

    estimated = binary_summary(y, predicted, scores, labelled=np.zeros(len(scores), dtype=bool))
    assert estimated.performance()["estimated_accuracy"] == pytest.approx(realized, abs=0.01)
