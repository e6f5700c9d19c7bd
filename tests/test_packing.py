"""Compact pickling of simulator arrays (:mod:`envs.sim.packing`): every encoder gives back an
equal array (dtype, shape, writability) whatever the values, both compressors included."""

from __future__ import annotations

import bz2
import lzma
import pickle
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.sim.packing import MIN_BYTES, Ints, Packed, Sparse, pack, unpack

DTYPES = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(DTYPES), st.integers(0, 40_000), st.integers(0, 2**31 - 1),
       st.booleans(), st.booleans())
def test_ints_round_trip(dtype: type, n: int, seed: int, increasing: bool,
                         writeable: bool) -> None:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    a = rng.integers(info.min, int(info.max) + 1, n, dtype=dtype)
    if increasing:
        a.sort()
    a.flags.writeable = writeable
    enc = pickle.loads(pickle.dumps(Ints(a)))
    # zlib below MIN_BYTES of packed data, xz above: both paths are taken
    assert enc.codec == ("xz" if n * np.dtype(enc.packed).itemsize >= MIN_BYTES else "zlib")
    b = enc.array()
    assert b.dtype == a.dtype and np.array_equal(a, b)
    assert b.flags.writeable == writeable


def test_ints_pickled_with_bz2_before_xz_still_load() -> None:
    """Pickles from before xz: the state's first field was a flag, True for bz2 data."""
    a = np.arange(0, 90_000, 3, dtype=np.int64)  # 30,000 gaps of one byte: xz
    enc = Ints(a)
    assert enc.codec == "xz"
    state = enc.__getstate__()
    raw = lzma.decompress(enc.data)
    for flag, data in ((True, bz2.compress(raw, 9)), (False, zlib.compress(raw, 1))):
        old = Ints.__new__(Ints)
        old.__setstate__((flag, data, *state[2:]))
        assert old.codec == ("bz2" if flag else "zlib")
        b = pickle.loads(pickle.dumps(old)).array()
        assert b.dtype == a.dtype and np.array_equal(a, b)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 200_000), st.floats(0.0, 1.0), st.integers(0, 2**31 - 1))
def test_sparse_keeps_the_chosen_entries_and_zeros_the_rest(n: int, frac: float,
                                                            seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(-5, 1_000, n).astype(np.int32)
    where = np.flatnonzero(rng.random(n) < frac)
    b = pickle.loads(pickle.dumps(Sparse(a, where))).array()
    expect = np.zeros_like(a)
    expect[where] = a[where]
    assert b.dtype == a.dtype and np.array_equal(b, expect)


def test_pack_compresses_large_arrays_only() -> None:
    small = np.arange(10)
    assert pack(small) is small and unpack(small) is small
    big = np.repeat(np.arange(50), 1_000).reshape(50, 1_000)
    p = pack(big)
    assert isinstance(p, Packed) and len(pickle.dumps(p)) < big.nbytes / 50
    assert np.array_equal(unpack(pickle.loads(pickle.dumps(p))), big)


@pytest.mark.parametrize("codec", ["zlib", "xz"])
def test_packed_round_trips_with_either_codec(codec: str) -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 1_000, (400, 18), dtype=np.int64)
    a[::3] = 0
    p = pickle.loads(pickle.dumps(Packed(a, codec)))
    assert p.codec == codec
    b = p.array()
    assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)
    assert b.flags.writeable
    # a pickle from before the codec field (four fields, zlib data) still loads
    old = Packed.__new__(Packed)
    old.__setstate__((zlib.compress(a.tobytes(), 1), a.dtype.str, a.shape, True))
    assert old.codec == "zlib" and np.array_equal(old.array(), a)


def test_packed_refuses_an_unknown_codec() -> None:
    with pytest.raises(ValueError, match="codec"):
        Packed(np.zeros(4), "bz2")
