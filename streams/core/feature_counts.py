"""A window's feature values as counts against its reference profile: constant size, mergeable, exact drift.

Per numeric feature (reference: inner decile edges and a sorted sample with distinct points u₀ < … < u_{k−1}):

- counts in the reference's bins (PSI and Jensen–Shannon exact);
- counts in the 2k + 1 cells below u₀, at u₀, between u₀ and u₁, at u₁, …, above u_{k−1}: the window's
  empirical CDF at every sample point and just before it, so the Kolmogorov–Smirnov statistic against the
  sample is exact (the supremum of two step functions is reached at a sample point or just before one);
- the exact sums Σ(u₀ − v) over values below u₀ and Σ(v − u_{k−1}) over values above u_{k−1};
- nulls.

Wasserstein-1 against the sample, W = ∫|F_window − F_sample|, is exact outside [u₀, u_{k−1}] (from the two
sums) and bounded inside: on [u_{j−1}, u_j) the sample's CDF is a constant r and the window's rises from a to b
(known), so the integral lies in an interval of known ends; the estimate is its midpoint (as if the values
in the cell were spread evenly), and the stated error bound (:attr:`NumericCounts.wasserstein_bound`, in
reference spreads like the distance) is the sum of the half-widths, at most Σ_j (u_j − u_{j−1})·(b − a)/2:
half the mean gap between sample points at the window's values (with a 2,000-point sample: about 0.005 of a
spread for a window like the reference, 0.01 for one shifted by a spread into the sample's thin tail; the
error itself is usually far smaller, since cells err both ways).

Per categorical feature: counts per reference category, one count for every category the reference never
saw, nulls (PSI, Jensen–Shannon, chi-square and the new-category share exact).

Every count is an integer and every sum exact, so counts merged from any split of the values give the same
drift. Definitions of the distances: :mod:`driftline.streams.monitors.drift`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from driftline.schemas.results import FeatureDrift, FeatureProfile
from driftline.streams.core.exact_sum import ExactSum
from driftline.streams.monitors.drift import categorical_drift, ks_from_cdfs, numeric_drift


class NumericCounts:
    """Counts of one numeric feature's window values against its reference profile."""

    def __init__(self, profile: FeatureProfile) -> None:
        self.profile = profile
        self.edges = np.asarray(profile.bin_edges or [], dtype=np.float64)
        sample = np.sort(np.asarray(profile.sample or [], dtype=np.float64))
        self.points = np.unique(sample)
        self.sample_cdf = np.searchsorted(sample, self.points, side="right") / max(len(sample), 1)
        self.sample_size = len(sample)
        self.bins = np.zeros(len(self.edges) + 1, dtype=np.int64)
        self.cells = np.zeros(2 * len(self.points) + 1, dtype=np.int64)
        self.below = ExactSum()
        self.above = ExactSum()
        self.count = 0
        self.missing = 0

    def add(self, values: NDArray[np.float64], missing: int) -> None:
        """Count non-null ``values`` and ``missing`` nulls."""
        self.count += len(values)
        self.missing += missing
        self.bins += np.bincount(np.searchsorted(self.edges, values, side="right"), minlength=len(self.bins))
        if len(self.points) == 0 or len(values) == 0:
            return
        cells = np.searchsorted(self.points, values, side="left") + np.searchsorted(self.points, values, side="right")
        self.cells += np.bincount(cells, minlength=len(self.cells))
        first, last = self.points[0], self.points[-1]
        self.below.add(first - values[values < first])
        self.above.add(values[values > last] - last)

    def drift(self, feature: str) -> FeatureDrift:
        """The feature's drift row (Wasserstein within :meth:`wasserstein_bound` of the exact value)."""
        statistic = None
        wasserstein = None
        if self.count and len(self.points):
            cumulative = np.cumsum(self.cells)
            at, before = cumulative[1::2] / self.count, cumulative[0::2][:-1] / self.count
            previous = np.concatenate([[0.0], self.sample_cdf[:-1]])
            statistic = ks_from_cdfs(at, before, self.sample_cdf, previous)
            wasserstein = self._wasserstein(at, before)[0]
        return numeric_drift(
            feature,
            self.bins,
            self.count,
            self.missing,
            self.profile,
            ks_statistic=statistic,
            sample_size=self.sample_size,
            wasserstein=wasserstein,
        )

    def wasserstein_bound(self) -> float | None:
        """How far the Wasserstein distance of :meth:`drift` may be from the exact one, in reference spreads."""
        if not self.count or not len(self.points) or not self.profile.spread:
            return None
        cumulative = np.cumsum(self.cells)
        return self._wasserstein(cumulative[1::2] / self.count, cumulative[0::2][:-1] / self.count)[1]

    def _wasserstein(self, at: NDArray[np.float64], before: NDArray[np.float64]) -> tuple[float | None, float]:
        """Estimate and error bound of W / spread. On cell j ([u_{j−1}, u_j), width w) the window's CDF rises from
        a = F(u_{j−1}) to b = F(u_j⁻) while the sample's is r: ∫|F − r| lies in [w·(a − r), w·(b − r)] when
        r <= a, [w·(r − b), w·(r − a)] when r >= b, [0, w·max(r − a, b − r)] otherwise."""
        spread = self.profile.spread or 0.0
        if spread <= 0:
            return None, 0.0
        width = np.diff(self.points)
        a, b, r = at[:-1], before[1:], self.sample_cdf[:-1]
        low = np.where(r <= a, a - r, np.where(r >= b, r - b, 0.0))
        high = np.where(r <= a, b - r, np.where(r >= b, r - a, np.maximum(r - a, b - r)))
        tails = (self.below.value() + self.above.value()) / self.count
        estimate = tails + float(np.sum(width * (low + high) / 2))
        return estimate / spread, float(np.sum(width * (high - low) / 2)) / spread


class CategoricalCounts:
    """Counts of one categorical feature's window values: per reference category, unseen ones, nulls."""

    def __init__(self, profile: FeatureProfile) -> None:
        self.profile = profile
        self.index = {category: i for i, category in enumerate(profile.category_shares or {})}
        self.counts = np.zeros(len(self.index) + 1, dtype=np.int64)  # the last counts categories never seen
        self.missing = 0

    def add(self, values: Sequence[str], missing: int) -> None:
        """Count non-null ``values`` (as text) and ``missing`` nulls."""
        unseen = len(self.index)
        codes = np.fromiter((self.index.get(v, unseen) for v in values), dtype=np.intp, count=len(values))
        self.counts += np.bincount(codes, minlength=len(self.counts))
        self.missing += missing

    def drift(self, feature: str) -> FeatureDrift:
        """The feature's drift row."""
        return categorical_drift(feature, self.counts, self.missing, self.profile)


FeatureCounts = NumericCounts | CategoricalCounts


def feature_counts(profile: FeatureProfile) -> FeatureCounts:
    """Empty counts for a feature of ``profile``'s kind."""
    return NumericCounts(profile) if profile.kind == "numeric" else CategoricalCounts(profile)
