"""``driftline reference build``: a reference profile from training data, published for the workers.

The profile goes to the compacted ``reference-profiles`` topic (key ``model_id/model_version``), where every
worker reads it and the sink stores it in ``reference_profiles``.
"""

from __future__ import annotations

import pandas as pd

from driftline.schemas.results import ReferenceProfile
from driftline.schemas.topics import REFERENCE_PROFILES
from driftline.settings import Settings
from driftline.streams.monitors.profile import build_profile
from driftline.streams.publishing import KeyedPublisher


def publish_profile(settings: Settings, profile: ReferenceProfile) -> None:
    """Send ``profile`` to the reference-profiles topic and wait for delivery."""
    KeyedPublisher(settings.kafka, settings.topic(REFERENCE_PROFILES.name)).send([profile])


def build_and_publish(
    settings: Settings, frame: pd.DataFrame, model_id: str, model_version: str, features: list[str] | None = None
) -> ReferenceProfile:
    """Profile ``frame`` (features, plus ``score`` and ``label`` columns when present) and publish it."""
    profile = build_profile(frame, model_id, model_version, features=features)
    publish_profile(settings, profile)
    return profile
