"""The seeded world that draws predictions: the models' features, true labels and scores, and the fate of each.

The world, per prediction (``σ`` is the logistic function; the weights are drawn once, per model, from the
world's own seed, so the same config always gives the same world):

- Serving: each prediction picks a model uniformly, and one of its ``versions`` live versions uniformly.
- Features: numeric latents ``z ~ N(0, C)`` (a fixed correlation ``C`` between related features, see
  :data:`~driftline.simulation.world.CORRELATIONS`), each shown through its feature's transform
  (:class:`~driftline.simulation.world.NumericFeature`); categorical features are drawn from fixed shares.
- Sensitive attributes: each group drawn from its shares, independently of the features.
- Truth: ``p = σ(b_m + Σ_j w_mj · z_j + Σ_c e_mc[category])`` with weights drawn per model (the logit's
  standard deviation is about 4.6, so scores are confident: accuracy about 0.89, a third predicted
  positive), ``label ~ Bernoulli(p)``.
- Model: in a stable phase the score is ``s = p`` (calibrated: labels are Bernoulli(score)) and the predicted
  label is ``s ≥ 0.5`` (label ``1``, else ``0``). Scenario effects change ``z``, ``p`` or ``s`` as
  :mod:`driftline.simulation.scenarios` describes (concept drifts add their angles ``θ``).
- Feedback: a ``label_share`` of predictions get their true label after a delay (exponential, lognormal or
  fixed, with mean ``label_delay_s`` seconds of event time); the rest never do.
- Malformed: a ``malformed_share`` of predictions is followed by a message broken in one of the ways of
  :mod:`driftline.simulation.malformed` (extra to the valid events, which stay whole).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from driftline.simulation.malformed import MALFORMATIONS
from driftline.simulation.scenarios import (
    BrokenFeature,
    ConceptDrift,
    CovariateDrift,
    Effect,
    FairnessGap,
    PredictionDrift,
)
from driftline.simulation.world import (
    CategoricalFeature,
    Feature,
    Floats,
    NumericFeature,
    SimulationConfig,
    latent_correlation,
)

THRESHOLD = 0.5
EDGE_Z = 4.0  # a value far outside the training range is clipped to the range's edge, in latent units
NUMERIC_LOGIT_VARIANCE = 20.0
CATEGORY_EFFECT_SD = 0.5
INTERCEPT = -1.0


@dataclass
class Draw:
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


class Population:
    """The world of one config's models: who comes, what they look like, what is true of them and what each
    model scores, drawn under the scenario's effects."""

    def __init__(self, config: SimulationConfig, features: tuple[Feature, ...], seed: np.random.SeedSequence) -> None:
        self.config = config
        self.scenario = config.scenario
        self.numeric = [f for f in features if isinstance(f, NumericFeature)]
        self.categorical = [f for f in features if isinstance(f, CategoricalFeature)]
        self._mixing = np.linalg.cholesky(latent_correlation([f.name for f in self.numeric]))
        rng = np.random.default_rng(seed)
        weights = rng.standard_normal((len(config.models), len(self.numeric)))
        spread = np.einsum("mi,ij,mj->m", weights, self._mixing @ self._mixing.T, weights)
        self._weights = weights * np.sqrt(NUMERIC_LOGIT_VARIANCE / np.maximum(spread, 1e-12))[:, None]
        self._turned = _orthogonal(self._weights, rng.standard_normal(weights.shape), self._mixing @ self._mixing.T)
        widest = max((len(f.categories) for f in self.categorical), default=1)
        self._effects = rng.normal(0, CATEGORY_EFFECT_SD, (len(config.models), len(self.categorical), widest))
        self._intercepts = INTERCEPT + rng.normal(0, 0.25, len(config.models))

    def draw(self, rng: np.random.Generator, offsets: Floats, models: NDArray[np.intp] | None) -> Draw:
        """Draw predictions at ``offsets`` (seconds of event time), under the scenario's effects, of random
        models or of ``models``."""
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
        effects = self._in_force(phase, offsets, version, groups, u_broken)

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
        return Draw(
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

    def _in_force(
        self,
        phase: NDArray[np.intp],
        offsets: Floats,
        version: NDArray[np.intp],
        groups: NDArray[np.intp],
        u_broken: Floats,
    ) -> _Effects:
        """What the effects in force in each row's phase do to it; a row of a phase after a release gets the
        released version (``version`` is changed in place)."""
        effects = _Effects(len(offsets), len(self.numeric), len(self.categorical))
        for index in np.unique(phase):
            rows = np.flatnonzero(phase == index)
            released, since = self.scenario.releases(int(index))
            if released:
                version[rows] = self.config.versions + released - 1
            for active in self.scenario.in_force(int(index)):
                ramp = active.ramp(offsets[rows])
                learned = since is not None and active.since < since
                self._apply(
                    active.effect, rows, ramp=ramp, learned=learned, groups=groups, u_broken=u_broken, effects=effects
                )
        return effects

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


@dataclass
class _Effects:
    """What the effects in force do to each drawn row (see :meth:`Population._apply`)."""

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
