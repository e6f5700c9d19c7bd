"""A fast, strict, pure-numpy reader for plain CSV files with a header row.

Scope: comma separated, one header line, no quoting, no comments. The fast path finds every
delimiter with one vectorised scan over the bytes, gathers each column into a fixed-width byte
matrix and converts it without per-value Python:

- numbers (``-?digits[.digits]``) are assembled as an exact int64 mantissa divided by a power
  of ten, which gives the same double as ``float()`` whenever the mantissa is below 2^53;
- categorical strings get a 64-bit polynomial hash, ``np.unique`` on the hashes, and an exact
  check that equal hashes mean equal strings.

Anything the fast path does not prove well-formed (blank lines, a different number of fields,
exponents, spaces, non-ASCII digits ...) falls back to a row-by-row reader that accepts what
``float()`` accepts and reports the first bad line as a :class:`~traces.report.TraceFormatError`.
A 1-million-row, 6-column file reads in well under a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from traces.report import TraceFormatError, check_text, printable

ColKind = Literal["float", "int", "cat", "str"]

_POW10_F = 10.0 ** np.arange(40, dtype=np.float64)
_HASH_MUL = np.random.default_rng(0x1D5_6E).integers(1, 2**63, size=256, dtype=np.int64) \
    .astype(np.uint64) | np.uint64(1)
_CHUNK = 1 << 18


@dataclass
class Column:
    """One parsed column.

    Attributes:
        values: float64 (``float``), int64 (``int``), int32 codes (``cat``) or an object array
            of str (``str``).
        names: For ``cat``: the distinct strings, in order of first appearance.
        first_row: For ``cat``: the row index where each name first appears.
    """

    values: np.ndarray
    names: tuple[str, ...] = ()
    first_row: tuple[int, ...] = ()


@dataclass
class Table:
    """Columns of a CSV file.

    Attributes:
        path: The file.
        header: Column names as in the header line.
        columns: Parsed requested columns by name.
        n_rows: Data rows.
        line: File line (1-based) of each row, or None when row ``i`` is on line ``i + 2``.
    """

    path: str
    header: tuple[str, ...]
    columns: dict[str, Column] = field(default_factory=dict)
    n_rows: int = 0
    line: np.ndarray | None = None

    def line_of(self, row: int) -> int:
        """1-based file line of data row ``row``."""
        return int(self.line[row]) if self.line is not None else row + 2


def read_csv(path: str, kinds: Mapping[str, ColKind], required: tuple[str, ...] = (),
             data: bytes | None = None) -> Table:
    """Read the columns named in ``kinds`` (those present) from a CSV file with a header.

    Args:
        path: File to read (also used in error messages).
        kinds: Column name -> ``float``, ``int``, ``cat`` (categorical string) or ``str``.
        required: Columns that must be in the header.
        data: The file's bytes, when already read.

    Raises:
        TraceFormatError: missing column, wrong field count, unparsable value, empty file.
    """
    if data is None:
        with open(path, "rb") as f:
            data = f.read()
    check_text(str(path), data)
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    nl = data.find(b"\n")
    head = (data if nl < 0 else data[:nl]).decode("utf-8", errors="replace")
    if not head.strip():
        raise TraceFormatError(path, 1, "empty file or empty header line")
    header = tuple(h.strip() for h in head.split(","))
    for name in required:
        if name not in header:
            raise TraceFormatError(path, 1, f"missing column '{name}' (header: {printable(head)})")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise TraceFormatError(path, 1, f"duplicate column(s) {dup}")
    body = b"" if nl < 0 else data[nl + 1:].rstrip(b" \t\n")
    wanted = {h: kinds[h] for h in header if h in kinds}
    if not body:
        return Table(path, header, {h: _empty(k) for h, k in wanted.items()}, 0)
    body += b"\n"
    fast = _read_fast(path, header, wanted, body)
    if fast is not None:
        return fast
    return _read_slow(path, header, wanted, body)


def _empty(kind: ColKind) -> Column:
    dt = {"float": np.float64, "int": np.int64, "cat": np.int32, "str": object}[kind]
    return Column(np.empty(0, dtype=dt))


def _field_matrix(a: np.ndarray, s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bytes of fields ``a[s:e]`` as a zero-padded (width, rows) uint8 matrix and the lengths.

    Column-major on purpose: each of the ``width`` passes below then reads contiguous memory.
    """
    lens = e - s
    width = int(lens.max()) if len(lens) else 0
    m = np.empty((width, len(s)), dtype=np.uint8)
    idx = s.copy()
    for j in range(width):
        np.take(a, idx, out=m[j])  # ``a`` is padded, so idx never runs past its end
        m[j][lens <= j] = 0
        idx += 1
    return m, lens


def _parse_numbers(m: np.ndarray, lens: np.ndarray) -> np.ndarray | None:
    """Vectorised decimal parse of a field matrix; None when some field is not plain decimal."""
    width, rows = m.shape
    if width == 0 or width > 40 or (lens == 0).any():
        return None
    neg = m[0] == 45
    mant = np.zeros(rows, dtype=np.int64)
    ndig = np.zeros(rows, dtype=np.int64)
    frac = np.zeros(rows, dtype=np.int64)
    seen_dot = np.zeros(rows, dtype=bool)
    bad = np.zeros(rows, dtype=bool)
    for j in range(width):
        c = m[j]
        d = c - np.uint8(48)  # wraps for non-digits (and the zero padding) to >= 10
        isd = d < 10
        isdot = c == 46
        other = ~isd & ~isdot & (j < lens)
        if j == 0:
            other &= ~neg
        bad |= other | (isdot & seen_dot)
        np.multiply(mant, 10, out=mant, where=isd)
        np.add(mant, d, out=mant, where=isd, casting="unsafe")
        ndig += isd
        frac += isd & seen_dot
        seen_dot |= isdot
    if bad.any() or (ndig == 0).any() or (ndig > 18).any():
        return None
    val = mant.astype(np.float64) / _POW10_F[frac]
    inexact = np.flatnonzero(mant >= (1 << 53))
    for i in inexact:  # rare: more than 15-16 significant digits; let float() round
        val[i] = float(m[: lens[i], i].tobytes())
    val[neg] = -val[neg]
    return val


def _categorical(m: np.ndarray) -> tuple[np.ndarray, list[bytes], np.ndarray]:
    """Codes, distinct byte strings and first rows of a field matrix (first-appearance order)."""
    width, rows = m.shape
    h = np.zeros(rows, dtype=np.uint64)
    for j in range(width):
        h *= _HASH_MUL[j % len(_HASH_MUL)]
        h += m[j]
    _, first, inv = np.unique(h, return_index=True, return_inverse=True)
    inv = inv.ravel()
    rep = first[inv]
    if any(not np.array_equal(m[j], m[j][rep]) for j in range(width)):
        # a hash collision (never seen in practice): compare the strings themselves
        sview = np.ascontiguousarray(m.T).view(f"S{max(width, 1)}").ravel()
        _, first, inv = np.unique(sview, return_index=True, return_inverse=True)
        inv = inv.ravel()
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    names = [m[:, r].tobytes().rstrip(b"\0") for r in first[order].tolist()]
    return rank[inv].astype(np.int32), names, first[order]


def _read_fast(path: str, header: tuple[str, ...], wanted: Mapping[str, ColKind],
               body: bytes) -> Table | None:
    a = np.frombuffer(body, dtype=np.uint8)
    delim = np.flatnonzero((a == 44) | (a == 10))
    k = len(header)
    rows = int(np.count_nonzero(a[delim] == 10))
    if len(delim) != rows * k:
        return None
    kind = a[delim].reshape(rows, k)
    if not ((kind[:, -1] == 10).all() and (kind[:, :-1] == 44).all()):
        return None
    ends = delim.reshape(rows, k)
    flat_starts = np.empty_like(delim)
    flat_starts[0] = 0
    flat_starts[1:] = delim[:-1] + 1
    starts = flat_starts.reshape(rows, k)
    # zero padding so that _field_matrix can read ``width`` bytes from any field start
    padded = np.concatenate((a, np.zeros(int((ends - starts).max()) + 1, dtype=np.uint8)))
    cols: dict[str, Column] = {}
    for name, ck in wanted.items():
        j = header.index(name)
        s, e = starts[:, j], ends[:, j]
        if ck in ("float", "int"):
            parts = []
            for c0 in range(0, rows, _CHUNK):
                m, lens = _field_matrix(padded, s[c0:c0 + _CHUNK], e[c0:c0 + _CHUNK])
                v = _parse_numbers(m, lens)
                if v is None:
                    break
                parts.append(v)
            else:
                vals = np.concatenate(parts)
                cols[name] = Column(_as_int(path, name, vals, None) if ck == "int" else vals)
                continue
            cols[name] = _convert_slow(path, name, ck, _strings(body, s, e), None)
        elif ck == "cat":
            m, lens = _field_matrix(padded, s, e)
            edge = np.concatenate((m[0], m[np.maximum(lens - 1, 0), np.arange(rows)])) \
                if m.shape[0] else np.zeros(0, dtype=np.uint8)
            if ((edge == 32) | (edge == 9)).any():  # surrounding blanks: the slow path strips
                cols[name] = _convert_slow(path, name, ck, _strings(body, s, e), None)
                continue
            codes, names, first = _categorical(m)
            cols[name] = Column(codes, tuple(x.decode("utf-8", errors="replace")
                                             for x in names),
                                tuple(int(x) for x in first))
        else:
            cols[name] = Column(np.array(_strings(body, s, e), dtype=object))
    return Table(path, header, cols, rows)


def _strings(body: bytes, s: np.ndarray, e: np.ndarray) -> list[str]:
    return [body[i:j].decode("utf-8", errors="replace") for i, j in
            zip(s.tolist(), e.tolist(), strict=True)]


def _as_int(path: str, name: str, vals: np.ndarray, line: np.ndarray | None) -> np.ndarray:
    bad = np.flatnonzero(vals != np.round(vals))
    if len(bad):
        i = int(bad[0])
        ln = int(line[i]) if line is not None else i + 2
        raise TraceFormatError(path, ln, f"column '{name}': {vals[i]!r} is not an integer")
    return vals.astype(np.int64)


def _convert_slow(path: str, name: str, kind: ColKind, values: list[str],
                  line: np.ndarray | None) -> Column:
    """Convert one column of strings value by value, naming the first bad line."""
    def ln(i: int) -> int:
        return int(line[i]) if line is not None else i + 2

    if kind in ("float", "int"):
        out = np.empty(len(values), dtype=np.float64)
        for i, v in enumerate(values):
            try:
                out[i] = float(v)
            except ValueError:
                shown = v.strip() or "an empty value"
                raise TraceFormatError(
                    path, ln(i), f"column '{name}': cannot parse {shown!r} as a number"
                    if v.strip() else f"column '{name}': empty value") from None
        return Column(_as_int(path, name, out, line) if kind == "int" else out)
    if kind == "cat":
        index: dict[str, int] = {}
        first: list[int] = []
        codes = np.empty(len(values), dtype=np.int32)
        for i, v in enumerate(values):
            v = v.strip()
            c = index.get(v)
            if c is None:
                c = index[v] = len(index)
                first.append(i)
            codes[i] = c
        return Column(codes, tuple(index), tuple(first))
    return Column(np.array([v.strip() for v in values], dtype=object))


def _read_slow(path: str, header: tuple[str, ...], wanted: Mapping[str, ColKind],
               body: bytes) -> Table:
    k = len(header)
    pos = {name: header.index(name) for name in wanted}
    raw: dict[str, list[str]] = {name: [] for name in wanted}
    lines: list[int] = []
    text = body.decode("utf-8", errors="replace")
    for lineno, row in enumerate(text.split("\n"), start=2):
        if not row.strip():
            continue  # blank lines are not rows
        parts = row.split(",")
        if len(parts) != k:
            raise TraceFormatError(path, lineno, f"expected {k} fields ({','.join(header)}), "
                                                 f"found {len(parts)}")
        for name, j in pos.items():
            raw[name].append(parts[j])
        lines.append(lineno)
    line = np.asarray(lines, dtype=np.int64)
    cols = {name: _convert_slow(path, name, ck, raw[name], line) for name, ck in wanted.items()}
    return Table(path, header, cols, len(lines), line)
