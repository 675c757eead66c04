"""Scenario scripts for the simulator: what changes in a model's world, and from which point in event time.

A :class:`Scenario` is a list of :class:`Phase` objects. A phase has a name, a start (seconds of event time
after the simulation's start; the first phase starts at 0) and the complete set of effects in force while it
lasts, until the next phase starts. An effect listed again in the next phase continues (its ramp goes on from
where it first appeared); an effect left out ends. ``r(t)`` below is an effect's ramp,
``min(1, (t - since) / ramp_s)`` where ``since`` is the start of the first phase of its unbroken run
(``r = 1`` when ``ramp_s`` is 0: a sudden change). ``z`` is a numeric feature's latent standard-normal value,
``p`` the probability of the positive class that the world assigns, ``s`` the model's score.

- :class:`CovariateDrift`: inputs move, the relation to the label does not (the model stays calibrated).
  Numeric: ``z ← z + shift · r(t)``. Categorical: ``P(c) ← (1 − mix · r) · P(c) + mix · r · [c = target]``.
- :class:`ConceptDrift`: the label relation changes, features and scores do not. The true logit's weights
  turn away from the ones the model learnt, ``w ← cos θ · w + sin θ · u`` with ``θ = strength · r(t) · π/2``
  and ``u`` a direction whose logit is uncorrelated with ``w``'s and as spread out: the world stays as
  predictable (a retrained model is as accurate as before), but labels flip away from the model's still
  confident scores (``strength`` 1: its numeric evidence says nothing; 2: the opposite).
- :class:`PredictionDrift`: the model's scores move: ``logit s ← logit s + shift · r(t)``.
- :class:`FairnessGap`: the model's scores drop for one group: ``logit s ← logit s + shift · r(t)`` for
  events whose sensitive ``attribute`` is ``group``; that group's selection rate falls.
- :class:`BrokenFeature`: a share of events carry the feature as null, or multiplied by ``factor`` (a unit
  change). The model imputes a null with the training median (``z = 0``) and clips a value far outside its
  training range to the range's edge (``z = ±4``); labels follow the true value.
- :class:`NewVersion`: traffic moves to the next model version (``N+1.0``), retrained on the world as it is:
  it has learnt every concept drift in force before its phase, so its scores are calibrated again.

The built-in scripts (:data:`SCENARIOS`, the names ``driftline simulate --scenario`` takes) place their
phases at even fractions of the event-time span unless given ``starts``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from driftline.schemas.errors import ConfigError


@dataclass(frozen=True)
class CovariateDrift:
    """Named features move: numeric latents by ``shift`` standard deviations, categorical mixes towards
    ``target`` (default: each feature's rarest category) by ``mix``."""

    features: tuple[str, ...]
    shift: float = 1.0
    mix: float = 0.5
    target: str | None = None
    ramp_s: float = 0.0


@dataclass(frozen=True)
class ConceptDrift:
    """The label relation turns by ``strength · π/2`` (at full ramp) away from what the model learnt."""

    strength: float = 0.6
    ramp_s: float = 0.0


@dataclass(frozen=True)
class PredictionDrift:
    """Every score's logit moves by ``shift``."""

    shift: float = 2.0
    ramp_s: float = 0.0


@dataclass(frozen=True)
class FairnessGap:
    """Scores of one group drop by ``shift`` on the logit scale (negative lowers the selection rate)."""

    attribute: str = "group"
    group: str = "g3"
    shift: float = -3.0
    ramp_s: float = 0.0


@dataclass(frozen=True)
class BrokenFeature:
    """A ``share`` of events carry ``feature`` as null (``nulls``) or times ``factor`` (``unit_change``)."""

    feature: str
    mode: Literal["nulls", "unit_change"] = "nulls"
    share: float = 1.0
    factor: float = 1000.0


@dataclass(frozen=True)
class NewVersion:
    """Traffic moves to the next model version, retrained on the world as it is at the phase's start."""


Effect = CovariateDrift | ConceptDrift | PredictionDrift | FairnessGap | BrokenFeature | NewVersion


@dataclass(frozen=True)
class Phase:
    """A named stretch of event time, from ``start_s`` to the next phase's start, and the effects in force."""

    name: str
    start_s: float
    effects: tuple[Effect, ...] = ()


@dataclass(frozen=True)
class Active:
    """An effect in force and ``since``: when its unbroken run of phases began (seconds of event time)."""

    effect: Effect
    since: float

    def ramp(self, offsets_s: NDArray[np.float64]) -> NDArray[np.float64]:
        """``r(t) = min(1, (t - since) / ramp_s)`` per event (1 for a sudden effect)."""
        ramp_s = getattr(self.effect, "ramp_s", 0.0)
        if ramp_s <= 0:
            return np.ones_like(offsets_s)
        return np.clip((offsets_s - self.since) / ramp_s, 0.0, 1.0)


@dataclass(frozen=True)
class Scenario:
    """A named script of phases; ``starts`` and the effects in force are checked when it is made."""

    name: str
    phases: tuple[Phase, ...]
    _regimes: tuple[tuple[Active, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.phases or self.phases[0].start_s != 0:
            raise ConfigError(f"scenario {self.name!r}: the first phase must start at 0 s of event time")
        starts = [phase.start_s for phase in self.phases]
        if any(later <= earlier for earlier, later in pairwise(starts)):
            raise ConfigError(f"scenario {self.name!r}: phase starts must increase, got {starts}")
        names = [phase.name for phase in self.phases]
        if len(set(names)) != len(names):
            raise ConfigError(f"scenario {self.name!r}: phase names must be unique, got {names}")
        regimes: list[tuple[Active, ...]] = []
        for index, phase in enumerate(self.phases):
            previous = {active.effect: active.since for active in regimes[-1]} if index else {}
            regimes.append(tuple(Active(e, previous.get(e, phase.start_s)) for e in phase.effects))
        object.__setattr__(self, "_regimes", tuple(regimes))

    @property
    def starts(self) -> NDArray[np.float64]:
        """Each phase's start, seconds of event time."""
        return np.array([phase.start_s for phase in self.phases], dtype=np.float64)

    def phase_index(self, offsets_s: NDArray[np.float64]) -> NDArray[np.intp]:
        """The index of the phase in force at each event-time offset (seconds since the start)."""
        return np.searchsorted(self.starts, offsets_s, side="right") - 1

    def in_force(self, index: int) -> tuple[Active, ...]:
        """The effects in force during phase ``index``, each with the start of its unbroken run."""
        return self._regimes[index]

    def releases(self, index: int) -> tuple[int, float | None]:
        """How many new versions have been released by phase ``index``, and since when the latest one serves."""
        released, since = 0, None
        for regime in self._regimes[: index + 1]:
            current = next((a.since for a in regime if isinstance(a.effect, NewVersion)), None)
            if current is not None and current != since:
                released, since = released + 1, current
        return released, since

    def effects(self) -> set[Effect]:
        """Every effect that some phase puts in force."""
        return {effect for phase in self.phases for effect in phase.effects}


ScriptBuilder = Callable[["ScriptTargets", float], list[tuple[str, tuple[Effect, ...]]]]


@dataclass(frozen=True)
class ScriptTargets:
    """What the built-in scripts act on: drifted features, the broken feature, the disadvantaged group."""

    drift_features: tuple[str, ...] = ("income", "city")
    broken_feature: str = "debt_ratio"
    unit_feature: str = "income"
    fairness_attribute: str = "group"
    fairness_group: str = "g3"


def _stable(_targets: ScriptTargets, _spacing: float) -> list[tuple[str, tuple[Effect, ...]]]:
    return [("stable", ())]


def _covariate(targets: ScriptTargets, _spacing: float) -> list[tuple[str, tuple[Effect, ...]]]:
    return [("stable", ()), ("covariate-drift", (CovariateDrift(targets.drift_features),))]


def _concept(_targets: ScriptTargets, _spacing: float) -> list[tuple[str, tuple[Effect, ...]]]:
    return [("stable", ()), ("concept-drift", (ConceptDrift(),))]


def _prediction(_targets: ScriptTargets, _spacing: float) -> list[tuple[str, tuple[Effect, ...]]]:
    return [("stable", ()), ("prediction-drift", (PredictionDrift(),))]


def _fairness(targets: ScriptTargets, spacing: float) -> list[tuple[str, tuple[Effect, ...]]]:
    gap = FairnessGap(targets.fairness_attribute, targets.fairness_group, ramp_s=spacing / 2)
    return [("stable", ()), ("fairness-gap", (gap,))]


def _broken(targets: ScriptTargets, _spacing: float) -> list[tuple[str, tuple[Effect, ...]]]:
    return [
        ("stable", ()),
        ("feature-nulls", (BrokenFeature(targets.broken_feature, "nulls", share=0.5),)),
        ("unit-change", (BrokenFeature(targets.unit_feature, "unit_change"),)),
    ]


def _story(targets: ScriptTargets, spacing: float) -> list[tuple[str, tuple[Effect, ...]]]:
    drift = CovariateDrift(targets.drift_features)
    gap = FairnessGap(targets.fairness_attribute, targets.fairness_group, ramp_s=spacing / 2)
    concept = ConceptDrift()
    return [
        ("stable", ()),
        ("covariate-drift", (drift,)),
        ("fairness-gap", (drift, gap)),
        ("concept-drift", (drift, gap, concept)),
        ("new-version", (drift, concept, NewVersion())),
    ]


SCENARIOS: dict[str, ScriptBuilder] = {
    "stable": _stable,
    "covariate-drift": _covariate,
    "concept-drift": _concept,
    "prediction-drift": _prediction,
    "fairness-gap": _fairness,
    "broken-feature": _broken,
    "story": _story,
}
"""The built-in scripts by name. ``story`` is the demo's: stable, covariate drift in income and city, a
fairness gap growing for group g3, concept drift (revealed as late labels arrive), a new version that
recovers (covariate and concept drift stay: the world moved, and the new version learnt it)."""


def scenario(
    name: str, duration_s: float, starts: Sequence[float] | None = None, targets: ScriptTargets | None = None
) -> Scenario:
    """The built-in script ``name`` over ``duration_s`` seconds of event time.

    ``starts`` gives the start (seconds) of every phase after the first; by default phase ``i`` of ``n``
    starts at ``i · duration_s / n``. Growing effects ramp over half the spacing between phases.
    """
    if name not in SCENARIOS:
        raise ConfigError(f"unknown scenario {name!r}; expected one of {', '.join(SCENARIOS)}")
    builder = SCENARIOS[name]
    count = len(builder(targets or ScriptTargets(), 0.0))
    if starts is None:
        starts = [duration_s * i / count for i in range(1, count)]
    if len(starts) != count - 1:
        raise ConfigError(
            f"scenario {name!r} has {count} phases, so it takes {count - 1} phase start(s), got {list(starts)}"
        )
    offsets = [0.0, *map(float, starts)]
    spacing = min((b - a for a, b in zip(offsets, [*offsets[1:], duration_s], strict=True)), default=duration_s)
    script = builder(targets or ScriptTargets(), spacing)
    return Scenario(name, tuple(Phase(n, s, effects) for (n, effects), s in zip(script, offsets, strict=True)))
