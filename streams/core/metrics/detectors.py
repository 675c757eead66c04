"""Streaming change detectors of one model version, over River's ADWIN and Page-Hinkley.

- **ADWIN** on the per-event error indicator eₖ = 1[ŷₖ ≠ yₖ] of labelled predictions. ADWIN keeps the
  longest recent window whose two halves have means that differ by less than its bound
  ε = √(2/m · σ²_W · ln(2/δ')) + 2/(3m) · ln(2/δ') (m the harmonic mean of the halves' sizes, δ' = δ/ln n),
  and drops the older part when that bound is broken. Only a rise of the error rate is an alarm (a drop
  is good news): the estimate after the change must exceed the estimate before it.
- **Page-Hinkley** on the score pₖ: with x̄ₖ the running mean, it accumulates
  mₖ = α·mₖ₋₁ + (pₖ − x̄ₖ − δ) (and the mirror sum for a fall) and fires when mₖ − min mⱼ exceeds the
  threshold λ, after at least ``min_instances`` events: a sustained shift of the score mean either way. Its
  estimate is the mean of the last 100 scores when it fired.

Both are fed in a caller-given order (the window engine sorts each event-time slice by time, then
prediction id), so the same events always make them fire at the same event. After firing a detector starts
afresh. Detectors are saved with the worker's checkpoint (:mod:`driftline.streams.worker.snapshots`).

>>> detectors = ModelDetectors(DetectorSettings())
>>> alarms = detectors.feed_errors([int(i >= 500 and i % 2 == 0) for i in range(1500)])
>>> [(alarm.detector, 500 <= alarm.index < 700) for alarm in alarms]
[('adwin', True)]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from river.drift import ADWIN, PageHinkley

RECENT_SCORES = 100


@dataclass(frozen=True)
class DetectorSettings:
    """Parameters of the detectors (River's names and defaults)."""

    adwin_delta: float = 0.002
    ph_delta: float = 0.005
    ph_threshold: float = 50.0
    ph_min_instances: int = 30


@dataclass(frozen=True)
class Fired:
    """A detector fired at the ``index``-th value fed, after ``observations``."""

    detector: Literal["adwin", "page_hinkley"]
    index: int
    observations: int
    estimate: float


class ModelDetectors:
    """ADWIN on the error indicator and Page-Hinkley on the score of one model version."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.settings = settings
        self.adwin = ADWIN(delta=settings.adwin_delta)
        self.page_hinkley = self._new_page_hinkley()
        self.errors_seen = 0
        self.scores_seen = 0
        self.recent_scores: deque[float] = deque(maxlen=RECENT_SCORES)

    def feed_errors(self, errors: Iterable[float]) -> list[Fired]:
        """Feed error indicators in order; the ADWIN alarms (error rate rose) they raise."""
        alarms: list[Fired] = []
        for index, error in enumerate(errors):
            before = self.adwin.estimation
            self.adwin.update(error)
            self.errors_seen += 1
            if self.adwin.drift_detected:
                if self.adwin.estimation > before:
                    alarms.append(Fired("adwin", index, self.errors_seen, float(self.adwin.estimation)))
                self.errors_seen = 0
        return alarms

    def feed_scores(self, scores: Iterable[float]) -> list[Fired]:
        """Feed scores in order; the Page-Hinkley alarms they raise."""
        alarms: list[Fired] = []
        for index, score in enumerate(scores):
            self.page_hinkley.update(score)
            self.recent_scores.append(score)
            self.scores_seen += 1
            if self.page_hinkley.drift_detected:
                recent_mean = sum(self.recent_scores) / len(self.recent_scores)
                alarms.append(Fired("page_hinkley", index, self.scores_seen, recent_mean))
                self.page_hinkley = self._new_page_hinkley()  # River resets itself too; start afresh explicitly
                self.scores_seen = 0
        return alarms

    def _new_page_hinkley(self) -> PageHinkley:
        return PageHinkley(
            min_instances=self.settings.ph_min_instances,
            delta=self.settings.ph_delta,
            threshold=self.settings.ph_threshold,
        )
