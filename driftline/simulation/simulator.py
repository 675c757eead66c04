"""A simulated model in production: seeded prediction and feedback events that tell a scenario.

    from driftline.simulation.scenarios import scenario
    from driftline.simulation.simulator import Simulation
    from driftline.simulation.world import SimulationConfig

    config = SimulationConfig(seed=7, predictions=100_000, duration_s=86_400, scenario=scenario("story", 86_400))
    simulation = Simulation(config)
    for event in simulation.events():            # in emission order: event time, labels when they arrive
        event.kind, event.phase, event.body      # "prediction" | "feedback" | "malformed", phase name, JSON
    send(simulation, settings)                   # to Kafka through driftline.client.producer.Monitor (SendReport):
    send(simulation, settings, fast=True)        # driftline.simulation.traffic.send; fast: no validation
    simulation.to_parquet("out/")                # predictions.parquet, feedback.parquet
    simulation.training_set(5_000)   # features, score, prediction, outcome, groups: for `driftline reference build`

What the stream is made of is in :mod:`driftline.simulation.world`, how each prediction is drawn in
:mod:`driftline.simulation.drawing`, the events' JSON in :mod:`driftline.simulation.payloads`. Seeds
``[seed]`` spawn independent streams for the world, the events and the training set, so the same config always
gives the same events. Gaps between predictions are exponential with mean ``duration_s / predictions`` (a
Poisson process).

Events are emitted in event-time order, as a real service emits them: a feedback event when its own time
(prediction time + delay) comes, among the later predictions. Each carries the name of the phase in force at
its event time. Prediction ids are ``<id_prefix><n>`` (default ``sim<seed>-``), the same on every run of a
config: a second run into the same topics repeats ids, which the worker counts once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from driftline.schemas.topics import FEEDBACK, PREDICTIONS
from driftline.simulation.drawing import Draw, Population
from driftline.simulation.malformed import MALFORMATIONS
from driftline.simulation.payloads import (
    SimulatedEvent,
    feedback_payloads,
    json_string,
    malformed,
    number_tokens,
    prediction_payloads,
    quoted,
)
from driftline.simulation.scenarios import Phase
from driftline.simulation.world import (
    NumericFeature,
    SimulationConfig,
    check_config,
    feature_set,
)

Ints = NDArray[np.int64]

TRAINING_OUTCOME = "outcome"  # the true label's column in a training set
CHUNK = 8192  # predictions drawn at a time; part of the output's identity (same seed, same events)


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
    draw: Draw
    feedback: _Feedback
    order: NDArray[np.intp]  # rows of the concatenation predictions · feedback · malformed, emission order


class Simulation:
    """The stream of one :class:`SimulationConfig`: events, files and a training set, all from the seed."""

    def __init__(self, config: SimulationConfig | None = None) -> None:
        self.config = config = config or SimulationConfig()
        self.features = feature_set(config.features)
        check_config(config, self.features)
        self.scenario = config.scenario
        world, self._stream_seed, self._training_seed = np.random.SeedSequence(config.seed).spawn(3)
        self.population = Population(config, self.features, world)
        versions = [config.version_name(v) for v in range(config.versions + len(self.phases))]  # releases ≤ phases
        self._names = _Names(
            models=np.array(config.models, dtype=object),
            model_tokens=quoted(config.models),
            versions=np.array(versions, dtype=object),
            version_tokens=quoted(versions),
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
        draw = self.population.draw(rng, np.full(rows, float(at_s)), np.full(rows, model, dtype=np.intp))
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

    # -- slicing ---------------------------------------------------------------------------------------

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
            draw = self.population.draw(rng, offsets, None)
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

    # -- output ----------------------------------------------------------------------------------------

    def _feature_columns(self, draw: Draw) -> dict[str, Any]:
        """Feature values per name: floats (NaN = null) and category names (None = null), in feature order."""
        numeric, categorical = self.population.numeric, self.population.categorical
        columns: dict[str, Any] = {}
        for feature in self.features:
            if isinstance(feature, NumericFeature):
                columns[feature.name] = draw.numeric[:, numeric.index(feature)]
            else:
                codes = draw.codes[:, categorical.index(feature)]
                names = np.array([*feature.categories, None], dtype=object)
                columns[feature.name] = names[codes]  # code -1 picks the trailing None
        return columns

    def _feature_tokens(self, draw: Draw) -> list[list[Any]]:
        """Per feature, in order, its values as JSON tokens (see :func:`number_tokens`; categories quoted)."""
        numeric, categorical = self.population.numeric, self.population.categorical
        tokens = []
        for feature in self.features:
            if isinstance(feature, NumericFeature):
                tokens.append(number_tokens(draw.numeric[:, numeric.index(feature)]))
            else:
                codes = draw.codes[:, categorical.index(feature)]
                tokens.append(np.array([*map(json_string, feature.categories), "null"], dtype=object)[codes].tolist())
        return tokens

    def _sensitive_columns(self, draw: Draw) -> dict[str, Any]:
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
        """The slice's events in emission order: its predictions, the labels due, a malformed message after
        each prediction drawn to have one."""
        predictions = self._prediction_events(part)
        events = predictions + self._feedback_events(part.feedback)
        events += [
            malformed(predictions[i], MALFORMATIONS[part.draw.malformed[i]])
            for i in np.flatnonzero(part.draw.malformed >= 0).tolist()
        ]
        return [events[row] for row in part.order.tolist()]

    def _prediction_events(self, part: _Slice) -> list[SimulatedEvent]:
        """The slice's predictions, in number order."""
        draw, prefix = part.draw, self.config.prediction_prefix
        numbers = range(part.first, part.first + len(part.time_ms))
        time_of = part.time_ms.tolist()
        payloads = prediction_payloads(
            prefix,
            [f.name for f in self.features],
            [a.name for a in self.config.sensitive],
            zip(
                numbers,
                self._names.model_tokens[draw.model].tolist(),
                self._names.version_tokens[draw.version].tolist(),
                time_of,
                *self._feature_tokens(draw),
                draw.predicted.tolist(),
                draw.score.tolist(),
                *(quoted(a.groups)[draw.groups[:, i]].tolist() for i, a in enumerate(self.config.sensitive)),
                strict=True,
            ),
        )
        return [
            SimulatedEvent("prediction", stamp, phase, PREDICTIONS.name, f"{prefix}{number}", model, version, payload)
            for stamp, phase, number, model, version, payload in zip(
                time_of,
                self._names.phases[draw.phase].tolist(),
                numbers,
                self._names.models[draw.model].tolist(),
                self._names.versions[draw.version].tolist(),
                payloads,
                strict=True,
            )
        ]

    def _feedback_events(self, feedback: _Feedback) -> list[SimulatedEvent]:
        """The labels, in the order given."""
        prefix = self.config.prediction_prefix
        time_of, number_of = feedback.time_ms.tolist(), feedback.index.tolist()
        payloads = feedback_payloads(
            prefix,
            zip(
                number_of,
                time_of,
                feedback.label.tolist(),
                self._names.model_tokens[feedback.model].tolist(),
                strict=True,
            ),
        )
        return [
            SimulatedEvent("feedback", stamp, phase, FEEDBACK.name, f"{prefix}{number}", model, version, payload)
            for stamp, phase, number, model, version, payload in zip(
                time_of,
                self._phase_names(feedback.time_ms).tolist(),
                number_of,
                self._names.models[feedback.model].tolist(),
                self._names.versions[feedback.version].tolist(),
                payloads,
                strict=True,
            )
        ]
