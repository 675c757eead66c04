"""Drift statistics against a reference profile agree with independent computations and scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chisquare, ks_2samp, kstwo, wasserstein_distance

from driftline.client.reference import build_and_publish
from driftline.schemas.errors import ConfigError
from driftline.settings import Settings
from driftline.streams.core.metrics.drift import (
    KS_PVALUE_BOUND,
    KS_PVALUE_BOUND_SMALL,
    SHARE_FLOOR,
    ks_pvalues,
    psi,
    shifts,
)
from driftline.streams.core.metrics.profile import PREDICTED_LABEL, SCORE, build_profile, feature_profile
from driftline.streams.core.metrics.reference_columns import ReferenceColumns
from tests.summaries import categorical_counts, numeric_counts

RNG = np.random.default_rng(3)


def test_psi_matches_its_formula_and_is_zero_for_identical_shares() -> None:
    a = np.array([0.1, 0.2, 0.3, 0.4])
    e = np.array([0.25, 0.25, 0.25, 0.25])

    assert psi(a, e) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    assert psi(e, e) == 0.0
    assert np.isfinite(psi(np.array([0.0, 1.0]), np.array([0.5, 0.5])))  # empty bin: floored, not infinite


def test_shifts_of_many_features_at_once_equal_psi_and_scipys_jensen_shannon_one_at_a_time() -> None:
    pairs = []
    for size in (2, 3, 10, 11, 40, 1):
        actual, expected = RNG.random(size), RNG.random(size)
        actual[RNG.random(size) < 0.3] = 0.0  # empty bins are floored
        pairs.append((actual / max(actual.sum(), 1e-12), expected / expected.sum()))

    found = shifts(pairs)

    for (actual, expected), (psi_value, js) in zip(pairs, found, strict=True):
        a, e = np.maximum(actual, SHARE_FLOOR), np.maximum(expected, SHARE_FLOOR)
        assert psi_value == pytest.approx(psi(actual, expected), abs=1e-12)
        assert js == pytest.approx(float(jensenshannon(a / a.sum(), e / e.sum(), base=2)), abs=1e-12)
    assert shifts([]) == []


def test_numeric_drift_equals_scipy_on_the_reference_sample_and_grows_with_the_shift() -> None:
    reference = feature_profile(pd.Series(RNG.normal(50, 10, 1500)))
    same = RNG.normal(50, 10, 1000)
    shifted = RNG.normal(60, 10, 1000)

    calm = numeric_counts(same, 0, reference).drift("age")
    counts = numeric_counts(shifted, 0, reference)
    moved = counts.drift("age")

    sample = np.asarray(reference.sample)
    assert moved.ks_statistic == pytest.approx(ks_2samp(shifted, sample).statistic)
    exact = ks_2samp(shifted, sample, method="asymp").pvalue
    assert moved.ks_pvalue is not None and abs(moved.ks_pvalue - exact) <= KS_PVALUE_BOUND_SMALL  # exact ~ 1e-60
    bound = counts.wasserstein_bound()
    assert bound is not None and bound < 0.02  # half the mean gap between sample points at the window values
    assert abs(moved.wasserstein - wasserstein_distance(shifted, sample) / np.std(sample)) <= bound
    assert moved.wasserstein == pytest.approx(1.0, abs=0.15)  # a one-spread shift reads as about 1
    assert calm.psi is not None and moved.psi is not None
    assert calm.psi < 0.05 and moved.psi > 0.25
    assert calm.jensen_shannon < moved.jensen_shannon <= 1


def test_binning_uses_the_reference_deciles() -> None:
    reference = feature_profile(pd.Series(np.arange(1000, dtype=float)))

    assert reference.bin_shares == pytest.approx([0.1] * 10, abs=0.002)
    window = np.arange(1000, dtype=float)
    assert numeric_counts(window, 0, reference).drift("x").psi == pytest.approx(0.0, abs=1e-3)


def test_categorical_drift_counts_new_categories_and_equals_scipy_chi_square() -> None:
    reference = feature_profile(pd.Series(RNG.choice(["a", "b", "c"], 2000, p=[0.5, 0.3, 0.2])))
    window = RNG.choice(["a", "b", "c", "zz"], 800, p=[0.3, 0.3, 0.2, 0.2])

    drift = categorical_counts(list(window), 0, reference).drift("city")

    assert drift.new_category_share == pytest.approx(np.mean(window == "zz"))
    shares = reference.category_shares
    assert shares is not None
    categories = list(shares)
    counts = np.array([np.sum(window == c) for c in categories] + [np.sum(window == "zz")], dtype=float)
    expected = np.maximum(np.array([shares[c] for c in categories] + [0.0]), SHARE_FLOOR)
    expected = expected / expected.sum()
    assert drift.chi2_pvalue == pytest.approx(chisquare(counts, expected * counts.sum()).pvalue)
    assert drift.jensen_shannon == pytest.approx(jensenshannon(counts / counts.sum(), expected, base=2), abs=1e-3)
    assert drift.psi is not None and drift.psi > 0.25


def test_missing_rate_increase_sees_a_feature_breaking_into_nulls() -> None:
    reference = feature_profile(pd.Series([1.0, 2.0, None, 4.0] * 100))
    drift = numeric_counts(np.array([1.0, 2.0, 4.0]), 97, reference).drift("income")

    assert drift.missing_rate == pytest.approx(0.97)
    assert drift.missing_rate_increase == pytest.approx(0.97 - 0.25)


def test_profile_covers_features_scores_and_predicted_labels() -> None:
    frame = pd.DataFrame(
        {
            "age": RNG.normal(40, 5, 300),
            "city": RNG.choice(["x", "y"], 300),
            "score": RNG.random(300),
            "prediction": RNG.integers(0, 2, 300),
            "prediction_id": [f"p{i}" for i in range(300)],
        }
    )

    profile = build_profile(frame, "m", "1")

    assert set(profile.features) == {"age", "city", SCORE, PREDICTED_LABEL}
    assert profile.features["age"].kind == "numeric" and profile.features["city"].kind == "categorical"
    assert profile.rows == 300
    assert len(profile.features["age"].bin_edges or []) == 9


def test_ks_pvalues_are_within_their_stated_bounds_of_scipys_kstwo() -> None:
    sizes = np.unique(np.geomspace(1, 2000, 40).astype(int))
    statistics = np.linspace(0.0005, 1.0, 400)
    d, n = np.meshgrid(statistics, sizes)
    ours = np.array(ks_pvalues(d.ravel().tolist(), n.ravel().astype(int).tolist()))
    exact = kstwo.sf(d.ravel(), n.ravel())
    error = np.abs(ours - exact)
    assert error.max() <= KS_PVALUE_BOUND
    assert error[exact <= 0.1].max() <= KS_PVALUE_BOUND_SMALL
    assert error[n.ravel() >= 500].max() <= 0.006


def test_a_column_named_label_must_be_named_and_true_outcomes_and_sensitive_columns_are_no_features() -> None:
    """Training data's ``label`` is the true outcome: profiled as the predicted label it would be silently
    wrong, so it is refused until named; the outcome and the sensitive attributes are left out of the features."""
    frame = pd.DataFrame(
        {
            "age": RNG.normal(40, 5, 300),
            "gender": RNG.choice(["f", "m"], 300),
            "score": RNG.random(300),
            "label": RNG.integers(0, 2, 300),
            "prediction": (RNG.random(300) < 0.1).astype(int),
        }
    )
    with pytest.raises(ConfigError, match=r"column 'label' is ambiguous: .*--label-column label"):
        build_profile(frame, "m", "1")

    profile = build_profile(frame, "m", "1", columns=ReferenceColumns(label="label", sensitive=("gender",)))

    assert set(profile.features) == {"age", SCORE, PREDICTED_LABEL}
    shares = profile.features[PREDICTED_LABEL].category_shares or {}
    assert shares["1"] == pytest.approx(frame["prediction"].mean())  # the predictions', not the outcome's
    as_predictions = build_profile(
        frame.drop(columns="prediction"), "m", "1", columns=ReferenceColumns(prediction="label")
    )
    assert (as_predictions.features[PREDICTED_LABEL].category_shares or {})["1"] == pytest.approx(frame["label"].mean())


def test_reference_build_names_a_missing_column_and_the_columns_there_are() -> None:
    frame = pd.DataFrame({"age": [1.0, 2.0], "score": [0.1, 0.9], "prediction": [0, 1]})
    with pytest.raises(ConfigError, match=r"--sensitive gender: no such column; the file has \['age', 'score'"):
        build_and_publish(Settings(), frame, "m", "1", sensitive=("gender",))
    with pytest.raises(ConfigError, match="--label-column outcome: no such column"):
        build_and_publish(Settings(), frame, "m", "1", label_column="outcome")
