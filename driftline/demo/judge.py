"""Did the monitor catch what a scenario injected? Flags and a verdict, read from window rows and triggers.

The rows are those of the ClickHouse views (``performance_windows_latest``, ``drift_windows_latest``,
``fairness_windows_latest``, ``detector_alarms_latest``) and of ``retrain_triggers``; :func:`rows_of` makes
the same rows from results read off the topics, so a live view and the final verdict share one definition.

A **flag** is a window whose numbers cross a threshold rule of the policy (the same rules, thresholds and
minimum sample counts the worker's trigger policy applies, one window at a time: no consecutive-window
counts, hysteresis or cooldown), or a streaming detector's alarm in it:

- ``drift``: PSI, normalised Wasserstein or Jensen–Shannon above its threshold on a feature (samples: the
  feature's non-null values), or Page–Hinkley on the score mean;
- ``integrity``: the missing rate above the reference's by more than its threshold (samples: predictions);
- ``fairness``: demographic-parity ratio below, or equalised-odds difference above, its threshold on a
  sensitive attribute, over the groups judged (samples: the smallest judged group);
- ``performance``: accuracy below its threshold (samples: labelled predictions), estimated accuracy below
  its threshold in a window with scarce labels, or ADWIN on the error rate.

The Holm-corrected KS rule is a test over a window's family of features, not a threshold on one: it is not read.

A phase **injects** the effects it puts in force that the phase before it did not have. Each injected problem
expects a flag of its kind (:class:`Expectation`) and a retraining trigger of its kind: a trigger is read as
one flag per reason (:func:`trigger_flags`: the rule's kind, ``integrity`` for the missing-rate rule, on the
reason's feature or attribute). A new model version is a remedy, not a problem. The :class:`Verdict` holds
when every injected problem is flagged, and has a trigger of its kind, in the window where its phase starts or
the next one; when no trigger falls in a phase where no effect is in force (the stable period); and when no
trigger falls in a version's first window (nothing about a version is known to have changed then).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, cast

import pandas as pd

from driftline.schemas.policy import (
    DriftAbove,
    EstimatedAccuracyBelow,
    FairnessRule,
    KsPvalueBelow,
    MissingRateIncreaseAbove,
    PerformanceBelow,
    PolicyRules,
)
from driftline.schemas.results import RetrainTrigger, WindowResult
from driftline.schemas.tables import (
    DETECTOR_ALARMS,
    DRIFT_WINDOWS,
    FAIRNESS_WINDOWS,
    PERFORMANCE_WINDOWS,
    RETRAIN_TRIGGERS,
    Table,
)
from driftline.simulation.scenarios import (
    BrokenFeature,
    ConceptDrift,
    CovariateDrift,
    Effect,
    FairnessGap,
    PredictionDrift,
    Scenario,
)
from driftline.sinks.rows import retrain_trigger_row, window_rows

Kind = Literal["drift", "integrity", "fairness", "performance"]
SCORE_SUBJECTS = frozenset({"__score__", "__predicted_label__", "score_mean"})
"""What prediction drift shows on: the scores' and predicted labels' drift rows, Page–Hinkley's signal."""
NOT_FEATURES = SCORE_SUBJECTS | {"__label__"}
"""Flag subjects that are not input features."""


@dataclass(frozen=True)
class WindowRows:
    """The rows of one model's windows and triggers, as the ClickHouse views and tables hold them."""

    performance: pd.DataFrame
    drift: pd.DataFrame
    fairness: pd.DataFrame
    alarms: pd.DataFrame
    triggers: pd.DataFrame

    def __post_init__(self) -> None:
        for name in ("performance", "drift", "fairness", "alarms", "triggers"):
            frame = getattr(self, name).copy()
            for column in ("window_start", "window_end", "fired_at", "created_at"):
                if column in frame:
                    frame[column] = pd.to_datetime(frame[column], utc=True)
            object.__setattr__(self, name, frame)


def rows_of(results: list[WindowResult], triggers: list[RetrainTrigger]) -> WindowRows:
    """The rows the sink would store for ``results`` (latest revision of each window) and ``triggers``."""
    tables: dict[Table, list[tuple[object, ...]]] = {
        table: [] for table in (PERFORMANCE_WINDOWS, DRIFT_WINDOWS, FAIRNESS_WINDOWS, DETECTOR_ALARMS)
    }
    for result in results:
        for table, rows in window_rows(result).items():
            tables[table].extend(rows)

    def frame(table: Table, rows: list[tuple[object, ...]]) -> pd.DataFrame:
        return pd.DataFrame(rows, columns=table.column_names)

    return WindowRows(
        performance=frame(PERFORMANCE_WINDOWS, tables[PERFORMANCE_WINDOWS]),
        drift=frame(DRIFT_WINDOWS, tables[DRIFT_WINDOWS]),
        fairness=frame(FAIRNESS_WINDOWS, tables[FAIRNESS_WINDOWS]),
        alarms=frame(DETECTOR_ALARMS, tables[DETECTOR_ALARMS]),
        triggers=frame(RETRAIN_TRIGGERS, [retrain_trigger_row(t) for t in triggers]),
    )


@dataclass(frozen=True)
class Flag:
    """A window whose numbers cross a rule (or where a detector fired); ``metric`` is named as the trigger
    policy names it: ``accuracy``, ``psi:income``, ``demographic_parity_ratio:group``, ``adwin:error_rate``."""

    model_version: str
    window_start: pd.Timestamp
    kind: Kind
    rule: str
    subject: str
    metric: str
    observed: float
    threshold: float


def flags(rows: WindowRows, policy: PolicyRules) -> list[Flag]:
    """Every flag of every window, in window order."""
    found: list[Flag] = []
    predictions = {(r["model_version"], r["window_start"]): r["predictions"] for r in _records(rows.performance)}
    for name, rule in policy.rules().items():
        if not rule.enabled:
            continue
        if isinstance(rule, PerformanceBelow):
            found += _performance_flags(name, rule, rows.performance)
        elif isinstance(rule, DriftAbove) and not isinstance(rule, KsPvalueBelow):
            found += _drift_flags(name, rule, rows.drift, predictions)
        elif isinstance(rule, FairnessRule):
            found += _fairness_flags(name, rule, rows.fairness)
    for alarm in _records(rows.alarms):
        detector, signal = str(alarm["detector"]), str(alarm["signal"])
        rule = policy.rules()[detector]
        if rule.enabled and alarm["observations"] >= rule.min_samples:
            kind: Kind = "performance" if detector == "adwin" else "drift"
            found.append(
                _flag(alarm, kind, detector, signal, f"{detector}:{signal}", observed=alarm["estimate"], threshold=0.0)
            )
    return sorted(found, key=lambda flag: (flag.window_start, flag.kind, flag.metric))


def drifted_features(raised: list[Flag]) -> list[str]:
    """The input features with a drift or integrity flag among ``raised``, in the order first flagged."""
    return list(
        dict.fromkeys(
            flag.subject for flag in raised if flag.kind in ("drift", "integrity") and flag.subject not in NOT_FEATURES
        )
    )


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], frame.to_dict("records"))


def _flag(
    row: dict[str, Any], kind: Kind, rule: str, subject: str, metric: str, *, observed: Any, threshold: float
) -> Flag:
    value = float(observed) if pd.notna(observed) else math.nan
    return Flag(
        str(row["model_version"]), pd.Timestamp(row["window_start"]), kind, rule, subject, metric, value, threshold
    )


def _performance_flags(name: str, rule: PerformanceBelow, frame: pd.DataFrame) -> list[Flag]:
    found = []
    for row in _records(frame):
        value, samples = row[rule.metric], row["labelled"]
        if isinstance(rule, EstimatedAccuracyBelow):
            if pd.notna(row["label_coverage"]) and row["label_coverage"] > rule.max_label_coverage:
                continue
            samples = row["predictions"]
        reference = row.get(f"reference_{rule.metric}")
        threshold = rule.threshold_for(None if pd.isna(reference) else float(reference))
        if threshold is None or pd.isna(value) or samples < rule.min_samples:
            continue
        if rule.breaches(threshold, float(value)):
            found.append(_flag(row, "performance", name, rule.metric, rule.metric, observed=value, threshold=threshold))
    return found


def _drift_flags(
    name: str, rule: DriftAbove, frame: pd.DataFrame, predictions: dict[tuple[Any, Any], Any]
) -> list[Flag]:
    integrity = isinstance(rule, MissingRateIncreaseAbove)
    kind: Kind = "integrity" if integrity else "drift"
    threshold = rule.threshold_for(None)
    found: list[Flag] = []
    if threshold is None:
        return found
    for row in _records(frame):
        value, feature = row[rule.metric], str(row["feature"])
        samples = predictions.get((row["model_version"], row["window_start"]), 0) if integrity else row["count"]
        if pd.notna(value) and samples >= rule.min_samples and rule.breaches(threshold, float(value)):
            found.append(
                _flag(row, kind, name, feature, f"{rule.metric}:{feature}", observed=value, threshold=threshold)
            )
    return found


def _fairness_flags(name: str, rule: FairnessRule, frame: pd.DataFrame) -> list[Flag]:
    """Per window and attribute: its attribute-wide value (repeated on each group's row) over the judged
    groups; samples: the smallest judged group."""
    windows: dict[tuple[Any, Any, str], list[dict[str, Any]]] = {}
    for row in _records(frame):
        if not row["below_min_count"]:
            windows.setdefault((row["model_version"], row["window_start"], str(row["attribute"])), []).append(row)
    threshold = rule.threshold_for(None)
    found: list[Flag] = []
    if threshold is None:
        return found
    for (_version, _start, attribute), groups in sorted(windows.items(), key=lambda item: item[0][1]):
        value = groups[0][rule.metric]
        samples = min(group["count"] for group in groups)
        if pd.notna(value) and samples >= rule.min_samples and rule.breaches(threshold, float(value)):
            found.append(
                _flag(
                    groups[0],
                    "fairness",
                    name,
                    attribute,
                    f"{rule.metric}:{attribute}",
                    observed=value,
                    threshold=threshold,
                )
            )
    return found


@dataclass(frozen=True)
class Expectation:
    """The flag an injected problem should raise: of one of ``kinds``, on one of ``subjects`` (any when
    empty)."""

    problem: str
    kinds: frozenset[Kind]
    subjects: frozenset[str] = frozenset()

    def describe(self) -> str:
        """The flag it waits for, in words: ``a drift trigger on income``."""
        on = f" on {', '.join(sorted(self.subjects))}" if self.subjects else ""
        return f"{' or '.join(sorted(self.kinds))}{on}"

    def matches(self, flag: Flag) -> bool:
        """Whether ``flag`` is one this expectation waits for."""
        return flag.kind in self.kinds and (not self.subjects or flag.subject in self.subjects)


def expectation(effect: Effect) -> Expectation | None:
    """What ``effect`` should raise; None for a remedy (a new model version)."""
    if isinstance(effect, CovariateDrift):
        return Expectation(
            f"covariate drift in {', '.join(effect.features)}", frozenset({"drift"}), frozenset(effect.features)
        )
    if isinstance(effect, BrokenFeature):
        return Expectation(
            f"{effect.feature} broken ({effect.mode.replace('_', ' ')})",
            frozenset({"integrity", "drift"}),
            frozenset({effect.feature}),
        )
    if isinstance(effect, FairnessGap):
        return Expectation(
            f"fairness gap for {effect.attribute}={effect.group}",
            frozenset({"fairness"}),
            frozenset({effect.attribute}),
        )
    if isinstance(effect, ConceptDrift):
        return Expectation("concept drift (labels turn away from the scores)", frozenset({"performance"}))
    if isinstance(effect, PredictionDrift):
        return Expectation("prediction drift (scores move)", frozenset({"drift"}), SCORE_SUBJECTS)
    return None


@dataclass(frozen=True)
class Finding:
    """One injected problem and the first flag, and the first trigger reason, that matched it in the phase's
    first two windows, if any."""

    expectation: Expectation
    flag: Flag | None
    trigger: Flag | None = None

    @property
    def detected(self) -> bool:
        """Whether a matching flag was raised in time."""
        return self.flag is not None

    @property
    def decided(self) -> bool:
        """Whether a trigger of the problem's kind came in time."""
        return self.trigger is not None


@dataclass(frozen=True)
class PhaseVerdict:
    """A phase's span of event time, what it injected and whether each was found, and its triggers."""

    name: str
    start: pd.Timestamp
    end: pd.Timestamp
    stable: bool
    findings: list[Finding]
    triggers: pd.DataFrame
    flags: list[Flag]
    first_window_triggers: list[Flag] = field(default_factory=list)

    @property
    def problems(self) -> bool:
        """Whether the phase injects a problem."""
        return bool(self.findings)

    @property
    def failures(self) -> list[str]:
        """What the phase got wrong, one sentence each (empty: it passed)."""
        wrong = []
        for finding in self.findings:
            if not finding.detected:
                wrong.append(f"{self.name}: {finding.expectation.problem} was not flagged in time")
            if not finding.decided:
                wrong.append(
                    f"{self.name}: {finding.expectation.problem} got no {finding.expectation.describe()} trigger in "
                    "its onset window or the next"
                )
        if self.stable and not self.triggers.empty:
            wrong.append(f"{self.name}: {len(self.triggers)} trigger(s) in the stable period")
        for flag in self.first_window_triggers:
            wrong.append(
                f"{self.name}: trigger {flag.rule} ({flag.metric}) in version {flag.model_version}'s first window"
            )
        return wrong


@dataclass(frozen=True)
class Verdict:
    """The verdict over every phase; it holds when no phase reports a failure."""

    phases: list[PhaseVerdict] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        """Every failure, in phase order."""
        return [failure for phase in self.phases for failure in phase.failures]

    @property
    def passed(self) -> bool:
        """True when every injected problem was detected and the stable period stayed quiet."""
        return not self.failures


def judge(
    scenario: Scenario, rows: WindowRows, policy: PolicyRules, *, start: datetime, end: datetime, window_s: float
) -> Verdict:
    """The verdict on a run of ``scenario`` that began at ``start`` and is judged up to ``end`` (event time),
    over tumbling windows of ``window_s`` aligned to the Unix epoch, as the worker's."""
    raised = flags(rows, policy)
    decided = trigger_flags(rows, policy)
    size = timedelta(seconds=window_s)
    triggers = rows.triggers
    first_windows = {
        str(version): pd.Timestamp(start)
        for version, start in rows.performance.groupby("model_version")["window_start"].min().items()
    }
    starts = [pd.Timestamp(start) + timedelta(seconds=phase.start_s) for phase in scenario.phases]
    ends = [*starts[1:], pd.Timestamp(end)]
    verdicts = []
    for index, phase in enumerate(scenario.phases):
        first = _window_of(starts[index], window_s)
        own = [flag for flag in raised if first <= flag.window_start < ends[index]]
        early = [flag for flag in own if flag.window_start <= first + size]
        early_triggers = [flag for flag in decided if first <= flag.window_start <= first + size]
        before = set(scenario.phases[index - 1].effects) if index else set()
        findings = []
        for effect in phase.effects:
            expected = expectation(effect) if effect not in before else None
            if expected is not None:
                flagged = next((flag for flag in early if expected.matches(flag)), None)
                trigger = next((flag for flag in early_triggers if expected.matches(flag)), None)
                findings.append(Finding(expected, flagged, trigger))
        in_phase = (triggers["window_start"] >= starts[index]) & (triggers["window_start"] < ends[index])
        verdicts.append(
            PhaseVerdict(
                name=phase.name,
                start=starts[index],
                end=ends[index],
                stable=not phase.effects,
                findings=findings,
                triggers=triggers[in_phase],
                flags=own,
                first_window_triggers=[
                    flag
                    for flag in decided
                    if starts[index] <= flag.window_start < ends[index]
                    and flag.window_start == first_windows.get(flag.model_version)
                ],
            )
        )
    return Verdict(verdicts)


def trigger_flags(rows: WindowRows, policy: PolicyRules) -> list[Flag]:
    """Each reason of each trigger in ``rows`` as a flag: of its rule's kind (``integrity`` for
    ``missing_rate_increase_above``), on the feature or attribute its metric names (``psi:income``: income;
    ``adwin:error_rate``: error_rate; ``accuracy``: accuracy), in window order."""
    found: list[Flag] = []
    rules = policy.rules()
    for row in _records(rows.triggers):
        for reason in json.loads(row["reasons"]):
            rule, metric = str(reason["rule"]), str(reason["metric"])
            kind: Kind = "integrity" if rule == "missing_rate_increase_above" else rules[rule].kind
            subject = metric.split(":", 1)[1] if ":" in metric else metric
            found.append(
                _flag(row, kind, rule, subject, metric, observed=reason["observed"], threshold=reason["threshold"])
            )
    return sorted(found, key=lambda flag: (flag.window_start, flag.kind, flag.metric))


def _window_of(stamp: pd.Timestamp, window_s: float) -> pd.Timestamp:
    """Start of the epoch-aligned tumbling window holding ``stamp``."""
    seconds = stamp.timestamp()
    return pd.Timestamp(seconds - seconds % window_s, unit="s", tz="UTC")
