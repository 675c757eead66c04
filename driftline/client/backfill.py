"""``driftline backfill FILE``: send predictions or labels kept in a CSV or Parquet file, with progress.

The file is read with pandas and sent through :class:`driftline.client.producer.Monitor` (validated, murmur2
partitions, envelopes), so a backfill is computed like live traffic: event time is kept per model version, so
its windows close on its own events, whatever other models send. Columns: ``prediction_id``, ``timestamp``,
``label``, ``score``, ``value`` when present; for predictions every other column is a feature unless it is
named as sensitive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from driftline.client.producer import Monitor
from driftline.schemas.errors import ConfigError, ContractError
from driftline.settings import Settings

CHUNK_ROWS = 5_000
READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".csv": pd.read_csv,
    ".parquet": pd.read_parquet,
    ".pq": pd.read_parquet,
}


@dataclass(frozen=True)
class Backfilled:
    """What a backfill sent: its rows, and the event time they span (None when the file has no ``timestamp``
    column: the events were stamped as they were sent)."""

    rows: int
    first: datetime | None
    last: datetime | None


def event_time_span(frame: pd.DataFrame) -> tuple[datetime | None, datetime | None]:
    """The earliest and latest ``timestamp`` of ``frame`` (epoch milliseconds or date-times), or (None, None)."""
    if "timestamp" not in frame or frame.empty:
        return None, None
    column = frame["timestamp"]
    if pd.api.types.is_numeric_dtype(column):
        stamps = pd.to_datetime(column, unit="ms", utc=True)
    else:
        stamps = pd.to_datetime(column, utc=True, format="mixed")
    return stamps.min().to_pydatetime(), stamps.max().to_pydatetime()


def read_frame(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame, or a :class:`ConfigError` saying why not."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ConfigError(f"{path}: expected a .csv or .parquet file, got {path.suffix or 'no suffix'!r}")
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    return reader(path)


def backfill(
    settings: Settings,
    path: Path,
    model_id: str,
    model_version: str,
    *,
    feedback: bool = False,
    sensitive_columns: tuple[str, ...] = (),
    progress: Callable[[int, int], None] = lambda _done, _total: None,
) -> Backfilled:
    """Send every row of ``path`` as a prediction (or, with ``feedback``, as a label); say what was sent.

    ``progress(done, total)`` is called after each chunk. A row that breaks the contract stops the backfill
    with its row number; the rows before it have been sent.
    """
    frame = read_frame(path)
    needed = {"prediction_id"} if feedback else set(sensitive_columns)
    if missing := needed - set(frame.columns):
        raise ConfigError(f"{path}: missing column(s) {sorted(missing)}; it has {list(frame.columns)}")
    with Monitor(model_id, model_version, settings=settings) as monitor:
        for start in range(0, len(frame), CHUNK_ROWS):
            chunk = frame.iloc[start : start + CHUNK_ROWS]
            try:
                if feedback:
                    monitor.log_feedback_frame(chunk)
                else:
                    monitor.log_predictions_frame(chunk, sensitive_columns=sensitive_columns)
            except ContractError as error:
                raise ContractError(
                    f"{path}, in rows {start + 1}-{start + len(chunk)}: {error} (rows before them were sent)",
                    field=error.field,
                    value=error.value,
                ) from None
            progress(start + len(chunk), len(frame))
    return Backfilled(len(frame), *event_time_span(frame))
