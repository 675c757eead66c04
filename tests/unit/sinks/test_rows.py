"""Rows are built by column name: each row has its table's columns, and each column holds what it names."""

from __future__ import annotations

import json

import pandas as pd

from driftline.schemas.dead_letters import DeadLetter, Reason
from driftline.schemas.tables import DEAD_LETTERS, REFERENCE_PROFILES, RETRAIN_TRIGGERS, Table
from driftline.sinks.rows import Row, dead_letter_row, reference_profile_row, retrain_trigger_row
from driftline.streams.core.metrics.profile import build_profile
from driftline.streams.core.metrics.reference_columns import ReferenceColumns
from tests.unit.demo.story_rows import trigger


def by_column(table: Table, row: Row) -> dict[str, object]:
    assert len(row) == len(table.column_names)
    return dict(zip(table.column_names, row, strict=True))


def test_a_trigger_row_names_its_rules_and_carries_its_reasons_as_json() -> None:
    decision = trigger(2, "psi_above", "psi:income", 0.9, 0.2)

    row = by_column(RETRAIN_TRIGGERS, retrain_trigger_row(decision))

    assert row["trigger_id"] == decision.trigger_id and row["window_start"] == decision.window_start
    assert row["rules"] == ["psi_above"]
    assert json.loads(str(row["reasons"]))[0]["metric"] == "psi:income"


def test_a_dead_letter_row_holds_the_reason_as_text_and_the_original_bytes() -> None:
    fields = {"source_topic": "t", "source_partition": 3, "source_offset": 9, "envelope_index": -1}
    letter = DeadLetter(**fields, reason=Reason.NOT_JSON, error_class="E", message="m", original=b"{")

    row = by_column(DEAD_LETTERS, dead_letter_row(letter))

    assert row == {**fields, "reason": "not_json", "error_class": "E", "message": "m", "original": b"{"}
    assert type(row["reason"]) is str


def test_a_reference_profile_row_lists_its_features_and_its_reference_accuracy() -> None:
    frame = pd.DataFrame({"age": [30, 40, 50, 60], "prediction": [1, 0, 1, 0], "score": [0.9, 0.2, 0.7, 0.4]})
    frame["label"] = [1, 0, 0, 0]
    profile = build_profile(frame, "m", "1", columns=ReferenceColumns(label="label"))

    row = by_column(REFERENCE_PROFILES, reference_profile_row(profile))

    assert row["features"] == ["__predicted_label__", "__score__", "age"]
    assert (row["labelled"], row["accuracy"]) == (4, 0.75)
    assert json.loads(str(row["profile"]))["model_id"] == "m"
