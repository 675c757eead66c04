"""The retraining-trigger policy: from window results and detector alarms, when to ask for retraining.

Kafka-free and a pure function of the data it is given (never of the wall clock), so a replay of the same
calls gives the same triggers, ids included. The rules and their settings are
:mod:`driftline.schemas.policy`.

Contract
--------
- :meth:`TriggerPolicy.on_window` takes every emitted :class:`WindowResult`, each revision, in any order, and
  returns the triggers it decides (usually none or one, in window order).
- :meth:`TriggerPolicy.on_alarm` takes a detector alarm as soon as it is raised, with the window it falls in,
  and returns the trigger it decides, if any: a detector may fire before its window closes. An alarm also
  listed in ``result.alarms`` counts once (one detector verdict per window).
- :meth:`TriggerPolicy.on_emission` takes what one emission of the worker brings (window results and alarms)
  and judges it in window order, a window's alarms before its results: the worker calls it.
- :meth:`TriggerPolicy.state` is the policy's memory as plain data (dicts, tuples, datetimes), saved with
  the checkpoint; :meth:`TriggerPolicy.restore` puts it back, so a restart never decides a window twice.
  :meth:`TriggerPolicy.expire` forgets windows that can no longer be re-emitted.

How it decides
--------------
Each rule's verdict on each of its metrics (``psi:age``) is kept per window start, from the window's latest
revision: *breach*, *recovered* (past the recovery threshold) or nothing (inside the hysteresis band, under
``min_samples``, undefined, or a point estimate past the threshold whose interval is not). With
``confidence`` 0.95 (the default), a metric counted over samples breaches only when its 95% interval lies
entirely past the threshold (``*_below``: upper bound < threshold; ``*_above``: lower bound > threshold):

- ``accuracy``: Wilson's score interval (:func:`~driftline.streams.core.metrics.fairness.wilson_interval`) of
  round(accuracy · labelled) successes in ``labelled`` trials;
- ``demographic_parity_ratio``: :func:`~driftline.streams.core.readings.ratio_bounds` of the judged groups'
  selection-rate intervals, so it breaches when some group's upper bound is under ``threshold`` times another
  group's lower bound;
- ``equalized_odds_difference``: the larger of :func:`~driftline.streams.core.readings.spread_bounds` of the
  judged groups' TPR intervals and of their FPR intervals, so it breaches when two groups' TPR (or FPR)
  intervals are more than ``threshold`` apart.

The groups' intervals are the Wilson intervals on the fairness rows. Every other metric, and every metric
with ``confidence`` 0, is judged on its point estimate. Recovery is always judged on the point estimate (see
:mod:`driftline.schemas.policy`). A rule-metric *qualifies* in window w when

1. it breaches in w and in the ``consecutive − 1`` windows before it (starts w − k·window_s), whatever the
   order in which those windows were emitted;
2. it is armed: it never fired for this model version, or a window after the one it last fired in and before
   w shows it recovered (detector rules are always armed: the detector restarts after firing).

Each rule-metric is a *problem* (``psi_above`` on ``psi:age``, ``adwin`` on ``adwin:error_rate``). The policy
fires for w with the problems that qualify in w, have not fired in w yet, and are not cooling down: a problem
cools down for ``cooldown_s`` after the start of the latest window it fired in (for the model, any version),
and windows before that one never fire it again. So each problem gets its own trigger at its onset: another
problem's trigger, in the same window or an earlier one, never holds it back, and a later revision of a window
(more labels) fires only for problems new in it. Firing disarms the threshold rule-metrics it names. A
re-emitted older window can complete a run of consecutive breaches that ends in a newer window: that newer
window is decided then, which is why ``on_window`` returns a list.

The trigger
-----------
``trigger_id`` = :func:`~driftline.schemas.results.trigger_id` of model, version, window start and the sorted
problems that fired (``rule/metric``); ``created_at`` = the window's end (also when a detector decided before the
window closed, so the trigger does not depend on which call decided it); ``severity`` is *critical* when a
performance rule fired (``accuracy_below``, ``estimated_accuracy_below``, ``adwin``) or rules of two kinds
(performance, drift, fairness) fired together, else *warning*. One reason per qualifying rule-metric, sorted
by rule then metric; its ``observed`` is the point estimate, also when the interval decided (the interval
is in the evidence rows: the fairness rows' intervals, accuracy's from ``accuracy`` and ``labelled``).
Metrics: ``accuracy``, ``estimated_accuracy``, ``<drift metric>:<feature>``, ``ks_pvalue:<feature>``
(Holm-adjusted), ``<fairness metric>:<attribute>``, ``adwin:error_rate`` and
``page_hinkley:score_mean``; for a detector, ``observed`` is its estimate of the watched mean when it fired,
``threshold`` is 0 (a detector has no threshold of the policy's) and ``sample_count`` its observations since
it last fired. ``evidence`` holds the keys of the rows behind the reasons:
``performance_windows/<model>/<version>/<window start ISO>``, ``drift_windows/…/<feature>``,
``fairness_windows/…/<attribute>/<group>`` (each judged group) and
``detector_alarms/…/<detector>/<fired_at ISO>/<prediction id>``: each table's sort key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Literal, TypedDict

from driftline.schemas.policy import (
    PolicyRules,
    PolicySettings,
    ThresholdRule,
)
from driftline.schemas.results import (
    DetectorAlarm,
    RetrainTrigger,
    TriggerReason,
    WindowKey,
    WindowResult,
    trigger_id,
)
from driftline.streams.core.readings import Bounds, readings

_DETECTORS = frozenset({"adwin", "page_hinkley"})

Status = Literal["breach", "recovered"]
VerdictKey = tuple[str, str]
"""(rule, metric), e.g. ``("psi_above", "psi:age")``."""
Verdict = tuple[Status, float, int, tuple[str, ...], float, float | None]
"""(status, observed value, sample count, evidence keys, threshold judged, reference value it was derived from)."""


class WindowMemory(TypedDict):
    """What the policy keeps of one window: its latest revision's verdicts and the problems it fired for."""

    revision: int  # -1 while only detector alarms are known
    end: datetime
    verdicts: dict[VerdictKey, Verdict]
    fired: list[VerdictKey]


class PolicyState(TypedDict):
    """The policy's memory: windows per (model, version), disarmed rule-metrics, latest fire per problem."""

    windows: dict[tuple[str, str], dict[datetime, WindowMemory]]
    disarmed: dict[tuple[str, str, str, str], datetime]  # (model, version, rule, metric) -> start it fired in
    last_fired: dict[tuple[str, str, str], datetime]  # (model, rule, metric) -> start of its latest fired window


class TriggerPolicy:
    """Decides retraining triggers for every model from ``settings``, over tumbling windows of ``window_s``."""

    def __init__(self, settings: PolicySettings, window_s: float) -> None:
        self.settings = settings
        self.step = timedelta(seconds=window_s)
        self._state = PolicyState(windows={}, disarmed={}, last_fired={})

    def state(self) -> PolicyState:
        """The live memory (not a copy): save it (msgpack, :mod:`driftline.streams.worker.snapshots`) before the next
        call."""
        return self._state

    def restore(self, state: PolicyState) -> None:
        """Continue from ``state`` (from :meth:`state`, saved and read back); the policy takes it over."""
        self._state = state

    def on_window(self, result: WindowResult) -> list[RetrainTrigger]:
        """Record the verdicts of ``result`` (ignored unless its revision is newer) and decide its window and
        the ones after it whose runs of consecutive breaches it may complete."""
        version = (result.model_id, result.model_version)
        windows = self._state["windows"].setdefault(version, {})
        known = windows.get(result.window_start)
        if known is not None and result.revision <= known["revision"]:
            return []
        policy = self.settings.for_model(result.model_id)
        verdicts = {key: verdict for key, verdict in known["verdicts"].items() if key[0] in _DETECTORS} if known else {}
        for alarm in result.alarms:
            detected = _alarm_verdict(policy, result, alarm)
            if detected is not None:
                verdicts.setdefault(*detected)
        for name, rule in policy.rules().items():
            if isinstance(rule, ThresholdRule) and rule.enabled:
                for metric, observed, bounds, samples, evidence, reference in readings(rule, result, policy.confidence):
                    threshold = rule.threshold_for(reference)
                    if threshold is None or samples < rule.min_samples:
                        continue
                    if (status := _status(rule, threshold, observed, bounds)) is not None:
                        kept = tuple(_evidence(result, *row) for row in evidence) if status == "breach" else ()
                        verdicts[(name, metric)] = (status, observed, samples, kept, threshold, reference)
        windows[result.window_start] = WindowMemory(
            revision=result.revision, end=result.window_end, verdicts=verdicts, fired=known["fired"] if known else []
        )
        reach = max((r.consecutive for r in policy.rules().values() if isinstance(r, ThresholdRule)), default=1)
        decided = (self._decide(*version, result.window_start + k * self.step) for k in range(reach))
        return [trigger for trigger in decided if trigger is not None]

    def on_alarm(self, window: WindowKey, alarm: DetectorAlarm) -> RetrainTrigger | None:
        """Record a detector alarm in its ``window`` and decide that window at once."""
        detected = _alarm_verdict(self.settings.for_model(window.model_id), window, alarm)
        if detected is None:
            return None
        windows = self._state["windows"].setdefault((window.model_id, window.model_version), {})
        memory = windows.setdefault(
            window.window_start, WindowMemory(revision=-1, end=window.window_end, verdicts={}, fired=[])
        )
        memory["verdicts"].setdefault(*detected)
        return self._decide(window.model_id, window.model_version, window.window_start)

    def on_emission(
        self, results: Sequence[WindowResult], alarms: Sequence[tuple[WindowKey, DetectorAlarm]]
    ) -> list[RetrainTrigger]:
        """Decide what one emission of the worker brings, in window order, a window's alarms (in the order they
        were raised) before its results, as a stream read live brings them. So an emission that closes many
        windows at once (catching up a backlog, after a restart, a replay) decides as the live stream would:
        an alarm in a later window never makes the results of an earlier one "older than the last fire"."""
        order = sorted(
            [(key.window_start, 0, i) for i, (key, _alarm) in enumerate(alarms)]
            + [(result.window_start, 1, i) for i, result in enumerate(results)]
        )
        triggers: list[RetrainTrigger] = []
        for _start, kind, i in order:
            if kind == 0:
                trigger = self.on_alarm(*alarms[i])
                triggers.extend([trigger] if trigger is not None else [])
            else:
                triggers.extend(self.on_window(results[i]))
        return triggers

    def expire(self, before: Callable[[tuple[str, str]], datetime]) -> None:
        """Forget the windows of each model version starting before ``before((model_id, model_version))``,
        which the worker will never re-emit (past its label horizon). A recovery among them re-arms its
        rule-metric first; a version left with no windows is forgotten, disarmed rules included. Runs of
        consecutive breaches that reach further back are cut."""
        for version, windows in list(self._state["windows"].items()):
            oldest = before(version)
            old = {start: memory for start, memory in windows.items() if start < oldest}
            for key, fired_at in list(self._state["disarmed"].items()):
                if key[:2] == version and any(
                    start > fired_at and _status_of(memory, key[2:]) == "recovered" for start, memory in old.items()
                ):
                    del self._state["disarmed"][key]
            for start in old:
                del windows[start]
            if not windows:
                del self._state["windows"][version]
                for key in [key for key in self._state["disarmed"] if key[:2] == version]:
                    del self._state["disarmed"][key]

    def _decide(self, model_id: str, model_version: str, start: datetime) -> RetrainTrigger | None:
        windows = self._state["windows"].get((model_id, model_version), {})
        memory = windows.get(start)
        if memory is None:
            return None
        policy = self.settings.for_model(model_id)
        qualifying = [
            (key, verdict)
            for key, verdict in sorted(memory["verdicts"].items())
            if verdict[0] == "breach"
            and key not in memory["fired"]
            and not self._cooling_down(policy, model_id, start, key)
            and self._qualifies(policy, model_id, model_version, start, key)
        ]
        if not qualifying:
            return None
        for key, _verdict in qualifying:
            memory["fired"].append(key)
            self._state["last_fired"][(model_id, *key)] = max(
                start, self._state["last_fired"].get((model_id, *key), start)
            )
        for key, _verdict in qualifying:
            if isinstance(policy.rules()[key[0]], ThresholdRule):
                self._state["disarmed"][(model_id, model_version, *key)] = start
        window = WindowKey(model_id=model_id, model_version=model_version, window_start=start, window_end=memory["end"])
        return _trigger(policy, window, qualifying)

    def _cooling_down(self, policy: PolicyRules, model_id: str, start: datetime, key: VerdictKey) -> bool:
        """The problem ``key`` fired for the model (any version) in a window starting less than ``cooldown_s``
        before ``start``, or after it."""
        last = self._state["last_fired"].get((model_id, *key))
        return last is not None and start < last + timedelta(seconds=policy.cooldown_s)

    def _qualifies(self, policy: PolicyRules, model_id: str, version: str, start: datetime, key: VerdictKey) -> bool:
        """Enabled, armed, and breaching in the ``consecutive − 1`` windows before ``start`` (it breaches in it)."""
        rule = policy.rules()[key[0]]
        if not rule.enabled:
            return False
        if not isinstance(rule, ThresholdRule):
            return True
        windows = self._state["windows"][(model_id, version)]
        for k in range(1, rule.consecutive):
            earlier = windows.get(start - k * self.step)
            if earlier is None or _status_of(earlier, key) != "breach":
                return False
        fired_at = self._state["disarmed"].get((model_id, version, *key))
        return fired_at is None or any(
            fired_at < other < start and _status_of(memory, key) == "recovered" for other, memory in windows.items()
        )


def _status_of(memory: WindowMemory, key: VerdictKey) -> Status | None:
    verdict = memory["verdicts"].get(key)
    return None if verdict is None else verdict[0]


def _status(rule: ThresholdRule, threshold: float, observed: float, bounds: Bounds) -> Status | None:
    """Breach on the interval, recovery on the point estimate (see the module docstring)."""
    if rule.breaches(threshold, *bounds):
        return "breach"
    return "recovered" if rule.recovers(threshold, observed) else None


def _evidence(window: WindowKey, table: str, *row: str) -> str:
    return "/".join([table, window.model_id, window.model_version, window.window_start.isoformat(), *row])


def _alarm_verdict(policy: PolicyRules, window: WindowKey, alarm: DetectorAlarm) -> tuple[VerdictKey, Verdict] | None:
    """The breach an alarm stands for, unless its rule is off, it came too soon, or it carries no estimate
    (driftline's detectors always give one)."""
    rule = policy.rules()[alarm.detector]
    if not rule.enabled or alarm.observations < rule.min_samples or alarm.estimate is None:
        return None
    row = _evidence(window, "detector_alarms", alarm.detector, alarm.fired_at.isoformat(), alarm.prediction_id)
    verdict: Verdict = ("breach", alarm.estimate, alarm.observations, (row,), 0.0, None)
    return (alarm.detector, f"{alarm.detector}:{alarm.signal}"), verdict


def _trigger(policy: PolicyRules, window: WindowKey, qualifying: list[tuple[VerdictKey, Verdict]]) -> RetrainTrigger:
    """The trigger of ``window`` for its qualifying rule-metrics (see the module docstring)."""
    rules = policy.rules()
    names = sorted({rule for (rule, _metric), _verdict in qualifying})
    kinds = {rules[name].kind for name in names}
    reasons = []
    for (name, metric), (_breach, observed, samples, _rows, threshold, reference) in qualifying:
        reasons.append(
            TriggerReason(
                rule=name,
                metric=metric,
                observed=observed,
                threshold=threshold,
                reference=reference,
                window_start=window.window_start,
                window_end=window.window_end,
                sample_count=samples,
            )
        )
    return RetrainTrigger(
        trigger_id=trigger_id(
            window.model_id, window.model_version, window.window_start, [f"{r}/{m}" for (r, m), _v in qualifying]
        ),
        model_id=window.model_id,
        model_version=window.model_version,
        created_at=window.window_end,
        window_start=window.window_start,
        window_end=window.window_end,
        severity="critical" if "performance" in kinds or len(kinds) > 1 else "warning",
        reasons=reasons,
        evidence=sorted({row for _key, verdict in qualifying for row in verdict[3]}),
    )
