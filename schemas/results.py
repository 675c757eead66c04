"""What the worker publishes: window results, reference profiles and retraining triggers.

One message on ``window-results`` holds every number of one model version and one event-time window:
its performance, its drift per feature and its fairness per sensitive attribute and group. The sink splits
it into ``performance_windows``, ``drift_windows`` and ``fairness_windows``. ``revision`` (predictions plus
labels included) only grows, so the latest revision wins and a replay writes the same rows.
Metric definitions (formulas, edge cases) live with the monitors that compute them; here a ``None`` means
"not defined for this window" (e.g. ROC AUC with one class only).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from driftline.schemas.events import EventTime, Id, Task

Metric = Annotated[float | None, Field(allow_inf_nan=False)]


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowKey(_Result):
    """Identity of a window: model version and event-time interval ``[window_start, window_end)``."""

    model_id: Id = Field(description="The model.")
    model_version: Id = Field(description="The model's version.")
    window_start: EventTime = Field(description="Start of the event-time window (inclusive).")
    window_end: EventTime = Field(description="End of the event-time window (exclusive).")


class Performance(_Result):
    """Performance of one window; realized values need labels, ``estimated_accuracy`` does not."""

    task: Task = Field(description="binary, multiclass or regression.")
    predictions: int = Field(ge=0, description="Predictions in the window.")
    labelled: int = Field(ge=0, description="Predictions in the window whose label has arrived.")
    label_coverage: Metric = Field(None, description="labelled / predictions.")
    accuracy: Metric = Field(None, description="Share of labelled predictions whose label was right.")
    precision: Metric = Field(None, description="Binary: TP / (TP + FP) for the positive label.")
    recall: Metric = Field(None, description="Binary: TP / (TP + FN) for the positive label.")
    f1: Metric = Field(None, description="Binary: F1 of the positive label; multiclass: macro-averaged F1.")
    roc_auc: Metric = Field(None, description="Binary: area under the ROC curve of the scores.")
    log_loss: Metric = Field(None, description="Binary: mean negative log-likelihood of the scores.")
    brier: Metric = Field(None, description="Binary: mean squared error of the scores.")
    mae: Metric = Field(None, description="Regression: mean absolute error.")
    rmse: Metric = Field(None, description="Regression: root mean squared error.")
    r2: Metric = Field(None, description="Regression: coefficient of determination.")
    estimated_accuracy: Metric = Field(
        None, description="Binary: accuracy expected from calibrated scores (confidence-based), no labels needed."
    )
    late_predictions: int = Field(0, ge=0, description="Predictions that arrived after the grace period.")
    orphan_feedback: int = Field(0, ge=0, description="Feedback whose prediction never arrived within the horizon.")
    too_few_samples: bool = Field(
        False,
        description=(
            "Fewer predictions than monitor.min_samples: shown, but too few to read much into (filter them out "
            "when ranking windows)."
        ),
    )
    final_at: EventTime | None = Field(
        None,
        description=(
            "When the window is final: once its model version's predictions pass this event time (window end + "
            "horizon + grace) no label can change it; before, later revisions may still come."
        ),
    )
    reference_accuracy: Metric = Field(
        None, description="The reference's accuracy (a profile built with true labels): what accuracy_below compares."
    )
    reference_estimated_accuracy: Metric = Field(
        None, description="Binary: the reference's estimated accuracy: what estimated_accuracy_below compares."
    )


class FeatureDrift(_Result):
    """Drift of one feature (or of the scores, predicted labels or labels) against the reference profile."""

    feature: str = Field(description="Feature name, or __score__, __predicted_label__, __label__.")
    kind: Literal["numeric", "categorical"] = Field(description="How the feature is compared.")
    count: int = Field(ge=0, description="Non-null values in the window.")
    missing_rate: Metric = Field(None, description="Share of nulls in the window.")
    missing_rate_increase: Metric = Field(None, description="missing_rate minus the reference's missing rate.")
    psi: Metric = Field(None, description="Population stability index on the reference's bins.")
    ks_statistic: Metric = Field(None, description="Numeric: Kolmogorov-Smirnov statistic.")
    ks_pvalue: Metric = Field(None, description="Numeric: Kolmogorov-Smirnov p-value (uncorrected).")
    wasserstein: Metric = Field(None, description="Numeric: Wasserstein distance / the reference's spread.")
    jensen_shannon: Metric = Field(None, description="Jensen-Shannon distance (base 2) of the binned distributions.")
    chi2_pvalue: Metric = Field(None, description="Categorical: chi-square test p-value (uncorrected).")
    new_category_share: Metric = Field(None, description="Categorical: share of values unseen in the reference.")
    too_few_samples: bool = Field(
        False, description="Fewer non-null values than monitor.min_samples: shown, but too few to read much into."
    )


class GroupFairness(_Result):
    """Outcome rates of one group of one sensitive attribute, with Wilson 95% intervals."""

    attribute: str = Field(description="Sensitive attribute, e.g. gender.")
    group: str = Field(description="Group of the attribute, e.g. f.")
    count: int = Field(ge=0, description="Predictions of the group in the window.")
    below_min_count: bool = Field(description="True when count is under the minimum: reported, not judged.")
    selection_rate: Metric = Field(None, description="Share predicted positive.")
    selection_rate_ci: tuple[float, float] | None = Field(None, description="Wilson interval of selection_rate.")
    tpr: Metric = Field(None, description="True-positive rate among labelled positives.")
    tpr_ci: tuple[float, float] | None = Field(None, description="Wilson interval of tpr.")
    fpr: Metric = Field(None, description="False-positive rate among labelled negatives.")
    fpr_ci: tuple[float, float] | None = Field(None, description="Wilson interval of fpr.")
    precision: Metric = Field(None, description="Share of predicted positives that were positive.")
    precision_ci: tuple[float, float] | None = Field(None, description="Wilson interval of precision.")
    demographic_parity_difference: Metric = Field(
        None, description="Attribute-wide: max - min selection rate over judged groups."
    )
    demographic_parity_ratio: Metric = Field(
        None, description="Attribute-wide: min / max selection rate over judged groups (four-fifths rule)."
    )
    equal_opportunity_difference: Metric = Field(None, description="Attribute-wide: max - min TPR.")
    equalized_odds_difference: Metric = Field(None, description="Attribute-wide: max of the TPR and FPR differences.")


class DetectorAlarm(_Result):
    """A streaming detector (River) that fired: reported in the window of the event that made it fire.

    ADWIN watches the per-event error indicator (1 when a labelled prediction was wrong), fed in order of
    feedback time, then prediction id; Page-Hinkley watches the score mean, fed in order of prediction time,
    then prediction id. Both are fed in event-time slices behind the watermark, so a replay fires at the same
    event.
    """

    detector: Literal["adwin", "page_hinkley"] = Field(description="Which detector fired.")
    signal: Literal["error_rate", "score_mean"] = Field(description="The per-event series it watches.")
    fired_at: EventTime = Field(description="Event time of the event that made it fire.")
    prediction_id: Id = Field(description="The prediction whose event made it fire.")
    observations: int = Field(ge=1, description="Events the detector had seen since it last fired (or started).")
    estimate: Metric = Field(
        None,
        description="ADWIN: the error rate of its window after the change; Page-Hinkley: mean of the last 100 scores.",
    )


class WindowResult(WindowKey):
    """Every number of one model version and window; re-emitted with a higher revision when labels arrive."""

    schema_version: Literal[1] = 1
    revision: int = Field(ge=0, description="Predictions plus labels included; only grows.")
    reference: Literal["provided", "first_events", "none"] = Field(
        description="Where the drift reference came from: a built profile, the first N events, or none yet."
    )
    performance: Performance
    drift: list[FeatureDrift] = Field(default_factory=list)
    fairness: list[GroupFairness] = Field(default_factory=list)
    alarms: list[DetectorAlarm] = Field(
        default_factory=list, description="Streaming detectors that fired on events of this window."
    )

    @property
    def key(self) -> str:
        """Kafka key: ``model_id/model_version/window_start`` (ISO), so revisions of a window compact."""
        return f"{self.model_id}/{self.model_version}/{self.window_start.isoformat()}"


class FeatureProfile(_Result):
    """Reference distribution of one feature."""

    kind: Literal["numeric", "categorical"]
    count: int = Field(ge=0, description="Non-null values in the reference.")
    missing_rate: float = Field(ge=0, le=1, description="Share of nulls in the reference.")
    bin_edges: list[float] | None = Field(None, description="Numeric: inner quantile bin edges (10 bins: 9 edges).")
    bin_shares: list[float] | None = Field(None, description="Numeric: share of the reference in each bin.")
    sample: list[float] | None = Field(
        None,
        description="Numeric: a seeded random sample (at most 2,000 values), the reference for KS and Wasserstein.",
    )
    spread: float | None = Field(None, description="Numeric: standard deviation (normalises Wasserstein).")
    category_shares: dict[str, float] | None = Field(None, description="Categorical: share per category.")


class ReferenceProfile(_Result):
    """The reference a model version's drift is measured against; one per version on a compacted topic."""

    schema_version: Literal[1] = 1
    model_id: Id
    model_version: Id
    source: Literal["training_data", "first_events"] = Field(description="Built from a file/DataFrame or a stream.")
    rows: int = Field(ge=1, description="Rows the profile was built from.")
    created_at: datetime = Field(description="When the profile was built.")
    features: dict[str, FeatureProfile] = Field(description="Per feature, plus __score__ and __predicted_label__.")
    performance: Performance | None = Field(
        None,
        description=(
            "The reference's own performance, as a window's is computed (accuracy and the rest need true labels: "
            "--label-column; estimated accuracy needs scores only): what the relative performance rules compare."
        ),
    )
    fairness: list[GroupFairness] = Field(
        default_factory=list,
        description="The reference's rates per group of each sensitive column it was built with (--sensitive).",
    )

    @property
    def key(self) -> str:
        """Kafka key: ``model_id/model_version``."""
        return f"{self.model_id}/{self.model_version}"


class TriggerReason(_Result):
    """One rule that fired, with the evidence a retraining service needs to act without asking."""

    rule: str = Field(description="Rule name, e.g. accuracy_below, psi_above.")
    metric: str = Field(description="The metric the rule reads, e.g. accuracy or psi:age.")
    observed: float = Field(description="The metric's value in the window.")
    threshold: float = Field(description="The threshold the window was judged against.")
    reference: float | None = Field(
        None,
        description="Relative rules: the reference's value the threshold was derived from (threshold = it − max_drop).",
    )
    window_start: EventTime
    window_end: EventTime
    sample_count: int = Field(ge=0, description="Samples the metric was computed from.")

    def text(self) -> str:
        """For a person: ``accuracy = 0.677 (threshold 0.829: reference 0.879 − 0.05), n = 4,663``; a
        detector's has no threshold."""
        text = f"{self.metric} = {self.observed:.4g}"
        if self.rule not in ("adwin", "page_hinkley"):
            reference = self.reference
            how = f": reference {reference:.4g} − {reference - self.threshold:.3g}" if reference is not None else ""
            text += f" (threshold {self.threshold:.4g}{how})"
        return f"{text}, n = {self.sample_count:,}"


class RetrainTrigger(_Result):
    """One retraining decision: the policy fired for a model version in a window."""

    schema_version: Literal[1] = 1
    trigger_id: str = Field(
        description="sha256 of model, version, window start and sorted problems, rule/metric (dedupe key)."
    )
    model_id: Id
    model_version: Id
    created_at: EventTime = Field(description="Event time of the decision (the watermark), not wall-clock time.")
    window_start: EventTime
    window_end: EventTime
    severity: Literal["warning", "critical"]
    reasons: list[TriggerReason] = Field(min_length=1)
    evidence: list[str] = Field(
        default_factory=list, description="Keys of the evidence rows: table/model/version/window_start[/feature]."
    )

    @property
    def key(self) -> str:
        """Kafka key: the trigger id, so consumers and compaction see one decision once."""
        return self.trigger_id

    def describe(self) -> str:
        """One line for a person: when, which model, how severe, and each reason with its numbers."""
        reasons = "; ".join(reason.text() for reason in self.reasons)
        return (
            f"{self.created_at.isoformat()} {self.model_id} {self.model_version} [{self.severity}] "
            f"window {self.window_start.isoformat()}: {reasons}  (id {self.trigger_id[:12]})"
        )


def trigger_id(model_id: str, model_version: str, window_start: datetime, problems: list[str]) -> str:
    """The id of a decision: the same model, version, window start and problems (``rule/metric``, e.g.
    ``psi_above/psi:age``) always give the same id."""
    text = "\x1f".join([model_id, model_version, window_start.isoformat(), *sorted(problems)])
    return hashlib.sha256(text.encode()).hexdigest()
