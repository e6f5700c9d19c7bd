"""Compact pickling of large simulator arrays (for subprocess and Ray workers).

Row-cache arrays hold one entry per embedding row and are mostly zeros early in an episode;
trace arrays repeat a few values (model ids, SLAs, sizes). :func:`pack` stores an array as
zlib-compressed bytes (level 1: fast); :func:`unpack` gives back an equal, writable array.
Small arrays are left as they are.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

#: Arrays smaller than this many bytes are pickled as they are.
MIN_BYTES = 1 << 14


class Packed:
    """A compressed array (what :func:`pack` returns for large arrays)."""

    __slots__ = ("data", "dtype", "shape", "writeable")

    def __init__(self, a: np.ndarray) -> None:
        self.dtype = a.dtype.str
        self.shape = a.shape
        self.writeable = bool(a.flags.writeable)
        self.data = zlib.compress(np.ascontiguousarray(a).tobytes(), 1)

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.data, self.dtype, self.shape, self.writeable)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.data, self.dtype, self.shape, self.writeable = state

    def array(self) -> np.ndarray:
        """The array again (writable when it was)."""
        out = np.frombuffer(bytearray(zlib.decompress(self.data)), dtype=np.dtype(self.dtype))
        out = out.reshape(self.shape)
        out.flags.writeable = self.writeable
        return out


def pack(a: Any) -> Any:
    """``a`` as a :class:`Packed` when it is a large array, else ``a`` itself."""
    if isinstance(a, np.ndarray) and a.nbytes >= MIN_BYTES and a.dtype != object:
        return Packed(a)
    return a


def unpack(a: Any) -> Any:
    """The inverse of :func:`pack`."""
    return a.array() if isinstance(a, Packed) else a


def slots_state(obj: Any, names: tuple[str, ...], packed: tuple[str, ...]) -> dict[str, Any]:
    """The ``__slots__`` of ``obj`` as a dict, the ``packed`` ones through :func:`pack`."""
    return {n: pack(getattr(obj, n)) if n in packed else getattr(obj, n)
            for n in names if hasattr(obj, n)}


def set_slots_state(obj: Any, state: dict[str, Any]) -> None:
    """Restore what :func:`slots_state` returned."""
    for name, value in state.items():
        object.__setattr__(obj, name, unpack(value))
