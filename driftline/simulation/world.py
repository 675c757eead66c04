"""What a simulated stream is made of, checked before anything is drawn: its features, sensitive attributes
and the :class:`SimulationConfig` that decides it.

A numeric feature is a latent ``z`` shown through its own transform (normal ``loc + scale·z``, lognormal
``exp(loc + scale·z)``, logistic ``σ(loc + scale·z)``), clipped and rounded; a categorical feature is drawn
from fixed shares. The default 13 (:data:`CATALOGUE`) are 9 numeric and 4 categorical; more features add
generic ones (``x13``, ``c14``, ...). Related catalogue features have correlated latents (:data:`CORRELATIONS`).
:func:`check_config` names the first setting that cannot make a stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from driftline.schemas.errors import ConfigError
from driftline.schemas.events import MAX_FEATURES
from driftline.simulation.scenarios import BrokenFeature, CovariateDrift, FairnessGap, Phase, Scenario

Floats = NDArray[np.float64]

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
STABLE = Scenario("stable", (Phase("stable", 0.0),))


@dataclass(frozen=True)
class NumericFeature:
    """A numeric feature shown through ``transform`` of its latent ``z``, clipped to [low, high], rounded."""

    name: str
    transform: Literal["normal", "lognormal", "logistic"]
    loc: float = 0.0
    scale: float = 1.0
    low: float | None = None
    high: float | None = None
    decimals: int = 4

    def values(self, z: Floats) -> Floats:
        """The feature's values for latents ``z``."""
        linear = self.loc + self.scale * z
        if self.transform == "lognormal":
            linear = np.exp(linear)
        elif self.transform == "logistic":
            linear = 1.0 / (1.0 + np.exp(-linear))
        clipped: Floats = np.clip(linear, self.low, self.high)
        return clipped.round(self.decimals)


@dataclass(frozen=True)
class CategoricalFeature:
    """A categorical feature drawn with fixed ``shares`` of its ``categories``."""

    name: str
    categories: tuple[str, ...]
    shares: tuple[float, ...]


Feature = NumericFeature | CategoricalFeature

CATALOGUE: tuple[Feature, ...] = (
    NumericFeature("age", "normal", 42.0, 12.0, low=18, high=90, decimals=0),
    NumericFeature("income", "lognormal", 10.8, 0.5, decimals=0),
    CategoricalFeature("city", ("Oslo", "Lyon", "Porto", "Turin", "Ghent"), (0.35, 0.25, 0.2, 0.12, 0.08)),
    NumericFeature("debt_ratio", "logistic", -1.0, 0.8, decimals=3),
    NumericFeature("credit_lines", "lognormal", 1.4, 0.5, decimals=0),
    CategoricalFeature("channel", ("web", "app", "branch", "partner"), (0.5, 0.3, 0.15, 0.05)),
    NumericFeature("utilization", "logistic", -0.8, 1.0, decimals=3),
    NumericFeature("tenure_months", "lognormal", 3.4, 0.8, decimals=0),
    CategoricalFeature("product", ("card", "loan", "mortgage"), (0.5, 0.35, 0.15)),
    NumericFeature("late_payments", "lognormal", -0.7, 1.0, decimals=0),
    NumericFeature("loan_amount", "lognormal", 9.3, 0.7, decimals=0),
    CategoricalFeature("device", ("android", "ios", "desktop"), (0.45, 0.4, 0.15)),
    NumericFeature("employment_years", "normal", 9.0, 6.0, low=0, high=50, decimals=1),
)
"""The default features, in order: ``features=n`` takes the first ``n`` (generic ones after 13)."""

CORRELATIONS: dict[tuple[str, str], float] = {
    ("age", "tenure_months"): 0.5,
    ("age", "employment_years"): 0.6,
    ("income", "loan_amount"): 0.5,
    ("income", "credit_lines"): 0.3,
    ("debt_ratio", "utilization"): 0.4,
    ("utilization", "late_payments"): 0.3,
}
"""Correlations between the latents of related catalogue features (others are independent)."""


def feature_set(count: int) -> tuple[Feature, ...]:
    """The first ``count`` features: the catalogue, then generic ``x<i>`` (normal) and every third ``c<i>``
    (categories a-d, equal shares)."""
    extra = [
        CategoricalFeature(f"c{i}", ("a", "b", "c", "d"), (0.25,) * 4)
        if i % 3 == 2
        else NumericFeature(f"x{i}", "normal")
        for i in range(len(CATALOGUE), count)
    ]
    return (*CATALOGUE, *extra)[:count]


def model_names(count: int, prefix: str = "model") -> tuple[str, ...]:
    """``count`` model ids: ``model-000``, ``model-001``, ..."""
    return tuple(f"{prefix}-{i:03d}" for i in range(count))


def latent_correlation(names: list[str]) -> Floats:
    """The correlation matrix ``C`` of the latents of the numeric features ``names`` (:data:`CORRELATIONS`)."""
    matrix = np.eye(len(names))
    for (a, b), rho in CORRELATIONS.items():
        if a in names and b in names:
            i, j = names.index(a), names.index(b)
            matrix[i, j] = matrix[j, i] = rho
    return matrix


@dataclass(frozen=True)
class SensitiveAttribute:
    """A sensitive attribute and the shares of its groups."""

    name: str
    groups: tuple[str, ...]
    shares: tuple[float, ...]


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that decides a simulated stream; the same config gives the same events."""

    seed: int = 7
    models: tuple[str, ...] = model_names(1)
    versions: int = 1
    features: int = len(CATALOGUE)
    sensitive: tuple[SensitiveAttribute, ...] = (SensitiveAttribute("group", ("g1", "g2", "g3"), (0.5, 0.3, 0.2)),)
    predictions: int = 10_000
    duration_s: float = 3600.0
    start: datetime = DEFAULT_START
    label_share: float = 0.8
    label_delay: Literal["exponential", "lognormal", "fixed"] = "exponential"
    label_delay_s: float = 300.0
    label_delay_sigma: float = 1.0
    malformed_share: float = 0.001
    scenario: Scenario = STABLE
    id_prefix: str | None = None

    @property
    def prediction_prefix(self) -> str:
        """What every prediction id starts with."""
        return self.id_prefix if self.id_prefix is not None else f"sim{self.seed}-"

    def version_name(self, index: int) -> str:
        """Version ``index`` (0-based): ``1.0``, ``2.0``, ...; the versions after ``versions`` are releases."""
        return f"{index + 1}.0"


def check_config(config: SimulationConfig, features: tuple[Feature, ...]) -> None:
    """Raise :class:`ConfigError` naming the first setting of ``config`` (with its ``features``) that cannot
    make a stream."""
    names = {f.name for f in features}
    _need(config.predictions >= 1, f"predictions must be at least 1, got {config.predictions}")
    _need(config.duration_s > 0, f"duration_s must be positive, got {config.duration_s}")
    _need(1 <= config.features <= MAX_FEATURES, f"features must be in 1..{MAX_FEATURES}, got {config.features}")
    _need(bool(config.models) and len(set(config.models)) == len(config.models), "models must be distinct names")
    _need(config.versions >= 1, f"versions must be at least 1, got {config.versions}")
    for name in ("label_share", "malformed_share"):
        _need(0 <= getattr(config, name) <= 1, f"{name} must be in [0, 1], got {getattr(config, name)}")
    _need(
        config.label_delay in ("exponential", "lognormal", "fixed"),
        f"label_delay must be exponential, lognormal or fixed, got {config.label_delay!r}",
    )
    _need(config.label_delay_s >= 0, f"label_delay_s must be >= 0, got {config.label_delay_s}")
    _need(config.label_delay_sigma > 0, f"label_delay_sigma must be > 0, got {config.label_delay_sigma}")
    for attribute in config.sensitive:
        _need(
            len(attribute.groups) == len(attribute.shares) > 0 and min(attribute.shares) > 0,
            f"sensitive attribute {attribute.name!r} needs one positive share per group",
        )
    clash = ({a.name for a in config.sensitive} | {"label", "score", "phase"}) & names
    _need(not clash, f"names used both as feature and sensitive attribute or column: {sorted(clash)}")
    _check_scenario(config, features)


def _check_scenario(config: SimulationConfig, features: tuple[Feature, ...]) -> None:
    """Raise :class:`ConfigError` naming the first phase or effect of the scenario the stream cannot tell."""
    numeric = {f.name for f in features if isinstance(f, NumericFeature)}
    categories = {f.name: f.categories for f in features if isinstance(f, CategoricalFeature)}
    groups = {a.name: a.groups for a in config.sensitive}
    last = config.scenario.phases[-1]
    _need(
        last.start_s < config.duration_s,
        f"phase {last.name!r} starts at {last.start_s:g} s, after the {config.duration_s:g} s simulated",
    )
    for effect in config.scenario.effects():
        if isinstance(effect, CovariateDrift | BrokenFeature):
            names = effect.features if isinstance(effect, CovariateDrift) else (effect.feature,)
            for name in names:
                _need(
                    name in numeric or name in categories,
                    f"scenario {config.scenario.name!r} acts on feature {name!r}, which the simulation does not "
                    f"have (features: {', '.join(f.name for f in features)})",
                )
        if isinstance(effect, CovariateDrift) and effect.target is not None:
            for name in effect.features:
                _need(
                    name in numeric or effect.target in categories[name],
                    f"covariate drift target {effect.target!r} is not a category of {name!r}",
                )
        if isinstance(effect, BrokenFeature) and effect.mode == "unit_change":
            _need(effect.feature in numeric, f"a unit change needs a numeric feature, {effect.feature!r} is not")
        if isinstance(effect, FairnessGap):
            _need(
                effect.group in groups.get(effect.attribute, ()),
                f"fairness gap for {effect.attribute}={effect.group!r}, which is not among the sensitive "
                f"groups {groups}",
            )


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise ConfigError(f"simulation: {what}")
