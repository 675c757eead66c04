"""The one exception tree of driftline.

Every error says what happened, to which field and value, and what was expected, so an operator can act
on the message alone (the style of Faust's documented error tree and Bytewax's messages)::

    DriftlineError
    ├── ConfigError     a setting has a bad value, or a required tool is missing
    ├── ContractError   an event or message breaks its contract (goes to the dead letters)
    ├── StorageError    ClickHouse cannot be opened or written
    └── BrokerError     Kafka cannot be started, reached or used
"""

from __future__ import annotations


class DriftlineError(Exception):
    """Base of every error driftline raises on purpose."""


class ConfigError(DriftlineError):
    """A setting, a config file or a required tool (Java, Maven) is wrong or missing."""


class ContractError(DriftlineError):
    """An event breaks its contract: names the field, the value and the expectation."""

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class StorageError(DriftlineError):
    """ClickHouse could not be opened, migrated or written."""


class BrokerError(DriftlineError):
    """The Kafka broker could not be started, reached or used."""
