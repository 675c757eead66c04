"""msgpack encoding of the core's own types, for deltas and snapshots: plain data, never pickles.

An :class:`~driftline.streams.core.exact_sum.ExactSum` travels as the little-endian two's complement bytes of
its integer; a numpy integer array (a histogram, counts) by its length and its non-zero cells (``<u4``
indices, ``<i8`` counts), so a sparse window costs what it holds, not what it could hold.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driftline.streams.core.exact_sum import ExactSum


def encode_hook(value: object) -> object:
    """msgspec ``enc_hook``: an exact sum as bytes, an integer array by its non-zero cells."""
    if isinstance(value, ExactSum):
        return value.total.to_bytes(value.total.bit_length() // 8 + 1, "little", signed=True)
    if isinstance(value, np.ndarray):
        cells = np.flatnonzero(value)
        return [len(value), cells.astype("<u4").tobytes(), value[cells].astype("<i8").tobytes()]
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def decode_hook(kind: type, value: Any) -> object:
    """msgspec ``dec_hook``: the inverse of :func:`encode_hook`."""
    if kind is ExactSum:
        return ExactSum(int.from_bytes(value, "little", signed=True))
    if kind is np.ndarray or getattr(kind, "__origin__", None) is np.ndarray:
        length, cells, counts = value
        array = np.zeros(length, dtype=np.int64)
        array[np.frombuffer(cells, dtype="<u4")] = np.frombuffer(counts, dtype="<i8")
        return array
    raise NotImplementedError(f"cannot decode {kind.__name__}")
