"""The retraining-trigger policy on scripted sequences of window results and detector alarms."""

from __future__ import annotations

import doctest
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from scipy.stats import binomtest

from driftline.schemas.errors import ConfigError
from driftline.schemas.policy import PolicySettings
from driftline.schemas.results import (
    DetectorAlarm,
    FeatureDrift,
    GroupFairness,
    Performance,
    RetrainTrigger,
    WindowKey,
    WindowResult,
    trigger_id,
)
from driftline.settings import load_settings
from driftline.streams.core import policy as policy_module
from driftline.streams.core.policy import PolicyState, TriggerPolicy
from tests.summaries import binary_summary

ROOT = Path(__file__).resolve().parents[4]
T0 = datetime(2026, 3, 2, tzinfo=UTC)
WINDOW_S = 600.0
STEP = timedelta(seconds=WINDOW_S)


pytestmark = pytest.mark.usefixtures("no_driftline_environment")


def start(k: int) -> datetime:
    return T0 + k * STEP


def window(
    k: int,
    accuracy: float | None = 0.95,
    *,
    labelled: int = 500,
    predictions: int = 1000,
    revision: int = 1,
    model: str = "credit-risk",
    version: str = "1",
    estimated_accuracy: float | None = None,
    reference_accuracy: float | None = 0.90,
    drift: Iterable[FeatureDrift] = (),
    fairness: Iterable[GroupFairness] = (),
    alarms: Iterable[DetectorAlarm] = (),
) -> WindowResult:
    """Window ``k`` (starting at T0 + k·WINDOW_S) of a binary model; healthy unless told otherwise. Its
    reference's accuracy and estimated accuracy are ``reference_accuracy`` (0.90: judged against 0.85)."""
    return WindowResult(
        model_id=model,
        model_version=version,
        window_start=start(k),
        window_end=start(k + 1),
        revision=revision,
        reference="provided",
        performance=Performance(
            task="binary",
            predictions=predictions,
            labelled=labelled,
            label_coverage=labelled / predictions,
            accuracy=accuracy,
            estimated_accuracy=estimated_accuracy,
            reference_accuracy=reference_accuracy,
            reference_estimated_accuracy=reference_accuracy,
        ),
        drift=list(drift),
        fairness=list(fairness),
        alarms=list(alarms),
    )


def feature(name: str, count: int = 1000, **metrics: float) -> FeatureDrift:
    return FeatureDrift(feature=name, kind="numeric", count=count, **metrics)


def alarm(k: int, detector: str = "adwin", observations: int = 400, estimate: float = 0.31) -> DetectorAlarm:
    return DetectorAlarm.model_validate(
        {
            "detector": detector,
            "signal": "error_rate" if detector == "adwin" else "score_mean",
            "fired_at": start(k) + STEP / 3,
            "prediction_id": f"p-{k}",
            "observations": observations,
            "estimate": estimate,
        }
    )


def key(k: int, model: str = "credit-risk", version: str = "1") -> WindowKey:
    return WindowKey(model_id=model, model_version=version, window_start=start(k), window_end=start(k + 1))


def make_policy(**settings: Any) -> TriggerPolicy:
    return TriggerPolicy(PolicySettings.model_validate(settings), WINDOW_S)


def run(policy: TriggerPolicy, results: Iterable[WindowResult]) -> list[RetrainTrigger]:
    return [trigger for result in results for trigger in policy.on_window(result)]


def fired_windows(triggers: list[RetrainTrigger]) -> list[int]:
    return [round((trigger.window_start - T0) / STEP) for trigger in triggers]


def test_fires_once_at_the_first_qualifying_window_with_its_reason_and_evidence() -> None:
    triggers = run(make_policy(), [window(0, 0.95), window(1, 0.80), window(2, 0.79), window(3, 0.78)])

    assert fired_windows(triggers) == [1]
    (trigger,) = triggers
    assert trigger.severity == "critical"
    assert trigger.created_at == trigger.window_end == start(2)
    assert [r.model_dump() for r in trigger.reasons] == [
        {
            "rule": "accuracy_below",
            "metric": "accuracy",
            "observed": 0.80,
            "threshold": 0.85,
            "reference": 0.90,
            "window_start": start(1),
            "window_end": start(2),
            "sample_count": 500,
        }
    ]
    assert trigger.evidence == [f"performance_windows/credit-risk/1/{start(1).isoformat()}"]
    assert trigger.trigger_id == trigger_id("credit-risk", "1", start(1), ["accuracy_below/accuracy"])


def test_under_min_samples_a_window_neither_breaches_nor_recovers() -> None:
    policy = make_policy(cooldown_s=0)

    assert policy.on_window(window(0, 0.5, labelled=99)) == []
    assert fired_windows(policy.on_window(window(1, 0.5, labelled=100))) == [1]
    assert policy.on_window(window(2, 0.99, labelled=99)) == []  # would recover with enough labels
    assert policy.on_window(window(3, 0.5)) == []  # still disarmed


def test_does_not_fire_before_the_consecutive_window_count() -> None:
    policy = make_policy(accuracy_below={"consecutive": 3})

    triggers = run(policy, [window(0, 0.8), window(1, 0.8), window(2, 0.9), window(3, 0.8), window(4, 0.8)])
    assert triggers == []
    assert fired_windows(policy.on_window(window(5, 0.7))) == [5]


def test_cooldown_holds_back_repeats_of_the_same_problem_not_other_evidence() -> None:
    policy = make_policy(cooldown_s=5 * WINDOW_S)

    assert fired_windows(policy.on_window(window(0, 0.8))) == [0]
    (drift,) = policy.on_window(window(1, drift=[feature("age", psi=0.4)]))  # another problem: its own trigger
    (second,) = policy.on_window(window(2, drift=[feature("age", psi=0.5), feature("income", psi=0.4)]))
    assert [(r.rule, r.metric, r.observed) for r in drift.reasons] == [("psi_above", "psi:age", 0.4)]
    assert [r.metric for r in second.reasons] == ["psi:income"]  # a second feature drifting while age still does
    assert drift.severity == second.severity == "warning"

    assert policy.on_window(window(3, 0.95)) == []  # accuracy recovers: its rule re-arms
    assert policy.on_window(window(4, 0.8)) == []  # the same problem again, inside its cooldown
    assert fired_windows(policy.on_window(window(5, 0.8))) == [5]  # ... and after it
    assert policy.on_window(window(3, 0.5, revision=2)) == []  # a repeat between its fires: held back too


def test_a_metric_hovering_inside_the_hysteresis_band_fires_once() -> None:
    policy = make_policy(cooldown_s=0)  # 500 labels: 0.80 breaches (upper bound 0.833); it re-arms at 0.87

    triggers = run(policy, [window(k, accuracy) for k, accuracy in enumerate([0.80, 0.86, 0.80, 0.8699, 0.80, 0.79])])

    assert fired_windows(triggers) == [0]


def test_on_point_estimates_a_metric_hovering_inside_the_hysteresis_band_fires_once() -> None:
    policy = make_policy(cooldown_s=0, confidence=0)  # band: 0.85 <= accuracy < 0.87

    triggers = run(policy, [window(k, accuracy) for k, accuracy in enumerate([0.84, 0.86, 0.84, 0.8699, 0.84, 0.849])])

    assert fired_windows(triggers) == [0]


def test_fires_again_after_recovery_and_a_new_breach() -> None:
    policy = make_policy(cooldown_s=0)

    triggers = run(policy, [window(k, accuracy) for k, accuracy in enumerate([0.80, 0.86, 0.87, 0.86, 0.79])])

    assert fired_windows(triggers) == [0, 4]
    assert triggers[0].trigger_id != triggers[1].trigger_id


def test_a_re_emitted_window_decides_a_problem_once_and_a_new_problem_in_it_once_more() -> None:
    policy = make_policy()

    assert fired_windows(policy.on_window(window(0, 0.8, labelled=200))) == [0]
    assert policy.on_window(window(0, 0.6, labelled=400, revision=2)) == []  # the same problem, decided
    (drift,) = policy.on_window(window(0, 0.6, labelled=400, revision=3, drift=[feature("age", psi=0.9)]))
    assert [r.metric for r in drift.reasons] == ["psi:age"]
    assert policy.on_window(window(0, 0.6, labelled=450, revision=4, drift=[feature("age", psi=0.9)])) == []


def test_out_of_order_re_emission_counts_consecutive_windows_by_start() -> None:
    policy = make_policy(cooldown_s=0, accuracy_below={"consecutive": 2})

    assert policy.on_window(window(0, 0.70, labelled=50)) == []  # too few labels yet
    assert policy.on_window(window(1, 0.80)) == []  # window 0 does not breach (yet)
    triggers = policy.on_window(window(0, 0.75, labelled=500, revision=2))  # late labels: now it does

    assert fired_windows(triggers) == [1]  # the run 0, 1 ends in window 1; nothing breached before window 0
    assert [(r.observed, r.window_start) for r in triggers[0].reasons] == [(0.80, start(1))]


def test_a_later_revision_replaces_a_windows_verdict() -> None:
    policy = make_policy(cooldown_s=0, accuracy_below={"consecutive": 2})

    assert policy.on_window(window(0, 0.80, labelled=100)) == []
    assert policy.on_window(window(0, 0.90, labelled=900, revision=2)) == []  # more labels: it was fine
    assert policy.on_window(window(1, 0.80)) == []


SEQUENCE = [
    window(0, 0.95),
    window(1, 0.80, drift=[feature("age", psi=0.5), feature("income", psi=0.1)]),
    window(1, 0.70, revision=2),
    window(2, 0.90),
    window(3, 0.91),
    window(8, 0.95, drift=[feature("income", psi=0.3)]),
    window(9, 0.60),
]


def test_same_inputs_give_the_same_triggers_and_ids() -> None:
    first, second = run(make_policy(), SEQUENCE), run(make_policy(), SEQUENCE)

    assert fired_windows(first) == [1, 8, 9]  # accuracy recovered in window 2 and breaches again in 9
    assert [t.model_dump() for t in first] == [t.model_dump() for t in second]
    problems = ["psi_above/psi:age", "accuracy_below/accuracy"]
    assert first[0].trigger_id == trigger_id("credit-risk", "1", start(1), problems)
    assert [r.metric for r in first[0].reasons] == ["accuracy", "psi:age"]


def test_a_restart_from_the_saved_state_never_decides_a_window_twice() -> None:
    uninterrupted = run(make_policy(), SEQUENCE)
    before = make_policy()
    run(before, SEQUENCE[:3])

    after = make_policy()
    after.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(before.state()), type=PolicyState))  # as saved

    assert run(after, SEQUENCE) == uninterrupted[1:]  # the replay repeats the first three results


def test_a_detector_alarm_fires_immediately_in_the_window_it_falls_in() -> None:
    policy = make_policy()

    trigger = policy.on_alarm(key(4), alarm(4, "adwin", observations=412, estimate=0.31))

    assert trigger is not None
    assert trigger.window_start == start(4) and trigger.created_at == start(5)
    assert trigger.severity == "critical"
    assert [(r.rule, r.metric, r.observed, r.threshold, r.sample_count) for r in trigger.reasons] == [
        ("adwin", "adwin:error_rate", 0.31, 0.0, 412)
    ]
    assert trigger.trigger_id == trigger_id("credit-risk", "1", start(4), ["adwin/adwin:error_rate"])
    (results,) = policy.on_window(window(4, 0.7, alarms=[alarm(4)]))  # the alarm counts once; accuracy is news
    assert [r.rule for r in results.reasons] == ["accuracy_below"]
    assert policy.on_alarm(key(5), alarm(5, "adwin")) is None  # the same problem inside its cooldown
    assert policy.on_alarm(key(5), alarm(5, "page_hinkley")) is not None  # another detector: its own


def test_an_emission_closing_several_windows_is_judged_in_window_order_as_the_live_stream_would_be() -> None:
    """A backlog closes windows 1 to 3 at once, with an ADWIN alarm raised in window 1 and another in window 3:
    the triggers are those of the same windows coming one by one (the first alarm's, window 1's accuracy
    breach, the second alarm inside its cooldown), whatever order the emission lists them in."""
    results = [window(1, 0.5), window(2, 0.5), window(3, 0.5)]
    alarms = [(key(3), alarm(3)), (key(1), alarm(1))]
    live = make_policy()
    one_by_one = [t for t in [live.on_alarm(*alarms[1])] if t is not None] + live.on_window(results[0])
    one_by_one += live.on_window(results[1]) + [t for t in [live.on_alarm(*alarms[0])] if t is not None]
    one_by_one += live.on_window(results[2])

    caught_up = make_policy().on_emission(list(reversed(results)), alarms)

    assert fired_windows(caught_up) == fired_windows(one_by_one) == [1, 1]
    assert [t.trigger_id for t in caught_up] == [t.trigger_id for t in one_by_one]
    alarm_first = make_policy()  # the order the worker used: every alarm of the emission, then the results
    decided = [alarm_first.on_alarm(*pair) for pair in alarms]
    assert fired_windows([t for t in decided if t is not None]) == [3]  # window 1's alarm fell in the cooldown


def test_an_alarm_seen_only_in_a_window_result_fires_and_one_under_min_samples_does_not() -> None:
    policy = make_policy(page_hinkley={"min_samples": 100})

    assert policy.on_alarm(key(0), alarm(0, "page_hinkley", observations=99)) is None
    (trigger,) = policy.on_window(window(1, alarms=[alarm(1, "page_hinkley", observations=100, estimate=0.62)]))

    assert [(r.metric, r.observed) for r in trigger.reasons] == [("page_hinkley:score_mean", 0.62)]
    assert trigger.severity == "warning"
    fired_at = (start(1) + STEP / 3).isoformat()
    assert trigger.evidence == [f"detector_alarms/credit-risk/1/{start(1).isoformat()}/page_hinkley/{fired_at}/p-1"]


def test_per_model_override_applies_to_its_model_and_inherits_the_rest(tmp_path: Path) -> None:
    config = tmp_path / "driftline.toml"
    config.write_text("[policy]\ncooldown_s = 0\n\n[policy.models.credit-risk.accuracy_below]\nthreshold = 0.9\n")
    settings = load_settings(config).policy
    policy = TriggerPolicy(settings, WINDOW_S)

    assert settings.for_model("credit-risk").cooldown_s == 0
    assert settings.for_model("credit-risk").accuracy_below.hysteresis == 0.02
    assert fired_windows(policy.on_window(window(0, 0.85))) == [0]  # 500 labels: upper bound 0.88
    assert policy.on_window(window(0, 0.85, model="churn")) == []
    assert policy.on_window(window(1, 0.85, model="churn")) == []


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[policy.psi_above]\nthreshold = -1\n", r"policy\.psi_above\.threshold in .*=-1: .*greater than or equal"),
        (
            "[policy.models.credit-risk.accuracy_below]\nthreshold = 1.5\n",
            r"policy\.models\.credit-risk\.accuracy_below\.threshold in .*=1\.5: .*less than or equal to 1",
        ),
        (
            "[policy.accuracy_below]\nthreshold = 0.99\nhysteresis = 0.05\n",
            r"policy\.accuracy_below in .*0\.99 \+ hysteresis 0\.05 = 1\.04.* could never re-arm",
        ),
        ("[policy.accuracy_below]\nthreshhold = 0.9\n", r"policy\.accuracy_below\.threshhold in .*Extra inputs"),
        ("[policy]\ncooldown_s = -60\n", r"DRIFTLINE_POLICY_COOLDOWN_S \(or policy\.cooldown_s in .*\)=-60"),
        (
            "[policy]\nconfidence = 0.99\n",
            r"DRIFTLINE_POLICY_CONFIDENCE \(or policy\.confidence in .*\)=0\.99: .*expected 0\.95 .* or 0 ",
        ),
    ],
)
def test_a_bad_policy_raises_a_config_error_naming_the_field(tmp_path: Path, toml: str, expected: str) -> None:
    config = tmp_path / "driftline.toml"
    config.write_text(toml)

    with pytest.raises(ConfigError, match=expected):
        load_settings(config)


def test_ks_pvalue_rule_applies_holms_correction_over_the_features_tested() -> None:
    policy = make_policy(ks_pvalue_below={"enabled": True})
    drift = [
        feature("a", ks_pvalue=0.0045),
        feature("b", ks_pvalue=0.001),
        feature("c", ks_pvalue=0.5),
        feature("d", count=50, ks_pvalue=0.3),  # under min_samples: not tested, not in the family
    ]

    (trigger,) = policy.on_window(window(0, drift=drift))

    # m = 3: b 3·0.001 = 0.003, a max(0.003, 2·0.0045) = 0.009 < 0.01. Bonferroni (3·0.0045 = 0.0135) or a family
    # of 4 (3·0.0045) would not flag a; uncorrected, a would read 0.0045.
    assert [(r.metric, round(r.observed, 10)) for r in trigger.reasons] == [
        ("ks_pvalue:a", 0.009),
        ("ks_pvalue:b", 0.003),
    ]


def test_ks_pvalues_under_the_threshold_before_correction_only_do_not_fire() -> None:
    policy = make_policy(ks_pvalue_below={"enabled": True})
    drift = [feature("a", ks_pvalue=0.006), feature("b", ks_pvalue=0.008), feature("c", ks_pvalue=0.5)]

    assert policy.on_window(window(0, drift=drift)) == []  # Holm: 0.018, 0.018, 0.5


def test_score_and_label_drift_are_read_only_when_named() -> None:
    drift = [feature("__score__", psi=0.9), feature("__predicted_label__", psi=0.9)]

    assert make_policy().on_window(window(0, drift=drift)) == []
    (trigger,) = make_policy(psi_above={"features": ["__score__"]}).on_window(window(0, drift=drift))
    assert [r.metric for r in trigger.reasons] == ["psi:__score__"]


def test_a_feature_gone_all_null_fires_on_its_missing_rate_counted_over_every_prediction() -> None:
    drift = [feature("income", count=0, missing_rate=1.0, missing_rate_increase=0.98)]

    (trigger,) = make_policy().on_window(window(0, drift=drift))

    assert [(r.metric, r.observed, r.sample_count) for r in trigger.reasons] == [
        ("missing_rate_increase:income", 0.98, 1000)
    ]


def odds(attribute: str, **groups: tuple[int, int, int, int]) -> list[GroupFairness]:
    """The rows the fairness monitor computes for ``attribute`` (minimum group count 30), every prediction
    labelled, from per group (positives, predicted positive of them, negatives, predicted positive of them)."""
    names, predicted, truth = [], [], []
    for name, (positives, hits, negatives, false_alarms) in groups.items():
        names += [name] * (positives + negatives)
        truth += [True] * positives + [False] * negatives
        predicted += [True] * hits + [False] * (positives - hits)
        predicted += [True] * false_alarms + [False] * (negatives - false_alarms)
    return binary_summary(np.array(truth), np.array(predicted), groups={attribute: np.array(names)}).fairness(30)


def selection(attribute: str, **groups: tuple[int, int]) -> list[GroupFairness]:
    """The rows the fairness monitor computes for ``attribute`` (minimum group count 30), no labels yet, from
    per group (predictions, predicted positive)."""
    names, predicted = [], []
    for name, (count, selected) in groups.items():
        names += [name] * count
        predicted += [True] * selected + [False] * (count - selected)
    nothing = np.zeros(len(names), dtype=bool)
    summary = binary_summary(nothing, np.array(predicted), groups={attribute: np.array(names)}, labelled=nothing)
    return summary.fairness(30)


def wilson(successes: int, trials: int) -> tuple[float, float]:
    """The reference 95% interval: scipy's Wilson score interval (statsmodels is not a dependency)."""
    interval = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
    return interval.low, interval.high


def test_fairness_rules_judge_attributes_over_groups_above_the_minimum_count() -> None:
    rows = [
        *selection("gender", f=(2000, 560), m=(7000, 2800), x=(5, 0)),
        *selection("region", north=(10, 1), south=(12, 11)),
    ]

    (trigger,) = make_policy().on_window(window(0, fairness=rows))

    assert [(r.metric, round(r.observed, 10), r.sample_count) for r in trigger.reasons] == [
        ("demographic_parity_ratio:gender", 0.7, 2000)
    ]
    assert trigger.evidence == [
        f"fairness_windows/credit-risk/1/{start(0).isoformat()}/gender/f",
        f"fairness_windows/credit-risk/1/{start(0).isoformat()}/gender/m",
    ]
    assert trigger.severity == "warning"


def test_drift_and_fairness_together_are_critical() -> None:
    result = window(0, drift=[feature("age", psi=0.3)], fairness=selection("g", a=(3000, 600), b=(3000, 1200)))

    (trigger,) = make_policy().on_window(result)

    assert sorted({r.rule for r in trigger.reasons}) == ["demographic_parity_ratio_below", "psi_above"]
    assert trigger.severity == "critical"


def test_a_small_window_whose_accuracy_interval_straddles_the_threshold_does_not_breach() -> None:
    low, high = wilson(80, 100)
    assert low < 0.85 < high  # the point estimate, 0.80, is under the threshold; the interval is across it

    assert make_policy().on_window(window(0, 0.80, labelled=100)) == []
    assert fired_windows(make_policy(confidence=0).on_window(window(0, 0.80, labelled=100))) == [0]


def test_a_large_window_with_the_same_accuracy_breaches() -> None:
    assert wilson(800, 1000)[1] < 0.85

    (trigger,) = make_policy().on_window(window(0, 0.80, labelled=1000, predictions=2000))

    assert [(r.rule, r.observed, r.threshold, r.sample_count) for r in trigger.reasons] == [
        ("accuracy_below", 0.80, 0.85, 1000)
    ]


@pytest.mark.parametrize("labelled", [100, 250, 1000, 10_000])
def test_accuracy_breaches_exactly_when_the_wilson_upper_bound_is_under_the_threshold(labelled: int) -> None:
    right = next(k for k in range(labelled, -1, -1) if wilson(k, labelled)[1] < 0.85)  # the most that breach

    breaching = window(0, right / labelled, labelled=labelled, predictions=labelled)
    assert fired_windows(make_policy().on_window(breaching)) == [0]
    assert make_policy().on_window(window(0, (right + 1) / labelled, labelled=labelled, predictions=labelled)) == []


def test_recovery_is_judged_on_the_point_estimate() -> None:
    policy = make_policy(cooldown_s=0)

    assert fired_windows(policy.on_window(window(0, 0.70))) == [0]
    assert wilson(88, 100)[0] < 0.87
    assert policy.on_window(window(1, 0.88, labelled=100)) == []  # the estimate is back at 0.87 or above: re-armed
    assert fired_windows(policy.on_window(window(2, 0.70))) == [2]


def test_a_parity_gap_inside_small_groups_intervals_does_not_breach_and_between_large_groups_does() -> None:
    small = selection("gender", f=(200, 56), m=(200, 80))  # selection rates 0.28 and 0.40: ratio 0.7
    large = selection("gender", f=(2000, 560), m=(2000, 800))
    assert wilson(56, 200)[1] / wilson(80, 200)[0] >= 0.8 > wilson(560, 2000)[1] / wilson(800, 2000)[0]
    assert_breaches_only_between_large_groups(small, large, ("demographic_parity_ratio:gender", 0.7, 2000))


@pytest.mark.parametrize("count", [150, 600, 2400])
def test_parity_breaches_exactly_when_one_groups_upper_bound_is_under_0_8_of_anothers_lower_bound(count: int) -> None:
    advantaged = round(0.4 * count)
    least_favourable = wilson(advantaged, count)[0]  # the advantaged group's lower bound
    selected = next(k for k in range(advantaged, -1, -1) if wilson(k, count)[1] < 0.8 * least_favourable)
    other = (count, round(0.35 * count))  # between the two: it bounds nothing

    breaching = selection("gender", f=(count, selected), m=(count, advantaged), x=other)
    assert fired_windows(make_policy().on_window(window(0, fairness=breaching))) == [0]
    inside = selection("gender", f=(count, selected + 1), m=(count, advantaged), x=other)
    assert make_policy().on_window(window(0, fairness=inside)) == []


def test_an_odds_gap_inside_small_groups_intervals_does_not_breach_and_between_large_groups_does() -> None:
    # TPR 0.8 and 0.6, FPR 0.1 and 0.3: equalised-odds difference 0.2, equal selection rates (parity holds)
    small = odds("gender", f=(100, 80, 100, 10), m=(100, 60, 100, 30))
    large = odds("gender", f=(2000, 1600, 2000, 200), m=(2000, 1200, 2000, 600))
    assert max(wilson(80, 100)[0] - wilson(60, 100)[1], wilson(30, 100)[0] - wilson(10, 100)[1]) <= 0.1
    assert wilson(1600, 2000)[0] - wilson(1200, 2000)[1] > 0.1
    assert_breaches_only_between_large_groups(small, large, ("equalized_odds_difference:gender", 0.2, 4000))


def assert_breaches_only_between_large_groups(
    small: list[GroupFairness], large: list[GroupFairness], reason: tuple[str, float, int]
) -> None:
    """Judged on its confidence intervals the gap between ``small`` groups breaches nothing and between ``large``
    ones gives ``reason`` (metric, observed, samples); judged on point estimates the small groups' breaches."""
    policy = make_policy(cooldown_s=0)

    assert policy.on_window(window(0, fairness=small)) == []
    (trigger,) = policy.on_window(window(1, fairness=large))

    assert [(r.metric, round(r.observed, 10), r.sample_count) for r in trigger.reasons] == [reason]
    assert fired_windows(make_policy(confidence=0).on_window(window(0, fairness=small))) == [0]


def test_estimated_accuracy_is_read_only_while_labels_are_scarce() -> None:
    policy = make_policy(cooldown_s=0)

    assert policy.on_window(window(0, 0.9, labelled=500, estimated_accuracy=0.7)) == []  # coverage 0.5
    (trigger,) = policy.on_window(window(1, None, labelled=0, estimated_accuracy=0.7))
    assert [(r.metric, r.sample_count) for r in trigger.reasons] == [("estimated_accuracy", 1000)]


def test_expiring_windows_keeps_the_recovery_they_held() -> None:
    policy = make_policy(cooldown_s=0)
    run(policy, [window(0, 0.8), window(1, 0.9)])

    policy.expire(lambda _model: start(2))

    assert fired_windows(policy.on_window(window(2, 0.8))) == [2]
    policy.expire(lambda _model: start(10))
    last = {("credit-risk", "accuracy_below", "accuracy"): start(2)}
    assert policy.state() == PolicyState(windows={}, disarmed={}, last_fired=last)


def test_policy_doctests() -> None:
    assert doctest.testmod(policy_module).failed == 0


def test_documented_policy_example_is_valid_and_means_what_it_says(tmp_path: Path) -> None:
    policy_page = (ROOT / "docs" / "policy.md").read_text()
    section = policy_page.split("# Retraining triggers: the policy", 1)[1].split("\n## ", 1)[0]
    example = re.search(r"```toml\n(.*?)```", section, re.S)
    assert example is not None
    config = tmp_path / "driftline.toml"
    config.write_text(example.group(1))

    policy = load_settings(config).policy

    assert policy.cooldown_s == 7200
    assert policy.psi_above.features == ["age", "income"]
    credit_risk, churn, other = (policy.for_model(model).accuracy_below for model in ("credit-risk", "churn", "x"))
    assert (credit_risk.max_drop, credit_risk.consecutive, credit_risk.threshold) == (0.03, 2, None)
    assert policy.for_model("credit-risk").psi_above.features == ["age", "income"]
    assert (churn.threshold, churn.max_drop) == (0.9, 0.05)
    assert (other.threshold, other.max_drop) == (None, 0.05)
    assert churn.threshold_for(0.80) == 0.9 and churn.threshold_for(0.99) == pytest.approx(0.94)
    assert other.threshold_for(0.80) == pytest.approx(0.75) and other.threshold_for(None) is None


def test_a_model_whose_reference_accuracy_is_075_stays_quiet_while_stable_and_fires_when_it_drops() -> None:
    """Relative by default: judged against its own reference's accuracy minus 0.05, not an absolute 0.85 that
    would fire on its first window though nothing changed."""
    stable = [window(k, 0.75, labelled=2_000, reference_accuracy=0.75) for k in range(5)]
    dropped = [window(k, 0.66, labelled=2_000, reference_accuracy=0.75) for k in range(5, 8)]

    triggers = run(make_policy(), [*stable, *dropped])
    absolute = run(make_policy(accuracy_below={"threshold": 0.85}), stable)

    assert fired_windows(triggers) == [5]
    [reason] = triggers[0].reasons
    assert (reason.rule, reason.threshold, reason.reference) == ("accuracy_below", pytest.approx(0.70), 0.75)
    assert fired_windows(absolute) == [0]  # the old absolute default fired on day one


def test_without_a_reference_accuracy_the_rule_judges_nothing_unless_an_absolute_threshold_is_set() -> None:
    unreferenced = [window(k, 0.40, labelled=2_000, reference_accuracy=None) for k in range(3)]

    assert run(make_policy(), unreferenced) == []
    assert fired_windows(run(make_policy(accuracy_below={"threshold": 0.5}), unreferenced)) == [0]
