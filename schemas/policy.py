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
  metric > threshold) on at least ``min_samples`` samples; under ``min_samples`` it says nothing. A rate
  counted over samples (``accuracy_below`` and the fairness rules) breaches only when its whole confidence
  interval is past the threshold (``*_below``: upper bound < threshold; ``*_above``: lower bound >
  threshold), so sampling noise in a small window or group does not fire: see ``confidence`` below;
- it **qualifies** when it has breached in ``consecutive`` adjacent windows (by window start);
- having fired it is **disarmed** until a later window (by start) shows the metric's point estimate back past
  its recovery threshold, ``threshold + hysteresis`` for ``*_below`` rules and ``threshold − hysteresis`` for
  ``*_above`` rules (reaching it counts), so a metric hovering at the threshold does not fire again and again.

``confidence`` (0.95 by default) is the level of the intervals. The interval of ``accuracy`` is Wilson's
score interval of round(accuracy · labelled) successes in ``labelled`` trials; the fairness rules bound their
attribute-wide metric by the groups' Wilson intervals (:class:`FairnessRule`). ``confidence = 0`` judges
every rule on its point estimate (driftline's behaviour before intervals); no other level is offered,
because the fairness rows carry 95% intervals. Other rules have no count-based interval and are judged on
their value: drift effect sizes and the Holm-adjusted KS p-value (itself a test), and ``estimated_accuracy``,
a mean of model confidences whose error is the model's calibration, not a binomial count.
Recovery stays on the point estimate: re-arming commits to nothing (the next trigger still needs an interval
past the threshold), while an interval-based recovery would leave a rule over small groups disarmed for good
(two groups of 500 at the same selection rate of 0.3 give a lowest consistent parity ratio of 0.77, short
of the 0.85 recovery threshold).

A detector rule (``adwin``, ``page_hinkley``) qualifies when its River detector fires after at least
``min_samples`` observations; the detector restarts after firing, which is its own hysteresis.

The default effect-size thresholds fire at about the same shift: a normal feature whose mean moves by 0.45 of
its standard deviation gives PSI ≈ 0.2, normalised Wasserstein ≈ 0.45 and Jensen–Shannon distance ≈ 0.19
(measured with :mod:`driftline.streams.core.metrics.drift` on windows of 5,000), and they re-arm at about a 0.3σ
shift. How the rules are applied to a stream of windows is :mod:`driftline.streams.core.policy`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Kind = Literal["performance", "drift", "fairness"]
CONFIDENCE_LEVELS = (0.95, 0.0)
"""The values ``confidence`` takes: the level of the fairness rows' Wilson intervals, or 0 (point estimates)."""


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

    threshold: float | None
    hysteresis: float
    consecutive: int = Field(1, ge=1, description="Adjacent windows (by start) that must all breach.")

    def threshold_for(self, reference: float | None) -> float | None:
        """The threshold a window is judged against, given the reference's value of the metric (None when the
        reference has none): ``threshold`` here; relative rules derive it from the reference."""
        return self.threshold

    def recovery(self, threshold: float) -> float:
        """The recovery threshold: ``threshold + hysteresis`` for ``*_below``, ``threshold − hysteresis`` else."""
        return threshold + self.hysteresis if self.below else threshold - self.hysteresis

    def breaches(self, threshold: float, low: float, high: float | None = None) -> bool:
        """Whether the interval [``low``, ``high``] lies past ``threshold``: ``high < threshold`` for ``*_below``
        rules, ``low > threshold`` for ``*_above`` rules. A point estimate is judged as ``breaches(t, value)``."""
        high = low if high is None else high
        return high < threshold if self.below else low > threshold

    def recovers(self, threshold: float, value: float) -> bool:
        """``value ≥ recovery`` for ``*_below`` rules, ``value ≤ recovery`` for ``*_above`` rules."""
        return value >= self.recovery(threshold) if self.below else value <= self.recovery(threshold)

    @model_validator(mode="after")
    def _recovery_is_reachable(self) -> Self:
        low, high = self.metric_range
        if self.threshold is not None and not low <= self.recovery(self.threshold) <= high:
            sign = "+" if self.below else "−"
            recovery = self.recovery(self.threshold)
            raise ValueError(
                f"threshold {self.threshold:g} {sign} hysteresis {self.hysteresis:g} = {recovery:g}, "
                f"the recovery threshold, is outside [{low:g}, {high:g}], the metric's range, so the rule could never "
                "re-arm; lower hysteresis"
            )
        return self


class PerformanceBelow(ThresholdRule):
    """A performance metric below the reference's by more than ``max_drop``, or below an absolute ``threshold``.

    Relative by default: a window is judged against ``reference − max_drop``, where ``reference`` is the
    metric's value on the version's reference profile (``reference_accuracy``, ``reference_estimated_accuracy``
    on the window row), so a model whose accuracy was 0.75 when it shipped is judged against 0.70, not against
    a number that suits another model. A reference without the metric (no true labels in the training data:
    no accuracy; no scores: no estimated accuracy) judges nothing by this rule; ADWIN still watches the error
    rate. An absolute ``threshold`` is off unless set; with both, the window is judged against the higher of
    the two (either breaches).
    """

    kind = "performance"
    below = True
    metric_range = (0.0, 1.0)

    threshold: float | None = Field(
        None, ge=0, le=1, description="Fires below this absolute value; none (off) unless set."
    )
    max_drop: float | None = Field(
        0.05, ge=0, le=1, description="Fires below the reference's value minus this; none: not relative."
    )
    hysteresis: float = Field(0.02, ge=0, le=1, description="Re-arms at the threshold judged + hysteresis or above.")

    def threshold_for(self, reference: float | None) -> float | None:
        """The higher of ``threshold`` and ``reference − max_drop`` (each when defined); None when neither is."""
        relative = reference - self.max_drop if reference is not None and self.max_drop is not None else None
        candidates = [value for value in (self.threshold, relative) if value is not None]
        return max(candidates) if candidates else None


class AccuracyBelow(PerformanceBelow):
    """``performance.accuracy < threshold``; samples: the labelled predictions.

    Judged on the Wilson score interval of round(accuracy · labelled) right predictions out of ``labelled``
    (``confidence``): at 0.80, 100 labels give [0.71, 0.87], which does not breach a threshold of 0.85, and
    1,000 labels give [0.77, 0.82], which does.
    """

    metric = "accuracy"


class EstimatedAccuracyBelow(PerformanceBelow):
    """``performance.estimated_accuracy < threshold`` while labels are scarce; samples: the predictions.

    Judged on its value: it is a mean of the model's confidences, whose error is the calibration's, not a count.
    """

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

    Samples: the predictions of the attribute's smallest judged group. The metric combines per-group ``rates``
    (fields of :class:`~driftline.schemas.results.GroupFairness`, each with its Wilson interval ``<rate>_ci``)
    as a ``ratio`` (min / max over the groups) or a ``spread`` (max − min, the largest over ``rates``). Its
    interval holds every value those per-group intervals allow, with [l_g, u_g] the interval of group g:

    - ratio: [min l_g / max u_g, min(1, min u_g / max l_g)] (1 when the intervals share a point);
    - spread: [max(0, max l_g − min u_g), max u_g − min l_g], and for several rates the largest of each bound.

    A ``*_below`` ratio rule so breaches only when even the most favourable rates inside the intervals give a
    ratio under the threshold, i.e. when some group's upper bound is under ``threshold`` times another's lower
    bound; an ``*_above`` spread rule when two groups' intervals are further apart than the threshold. This is
    conservative: two groups of equal size and rate have disjoint 95% intervals about 0.6% of the time.
    """

    kind = "fairness"
    metric_range = (0.0, 1.0)
    rates: ClassVar[tuple[str, ...]]
    combine: ClassVar[Literal["ratio", "spread"]]


class DemographicParityRatioBelow(FairnessRule):
    """``demographic_parity_ratio < threshold`` (min / max selection rate) on a sensitive attribute."""

    metric = "demographic_parity_ratio"
    below = True
    rates = ("selection_rate",)
    combine = "ratio"

    threshold: float = Field(0.8, ge=0, le=1, description="Fires below this (0.8: the four-fifths rule).")
    hysteresis: float = Field(0.05, ge=0, le=1, description="Re-arms at threshold + hysteresis or above.")


class EqualizedOddsDifferenceAbove(FairnessRule):
    """``equalized_odds_difference > threshold`` (max of the TPR and FPR gaps) on a sensitive attribute."""

    metric = "equalized_odds_difference"
    below = False
    rates = ("tpr", "fpr")
    combine = "spread"

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
            "After a trigger, the same problem (rule and metric, e.g. psi_above on psi:age) does not fire again for "
            "the model in windows starting less than this many seconds (event time) after the fired window's "
            "start, or before it; other problems fire on their own."
        ),
    )
    confidence: float = Field(
        0.95,
        description=(
            "Level of the confidence intervals on which accuracy_below and the fairness rules are judged (a breach "
            "needs the whole interval past the threshold); 0: judge their point estimates. 0.95 or 0."
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

    @field_validator("confidence")
    @classmethod
    def _a_level_the_results_carry(cls, value: float) -> float:
        if value not in CONFIDENCE_LEVELS:
            raise ValueError(
                "expected 0.95 (judge on 95% confidence intervals) or 0 (judge on point estimates); no other level, "
                "because the fairness rows carry 95% Wilson intervals"
            )
        return value

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
