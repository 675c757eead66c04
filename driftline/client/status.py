"""``driftline status``: how complete each model version's results are, read from ClickHouse.

Per model version (the ``window_completeness`` view, beside the raw ``predictions``): the windows published,
*closed until* (every window ending by then holds all its predictions), *final until* (no label changes the
windows ending by then), the latest prediction stored, and what the newest window waits for. A window closes
when the version's own predictions pass its end plus the grace, so the newest window of a version that has
gone quiet stays open until it sends again (or its partition's other traffic passes it while it is idle).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd

from driftline.settings import Settings
from driftline.sinks.sql_endpoint import query
from driftline.streams.core.joining import window_start

COMPLETENESS = "SELECT * FROM window_completeness"
LATEST_PREDICTIONS = (
    "SELECT model_id, model_version, max(timestamp) AS latest_prediction FROM predictions GROUP BY model_id, "
    "model_version"
)


def completeness(settings: Settings, model_id: str | None = None) -> pd.DataFrame:
    """One row per model version: windows, closed until, final until, predictions, labelled, the latest
    prediction stored and ``waiting``, what the newest window needs to close (empty when nothing waits)."""
    windows = query(settings, COMPLETENESS)
    latest = query(settings, LATEST_PREDICTIONS)
    frame = latest.merge(windows, on=["model_id", "model_version"], how="outer")
    if model_id is not None:
        frame = frame[frame["model_id"] == model_id]
    grace = timedelta(seconds=settings.monitor.grace_s)
    # a version's own window size, read from its windows (the configured one before it has any)
    sizes = frame["window_s"].fillna(settings.monitor.window_s).astype(float).tolist()
    frame["waiting"] = [
        _waiting(row.closed_until, row.latest_prediction, timedelta(seconds=size), grace)
        for row, size in zip(frame.itertuples(index=False), sizes, strict=True)
    ]
    columns = ["model_id", "model_version", "windows", "closed_until", "final_until", "latest_prediction"]
    return frame[[*columns, "predictions", "labelled", "waiting"]].sort_values(["model_id", "model_version"])


def _waiting(closed: Any, latest: Any, window: timedelta, grace: timedelta) -> str:
    """What the version's newest window waits for, given the latest window end published and the latest
    prediction stored (each a timestamp, or NaT/None when there is none)."""
    if pd.isna(latest):
        return ""
    latest_time = pd.Timestamp(latest)
    if not pd.isna(closed) and latest_time < pd.Timestamp(closed):
        return ""
    start = window_start(latest_time.tz_localize("UTC").to_pydatetime(), window.total_seconds()).replace(tzinfo=None)
    end = start + window
    return f"window {start:%Y-%m-%d %H:%M}–{end:%H:%M} closes when its predictions pass {end + grace:%Y-%m-%d %H:%M:%S}"
