"""Dead letters: input that breaks its contract, kept whole with the reason, never dropped and never fatal.

On the dead-letter topic a dead letter is the original bytes as the value, with headers that say why and
where it came from (error class, reason, message, source topic, partition, offset; hexkit's convention), and
the key ``topic:partition:offset:index``, which also makes its ClickHouse row idempotent.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

HEADER_PREFIX = "driftline."


class Reason(StrEnum):
    """Why a message or event was rejected; one counter per reason."""

    NOT_JSON = "not_json"
    WRONG_SHAPE = "wrong_shape"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"
    UNKNOWN_MODEL_TYPE = "unknown_model_type"
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    OVERSIZED = "oversized"
    TASK_MISMATCH = "task_mismatch"
    LABEL_TYPE_MISMATCH = "label_type_mismatch"
    INVALID_VALUE = "invalid_value"


class DeadLetter(BaseModel):
    """One rejected message, or one rejected event of a batch envelope."""

    model_config = ConfigDict(frozen=True)

    source_topic: str = Field(description="Topic the input was read from.")
    source_partition: int = Field(ge=0, description="Its partition.")
    source_offset: int = Field(ge=0, description="Its offset.")
    envelope_index: int = Field(
        -1, ge=-1, description="Position of the event in its batch envelope; -1 for a whole message."
    )
    reason: Reason = Field(description="Why it was rejected (one of a fixed set, counted per reason).")
    error_class: str = Field(description="The exception class that rejected it, e.g. ContractError.")
    message: str = Field(description="What was wrong: the field, the value and what was expected.")
    original: bytes = Field(description="The original bytes (the event's JSON for one event of an envelope).")

    @property
    def key(self) -> str:
        """``topic:partition:offset:index``: the same input always gives the same key."""
        return f"{self.source_topic}:{self.source_partition}:{self.source_offset}:{self.envelope_index}"

    def headers(self) -> list[tuple[str, str | bytes | None]]:
        """Kafka headers carrying everything but the original bytes (which are the message value)."""
        fields = self.model_dump(exclude={"original"}, mode="json")
        return [(HEADER_PREFIX + name, str(value).encode()) for name, value in fields.items()]

    @classmethod
    def from_kafka(
        cls, value: bytes | None, headers: list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None
    ) -> DeadLetter:
        """Rebuild a dead letter from a message of the dead-letter topic."""
        pairs = headers.items() if isinstance(headers, dict) else headers or []
        fields = {
            name.removeprefix(HEADER_PREFIX): raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            for name, raw in pairs
            if name.startswith(HEADER_PREFIX)
        }
        return cls.model_validate({**fields, "original": value or b""})
