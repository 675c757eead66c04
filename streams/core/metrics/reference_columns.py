"""Where a reference DataFrame holds what is not a feature."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReferenceColumns:
    """The columns of a reference DataFrame that are not its features: the model's predicted label
    (``prediction``), the probability of its positive class (``score``, binary models), the true outcome
    (``label``) and the sensitive attributes (``sensitive``). A column named None, or missing from the frame, is
    not there; ``prediction`` and ``score`` are looked for by default.

    >>> sorted(ReferenceColumns(label="outcome", sensitive=("gender",)).named())
    ['gender', 'outcome', 'prediction', 'score']
    """

    prediction: str | None = "prediction"
    score: str | None = "score"
    label: str | None = None
    sensitive: tuple[str, ...] = ()

    def named(self) -> set[str]:
        """Every column named here."""
        return {name for name in (self.prediction, self.score, self.label, *self.sensitive) if name is not None}
