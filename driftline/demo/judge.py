"""Did the monitor catch what a scenario injected? A verdict, from the flags and triggers of a run's window rows
(:mod:`driftline.demo.flags`).

A phase **injects** the effects it puts in force that the phase before it did not have. Each injected problem
expects a flag of its kind (:class:`Expectation`) and a retraining trigger of its kind: a trigger is read as
one flag per reason (:func:`~driftline.demo.flags.trigger_flags`: the rule's kind, ``integrity`` for the
missing-rate rule, on the reason's feature or attribute). A new model version is a remedy, not a problem. The
:class:`Verdict` holds when every injected problem is flagged, and has a trigger of its kind, in the window where
its phase starts or the next one; when no trigger falls in a phase where no effect is in force (the stable
period); and when no trigger falls in a version's first window (nothing about a version is known to have changed
then).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from driftline.demo.flags import SCORE_SUBJECTS, Flag, Kind, WindowRows, flags, trigger_flags
from driftline.schemas.policy import PolicyRules
from driftline.simulation.scenarios import (
    BrokenFeature,
    ConceptDrift,
    CovariateDrift,
    Effect,
    FairnessGap,
    PredictionDrift,
    Scenario,
)


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


def _window_of(stamp: pd.Timestamp, window_s: float) -> pd.Timestamp:
    """Start of the epoch-aligned tumbling window holding ``stamp``."""
    seconds = stamp.timestamp()
    return pd.Timestamp(seconds - seconds % window_s, unit="s", tz="UTC")
