"""A simulated model in production: seeded prediction and feedback events that tell a scenario.

    from driftline.simulation.scenarios import scenario
    from driftline.simulation.simulator import Simulation, SimulationConfig

    config = SimulationConfig(seed=7, predictions=100_000, duration_s=86_400, scenario=scenario("story", 86_400))
    simulation = Simulation(config)
    for event in simulation.events():            # in emission order: event time, labels when they arrive
        event.kind, event.phase, event.body      # "prediction" | "feedback" | "malformed", phase name, JSON
    send(simulation, settings)                   # to Kafka through driftline.client.producer.Monitor (SendReport):
    send(simulation, settings, fast=True)        # driftline.simulation.traffic.send; fast: no validation
    simulation.to_parquet("out/")                # predictions.parquet, feedback.parquet
    simulation.training_set(5_000)   # features, score, prediction, outcome, groups: for `driftline reference build`

The world, per prediction (``σ`` is the logistic function; seeds ``[seed]`` spawn independent streams for the
models, the events and the training set, so the same config always gives the same events):

- Arrival: gaps between predictions are exponential with mean ``duration_s / predictions`` (a Poisson
  process); each picks a model uniformly, and one of its ``versions`` live versions uniformly.
- Features: numeric latents ``z ~ N(0, C)`` (a fixed correlation ``C`` between related features), each
  shown through its own transform (normal ``loc + scale·z``, lognormal ``exp(loc + scale·z)``, logistic
  ``σ(loc + scale·z)``), clipped and rounded; categorical features are drawn from fixed shares. The default
  13 are 9 numeric and 4 categorical; more features add generic ones (``x13``, ``c14``, ...).
- Sensitive attributes: each group drawn from its shares, independently of the features.
- Truth: ``p = σ(b_m + Σ_j w_mj · z_j + Σ_c e_mc[category])`` with weights drawn per model (the logit's
  standard deviation is about 4.6, so scores are confident: accuracy about 0.89, a third predicted
  positive), ``label ~ Bernoulli(p)``.
- Model: in a stable phase the score is ``s = p`` (calibrated: labels are Bernoulli(score)) and the predicted
  label is ``s ≥ 0.5`` (label ``1``, else ``0``). Scenario effects change ``z``, ``p`` or ``s`` as
  :mod:`driftline.simulation.scenarios` describes (concept drifts add their angles ``θ``).
- Feedback: a ``label_share`` of predictions get their true label after a delay (exponential, lognormal or
  fixed, with mean ``label_delay_s`` seconds of event time); the rest never do.
- Malformed: after a ``malformed_share`` of predictions comes a message broken in one of the ways of
  :mod:`driftline.simulation.malformed` (extra to the valid events, which stay whole).

Events are emitted in event-time order, as a real service emits them: a feedback event when its own time
(prediction time + delay) comes, among the later predictions. Each carries the name of the phase in force at
its event time. Prediction ids are ``<id_prefix><n>`` (default ``sim<seed>-``), the same on every run of a
config: a second run into the same topics repeats ids, which the worker counts once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pydantic_core
from numpy.typing import NDArray

from driftline.schemas.dead_letters import Reason
from driftline.schemas.errors import ConfigError
from driftline.schemas.events import MAX_FEATURES
from driftline.schemas.topics import FEEDBACK, PREDICTIONS
from driftline.simulation.malformed import MALFORMATIONS
from driftline.simulation.scenarios import (
    BrokenFeature,
    ConceptDrift,
    CovariateDrift,
    Effect,
    FairnessGap,
    Phase,
    PredictionDrift,
    Scenario,
)

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
STABLE = Scenario("stable", (Phase("stable", 0.0),))
THRESHOLD = 0.5
TRAINING_OUTCOME = "outcome"  # the true label's column in a training set
EDGE_Z = 4.0  # a value far outside the training range is clipped to the range's edge, in latent units
CHUNK = 8192  # predictions drawn at a time; part of the output's identity (same seed, same events)
NUMERIC_LOGIT_VARIANCE = 20.0
CATEGORY_EFFECT_SD = 0.5
INTERCEPT = -1.0


@dataclass(frozen=True)
class NumericFeature:
    """A numeric feature shown through ``transform`` of its latent ``z``, clipped to [low, high], rounded."""

    name: str
    transform: Literal["normal", "lognormal", "logistic"]
    loc: float = 0.0
    scale: float = 1.0
    low: float | None = None
    high: float | None = None
    decimals: int = 4

    def values(self, z: Floats) -> Floats:
        """The feature's values for latents ``z``."""
        linear = self.loc + self.scale * z
        if self.transform == "lognormal":
            linear = np.exp(linear)
        elif self.transform == "logistic":
            linear = 1.0 / (1.0 + np.exp(-linear))
        clipped: Floats = np.clip(linear, self.low, self.high)
        return clipped.round(self.decimals)


@dataclass(frozen=True)
class CategoricalFeature:
    """A categorical feature drawn with fixed ``shares`` of its ``categories``."""

    name: str
    categories: tuple[str, ...]
    shares: tuple[float, ...]


Feature = NumericFeature | CategoricalFeature

CATALOGUE: tuple[Feature, ...] = (
    NumericFeature("age", "normal", 42.0, 12.0, low=18, high=90, decimals=0),
    NumericFeature("income", "lognormal", 10.8, 0.5, decimals=0),
    CategoricalFeature("city", ("Oslo", "Lyon", "Porto", "Turin", "Ghent"), (0.35, 0.25, 0.2, 0.12, 0.08)),
    NumericFeature("debt_ratio", "logistic", -1.0, 0.8, decimals=3),
    NumericFeature("credit_lines", "lognormal", 1.4, 0.5, decimals=0),
    CategoricalFeature("channel", ("web", "app", "branch", "partner"), (0.5, 0.3, 0.15, 0.05)),
    NumericFeature("utilization", "logistic", -0.8, 1.0, decimals=3),
    NumericFeature("tenure_months", "lognormal", 3.4, 0.8, decimals=0),
    CategoricalFeature("product", ("card", "loan", "mortgage"), (0.5, 0.35, 0.15)),
    NumericFeature("late_payments", "lognormal", -0.7, 1.0, decimals=0),
    NumericFeature("loan_amount", "lognormal", 9.3, 0.7, decimals=0),
    CategoricalFeature("device", ("android", "ios", "desktop"), (0.45, 0.4, 0.15)),
    NumericFeature("employment_years", "normal", 9.0, 6.0, low=0, high=50, decimals=1),
)
"""The default features, in order: ``features=n`` takes the first ``n`` (generic ones after 13)."""

CORRELATIONS: dict[tuple[str, str], float] = {
    ("age", "tenure_months"): 0.5,
    ("age", "employment_years"): 0.6,
    ("income", "loan_amount"): 0.5,
    ("income", "credit_lines"): 0.3,
    ("debt_ratio", "utilization"): 0.4,
    ("utilization", "late_payments"): 0.3,
}
"""Correlations between the latents of related catalogue features (others are independent)."""


def feature_set(count: int) -> tuple[Feature, ...]:
    """The first ``count`` features: the catalogue, then generic ``x<i>`` (normal) and every third ``c<i>``
    (categories a-d, equal shares)."""
    extra = [
        CategoricalFeature(f"c{i}", ("a", "b", "c", "d"), (0.25,) * 4)
        if i % 3 == 2
        else NumericFeature(f"x{i}", "normal")
        for i in range(len(CATALOGUE), count)
    ]
    return (*CATALOGUE, *extra)[:count]


def model_names(count: int, prefix: str = "model") -> tuple[str, ...]:
    """``count`` model ids: ``model-000``, ``model-001``, ..."""
    return tuple(f"{prefix}-{i:03d}" for i in range(count))


@dataclass(frozen=True)
class SensitiveAttribute:
    """A sensitive attribute and the shares of its groups."""

    name: str
    groups: tuple[str, ...]
    shares: tuple[float, ...]


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that decides a simulated stream; the same config gives the same events."""

    seed: int = 7
    models: tuple[str, ...] = model_names(1)
    versions: int = 1
    features: int = len(CATALOGUE)
    sensitive: tuple[SensitiveAttribute, ...] = (SensitiveAttribute("group", ("g1", "g2", "g3"), (0.5, 0.3, 0.2)),)
    predictions: int = 10_000
    duration_s: float = 3600.0
    start: datetime = DEFAULT_START
    label_share: float = 0.8
    label_delay: Literal["exponential", "lognormal", "fixed"] = "exponential"
    label_delay_s: float = 300.0
    label_delay_sigma: float = 1.0
    malformed_share: float = 0.001
    scenario: Scenario = STABLE
    id_prefix: str | None = None

    @property
    def prediction_prefix(self) -> str:
        """What every prediction id starts with."""
        return self.id_prefix if self.id_prefix is not None else f"sim{self.seed}-"

    def version_name(self, index: int) -> str:
        """Version ``index`` (0-based): ``1.0``, ``2.0``, ...; the versions after ``versions`` are releases."""
        return f"{index + 1}.0"


@dataclass(frozen=True, slots=True)
class SimulatedEvent:
    """One message of the stream, in emission order.

    ``payload`` is the event's JSON (a prediction or feedback event of the contract), or for a ``malformed``
    message the raw bytes that the decoder rejects with ``reason``. ``topic`` is the contract's topic name
    (before the configured prefix); ``key`` the Kafka key (the prediction id).
    """

    kind: Literal["prediction", "feedback", "malformed"]
    time_ms: int
    phase: str
    topic: str
    key: str
    model_id: str
    model_version: str
    payload: bytes
    reason: Reason | None = None

    @property
    def body(self) -> dict[str, Any]:
        """The valid event's JSON object (a malformed message has none)."""
        if self.kind == "malformed":
            raise ValueError(f"malformed message {self.key}: its payload is the raw bytes, not an event")
        body: dict[str, Any] = pydantic_core.from_json(self.payload)
        return body


@dataclass
class _Draw:
    """Columns of a set of predictions (one row each), before they become events."""

    phase: NDArray[np.intp]
    model: NDArray[np.intp]
    version: NDArray[np.intp]
    numeric: Floats  # n × numeric features, NaN = null
    codes: NDArray[np.intp]  # n × categorical features, -1 = null
    groups: NDArray[np.intp]  # n × sensitive attributes
    score: Floats
    predicted: NDArray[np.int8]
    truth: NDArray[np.int8]
    labelled: NDArray[np.bool_]
    delay_s: Floats
    malformed: NDArray[np.intp]  # index into MALFORMATIONS, -1 = none


@dataclass
class _Feedback:
    """Feedback waiting for its event time: columns, one row per label."""

    time_ms: Ints
    index: Ints  # the prediction's number
    model: NDArray[np.intp]
    version: NDArray[np.intp]
    label: NDArray[np.int8]

    def due(self, until_ms: float) -> tuple[_Feedback, _Feedback]:
        """The labels due by ``until_ms`` (in time order) and the rest."""
        order = np.lexsort((self.index, self.time_ms))
        cut = int(np.searchsorted(self.time_ms[order], until_ms, side="right"))
        return self._take(order[:cut]), self._take(order[cut:])

    @staticmethod
    def empty() -> _Feedback:
        """No labels waiting."""
        nothing = np.empty(0, dtype=np.int64)
        return _Feedback(nothing, nothing, nothing.astype(np.intp), nothing.astype(np.intp), nothing.astype(np.int8))

    def __add__(self, other: _Feedback) -> _Feedback:
        return _Feedback(
            np.concatenate((self.time_ms, other.time_ms)),
            np.concatenate((self.index, other.index)),
            np.concatenate((self.model, other.model)),
            np.concatenate((self.version, other.version)),
            np.concatenate((self.label, other.label)),
        )

    def _take(self, rows: NDArray[np.intp]) -> _Feedback:
        return _Feedback(self.time_ms[rows], self.index[rows], self.model[rows], self.version[rows], self.label[rows])


@dataclass(frozen=True)
class _Names:
    """Names by index (models, versions, phases), and models and versions as JSON tokens."""

    models: NDArray[np.object_]
    model_tokens: NDArray[np.object_]
    versions: NDArray[np.object_]
    version_tokens: NDArray[np.object_]
    phases: NDArray[np.object_]


@dataclass
class _Slice:
    """A stretch of the stream: its predictions (numbered from ``first``), the labels due, the order."""

    first: int
    time_ms: Ints
    draw: _Draw
    feedback: _Feedback
    order: NDArray[np.intp]  # rows of the concatenation predictions · feedback · malformed, emission order


class Simulation:
    """The stream of one :class:`SimulationConfig`: events, files and a training set, all from the seed."""

    def __init__(self, config: SimulationConfig | None = None) -> None:
        self.config = config = config or SimulationConfig()
        self.features = feature_set(config.features)
        self.numeric = [f for f in self.features if isinstance(f, NumericFeature)]
        self.categorical = [f for f in self.features if isinstance(f, CategoricalFeature)]
        _check(config, self.features)
        self.scenario = config.scenario
        world, self._stream_seed, self._training_seed = np.random.SeedSequence(config.seed).spawn(3)
        self._mixing = np.linalg.cholesky(_correlation([f.name for f in self.numeric]))
        rng = np.random.default_rng(world)
        weights = rng.standard_normal((len(config.models), len(self.numeric)))
        spread = np.einsum("mi,ij,mj->m", weights, self._mixing @ self._mixing.T, weights)
        self._weights = weights * np.sqrt(NUMERIC_LOGIT_VARIANCE / np.maximum(spread, 1e-12))[:, None]
        self._turned = _orthogonal(self._weights, rng.standard_normal(weights.shape), self._mixing @ self._mixing.T)
        widest = max((len(f.categories) for f in self.categorical), default=1)
        self._effects = rng.normal(0, CATEGORY_EFFECT_SD, (len(config.models), len(self.categorical), widest))
        self._intercepts = INTERCEPT + rng.normal(0, 0.25, len(config.models))
        versions = [config.version_name(v) for v in range(config.versions + len(self.phases))]  # releases ≤ phases
        self._names = _Names(
            models=np.array(config.models, dtype=object),
            model_tokens=_quoted(config.models),
            versions=np.array(versions, dtype=object),
            version_tokens=_quoted(versions),
            phases=np.array([phase.name for phase in self.phases], dtype=object),
        )

    @property
    def phases(self) -> tuple[Phase, ...]:
        """The scenario's phases; an event's ``phase`` is the name of one of them."""
        return self.scenario.phases

    # -- the stream ------------------------------------------------------------------------------------

    def events(self) -> Iterator[SimulatedEvent]:
        """Every event of the stream, in emission (event-time) order."""
        for part in self._slices():
            yield from self._events_of(part)

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The valid events as two DataFrames, predictions and feedback, in event-time order.

        Predictions: ``prediction_id, model_id, model_version, timestamp, phase``, one column per feature and
        per sensitive attribute, ``label`` (predicted) and ``score``. Feedback: ``prediction_id, model_id,
        model_version, timestamp, phase, label``. Timestamps are UTC; nulls are missing values.
        """
        predictions, feedback = [], []
        for part in self._slices():
            predictions.append(self._prediction_frame(part))
            feedback.append(self._feedback_frame(part.feedback))
        return pd.concat(predictions, ignore_index=True), pd.concat(feedback, ignore_index=True)

    def to_parquet(self, directory: Path | str) -> tuple[Path, Path]:
        """Write :meth:`frames` to ``predictions.parquet`` and ``feedback.parquet`` in ``directory``."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        paths = folder / "predictions.parquet", folder / "feedback.parquet"
        for frame, path in zip(self.frames(), paths, strict=True):
            frame.to_parquet(path, index=False)
        return paths

    def training_set(self, rows: int = 5_000, *, model_id: str | None = None, at_s: float = 0.0) -> pd.DataFrame:
        """``rows`` rows of one model's world as it is at ``at_s`` seconds of event time (the first model and
        the start by default): the feature columns, ``score``, ``prediction`` (the predicted label),
        ``outcome`` (the true label) and a column per sensitive attribute.

        It is what ``driftline reference build --from FILE`` profiles with :meth:`reference_options`: the
        predicted-label distribution is read from ``prediction``, the reference's accuracy from ``outcome``,
        its rates per group from the sensitive columns. Drawn from its own seed stream; the events do not
        change.
        """
        model = self.config.models.index(model_id) if model_id is not None else 0
        rng = np.random.default_rng(self._training_seed)
        draw = self._draw(rng, np.full(rows, float(at_s)), np.full(rows, model, dtype=np.intp))
        frame = pd.DataFrame(self._feature_columns(draw))
        frame["score"] = draw.score
        frame["prediction"] = draw.predicted
        frame[TRAINING_OUTCOME] = draw.truth
        for name, groups in self._sensitive_columns(draw).items():
            frame[name] = groups
        return frame

    def reference_options(self) -> str:
        """The ``driftline reference build`` options that read a :meth:`training_set` as it is meant."""
        return " ".join(
            [f"--label-column {TRAINING_OUTCOME}", *(f"--sensitive {a.name}" for a in self.config.sensitive)]
        )

    # -- drawing ---------------------------------------------------------------------------------------

    def _slices(self) -> Iterator[_Slice]:
        config = self.config
        rng = np.random.default_rng(self._stream_seed)
        start_ms = int(config.start.timestamp() * 1000)
        gap = config.duration_s / config.predictions
        pending = _Feedback.empty()
        clock, first = 0.0, 0
        while first < config.predictions:
            n = min(CHUNK, config.predictions - first)
            offsets = clock + np.cumsum(rng.exponential(gap, n))
            clock = float(offsets[-1])
            draw = self._draw(rng, offsets, None)
            time_ms = start_ms + np.floor(offsets * 1000).astype(np.int64)
            labelled = np.flatnonzero(draw.labelled)
            pending = pending + _Feedback(
                time_ms[labelled] + np.round(draw.delay_s[labelled] * 1000).astype(np.int64),
                first + labelled.astype(np.int64),
                draw.model[labelled],
                draw.version[labelled],
                draw.truth[labelled],
            )
            last = first + n == config.predictions
            due, pending = pending.due(np.inf if last else float(time_ms[-1]))
            bad = np.flatnonzero(draw.malformed >= 0)
            # emission order: event time, then predictions before labels before malformed, then number
            times = np.concatenate((time_ms, due.time_ms, time_ms[bad]))
            kinds = np.repeat([0, 1, 2], [n, len(due.time_ms), len(bad)])
            numbers = np.concatenate((np.arange(n), due.index - first, bad))
            yield _Slice(first, time_ms, draw, due, np.lexsort((numbers, kinds, times)))
            first += n

    def _draw(self, rng: np.random.Generator, offsets: Floats, models: NDArray[np.intp] | None) -> _Draw:
        """Draw predictions at ``offsets`` (seconds of event time), under the scenario's effects."""
        config, n = self.config, len(offsets)
        phase = self.scenario.phase_index(offsets)
        model = rng.integers(len(config.models), size=n) if models is None else models
        version = rng.integers(config.versions, size=n)
        groups = _columns(
            [rng.choice(len(a.groups), size=n, p=np.array(a.shares) / sum(a.shares)) for a in config.sensitive], n
        )
        z = rng.standard_normal((n, len(self.numeric))) @ self._mixing.T
        u_category = rng.random((n, len(self.categorical)))
        u_label, u_broken = rng.random(n), rng.random(n)
        labelled = rng.random(n) < config.label_share
        delay_s = self._delays(rng, n)
        malformed = np.where(rng.random(n) < config.malformed_share, rng.integers(len(MALFORMATIONS), size=n), -1)

        effects = _Effects(n, len(self.numeric), len(self.categorical))
        for index in np.unique(phase):
            rows = np.flatnonzero(phase == index)
            released, since = self.scenario.releases(int(index))
            if released:
                version[rows] = config.versions + released - 1
            for active in self.scenario.in_force(int(index)):
                ramp = active.ramp(offsets[rows])
                learned = since is not None and active.since < since
                self._apply(
                    active.effect, rows, ramp=ramp, learned=learned, groups=groups, u_broken=u_broken, effects=effects
                )

        z_true = z + effects.shift
        codes = _columns(
            [
                _categories(f, u_category[:, j], effects.mix[:, j], effects.target[j])
                for j, f in enumerate(self.categorical)
            ],
            n,
        )
        numeric = np.column_stack([f.values(z_true[:, j]) for j, f in enumerate(self.numeric)])
        numeric = numeric * effects.factor
        z_model = np.where(effects.factor != 1.0, EDGE_Z * np.sign(numeric), z_true)
        z_model = np.where(effects.null_numeric, 0.0, z_model)
        numeric = np.where(effects.null_numeric, np.nan, numeric)
        model_codes = np.where(effects.null_categorical, -1, codes)

        p_true = _sigmoid(self._logit(model, z_true, codes, effects.angle_true))
        score = _sigmoid(self._logit(model, z_model, model_codes, effects.angle_model) + effects.score_shift).round(6)
        return _Draw(
            phase=phase,
            model=model,
            version=version,
            numeric=numeric,
            codes=model_codes,
            groups=groups,
            score=score,
            predicted=(score >= THRESHOLD).astype(np.int8),
            truth=(u_label < p_true).astype(np.int8),
            labelled=labelled,
            delay_s=delay_s,
            malformed=malformed,
        )

    def _apply(
        self,
        effect: Effect,
        rows: NDArray[np.intp],
        *,
        ramp: Floats,
        learned: bool,
        groups: NDArray[np.intp],
        u_broken: Floats,
        effects: _Effects,
    ) -> None:
        """Add one effect in force to the rows of its phase (formulas: :mod:`driftline.simulation.scenarios`)."""
        numeric = [f.name for f in self.numeric]
        categorical = [f.name for f in self.categorical]
        if isinstance(effect, CovariateDrift):
            for name in effect.features:
                if name in numeric:
                    effects.shift[rows, numeric.index(name)] += effect.shift * ramp
                else:
                    j = categorical.index(name)
                    feature = self.categorical[j]
                    target = effect.target or feature.categories[int(np.argmin(feature.shares))]
                    effects.mix[rows, j] = effect.mix * ramp
                    effects.target[j] = feature.categories.index(target)
        elif isinstance(effect, ConceptDrift):
            angle = effect.strength * ramp * np.pi / 2
            effects.angle_true[rows] += angle
            if learned:
                effects.angle_model[rows] += angle
        elif isinstance(effect, PredictionDrift):
            effects.score_shift[rows] += effect.shift * ramp
        elif isinstance(effect, FairnessGap):
            attribute = [a.name for a in self.config.sensitive].index(effect.attribute)
            group = self.config.sensitive[attribute].groups.index(effect.group)
            hit = groups[rows, attribute] == group
            effects.score_shift[rows[hit]] += effect.shift * ramp[hit]
        elif isinstance(effect, BrokenFeature):
            hit = rows[u_broken[rows] < effect.share]
            if effect.feature in categorical:
                effects.null_categorical[hit, categorical.index(effect.feature)] = True
            elif effect.mode == "nulls":
                effects.null_numeric[hit, numeric.index(effect.feature)] = True
            else:
                effects.factor[hit, numeric.index(effect.feature)] = effect.factor

    def _logit(self, model: NDArray[np.intp], z: Floats, codes: NDArray[np.intp], angle: Floats) -> Floats:
        """``b_m + (cos θ · w_m + sin θ · u_m) · z + Σ_c e_mc[category]``, a null category adding nothing."""
        weights = self._weights[model]
        if angle.any():
            weights = np.cos(angle)[:, None] * weights + np.sin(angle)[:, None] * self._turned[model]
        logit: Floats = self._intercepts[model] + (weights * z).sum(axis=1)
        for j in range(len(self.categorical)):
            present = codes[:, j] >= 0
            logit[present] += self._effects[model[present], j, codes[present, j]]
        return logit

    def _delays(self, rng: np.random.Generator, n: int) -> Floats:
        config = self.config
        if config.label_delay == "exponential":
            return rng.exponential(config.label_delay_s, n)
        if config.label_delay == "lognormal":
            sigma = config.label_delay_sigma
            return rng.lognormal(np.log(max(config.label_delay_s, 1e-9)) - sigma**2 / 2, sigma, n)
        return np.full(n, config.label_delay_s)

    # -- output ----------------------------------------------------------------------------------------

    def _feature_columns(self, draw: _Draw) -> dict[str, Any]:
        """Feature values per name: floats (NaN = null) and category names (None = null), in feature order."""
        columns: dict[str, Any] = {}
        for feature in self.features:
            if isinstance(feature, NumericFeature):
                columns[feature.name] = draw.numeric[:, self.numeric.index(feature)]
            else:
                codes = draw.codes[:, self.categorical.index(feature)]
                names = np.array([*feature.categories, None], dtype=object)
                columns[feature.name] = names[codes]  # code -1 picks the trailing None
        return columns

    def _feature_tokens(self, draw: _Draw) -> list[list[Any]]:
        """Per feature, in order, its values as JSON tokens (see :func:`_numbers`; categories quoted)."""
        tokens = []
        for feature in self.features:
            if isinstance(feature, NumericFeature):
                tokens.append(_numbers(draw.numeric[:, self.numeric.index(feature)]))
            else:
                codes = draw.codes[:, self.categorical.index(feature)]
                tokens.append(np.array([*map(_json, feature.categories), "null"], dtype=object)[codes].tolist())
        return tokens

    def _sensitive_columns(self, draw: _Draw) -> dict[str, Any]:
        return {
            attribute.name: np.array(attribute.groups, dtype=object)[draw.groups[:, i]]
            for i, attribute in enumerate(self.config.sensitive)
        }

    def _prediction_frame(self, part: _Slice) -> pd.DataFrame:
        draw, n = part.draw, len(part.time_ms)
        prefix = self.config.prediction_prefix
        frame = pd.DataFrame(
            {
                "prediction_id": [f"{prefix}{i}" for i in range(part.first, part.first + n)],
                "model_id": self._names.models[draw.model],
                "model_version": self._names.versions[draw.version],
                "timestamp": pd.to_datetime(part.time_ms, unit="ms", utc=True),
                "phase": self._names.phases[draw.phase],
                **self._feature_columns(draw),
                **self._sensitive_columns(draw),
            }
        )
        frame["label"] = draw.predicted
        frame["score"] = draw.score
        return frame

    def _feedback_frame(self, feedback: _Feedback) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "prediction_id": [f"{self.config.prediction_prefix}{i}" for i in feedback.index],
                "model_id": self._names.models[feedback.model],
                "model_version": self._names.versions[feedback.version],
                "timestamp": pd.to_datetime(feedback.time_ms, unit="ms", utc=True),
                "phase": self._phase_names(feedback.time_ms),
                "label": feedback.label,
            }
        )

    def _phase_names(self, time_ms: Ints) -> NDArray[np.object_]:
        start_ms = self.config.start.timestamp() * 1000
        return self._names.phases[self.scenario.phase_index((time_ms - start_ms) / 1000)]

    def _events_of(self, part: _Slice) -> list[SimulatedEvent]:
        """The slice's events in emission order. Payloads are JSON written column-wise through one template
        per event type (a test holds them to the contracts); malformed ones corrupt a valid payload."""
        draw, feedback, prefix = part.draw, part.feedback, self.config.prediction_prefix
        numbers = range(part.first, part.first + len(part.time_ms))
        keys = [f"{prefix}{i}" for i in numbers]
        time_of, predicted = part.time_ms.tolist(), draw.predicted.tolist()
        model_of, version_of = self._names.models[draw.model].tolist(), self._names.versions[draw.version].tolist()
        phase_of = self._names.phases[draw.phase].tolist()
        template = _prediction_template(
            prefix, [f.name for f in self.features], [a.name for a in self.config.sensitive]
        )
        payloads = [
            (template % values).encode()
            for values in zip(
                numbers,
                self._names.model_tokens[draw.model].tolist(),
                self._names.version_tokens[draw.version].tolist(),
                time_of,
                *self._feature_tokens(draw),
                predicted,
                draw.score.tolist(),
                *(_quoted(a.groups)[draw.groups[:, i]].tolist() for i, a in enumerate(self.config.sensitive)),
                strict=True,
            )
        ]
        events = [
            SimulatedEvent("prediction", stamp, phase, PREDICTIONS.name, key, model, version, payload)
            for stamp, phase, key, model, version, payload in zip(
                time_of, phase_of, keys, model_of, version_of, payloads, strict=True
            )
        ]
        labels = _feedback_template(prefix)
        events += [
            SimulatedEvent(
                "feedback",
                stamp,
                phase,
                FEEDBACK.name,
                f"{prefix}{number}",
                model,
                version,
                (labels % (number, stamp, label, token)).encode(),
            )
            for stamp, phase, number, model, token, version, label in zip(
                feedback.time_ms.tolist(),
                self._phase_names(feedback.time_ms).tolist(),
                feedback.index.tolist(),
                self._names.models[feedback.model].tolist(),
                self._names.model_tokens[feedback.model].tolist(),
                self._names.versions[feedback.version].tolist(),
                feedback.label.tolist(),
                strict=True,
            )
        ]
        for i in np.flatnonzero(draw.malformed >= 0).tolist():
            malformation = MALFORMATIONS[draw.malformed[i]]
            body = pydantic_core.from_json(payloads[i])
            if malformation.topic == FEEDBACK.name:
                body = {k: body[k] for k in ("prediction_id", "timestamp", "model_id")} | {"label": predicted[i]}
            events.append(
                SimulatedEvent(
                    "malformed",
                    time_of[i],
                    phase_of[i],
                    malformation.topic,
                    keys[i],
                    model_of[i],
                    version_of[i],
                    malformation.corrupt(body),
                    malformation.reason,
                )
            )
        return [events[row] for row in part.order.tolist()]


@dataclass
class _Effects:
    """What the effects in force do to each drawn row (see :meth:`Simulation._apply`)."""

    n: int
    numeric: int
    categorical: int
    shift: Floats = field(init=False)  # added to numeric latents
    mix: Floats = field(init=False)  # categorical mixing weight towards target
    target: list[int] = field(init=False)
    angle_true: Floats = field(init=False)  # Σ θ of every concept drift
    angle_model: Floats = field(init=False)  # ... of those the serving version has learnt
    score_shift: Floats = field(init=False)
    null_numeric: NDArray[np.bool_] = field(init=False)
    null_categorical: NDArray[np.bool_] = field(init=False)
    factor: Floats = field(init=False)

    def __post_init__(self) -> None:
        n, k, c = self.n, self.numeric, self.categorical
        self.shift, self.mix, self.target = np.zeros((n, k)), np.zeros((n, c)), [0] * c
        self.angle_true, self.angle_model, self.score_shift = np.zeros(n), np.zeros(n), np.zeros(n)
        self.null_numeric, self.null_categorical = np.zeros((n, k), bool), np.zeros((n, c), bool)
        self.factor = np.ones((n, k))


def _categories(feature: CategoricalFeature, u: Floats, mix: Floats, target: int) -> NDArray[np.intp]:
    """Inverse-CDF draw: ``P(c) = (1 − mix) · share_c + mix · [c = target]`` per row."""
    base = np.cumsum(feature.shares) / sum(feature.shares)
    towards = (np.arange(len(base)) >= target).astype(np.float64)
    cumulative = (1 - mix)[:, None] * base[None, :] + mix[:, None] * towards[None, :]
    drawn: NDArray[np.intp] = np.minimum((u[:, None] >= cumulative).sum(axis=1), len(base) - 1)
    return drawn


def _columns(columns: list[NDArray[np.intp]], n: int) -> NDArray[np.intp]:
    """Integer columns side by side (``n`` × 0 when there are none)."""
    return np.column_stack(columns) if columns else np.zeros((n, 0), dtype=np.intp)


def _sigmoid(x: Floats) -> Floats:
    return 1.0 / (1.0 + np.exp(-x))


def _orthogonal(weights: Floats, draws: Floats, covariance: Floats) -> Floats:
    """Per row of ``weights`` (w), a direction u from ``draws`` with ``u·Σ·w = 0`` and ``u·Σ·u = w·Σ·w``: the
    logit ``u·z`` is uncorrelated with ``w·z`` and as spread out. With one numeric feature there is no such
    direction, and u = −w (the relation can only weaken and invert)."""

    def spread(a: Floats, b: Floats) -> Floats:
        result: Floats = np.einsum("mi,ij,mj->m", a, covariance, b)
        return result

    turned = draws - (spread(draws, weights) / spread(weights, weights))[:, None] * weights
    degenerate = spread(turned, turned) < 1e-9 * spread(weights, weights)
    turned[degenerate] = -weights[degenerate]
    scaled: Floats = turned * np.sqrt(spread(weights, weights) / spread(turned, turned))[:, None]
    return scaled


def _json(text: str) -> str:
    """``text`` as a JSON string token (quoted, escaped, ASCII)."""
    return json.dumps(text)


def _quoted(names: tuple[str, ...] | list[str]) -> NDArray[np.object_]:
    """JSON string tokens of ``names``, to index with codes."""
    return np.array([_json(name) for name in names], dtype=object)


def _numbers(column: Floats) -> list[Any]:
    """A numeric column as values whose ``%s`` is their JSON token: whole numbers as integers, others as
    their shortest repr, a missing value (NaN) as ``null``."""
    missing = np.isnan(column)
    present = column[~missing]
    values = column.astype(object)
    if np.all(present == np.round(present)) and np.all(np.abs(present) < 2**53):
        values[~missing] = present.astype(np.int64)
    values[missing] = "null"
    return list(values.tolist())


def _prediction_template(prefix: str, features: list[str], attributes: list[str]) -> str:
    """The ``%``-template of a prediction event's JSON; its fields, in order: number, model (token),
    version (token), timestamp, one token per feature, predicted label, score, one token per attribute."""
    features_json = ",".join(_json(name).replace("%", "%%") + ":%s" for name in features)
    sensitive_json = ",".join(_json(name).replace("%", "%%") + ":%s" for name in attributes)
    return (
        f'{{"prediction_id":{_id_template(prefix)},"model_id":%s,"model_version":%s,"timestamp":%d,'
        f'"features":{{{features_json}}},"prediction":{{"label":%d,"score":%r}},"sensitive":{{{sensitive_json}}}}}'
    )


def _feedback_template(prefix: str) -> str:
    """The ``%``-template of a feedback event's JSON: number, timestamp, label, model (token)."""
    return f'{{"prediction_id":{_id_template(prefix)},"timestamp":%d,"label":%d,"model_id":%s}}'


def _id_template(prefix: str) -> str:
    """A prediction id's JSON token with its number left as ``%d``."""
    return _json(prefix).replace("%", "%%")[:-1] + '%d"'


def _correlation(names: list[str]) -> Floats:
    matrix = np.eye(len(names))
    for (a, b), rho in CORRELATIONS.items():
        if a in names and b in names:
            i, j = names.index(a), names.index(b)
            matrix[i, j] = matrix[j, i] = rho
    return matrix


def _check(config: SimulationConfig, features: tuple[Feature, ...]) -> None:
    """Raise :class:`ConfigError` naming the first setting that cannot make a stream."""
    numeric = {f.name for f in features if isinstance(f, NumericFeature)}
    categories = {f.name: f.categories for f in features if isinstance(f, CategoricalFeature)}
    groups = {a.name: a.groups for a in config.sensitive}

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ConfigError(f"simulation: {what}")

    need(config.predictions >= 1, f"predictions must be at least 1, got {config.predictions}")
    need(config.duration_s > 0, f"duration_s must be positive, got {config.duration_s}")
    need(1 <= config.features <= MAX_FEATURES, f"features must be in 1..{MAX_FEATURES}, got {config.features}")
    need(bool(config.models) and len(set(config.models)) == len(config.models), "models must be distinct names")
    need(config.versions >= 1, f"versions must be at least 1, got {config.versions}")
    for name in ("label_share", "malformed_share"):
        need(0 <= getattr(config, name) <= 1, f"{name} must be in [0, 1], got {getattr(config, name)}")
    need(
        config.label_delay in ("exponential", "lognormal", "fixed"),
        f"label_delay must be exponential, lognormal or fixed, got {config.label_delay!r}",
    )
    need(config.label_delay_s >= 0, f"label_delay_s must be >= 0, got {config.label_delay_s}")
    need(config.label_delay_sigma > 0, f"label_delay_sigma must be > 0, got {config.label_delay_sigma}")
    for attribute in config.sensitive:
        need(
            len(attribute.groups) == len(attribute.shares) > 0 and min(attribute.shares) > 0,
            f"sensitive attribute {attribute.name!r} needs one positive share per group",
        )
    clash = ({a.name for a in config.sensitive} | {"label", "score", "phase"}) & (numeric | categories.keys())
    need(not clash, f"names used both as feature and sensitive attribute or column: {sorted(clash)}")
    last = config.scenario.phases[-1]
    need(
        last.start_s < config.duration_s,
        f"phase {last.name!r} starts at {last.start_s:g} s, after the {config.duration_s:g} s simulated",
    )
    for effect in config.scenario.effects():
        if isinstance(effect, CovariateDrift | BrokenFeature):
            names = effect.features if isinstance(effect, CovariateDrift) else (effect.feature,)
            for name in names:
                need(
                    name in numeric or name in categories,
                    f"scenario {config.scenario.name!r} acts on feature {name!r}, which the simulation does not "
                    f"have (features: {', '.join(f.name for f in features)})",
                )
        if isinstance(effect, CovariateDrift) and effect.target is not None:
            for name in effect.features:
                need(
                    name in numeric or effect.target in categories[name],
                    f"covariate drift target {effect.target!r} is not a category of {name!r}",
                )
        if isinstance(effect, BrokenFeature) and effect.mode == "unit_change":
            need(effect.feature in numeric, f"a unit change needs a numeric feature, {effect.feature!r} is not")
        if isinstance(effect, FairnessGap):
            need(
                effect.group in groups.get(effect.attribute, ()),
                f"fairness gap for {effect.attribute}={effect.group!r}, which is not among the sensitive "
                f"groups {groups}",
            )
