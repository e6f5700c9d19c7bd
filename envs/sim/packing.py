"""Compact pickling of large simulator arrays (for subprocess and Ray workers).

Row-cache arrays hold one entry per embedding row and are mostly zeros early in an episode;
trace arrays repeat a few values (model ids, SLAs, sizes). :func:`pack` stores an array as
zlib-compressed bytes (level 1: fast; :class:`Packed` also takes xz); :func:`unpack` gives
back an equal, writable array.
Small arrays are left as they are. :class:`Ints` stores an integer array of any size in few
bytes (a sub-request's row ids and counts); :class:`Sparse` keeps only chosen entries of an
array (an LRU cache's resident rows, an LFU cache's rows with a count), zeros elsewhere.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from typing import Any

import numpy as np

#: Arrays smaller than this many bytes are pickled as they are.
MIN_BYTES = 1 << 14


def _compress(raw: bytes, codec: str) -> bytes:
    """``raw`` compressed by ``codec``: "zlib" (level 1) or "xz" (LZMA preset 0)."""
    return lzma.compress(raw, preset=0) if codec == "xz" else zlib.compress(raw, 1)


def _decompress(data: bytes, codec: str) -> bytes:
    """The inverse of :func:`_compress` (and of bz2, what :class:`Ints` used before xz)."""
    if codec == "xz":
        return lzma.decompress(data)
    return bz2.decompress(data) if codec == "bz2" else zlib.decompress(data)


class Packed:
    """A compressed array (what :func:`pack` returns for large arrays).

    Args:
        a: The array.
        codec: ``"zlib"`` (level 1: fast, for arrays of mostly zeros or repeats) or ``"xz"``
            (LZMA preset 0: smaller on varied integers, a few times slower).
    """

    __slots__ = ("codec", "data", "dtype", "shape", "writeable")

    def __init__(self, a: np.ndarray, codec: str = "zlib") -> None:
        if codec not in ("zlib", "xz"):
            raise ValueError(f"Packed: codec must be 'zlib' or 'xz', got {codec!r}")
        self.codec = codec
        self.dtype = a.dtype.str
        self.shape = a.shape
        self.writeable = bool(a.flags.writeable)
        self.data = _compress(np.ascontiguousarray(a).tobytes(), codec)

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.data, self.dtype, self.shape, self.writeable, self.codec)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.data, self.dtype, self.shape, self.writeable = state[:4]
        self.codec = state[4] if len(state) > 4 else "zlib"  # (zlib only before xz)

    def array(self) -> np.ndarray:
        """The array again (writable when it was)."""
        raw = _decompress(self.data, self.codec)
        out = np.frombuffer(bytearray(raw), dtype=np.dtype(self.dtype))
        out = out.reshape(self.shape)
        out.flags.writeable = self.writeable
        return out


def _smallest_uint(top: int) -> np.dtype[Any]:
    """The smallest unsigned integer dtype that holds ``0..top``."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.uint64)


class Ints:
    """A one-dimensional integer array in few bytes: an increasing one as the gaps between
    its entries, every one as offsets from the smallest value in the smallest unsigned dtype
    that holds them, compressed whatever its size: zlib (fast) below :data:`MIN_BYTES`, xz
    (LZMA, preset 0) above. A node's cache state comes out about a quarter smaller than with
    zlib; bz2 (level 9, used before) gave 5-11% less on ShardRouting-v0/-16N and ShardPlacement
    but took 2-25x longer, and 50-150 ms per array on the periodic 0.5 MB arrays of a
    64-node cache state (5.2 s per pickle of ShardRouting-64N; with xz 0.6 s). Values must fit
    in int64. Pickles made with bz2 still load.

    Args:
        a: The array.
    """

    __slots__ = ("codec", "data", "dtype", "increasing", "low", "n", "packed", "writeable")

    def __init__(self, a: np.ndarray) -> None:
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise ValueError(f"Ints takes a 1-d integer array, got {a.dtype} {a.shape}")
        self.dtype = a.dtype.str
        self.n = len(a)
        self.writeable = bool(a.flags.writeable)
        v = a.astype(np.int64)
        self.increasing = bool(len(v) > 1 and (v[1:] >= v[:-1]).all())
        if self.increasing:
            v[1:] = np.diff(v)
        self.low = int(v.min()) if len(v) else 0
        v -= self.low
        packed = v.astype(_smallest_uint(int(v.max()) if len(v) else 0))
        self.packed = packed.dtype.str
        raw = packed.tobytes()
        #: "zlib", "xz" (or "bz2": unpickled from before xz)
        self.codec = "xz" if len(raw) >= MIN_BYTES else "zlib"
        self.data = _compress(raw, self.codec)

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.codec, self.data, self.dtype, self.increasing, self.low, self.n,
                self.packed, self.writeable)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (codec, self.data, self.dtype, self.increasing, self.low, self.n, self.packed,
         self.writeable) = state
        # Before xz the first field was a flag: True for bz2, False for zlib.
        self.codec = codec if isinstance(codec, str) else ("bz2" if codec else "zlib")

    def array(self) -> np.ndarray:
        """The array again (writable when it was)."""
        v = np.frombuffer(_decompress(self.data, self.codec), dtype=np.dtype(self.packed))
        v = v.astype(np.int64) + self.low
        if self.increasing:
            np.cumsum(v, out=v)
        out = v.astype(np.dtype(self.dtype))
        out.flags.writeable = self.writeable
        return out


class Sparse:
    """An integer array kept only at some positions (zeros elsewhere when given back): the
    positions and their values as :class:`Ints`, so runs of neighbouring rows and values in
    a narrow range (an LRU cache's ticks) cost a few bits each.

    Args:
        a: A one-dimensional integer array.
        where: The positions to keep, increasing.
    """

    __slots__ = ("dtype", "n", "values", "where", "writeable")

    def __init__(self, a: np.ndarray, where: np.ndarray) -> None:
        if a.ndim != 1:
            raise ValueError(f"Sparse takes a 1-d array, got shape {a.shape}")
        self.dtype = a.dtype.str
        self.n = len(a)
        self.writeable = bool(a.flags.writeable)
        where = np.asarray(where, dtype=np.int64)
        self.where = Ints(where)
        self.values = Ints(a[where])

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.dtype, self.n, self.values, self.where, self.writeable)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.dtype, self.n, self.values, self.where, self.writeable = state

    def array(self) -> np.ndarray:
        """The array again, with zeros at the positions not kept (writable when it was)."""
        out = np.zeros(self.n, dtype=np.dtype(self.dtype))
        out[self.where.array()] = self.values.array()
        out.flags.writeable = self.writeable
        return out


def pack(a: Any) -> Any:
    """``a`` as a :class:`Packed` when it is a large array, else ``a`` itself."""
    if isinstance(a, np.ndarray) and a.nbytes >= MIN_BYTES and a.dtype != object:
        return Packed(a)
    return a


def unpack(a: Any) -> Any:
    """The inverse of :func:`pack`."""
    return a.array() if isinstance(a, Packed | Ints | Sparse) else a


def slots_state(obj: Any, names: tuple[str, ...], packed: tuple[str, ...]) -> dict[str, Any]:
    """The ``__slots__`` of ``obj`` as a dict, the ``packed`` ones through :func:`pack`."""
    return {n: pack(getattr(obj, n)) if n in packed else getattr(obj, n)
            for n in names if hasattr(obj, n)}


def set_slots_state(obj: Any, state: dict[str, Any]) -> None:
    """Restore what :func:`slots_state` returned."""
    for name, value in state.items():
        object.__setattr__(obj, name, unpack(value))
