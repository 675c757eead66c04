"""The flags a model's window rows raise, by the policy's rules, read one window at a time.

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

A trigger is read as one flag per reason (:func:`trigger_flags`: the rule's kind, ``integrity`` for the
missing-rate rule, on the reason's feature or attribute).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
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
