"""A reference's own performance, read from a training frame as a window's is read: against scikit-learn and
fairlearn on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, selection_rate
from sklearn.metrics import accuracy_score, f1_score, log_loss, mean_absolute_error, r2_score, roc_auc_score

from driftline.schemas.errors import ConfigError
from driftline.streams.core.metrics.profile import build_profile
from driftline.streams.core.metrics.reference_columns import ReferenceColumns
from driftline.streams.core.metrics.reference_performance import infer_task


def binary_frame(n: int = 3_000, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.uniform(size=n)
    outcome = (rng.uniform(size=n) < score).astype(float)
    outcome[rng.uniform(size=n) < 0.2] = np.nan  # unlabelled rows: pandas reads 0/1 with gaps as floats
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "score": score,
            "prediction": (score >= 0.5).astype(int),
            "outcome": outcome,
            "gender": rng.choice(["f", "m", None], size=n, p=[0.45, 0.45, 0.1]),
        }
    )


def test_a_binary_reference_performs_as_scikit_learn_and_fairlearn_say() -> None:
    frame = binary_frame()
    profile = build_profile(frame, "m", "1", columns=ReferenceColumns(label="outcome", sensitive=("gender",)))

    performance = profile.performance
    assert performance is not None and performance.task == "binary"
    labelled = frame[frame["outcome"].notna()]
    truth, predicted, score = labelled["outcome"].astype(int), labelled["prediction"], labelled["score"]
    assert (performance.predictions, performance.labelled) == (len(frame), len(labelled))
    assert performance.accuracy == pytest.approx(accuracy_score(truth, predicted), abs=1e-12)
    assert performance.f1 == pytest.approx(f1_score(truth, predicted), abs=1e-12)
    assert performance.log_loss == pytest.approx(log_loss(truth, score), abs=1e-9)
    assert performance.roc_auc == pytest.approx(roc_auc_score(truth, score), abs=1 / 2048)
    confidence = np.where(frame["prediction"] == 1, frame["score"], 1 - frame["score"])
    assert performance.estimated_accuracy == pytest.approx(confidence.mean(), abs=1e-12)
    assert set(profile.features) == {"age", "__score__", "__predicted_label__"}  # outcome, gender left out

    groups = frame["gender"].fillna("__missing__")
    rates = MetricFrame(
        metrics=selection_rate, y_true=frame["prediction"], y_pred=frame["prediction"], sensitive_features=groups
    )
    by_group = {row.group: row for row in profile.fairness}
    assert set(by_group) == {"f", "m", "__missing__"}
    for group, rate in rates.by_group.items():
        assert by_group[str(group)].selection_rate == pytest.approx(rate, abs=1e-12)
        assert by_group[str(group)].count == int((groups == group).sum())


def test_without_true_labels_the_reference_has_an_estimated_accuracy_and_no_accuracy() -> None:
    profile = build_profile(
        binary_frame().drop(columns="outcome"), "m", "1", columns=ReferenceColumns(sensitive=("gender",))
    )

    assert profile.performance is not None
    assert profile.performance.labelled == 0 and profile.performance.accuracy is None
    assert profile.performance.estimated_accuracy is not None


def test_a_pinned_positive_label_decides_which_class_is_positive() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "score": [0.9, 0.8, 0.3, 0.2]})
    frame["prediction"] = ["yes", "yes", "no", "no"]
    frame["outcome"] = ["yes", "no", "no", "no"]

    profile = build_profile(frame, "m", "1", positive={"yes"}, columns=ReferenceColumns(label="outcome"))

    assert profile.performance is not None
    assert profile.performance.accuracy == 0.75
    assert profile.performance.precision == 0.5 and profile.performance.recall == 1.0


def test_multiclass_and_regression_references() -> None:
    rng = np.random.default_rng(3)
    classes = rng.choice(["a", "b", "c"], size=500)
    multiclass = pd.DataFrame({"x": rng.normal(size=500), "prediction": classes})
    multiclass["outcome"] = np.where(rng.uniform(size=500) < 0.7, classes, rng.choice(["a", "b", "c"], size=500))
    values = rng.normal(size=500)
    regression = pd.DataFrame(
        {"x": rng.normal(size=500), "prediction": values, "outcome": values + rng.normal(size=500)}
    )

    assert infer_task(multiclass, "prediction", None) == "multiclass"
    assert infer_task(regression, "prediction", None) == "regression"
    m = build_profile(multiclass, "m", "1", columns=ReferenceColumns(score=None, label="outcome")).performance
    r = build_profile(regression, "r", "1", columns=ReferenceColumns(score=None, label="outcome")).performance
    assert m is not None and r is not None
    assert m.accuracy == pytest.approx(accuracy_score(multiclass["outcome"], multiclass["prediction"]), abs=1e-12)
    assert m.f1 == pytest.approx(f1_score(multiclass["outcome"], multiclass["prediction"], average="macro"), abs=1e-12)
    assert r.mae == pytest.approx(mean_absolute_error(regression["outcome"], regression["prediction"]), abs=1e-12)
    assert r.r2 == pytest.approx(r2_score(regression["outcome"], regression["prediction"]), abs=1e-12)


def test_scores_outside_zero_one_are_refused() -> None:
    frame = binary_frame(100)
    frame.loc[0, "score"] = 3.0
    with pytest.raises(ConfigError, match="probabilities"):
        build_profile(frame, "m", "1", columns=ReferenceColumns(label="outcome"))
