"""Configuration of the retraining-trigger policy: rules over window results, a cooldown, per-model overrides.

``[policy]`` in the config file (``DRIFTLINE_POLICY_*``) is the policy of every model. ``[policy.models.<id>]``
takes the same keys for one model; what it does not set comes from ``[policy]``::

    [policy]
    cooldown_s = 7200

    [policy.psi_above]
    features = ["age", "income"]

    [policy.models.credit-risk.accuracy_below]
    threshold = 0.9

A threshold rule reads one metric per window (per feature for drift, per sensitive attribute for fairness):

- it **breaches** when the metric is past ``threshold`` (``*_below``: metric < threshold; ``*_above``:
  metric > threshold) on at least ``min_samples`` samples; under ``min_samples`` it says nothing;
- it **qualifies** when it has breached in ``consecutive`` adjacent windows (by window start);
- having fired it is **disarmed** until a later window (by start) shows the metric back past its recovery
  threshold, ``threshold + hysteresis`` for ``*_below`` rules and ``threshold − hysteresis`` for ``*_above``
  rules (reaching it counts), so a metric hovering at the threshold does not fire again and again.

A detector rule (``adwin``, ``page_hinkley``) qualifies when its River detector fires after at least
``min_samples`` observations; the detector restarts after firing, which is its own hysteresis.

The default effect-size thresholds fire at about the same shift: a normal feature whose mean moves by 0.45 of
its standard deviation gives PSI ≈ 0.2, normalised Wasserstein ≈ 0.45 and Jensen–Shannon distance ≈ 0.19
(measured with :mod:`driftline.streams.monitors.drift` on windows of 5,000), and they re-arm at about a 0.3σ
shift. How the rules are applied to a stream of windows is :mod:`driftline.streams.policy`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

Kind = Literal["performance", "drift", "fairness"]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Config):
    """A rule of the policy; ``kind`` (what it watches) sets the severity of a trigger."""

    kind: ClassVar[Kind]

    enabled: bool = Field(True, description="Whether the rule is applied.")
    min_samples: int = Field(100, ge=0, description="Samples under which the rule neither breaches nor recovers.")


class ThresholdRule(Rule):
    """A rule comparing a metric with a threshold, with hysteresis (see the module docstring).

    ``metric`` is the field it reads (of :class:`~driftline.schemas.results.Performance`, ``FeatureDrift`` or
    ``GroupFairness``), ``below`` its direction and ``metric_range`` the values that field can take.
    """

    metric: ClassVar[str]
    below: ClassVar[bool]
    metric_range: ClassVar[tuple[float, float]]

    threshold: float
    hysteresis: float
    consecutive: int = Field(1, ge=1, description="Adjacent windows (by start) that must all breach.")

    @property
    def recovery(self) -> float:
        """The recovery threshold: ``threshold + hysteresis`` for ``*_below``, ``threshold − hysteresis`` else."""
        return self.threshold + self.hysteresis if self.below else self.threshold - self.hysteresis

    def breaches(self, value: float) -> bool:
        """``value < threshold`` for ``*_below`` rules, ``value > threshold`` for ``*_above`` rules."""
        return value < self.threshold if self.below else value > self.threshold

    def recovers(self, value: float) -> bool:
        """``value ≥ recovery`` for ``*_below`` rules, ``value ≤ recovery`` for ``*_above`` rules."""
        return value >= self.recovery if self.below else value <= self.recovery

    @model_validator(mode="after")
    def _recovery_is_reachable(self) -> Self:
        low, high = self.metric_range
        if not low <= self.recovery <= high:
            sign = "+" if self.below else "−"
            raise ValueError(
                f"threshold {self.threshold:g} {sign} hysteresis {self.hysteresis:g} = {self.recovery:g}, the recovery "
                f"threshold, is outside [{low:g}, {high:g}], the metric's range, so the rule could never re-arm; "
                "lower hysteresis"
            )
        return self


class PerformanceBelow(ThresholdRule):
    """A performance metric below its threshold."""

    kind = "performance"
    below = True
    metric_range = (0.0, 1.0)

    threshold: float = Field(0.85, ge=0, le=1, description="Fires below this.")
    hysteresis: float = Field(0.02, ge=0, le=1, description="Re-arms at threshold + hysteresis or above.")


class AccuracyBelow(PerformanceBelow):
    """``performance.accuracy < threshold``; samples: the labelled predictions."""

    metric = "accuracy"


class EstimatedAccuracyBelow(PerformanceBelow):
    """``performance.estimated_accuracy < threshold`` while labels are scarce; samples: the predictions."""

    metric = "estimated_accuracy"

    max_label_coverage: float = Field(
        0.1, ge=0, le=1, description="Read only in windows whose label coverage is at most this (or unknown)."
    )


class DriftAbove(ThresholdRule):
    """A per-feature drift metric above its threshold, on every input feature or on the named ones."""

    kind = "drift"
    below = False
    metric_range = (0.0, math.inf)

    features: list[str] = Field(
        default_factory=list,
        description=(
            "Features the rule reads; empty: every input feature. __score__, __predicted_label__ and __label__ "
            "are read only when named."
        ),
    )


class PsiAbove(DriftAbove):
    """``psi > threshold`` on a feature; samples: its non-null values in the window."""

    metric = "psi"

    threshold: float = Field(0.2, ge=0, allow_inf_nan=False, description="Fires above this.")
    hysteresis: float = Field(0.1, ge=0, description="Re-arms at threshold − hysteresis or below.")


class WassersteinAbove(DriftAbove):
    """Normalised ``wasserstein > threshold`` on a numeric feature; samples: its non-null values."""

    metric = "wasserstein"

    threshold: float = Field(
        0.45, ge=0, allow_inf_nan=False, description="Fires above this (in reference standard deviations)."
    )
    hysteresis: float = Field(0.15, ge=0, description="Re-arms at threshold − hysteresis or below.")


class JensenShannonAbove(DriftAbove):
    """``jensen_shannon > threshold`` (distance, base 2) on a feature; samples: its non-null values."""

    metric = "jensen_shannon"

    threshold: float = Field(0.18, ge=0, le=1, description="Fires above this.")
    hysteresis: float = Field(0.06, ge=0, le=1, description="Re-arms at threshold − hysteresis or below.")


class MissingRateIncreaseAbove(DriftAbove):
    """``missing_rate_increase > threshold`` on a feature; samples: the window's predictions."""

    metric = "missing_rate_increase"
    metric_range = (-1.0, 1.0)

    threshold: float = Field(0.05, ge=0, le=1, description="Fires above this.")
    hysteresis: float = Field(0.03, ge=0, description="Re-arms at threshold − hysteresis or below.")


class KsPvalueBelow(DriftAbove):
    """Holm-adjusted ``ks_pvalue < threshold`` on a numeric feature; samples: its non-null values.

    The family is the numeric features the rule reads that have a p-value and at least ``min_samples``
    values in the window, m of them. With their p-values sorted, p₍₁₎ ≤ … ≤ p₍ₘ₎, Holm's adjusted p-value is
    p̃₍ᵢ₎ = max over j ≤ i of min(1, (m − j + 1)·p₍ⱼ₎); comparing p̃ with the threshold rejects what Holm's
    step-down procedure rejects, holding the family-wise error rate at the threshold (Bonferroni, m·p,
    holds it too but rejects less). Off by default: on large windows any p-value flags shifts too small to
    matter, so the defaults use effect sizes.
    """

    metric = "ks_pvalue"
    below = True
    metric_range = (0.0, 1.0)

    enabled: bool = Field(False, description="Whether the rule is applied.")
    threshold: float = Field(0.01, gt=0, lt=1, description="Fires below this Holm-adjusted p-value.")
    hysteresis: float = Field(0.04, ge=0, lt=1, description="Re-arms at threshold + hysteresis or above.")


class FairnessRule(ThresholdRule):
    """An attribute-wide fairness metric over the groups judged (not under the minimum group count).

    Samples: the predictions of the attribute's smallest judged group.
    """

    kind = "fairness"
    metric_range = (0.0, 1.0)


class DemographicParityRatioBelow(FairnessRule):
    """``demographic_parity_ratio < threshold`` (min / max selection rate) on a sensitive attribute."""

    metric = "demographic_parity_ratio"
    below = True

    threshold: float = Field(0.8, ge=0, le=1, description="Fires below this (0.8: the four-fifths rule).")
    hysteresis: float = Field(0.05, ge=0, le=1, description="Re-arms at threshold + hysteresis or above.")


class EqualizedOddsDifferenceAbove(FairnessRule):
    """``equalized_odds_difference > threshold`` (max of the TPR and FPR gaps) on a sensitive attribute."""

    metric = "equalized_odds_difference"
    below = False

    threshold: float = Field(0.1, ge=0, le=1, description="Fires above this.")
    hysteresis: float = Field(0.05, ge=0, le=1, description="Re-arms at threshold − hysteresis or below.")


class DetectorRule(Rule):
    """A streaming detector fired; samples: the events it had seen since it last fired (or started)."""

    min_samples: int = Field(0, ge=0, description="Alarms raised after fewer observations than this are ignored.")


class AdwinFired(DetectorRule):
    """ADWIN found a rise of the error rate (labelled predictions)."""

    kind = "performance"


class PageHinkleyFired(DetectorRule):
    """Page-Hinkley found a change of the score mean."""

    kind = "drift"


class PolicyRules(_Config):
    """The policy of one model: its rules (field name = rule name) and its cooldown."""

    cooldown_s: float = Field(
        3600.0,
        ge=0,
        allow_inf_nan=False,
        description=(
            "After a trigger, the model's windows starting less than this many seconds (event time) after the "
            "fired window's start, or before it, do not fire."
        ),
    )
    accuracy_below: AccuracyBelow = Field(
        AccuracyBelow(), description="Accuracy below the threshold; samples: labelled predictions."
    )
    estimated_accuracy_below: EstimatedAccuracyBelow = Field(
        EstimatedAccuracyBelow(),
        description="Confidence-based estimated accuracy below the threshold, while labels are scarce (binary).",
    )
    psi_above: PsiAbove = Field(PsiAbove(), description="PSI above the threshold on a feature.")
    wasserstein_above: WassersteinAbove = Field(
        WassersteinAbove(), description="Normalised Wasserstein distance above the threshold on a numeric feature."
    )
    jensen_shannon_above: JensenShannonAbove = Field(
        JensenShannonAbove(), description="Jensen-Shannon distance above the threshold on a feature."
    )
    missing_rate_increase_above: MissingRateIncreaseAbove = Field(
        MissingRateIncreaseAbove(),
        description="Missing-rate increase over the reference above the threshold on a feature (breaking into nulls).",
    )
    ks_pvalue_below: KsPvalueBelow = Field(
        KsPvalueBelow(),
        description="KS p-value below the threshold after Holm's correction over the features tested (off).",
    )
    demographic_parity_ratio_below: DemographicParityRatioBelow = Field(
        DemographicParityRatioBelow(), description="Demographic parity ratio below the threshold on an attribute."
    )
    equalized_odds_difference_above: EqualizedOddsDifferenceAbove = Field(
        EqualizedOddsDifferenceAbove(),
        description="Equalized odds difference above the threshold on an attribute (needs labels).",
    )
    adwin: AdwinFired = Field(AdwinFired(), description="ADWIN fired on the error rate (fires mid-window).")
    page_hinkley: PageHinkleyFired = Field(
        PageHinkleyFired(), description="Page-Hinkley fired on the score mean (fires mid-window)."
    )

    def rules(self) -> dict[str, Rule]:
        """Every rule by name."""
        return {name: value for name, value in self if isinstance(value, Rule)}


class PolicySettings(PolicyRules):
    """The retraining-trigger policy (``[policy]``), with per-model overrides (``[policy.models.<id>]``)."""

    models: dict[str, PolicyRules] = Field(
        default_factory=dict,
        description=(
            "Per-model policy, [policy.models.<model_id>] in the TOML file: the keys of [policy], "
            "unset ones inherited from it."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _models_inherit_the_shared_policy(cls, data: Any) -> Any:
        """Validate each model's policy as the shared one overlaid with the model's keys, so a bad value is
        reported at ``policy.models.<id>.<rule>.<field>`` with the value in force."""
        if not isinstance(data, Mapping) or not isinstance(data.get("models"), Mapping):
            return data
        shared = {name: value for name, value in data.items() if name != "models"}
        return {**data, "models": {model: _overlay(shared, keys) for model, keys in data["models"].items()}}

    def for_model(self, model_id: str) -> PolicyRules:
        """The policy in force for ``model_id``."""
        return self.models.get(model_id, self)


def _overlay(base: Any, top: Any) -> Any:
    """``top`` over ``base``, recursively for tables; a model counts as the table of the fields it was given."""
    base, top = (v.model_dump(exclude_unset=True) if isinstance(v, BaseModel) else v for v in (base, top))
    if isinstance(base, Mapping) and isinstance(top, Mapping):
        return {**base, **{key: _overlay(base.get(key), value) for key, value in top.items()}}
    return top
