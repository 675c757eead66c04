"""Drift of one window against a reference profile, per feature (numpy and scipy).

Numeric features are binned on the reference's decile edges (``bin_edges``: values equal to an edge fall in
the bin above it); categorical features on the reference's categories plus one bucket for categories the
reference never saw. With window shares aᵢ and reference shares eᵢ, both floored at ``SHARE_FLOOR`` and
renormalised so that empty bins do not make the logarithm infinite:

- PSI = Σ (aᵢ − eᵢ)·ln(aᵢ / eᵢ)  (0.1 is a moderate shift, 0.25 a large one);
- Jensen–Shannon distance = √JSD(a ‖ e), base 2, in [0, 1] (``scipy.spatial.distance.jensenshannon``);
- numeric: the Kolmogorov–Smirnov statistic D = max |F_window(x) − F_reference(x)| of the window's values
  against the reference sample, and its asymptotic two-sided p-value ``kstwo.sf(D, round(n·m / (n + m)))``
  (exactly ``scipy.stats.ks_2samp(..., method="asymp")``: the exact method costs more than the rest of a
  window's drift and the windows are large); the Wasserstein distance between them
  (``scipy.stats.wasserstein_distance``) divided by the reference's standard deviation, so it reads in
  reference spreads;
- categorical: the chi-square goodness-of-fit p-value of the window's counts against the reference shares,
  ``chdtrc(k − 1, Σ (oᵢ − eᵢ)² / eᵢ)`` over the k bins (``scipy.stats.chisquare``), and the share of window
  values in categories unseen in the reference;
- missing rate = nulls / values, and its increase over the reference's missing rate (distances above drop
  nulls first, so a feature breaking into nulls shows only here).

The reference keeps a random sample (at most 2,000 values), not every value: KS and Wasserstein compare with
that sample, so they carry its sampling error (KS: about 1.36/√2000 ≈ 0.03 at 95%).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.distance import jensenshannon
from scipy.special import chdtrc
from scipy.stats import kstwo, wasserstein_distance

from driftline.schemas.results import FeatureDrift, FeatureProfile

SHARE_FLOOR = 1e-4


def _floored(shares: NDArray[np.float64]) -> NDArray[np.float64]:
    floored = np.maximum(shares, SHARE_FLOOR)
    return np.asarray(floored / floored.sum(), dtype=np.float64)


def psi(actual: NDArray[np.float64], expected: NDArray[np.float64]) -> float:
    """Population stability index of two share vectors over the same bins (floored, renormalised)."""
    a, e = _floored(actual), _floored(expected)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_bin_shares(values: NDArray[np.float64], edges: list[float]) -> NDArray[np.float64]:
    """Share of ``values`` in each bin of the inner ``edges`` (len(edges) + 1 bins)."""
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1)
    return np.asarray(counts / max(len(values), 1), dtype=np.float64)


def ks_two_sample(values: NDArray[np.float64], sorted_reference: NDArray[np.float64]) -> tuple[float, float]:
    """KS statistic of ``values`` against an already sorted reference, and its asymptotic p-value."""
    window = np.sort(values)
    points = np.concatenate([window, sorted_reference])
    distance = np.abs(
        np.searchsorted(window, points, side="right") / len(window)
        - np.searchsorted(sorted_reference, points, side="right") / len(sorted_reference)
    )
    statistic = float(distance.max())
    effective = round(len(window) * len(sorted_reference) / (len(window) + len(sorted_reference)))
    return statistic, float(np.clip(kstwo.sf(statistic, effective), 0.0, 1.0))


def numeric_drift(feature: str, values: NDArray[np.float64], missing: int, profile: FeatureProfile) -> FeatureDrift:
    """Drift of a numeric feature's non-null window ``values`` (and ``missing`` nulls) from its profile."""
    total = len(values) + missing
    missing_rate = missing / total if total else None
    base = {
        "feature": feature,
        "kind": "numeric",
        "count": len(values),
        "missing_rate": missing_rate,
        "missing_rate_increase": None if missing_rate is None else missing_rate - profile.missing_rate,
    }
    if len(values) == 0 or profile.bin_edges is None or profile.bin_shares is None or not profile.sample:
        return FeatureDrift.model_validate(base)
    actual = numeric_bin_shares(values, profile.bin_edges)
    expected = np.asarray(profile.bin_shares)
    sample = np.sort(np.asarray(profile.sample))  # built sorted; sorting again is cheap and makes sure
    statistic, pvalue = ks_two_sample(values, sample)
    spread = profile.spread or 0.0
    return FeatureDrift.model_validate(
        {
            **base,
            "psi": psi(actual, expected),
            "jensen_shannon": float(jensenshannon(_floored(actual), _floored(expected), base=2)),
            "ks_statistic": statistic,
            "ks_pvalue": pvalue,
            "wasserstein": float(wasserstein_distance(values, sample)) / spread if spread > 0 else None,
        }
    )


def categorical_drift(feature: str, values: NDArray[np.str_], missing: int, profile: FeatureProfile) -> FeatureDrift:
    """Drift of a categorical feature's non-null window ``values`` (and ``missing`` nulls) from its profile."""
    total = len(values) + missing
    missing_rate = missing / total if total else None
    base = {
        "feature": feature,
        "kind": "categorical",
        "count": len(values),
        "missing_rate": missing_rate,
        "missing_rate_increase": None if missing_rate is None else missing_rate - profile.missing_rate,
    }
    if len(values) == 0 or not profile.category_shares:
        return FeatureDrift.model_validate(base)
    categories = list(profile.category_shares)
    index = {category: i for i, category in enumerate(categories)}
    codes = np.fromiter((index.get(str(v), len(categories)) for v in values), dtype=np.int64, count=len(values))
    counts = np.bincount(codes, minlength=len(categories) + 1).astype(np.float64)
    actual = counts / counts.sum()
    expected = np.append(np.asarray([profile.category_shares[c] for c in categories]), 0.0)
    expected_counts = _floored(expected) * counts.sum()
    return FeatureDrift.model_validate(
        {
            **base,
            "psi": psi(actual, expected),
            "jensen_shannon": float(jensenshannon(_floored(actual), _floored(expected), base=2)),
            "chi2_pvalue": float(chdtrc(len(counts) - 1, np.sum((counts - expected_counts) ** 2 / expected_counts))),
            "new_category_share": float(actual[-1]),
        }
    )
