"""The Python client of driftline: sending events and references, reading results and decisions.

``from driftline.client import Monitor`` is the producer client (:mod:`driftline.client.producer`)."""

from driftline.client.producer import Monitor

__all__ = ["Monitor"]
