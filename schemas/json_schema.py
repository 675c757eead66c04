"""JSON Schema export of the event contracts, for producers in any language (``driftline schemas export``).

The checked-in copies under ``schemas/json/`` are what other languages use; a test fails when they drift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from driftline.schemas.dead_letters import DeadLetter
from driftline.schemas.events import FeedbackEvent, PredictionEvent
from driftline.schemas.results import ReferenceProfile, RetrainTrigger, WindowResult

CHECKED_IN = Path(__file__).parent / "json"


def _envelope(model: type[BaseModel]) -> dict[str, Any]:
    schema = TypeAdapter(list[model]).json_schema(mode="validation")  # type: ignore[valid-type]
    schema["title"] = f"{model.__name__}Envelope"
    schema["description"] = f"A batch envelope: a JSON array of {model.__name__}s of one partition."
    schema["minItems"] = 1
    return schema


def schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema (2020-12) of every contract a producer or consumer sees."""
    result = {
        "prediction_event.json": PredictionEvent.model_json_schema(mode="validation"),
        "feedback_event.json": FeedbackEvent.model_json_schema(mode="validation"),
        "prediction_envelope.json": _envelope(PredictionEvent),
        "feedback_envelope.json": _envelope(FeedbackEvent),
        "dead_letter.json": DeadLetter.model_json_schema(mode="serialization"),
        "window_result.json": WindowResult.model_json_schema(mode="serialization"),
        "reference_profile.json": ReferenceProfile.model_json_schema(mode="serialization"),
        "retrain_trigger.json": RetrainTrigger.model_json_schema(mode="serialization"),
    }
    for name, schema in result.items():
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://driftline.dev/schemas/v1/{name}"
    return result


def render(schema: dict[str, Any]) -> str:
    """The exported text of one schema (stable: sorted keys, two-space indent, final newline)."""
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export(directory: Path) -> list[Path]:
    """Write every schema into ``directory``; return the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = directory / name
        path.write_text(render(schema))
        written.append(path)
    return written
