"""Backfill files are read by suffix, and a wrong file says what is wrong."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from driftline.backfill import read_frame
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
