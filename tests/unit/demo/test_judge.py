"""The demo's verdict: a problem counts as detected only when flagged in the window its phase starts in or the
next, each problem phase needs a trigger, and the stable period none."""

from __future__ import annotations

from driftline.demo.flags import drifted_features, flags, rows_of
from driftline.demo.judge import judge
from driftline.schemas.policy import PolicySettings
from driftline.schemas.results import RetrainTrigger
from driftline.schemas.tables import DRIFT_WINDOWS, FAIRNESS_WINDOWS, PERFORMANCE_WINDOWS, RETRAIN_TRIGGERS
from tests.unit.demo.story_rows import END, HOUR, INCOME_PSI, SCENARIO, START, story_rows, trigger, window

POLICY = PolicySettings()


def verdict_of(**kwargs: object):  # type: ignore[no-untyped-def]
    return judge(SCENARIO, story_rows(**kwargs), POLICY, start=START, end=END, window_s=HOUR)  # type: ignore[arg-type]


def test_rows_have_the_columns_of_the_tables_the_sink_loads() -> None:
    rows = story_rows()
    assert list(rows.performance.columns) == PERFORMANCE_WINDOWS.column_names
    assert list(rows.drift.columns) == DRIFT_WINDOWS.column_names
    assert list(rows.fairness.columns) == FAIRNESS_WINDOWS.column_names
    assert list(rows.triggers.columns) == RETRAIN_TRIGGERS.column_names
    assert len(rows.performance) == 6 and len(rows.drift) == 12 and len(rows.fairness) == 12


def test_flags_follow_the_policy_thresholds_and_minimum_samples() -> None:
    raised = flags(story_rows(), POLICY)
    assert [(f.window_start.hour, f.kind, f.metric, f.observed) for f in raised] == [
        (2, "drift", "psi:income", 0.9),
        (3, "drift", "psi:income", 0.95),
        (4, "drift", "psi:income", 0.9),
        (4, "fairness", "demographic_parity_ratio:group", 0.6),
        (5, "drift", "psi:income", 0.92),
        (5, "fairness", "demographic_parity_ratio:group", 0.5),
    ]
    assert drifted_features(raised) == ["income"]
    gap = rows_of([window(0, psi=0.01, parity=0.5)], [])
    smallest_group = 400
    strict = PolicySettings.model_validate({"demographic_parity_ratio_below": {"min_samples": smallest_group + 1}})
    assert [f.metric for f in flags(gap, POLICY)] == ["demographic_parity_ratio:group"]
    assert flags(gap, strict) == []


def test_story_passes_when_each_problem_is_flagged_in_time_with_a_trigger() -> None:
    verdict = verdict_of()
    assert verdict.passed, verdict.failures
    covariate = verdict.phases[1]
    [finding] = covariate.findings
    assert finding.flag is not None and finding.flag.metric == "psi:income" and finding.flag.window_start.hour == 2


def test_a_problem_flagged_in_the_next_window_counts_and_two_windows_late_does_not() -> None:
    late_by_one = [0.01, 0.02, 0.05, 0.9, 0.9, 0.9]
    assert verdict_of(psi=late_by_one).passed
    late_by_two = [0.01, 0.02, 0.05, 0.06, 0.9, 0.9]
    assert verdict_of(psi=late_by_two).failures == [
        "covariate-drift: covariate drift in income was not flagged in time"
    ]


def test_a_trigger_in_the_stable_period_or_none_in_a_problem_phase_fails() -> None:
    triggers = [
        trigger(1, "psi_above", "psi:age", 0.3, 0.2),
        trigger(4, "demographic_parity_ratio_below", "demographic_parity_ratio:group", 0.6, 0.8),
    ]
    assert verdict_of(psi=INCOME_PSI, triggers=triggers).failures == [
        "stable: 1 trigger(s) in the stable period",
        "covariate-drift: covariate drift in income got no drift on income trigger in its onset window or the next",
    ]
    first_window = [trigger(0, "accuracy_below", "accuracy", 0.8, 0.85), *story_rows_triggers()]
    assert verdict_of(triggers=first_window).failures == [
        "stable: 1 trigger(s) in the stable period",
        "stable: trigger accuracy_below (accuracy) in version 1.0's first window",
    ]


def story_rows_triggers() -> list[RetrainTrigger]:
    return [
        trigger(2, "psi_above", "psi:income", 0.9, 0.2),
        trigger(4, "demographic_parity_ratio_below", "demographic_parity_ratio:group", 0.6, 0.8),
    ]


def test_a_problem_needs_a_trigger_of_its_own_kind_in_its_onset_window_or_the_next() -> None:
    fairness = trigger(4, "demographic_parity_ratio_below", "demographic_parity_ratio:group", 0.6, 0.8)
    wrong_feature = [trigger(2, "psi_above", "psi:age", 0.3, 0.2), fairness]
    wrong_kind = [trigger(2, "accuracy_below", "accuracy", 0.7, 0.85), fairness]
    next_window = [trigger(3, "wasserstein_above", "wasserstein:income", 0.9, 0.45), fairness]
    two_late = [trigger(4, "psi_above", "psi:income", 0.9, 0.2), fairness]
    missing = (
        "covariate-drift: covariate drift in income got no drift on income trigger in its onset window or the next"
    )

    assert verdict_of(triggers=wrong_feature).failures == [missing]
    assert verdict_of(triggers=wrong_kind).failures == [missing]
    assert verdict_of(triggers=next_window).passed
    assert verdict_of(triggers=two_late).failures == [missing]
