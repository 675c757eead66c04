"""Drift of one window against a reference profile, per feature, from the window's counts (numpy and scipy;
the counts are kept by :mod:`driftline.streams.core.feature_counts`).

Numeric features are binned on the reference's decile edges (``bin_edges``: values equal to an edge fall in
the bin above it); categorical features on the reference's categories plus one bucket for categories the
reference never saw. With window shares aᵢ and reference shares eᵢ, both floored at ``SHARE_FLOOR`` and
renormalised so that empty bins do not make the logarithm infinite:

- PSI = Σ (aᵢ − eᵢ)·ln(aᵢ / eᵢ)  (0.1 is a moderate shift, 0.25 a large one);
- Jensen–Shannon distance = √JSD(a ‖ e), base 2, in [0, 1] (as ``scipy.spatial.distance.jensenshannon``
  computes it; :func:`shifts` computes both for every feature of a window in one pass, tested against it);
- numeric: the Kolmogorov–Smirnov statistic D = max |F_window(x) − F_reference(x)| of the window's values
  against the reference sample, and its asymptotic two-sided p-value for n = round(n·m / (n + m)), from the
  Kolmogorov distribution with Stephens' correction (:func:`ks_pvalues`: within 0.025 of
  ``scipy.stats.ks_2samp(..., method="asymp")``, and within 0.002 where that is at most 0.1); the Wasserstein
  distance between them
  (``scipy.stats.wasserstein_distance``) divided by the reference's standard deviation, so it reads in
  reference spreads;
- categorical: the chi-square goodness-of-fit p-value of the window's counts against the reference shares,
  ``chdtrc(k − 1, Σ (oᵢ − eᵢ)² / eᵢ)`` over the k bins (``scipy.stats.chisquare``), and the share of window
  values in categories unseen in the reference;
- missing rate = nulls / values, and its increase over the reference's missing rate (distances above drop
  nulls first, so a feature breaking into nulls shows only here).

The reference keeps a random sample (at most 2,000 values), not every value: KS and Wasserstein compare with
that sample, so they carry its sampling error (KS: about 1.36/√2000 ≈ 0.03 at 95%). KS is exact against the
sample; Wasserstein is read from counts within a stated bound (see the counts' module).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import chdtrc, kolmogorov, rel_entr
from scipy.stats import kstwo

from driftline.schemas.results import FeatureDrift, FeatureProfile

SHARE_FLOOR = 1e-4
KS_EXACT_BELOW = 5  # effective sizes under this get kstwo.sf itself (cheap there)
KS_PVALUE_BOUND = 0.025  # |ks_pvalues - kstwo.sf| at most (measured: 0.023 at n = 5..30, 0.006 over 500)
KS_PVALUE_BOUND_SMALL = 0.002  # the same where kstwo.sf <= 0.1 (measured: 0.0014), where decisions are taken


def _floored(shares: NDArray[np.float64]) -> NDArray[np.float64]:
    floored = np.maximum(shares, SHARE_FLOOR)
    return np.asarray(floored / floored.sum(), dtype=np.float64)


def psi(actual: NDArray[np.float64], expected: NDArray[np.float64]) -> float:
    """Population stability index of two share vectors over the same bins (floored, renormalised)."""
    a, e = _floored(actual), _floored(expected)
    return float(np.sum((a - e) * np.log(a / e)))


Shares = tuple[NDArray[np.float64], NDArray[np.float64]]  # a window's shares per bin, the reference's
Shift = tuple[float, float]  # PSI, Jensen–Shannon distance


def shifts(pairs: Sequence[Shares]) -> list[Shift]:
    """:func:`psi` and the Jensen–Shannon distance (base 2) of each pair of share vectors, floored and renormalised,
    every pair in one pass (a window's features hold a few bins each, where numpy's cost per call would dominate):
    with m = (a + e) / 2, JS = √((Σ a·ln(a/m) + Σ e·ln(e/m)) / (2·ln 2))."""
    if not pairs:
        return []
    starts = np.cumsum([0, *(len(actual) for actual, _expected in pairs[:-1])])
    a = _floored_each(np.concatenate([actual for actual, _expected in pairs]), starts)
    e = _floored_each(np.concatenate([expected for _actual, expected in pairs]), starts)
    psi_values = np.add.reduceat((a - e) * np.log(a / e), starts)
    m = (a + e) / 2
    divergence = np.add.reduceat(rel_entr(a, m) + rel_entr(e, m), starts) / (2 * np.log(2))
    return list(zip(psi_values.tolist(), np.sqrt(np.maximum(divergence, 0.0)).tolist(), strict=True))


def _floored_each(shares: NDArray[np.float64], starts: NDArray[np.int64]) -> NDArray[np.float64]:
    """:func:`_floored` of each segment of ``shares`` (segments begin at ``starts``)."""
    floored = np.maximum(shares, SHARE_FLOOR)
    sizes = np.diff(np.append(starts, len(floored)))
    return np.asarray(floored / np.repeat(np.add.reduceat(floored, starts), sizes), dtype=np.float64)


def numeric_shares(bins: NDArray[np.int64], count: int, profile: FeatureProfile) -> Shares | None:
    """A numeric feature's window shares per reference bin and the reference's; None without values or bins."""
    if count == 0 or profile.bin_edges is None or profile.bin_shares is None:
        return None
    return bins / count, np.asarray(profile.bin_shares, dtype=np.float64)


def categorical_shares(counts: NDArray[np.int64], profile: FeatureProfile) -> Shares | None:
    """A categorical feature's window shares per reference category (then unseen ones) and the reference's (0 for
    unseen); None without values or categories."""
    present = int(counts.sum())
    if present == 0 or not profile.category_shares:
        return None
    expected = np.fromiter(profile.category_shares.values(), dtype=np.float64, count=len(profile.category_shares))
    return counts / present, np.append(expected, 0.0)


def numeric_bin_shares(values: NDArray[np.float64], edges: list[float]) -> NDArray[np.float64]:
    """Share of ``values`` in each bin of the inner ``edges`` (len(edges) + 1 bins)."""
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1)
    return np.asarray(counts / max(len(values), 1), dtype=np.float64)


def ks_from_cdfs(
    window_at: NDArray[np.float64],
    window_before: NDArray[np.float64],
    sample_at: NDArray[np.float64],
    sample_before: NDArray[np.float64],
) -> float:
    """KS statistic sup |F_window − F_sample| from both CDFs at each distinct sample point and just before it
    (the window's CDF may rise between two sample points, where the sample's stays at its value before the
    next point: the supremum is at a point or just before one)."""
    return float(max(np.max(np.abs(window_at - sample_at)), np.max(np.abs(window_before - sample_before))))


def ks_effective_size(count: int, sample_size: int) -> int:
    """The n of the two-sample KS p-value: round(n·m / (n + m)) (as ``scipy.stats.ks_2samp``)."""
    return round(count * sample_size / (count + sample_size))


def ks_pvalues(statistics: list[float], sizes: list[int]) -> list[float]:
    """Two-sided KS p-values of statistics D with effective sizes n: the asymptotic Kolmogorov distribution with
    Stephens' correction, Q((√n + 0.12 + 0.11/√n)·D) (``scipy.special.kolmogorov``), for n >= ``KS_EXACT_BELOW``;
    below, ``kstwo.sf(D, n)``. Within ``KS_PVALUE_BOUND`` of ``kstwo.sf(D, n)`` (what ``ks_2samp(...,
    method="asymp")`` returns), and within ``KS_PVALUE_BOUND_SMALL`` where that is at most 0.1 (measured on a grid
    of n from 5 to 2,000 and D over (0, 1], and tested): the Simard–L'Ecuyer computation behind ``kstwo.sf`` costs
    up to milliseconds per value, more than the rest of a window's drift."""
    if not statistics:
        return []
    d, n = np.asarray(statistics, dtype=np.float64), np.asarray(sizes, dtype=np.float64)
    root = np.sqrt(np.maximum(n, 1.0))
    p = np.where(n >= KS_EXACT_BELOW, kolmogorov((root + 0.12 + 0.11 / root) * d), 0.0)
    small = n < KS_EXACT_BELOW
    if small.any():
        p[small] = kstwo.sf(d[small], n[small])
    return [float(value) for value in np.clip(p, 0.0, 1.0)]


def _counted(feature: str, kind: str, present: int, missing: int, profile: FeatureProfile) -> dict[str, Any]:
    """What every feature's drift row holds: its name and kind, its non-null values, its missing rate
    (``missing / (present + missing)``, None without values) and that rate's increase over the profile's."""
    total = present + missing
    missing_rate = missing / total if total else None
    return {
        "feature": feature,
        "kind": kind,
        "count": present,
        "missing_rate": missing_rate,
        "missing_rate_increase": None if missing_rate is None else missing_rate - profile.missing_rate,
    }


def numeric_drift(
    feature: str,
    count: int,
    missing: int,
    profile: FeatureProfile,
    *,
    shift: Shift | None,
    ks_statistic: float | None,
    ks_pvalue: float | None,
    wasserstein: float | None,
) -> FeatureDrift:
    """Drift of a numeric feature: ``count`` non-null window values and ``missing`` nulls; ``shift``, the
    :func:`shifts` of its :func:`numeric_shares` (None without values or bins); and the KS statistic (with its
    p-value, :func:`ks_pvalues`) and normalised Wasserstein distance against the profile's sample."""
    base = _counted(feature, "numeric", count, missing, profile)
    if shift is None or ks_statistic is None:
        return FeatureDrift.model_validate(base)
    psi_value, jensen_shannon = shift
    return FeatureDrift.model_validate(
        {
            **base,
            "psi": psi_value,
            "jensen_shannon": jensen_shannon,
            "ks_statistic": ks_statistic,
            "ks_pvalue": ks_pvalue,
            "wasserstein": wasserstein,
        }
    )


def _chi2_pvalue(observed: NDArray[np.float64], expected: NDArray[np.float64]) -> float:
    return float(chdtrc(len(observed) - 1, np.sum((observed - expected) ** 2 / expected)))


def categorical_drift(
    feature: str,
    counts: NDArray[np.int64],
    missing: int,
    profile: FeatureProfile,
    *,
    shares: Shares | None,
    shift: Shift | None,
) -> FeatureDrift:
    """Drift of a categorical feature: ``counts`` of non-null window values per profile category (in the
    profile's order) plus one count for categories the profile never saw, and ``missing`` nulls; ``shares``, its
    :func:`categorical_shares` (None without values or categories), and their :func:`shifts`."""
    present = int(counts.sum())
    base = _counted(feature, "categorical", present, missing, profile)
    if shares is None or shift is None:
        return FeatureDrift.model_validate(base)
    actual, expected = shares
    psi_value, jensen_shannon = shift
    return FeatureDrift.model_validate(
        {
            **base,
            "psi": psi_value,
            "jensen_shannon": jensen_shannon,
            "chi2_pvalue": _chi2_pvalue(counts.astype(np.float64), _floored(expected) * present),
            "new_category_share": float(actual[-1]),
        }
    )
