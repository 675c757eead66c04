"""A small fixed story as window results and triggers, for the detection and report tests: six one-hour
windows of model ``m``; stable (00:00-02:00), covariate drift in ``income`` (02:00-04:00), a fairness gap for
group g3 (04:00-06:00)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from driftline.demo.flags import WindowRows, rows_of
from driftline.schemas.results import (
    FeatureDrift,
    GroupFairness,
    Performance,
    RetrainTrigger,
    TriggerReason,
    WindowResult,
    trigger_id,
)
from driftline.simulation.scenarios import CovariateDrift, FairnessGap, Phase, Scenario

START = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = 3600.0
END = START + timedelta(hours=6)
SCENARIO = Scenario(
    "small",
    (
        Phase("stable", 0.0),
        Phase("covariate-drift", 2 * HOUR, (CovariateDrift(("income",)),)),
        Phase("fairness-gap", 4 * HOUR, (CovariateDrift(("income",)), FairnessGap("group", "g3"))),
    ),
)
INCOME_PSI = [0.01, 0.02, 0.9, 0.95, 0.9, 0.92]
PARITY = [0.95, 0.97, 0.96, 0.94, 0.6, 0.5]


def window(hour: int, *, psi: float, parity: float, accuracy: float = 0.9, version: str = "1.0") -> WindowResult:
    """One window of 1,000 predictions (800 labelled) with the given income PSI and parity ratio."""
    start = START + timedelta(hours=hour)
    groups = [
        GroupFairness(
            attribute="group",
            group=group,
            count=count,
            below_min_count=False,
            selection_rate=rate,
            demographic_parity_ratio=parity,
            equalized_odds_difference=0.02,
        )
        for group, count, rate in (("g1", 600, 0.4), ("g3", 400, 0.4 * parity))
    ]
    return WindowResult(
        model_id="m",
        model_version=version,
        window_start=start,
        window_end=start + timedelta(hours=1),
        revision=1800,
        reference="provided",
        performance=Performance(
            task="binary",
            predictions=1000,
            labelled=800,
            label_coverage=0.8,
            accuracy=accuracy,
            estimated_accuracy=0.89,
        ),
        drift=[
            FeatureDrift(feature="income", kind="numeric", count=1000, psi=psi, wasserstein=0.1, jensen_shannon=0.05),
            FeatureDrift(feature="age", kind="numeric", count=1000, psi=0.01, wasserstein=0.02, jensen_shannon=0.01),
        ],
        fairness=groups,
    )


def trigger(hour: int, rule: str, metric: str, observed: float, threshold: float) -> RetrainTrigger:
    """A warning decision in the window starting at ``hour``."""
    start = START + timedelta(hours=hour)
    span = {"window_start": start, "window_end": start + timedelta(hours=1)}
    reason = TriggerReason(rule=rule, metric=metric, observed=observed, threshold=threshold, sample_count=1000, **span)
    return RetrainTrigger(
        trigger_id=trigger_id("m", "1.0", start, [rule]),
        model_id="m",
        model_version="1.0",
        created_at=span["window_end"],
        severity="warning",
        reasons=[reason],
        **span,
    )


def story_rows(psi: list[float] = INCOME_PSI, triggers: list[RetrainTrigger] | None = None) -> WindowRows:
    """The story's rows, as the sink would store them."""
    results = [window(hour, psi=p, parity=r) for hour, (p, r) in enumerate(zip(psi, PARITY, strict=True))]
    if triggers is None:
        triggers = [
            trigger(2, "psi_above", "psi:income", 0.9, 0.2),
            trigger(4, "demographic_parity_ratio_below", "demographic_parity_ratio:group", 0.6, 0.8),
        ]
    return rows_of(results, triggers)
