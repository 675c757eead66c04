"""``driftline reference build``: a reference profile from training data, published for the workers.

The profile goes to the compacted ``reference-profiles`` topic (key ``model_id/model_version``), where every
worker reads it and the sink stores it in ``reference_profiles``.
"""

from __future__ import annotations

import pandas as pd

from driftline.schemas.errors import ConfigError
from driftline.schemas.results import ReferenceProfile
from driftline.schemas.topics import REFERENCE_PROFILES
from driftline.settings import Settings
from driftline.streams.monitors.profile import build_profile
from driftline.streams.publishing import KeyedPublisher


def publish_profile(settings: Settings, profile: ReferenceProfile) -> None:
    """Send ``profile`` to the reference-profiles topic and wait for delivery."""
    KeyedPublisher(settings.kafka, settings.topic(REFERENCE_PROFILES.name)).send([profile])


def build_and_publish(
    settings: Settings,
    frame: pd.DataFrame,
    model_id: str,
    model_version: str,
    features: list[str] | None = None,
    *,
    prediction_column: str | None = "prediction",
    score_column: str | None = "score",
    label_column: str | None = None,
    sensitive: tuple[str, ...] = (),
) -> ReferenceProfile:
    """Profile ``frame`` (see :func:`~driftline.streams.monitors.profile.build_profile`: its features, and the
    scores and predicted labels in the columns named so) and publish it. Columns named here must exist, except
    the defaults ``prediction`` and ``score``."""
    named = [("--label-column", label_column), *(("--sensitive", c) for c in sensitive)]
    named += [("--feature", column) for column in features or ()]
    named += [("--prediction-column", prediction_column)] if prediction_column != "prediction" else []
    named += [("--score-column", score_column)] if score_column != "score" else []
    for option, column in named:
        if column is not None and column not in frame:
            raise ConfigError(f"{option} {column}: no such column; the file has {list(frame.columns)}")
    profile = build_profile(
        frame,
        model_id,
        model_version,
        features=features,
        prediction_column=prediction_column,
        score_column=score_column,
        label_column=label_column,
        exclude=sensitive,
    )
    publish_profile(settings, profile)
    return profile
