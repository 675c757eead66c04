"""Backfill files are read by suffix, and a wrong file says what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from driftline.client.backfill import event_time_span, read_frame
from driftline.schemas.errors import ConfigError


def test_csv_and_parquet_read_the_same_frame(tmp_path: Path) -> None:
    frame = pd.DataFrame({"prediction_id": ["a", "b"], "age": [1.5, 2.5]})
    frame.to_csv(tmp_path / "x.csv", index=False)
    frame.to_parquet(tmp_path / "x.parquet")

    pd.testing.assert_frame_equal(read_frame(tmp_path / "x.csv"), read_frame(tmp_path / "x.parquet"))


def test_unknown_suffix_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"expected a \.csv or \.parquet file, got '\.xlsx'"):
        read_frame(tmp_path / "x.xlsx")
    with pytest.raises(ConfigError, match="no such file"):
        read_frame(tmp_path / "absent.csv")


def test_the_event_time_span_of_a_file_reads_milliseconds_and_date_times() -> None:
    millis = pd.DataFrame({"timestamp": [1_767_225_660_000, 1_767_225_600_000]})
    texts = pd.DataFrame({"timestamp": ["2026-01-01T00:01:00+00:00", "2026-01-01T01:00:00+01:00"]})
    first, last = event_time_span(millis)
    assert (first, last) == (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
    assert event_time_span(texts) == (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
    assert event_time_span(pd.DataFrame({"age": [1]})) == (None, None)
