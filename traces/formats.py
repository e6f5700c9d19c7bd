"""Trace file formats. Each parser documents its format; all raise
:class:`~traces.report.TraceFormatError` (``<file>:<line>: <problem>``) on malformed input.

A parser returns a :class:`RawTrace`: the rows in file order, validated value by value but not
yet cleaned (sorting, zero sizes, ramps and quantisation are :mod:`traces.replay`'s job).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from traces.csvfast import Column, Table, read_csv
from traces.report import TraceFormatError, check_text

#: Columns of the generic CSV format and their types.
GENERIC_COLUMNS = {"time_s": "float", "model": "cat", "size": "int", "priority": "int",
                   "sla_ms": "float", "tenant": "cat", "output_size": "int"}

AZURE_HEADER = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


@dataclass
class Categorical:
    """A string column as codes.

    Attributes:
        codes: int32 index into ``names`` per row.
        names: Distinct values, in order of first appearance.
        first_line: File line where each name first appears.
    """

    codes: np.ndarray
    names: tuple[str, ...]
    first_line: tuple[int, ...]


@dataclass
class RawTrace:
    """Rows of a trace file in file order.

    Attributes:
        path: The file.
        format: ``csv``, ``jsonl`` or ``azure``.
        time_s: Arrival times in seconds (float64).
        line: 1-based file line of each row (int64).
        model: Model names per row, if the file has them.
        tenant: Tenant names per row, if the file has them.
        size: Request size (items, or prompt tokens), if given.
        output_size: Output tokens, if given.
        priority: Priority class, if given.
        sla_ms: Absolute SLA in ms, if given.
        ignored_columns: Header columns the format does not use.
        epoch_s: Absolute time (s since the Unix epoch) of ``time_s == 0``, for formats with
            calendar timestamps; 0 otherwise.
    """

    path: str
    format: str
    time_s: np.ndarray
    line: np.ndarray
    model: Categorical | None = None
    tenant: Categorical | None = None
    size: np.ndarray | None = None
    output_size: np.ndarray | None = None
    priority: np.ndarray | None = None
    sla_ms: np.ndarray | None = None
    ignored_columns: tuple[str, ...] = ()
    epoch_s: float = 0.0

    def __len__(self) -> int:
        return len(self.time_s)

    def validate(self) -> None:
        """Check value ranges, naming the first offending line.

        Raises:
            TraceFormatError: non-finite or negative time, negative size, priority outside
                int8, non-positive SLA.
        """
        def first(mask: np.ndarray) -> int | None:
            idx = np.flatnonzero(mask)
            return int(idx[0]) if len(idx) else None

        i = first(~np.isfinite(self.time_s))
        if i is not None:
            raise TraceFormatError(self.path, int(self.line[i]),
                                   f"time {self.time_s[i]!r} is not a finite number")
        i = first(self.time_s < 0)
        if i is not None:
            raise TraceFormatError(self.path, int(self.line[i]),
                                   f"negative time {self.time_s[i]!r}")
        for name in ("size", "output_size"):
            col = getattr(self, name)
            if col is not None:
                i = first(col < 0)
                if i is not None:
                    raise TraceFormatError(self.path, int(self.line[i]),
                                           f"negative {name} {int(col[i])}")
                i = first(col > np.iinfo(np.int32).max)
                if i is not None:
                    raise TraceFormatError(self.path, int(self.line[i]),
                                           f"{name} {int(col[i])} is too large")
        if self.priority is not None:
            i = first((self.priority < -128) | (self.priority > 127))
            if i is not None:
                raise TraceFormatError(self.path, int(self.line[i]),
                                       f"priority {int(self.priority[i])} outside -128..127")
        if self.sla_ms is not None:
            i = first(~(self.sla_ms > 0) | ~np.isfinite(self.sla_ms))
            if i is not None:
                raise TraceFormatError(self.path, int(self.line[i]),
                                       f"sla_ms {self.sla_ms[i]!r} must be a number > 0")


def _lines(table: Table) -> np.ndarray:
    if table.line is not None:
        return table.line
    return np.arange(2, table.n_rows + 2, dtype=np.int64)


def _cat(col: Column | None, line: np.ndarray) -> Categorical | None:
    if col is None:
        return None
    return Categorical(col.values.astype(np.int32), col.names,
                       tuple(int(line[r]) for r in col.first_row))


def read_generic_csv(path: str | os.PathLike[str]) -> RawTrace:
    """Read the generic CSV trace format.

    Format (``.csv``)::

        time_s,model,size,priority,sla_ms,tenant
        0.000125,resnet50,8,1,50,acme
        0.004031,bert-base,1,0,100,globex

    - Line 1 is a header naming the columns, in any order. ``time_s`` (arrival time in
      seconds, >= 0) and ``model`` (a name in the workload mix) are required; ``size``
      (items or prompt tokens, integer >= 0), ``priority`` (integer, -128..127), ``sla_ms``
      (absolute SLA, > 0), ``tenant`` (any name) and ``output_size`` (generated tokens) are
      optional. Other columns are ignored (and reported).
    - Plain comma-separated values: no quoting, no comments; blank lines are skipped.
    - Rows need not be sorted (the replay sorts them and reports how many were out of order).

    Raises:
        TraceFormatError: missing column, wrong number of fields, unparsable number,
            negative time, invalid value.
    """
    p = str(path)
    table = read_csv(p, GENERIC_COLUMNS, required=("time_s", "model"))  # type: ignore[arg-type]
    line = _lines(table)
    c = table.columns
    raw = RawTrace(
        path=p, format="csv", time_s=c["time_s"].values, line=line,
        model=_cat(c.get("model"), line), tenant=_cat(c.get("tenant"), line),
        size=c["size"].values if "size" in c else None,
        output_size=c["output_size"].values if "output_size" in c else None,
        priority=c["priority"].values if "priority" in c else None,
        sla_ms=c["sla_ms"].values if "sla_ms" in c else None,
        ignored_columns=tuple(h for h in table.header if h not in GENERIC_COLUMNS))
    raw.validate()
    return raw


#: JSON Lines keys: canonical name -> accepted spellings (first found wins).
JSONL_KEYS: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp",),
    "size": ("input_length", "input_tokens", "prompt_tokens", "size"),
    "output_size": ("output_length", "output_tokens", "generated_tokens"),
    "model": ("model",),
    "tenant": ("tenant",),
    "priority": ("priority",),
    "sla_ms": ("sla_ms",),
}


_HASH_IDS = re.compile(r',\s*"hash_ids"\s*:\s*\[[^\]]*\]|"hash_ids"\s*:\s*\[[^\]]*\]\s*,?')


def read_jsonl(path: str | os.PathLike[str]) -> RawTrace:
    """Read a JSON Lines trace (Mooncake-style).

    Format (``.jsonl``), one JSON object per line::

        {"timestamp": 0, "input_length": 6955, "output_length": 52}
        {"timestamp": 1020, "input_length": 712, "output_length": 127, "model": "llama-8b"}

    - ``timestamp``: arrival time in **milliseconds** (number >= 0), required.
    - ``input_length`` (or ``input_tokens``/``prompt_tokens``/``size``): prompt tokens,
      becomes the request ``size``; ``output_length`` (or ``output_tokens``/
      ``generated_tokens``): generated tokens, becomes ``output_size``.
    - Optional ``model``, ``tenant`` (strings), ``priority`` (int), ``sla_ms`` (number). A key
      must be present on every line or on none. Other keys are ignored (``hash_ids`` lists
      are removed before parsing, for speed).
    - Blank lines are skipped.

    Raises:
        TraceFormatError: invalid JSON, not an object, missing or non-numeric ``timestamp``,
            a key present on some lines only, invalid values.
    """
    p = str(path)
    with open(p, "rb") as f:
        data = f.read()
    check_text(p, data)
    text = data.decode("utf-8", errors="replace")
    if '"hash_ids"' in text:  # Mooncake's block-hash lists are unused and costly to parse
        text = _HASH_IDS.sub("", text)
    objs = text.splitlines()
    lines = list(range(1, len(objs) + 1))
    if not all(map(str.strip, objs)):  # blank lines: keep the others' line numbers
        lines = [i for i, s in zip(lines, objs, strict=True) if s.strip()]
        objs = [s for s in objs if s.strip()]
    if not objs:
        raise TraceFormatError(p, None, "empty file: no JSON objects")
    try:
        records = json.loads("[" + ",".join(objs) + "]")
        if len(records) != len(objs):
            raise ValueError("a line holds more than one value")
    except ValueError:
        records = []
        for ln, s in zip(lines, objs, strict=True):
            try:
                records.append(json.loads(s))
            except json.JSONDecodeError as exc:
                raise TraceFormatError(p, ln, f"invalid JSON ({exc.msg})") from None
    line = np.asarray(lines, dtype=np.int64)
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise TraceFormatError(p, lines[i], "expected a JSON object")
    cols: dict[str, list[object]] = {}
    first = records[0]
    for canon, spellings in JSONL_KEYS.items():
        key = next((k for k in spellings if k in first), None)
        if key is None:
            if canon == "timestamp":
                raise TraceFormatError(p, lines[0], "missing key 'timestamp'")
            if not any(f'"{k}"' in text for k in spellings):
                continue
            for i, r in enumerate(records):
                if any(k in r for k in spellings):
                    raise TraceFormatError(p, lines[i], f"key '{canon}' appears on some lines "
                                                        "only")
            continue
        try:
            cols[canon] = [r[key] for r in records]
        except KeyError:
            i = next(i for i, r in enumerate(records) if key not in r)
            raise TraceFormatError(p, lines[i], f"missing key '{key}'") from None

    def numeric(canon: str, integer: bool) -> np.ndarray:
        vals = cols[canon]
        try:
            arr = np.array(vals)
        except (ValueError, OverflowError):
            arr = np.array(vals, dtype=object)
        if arr.ndim != 1 or arr.dtype.kind not in "iuf":
            for i, v in enumerate(vals):
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise TraceFormatError(p, lines[i], f"'{canon}': {v!r} is not a number")
        arr = arr.astype(np.float64)
        if integer:
            bad = np.flatnonzero(arr != np.round(arr))
            if len(bad):
                i = int(bad[0])
                raise TraceFormatError(p, lines[i], f"'{canon}': {vals[i]!r} is not an integer")
            return arr.astype(np.int64)
        return arr

    def categorical(canon: str) -> Categorical | None:
        if canon not in cols:
            return None
        index: dict[str, int] = {}
        first_line: list[int] = []
        codes = np.empty(len(records), dtype=np.int32)
        for i, v in enumerate(cols[canon]):
            if not isinstance(v, str):
                raise TraceFormatError(p, lines[i], f"'{canon}': {v!r} is not a string")
            c = index.get(v)
            if c is None:
                c = index[v] = len(index)
                first_line.append(lines[i])
            codes[i] = c
        return Categorical(codes, tuple(index), tuple(first_line))

    raw = RawTrace(
        path=p, format="jsonl", time_s=numeric("timestamp", False) / 1000.0, line=line,
        model=categorical("model"), tenant=categorical("tenant"),
        size=numeric("size", True) if "size" in cols else None,
        output_size=numeric("output_size", True) if "output_size" in cols else None,
        priority=numeric("priority", True) if "priority" in cols else None,
        sla_ms=numeric("sla_ms", False) if "sla_ms" in cols else None)
    raw.validate()
    return raw


def read_azure_llm(path: str | os.PathLike[str]) -> RawTrace:
    """Read an Azure LLM inference trace 2023 file (Splitwise, ISCA 2024).

    Format (``AzureLLMInferenceTrace_{code,conv}.csv`` from Azure/AzurePublicDataset)::

        TIMESTAMP,ContextTokens,GeneratedTokens
        2023-11-16 18:17:03.9799600,4808,10

    - ``TIMESTAMP``: invocation time, ``YYYY-MM-DD HH:MM:SS.fffffff`` (7 fractional digits,
      100 ns resolution). Converted to seconds since the first row, at ns precision.
    - ``ContextTokens``: prompt tokens -> ``size``; ``GeneratedTokens`` -> ``output_size``.
    - One service per file (``code``: coding assistant, ``conv``: conversation); the replay
      labels requests with the mix's models (or, for both files together, with the service
      as tenant).

    Raises:
        TraceFormatError: wrong header, unparsable timestamp or count.
    """
    p = str(path)
    table = read_csv(p, {"TIMESTAMP": "str", "ContextTokens": "int", "GeneratedTokens": "int"},
                     required=AZURE_HEADER)
    line = _lines(table)
    stamps = table.columns["TIMESTAMP"].values
    try:
        t = np.array(stamps.tolist(), dtype="datetime64[ns]")
    except ValueError:
        for i, s in enumerate(stamps.tolist()):
            try:
                np.datetime64(s, "ns")
            except ValueError:
                raise TraceFormatError(p, int(line[i]), f"cannot parse TIMESTAMP {s!r}") \
                    from None
        raise
    if len(t) and np.isnat(t).any():
        i = int(np.flatnonzero(np.isnat(t))[0])
        raise TraceFormatError(p, int(line[i]), f"cannot parse TIMESTAMP {stamps[i]!r}")
    origin = t.min() if len(t) else np.datetime64(0, "ns")
    secs = (t - origin).astype(np.int64) / 1e9
    raw = RawTrace(path=p, format="azure", time_s=secs, line=line,
                   epoch_s=float(origin.astype("datetime64[ns]").astype(np.int64)) / 1e9,
                   size=table.columns["ContextTokens"].values,
                   output_size=table.columns["GeneratedTokens"].values)
    raw.validate()
    return raw


def sniff_format(path: str | os.PathLike[str]) -> str:
    """Guess a file's format from its extension and header: ``jsonl``, ``azure``,
    ``servegen`` (a ServeGen ``*_rates.csv``) or ``csv``."""
    p = Path(path)
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        return "jsonl"
    with open(p, "rb") as f:
        head = f.readline().decode("utf-8", errors="replace").strip().lstrip("\ufeff")
    if head.startswith("{"):
        return "jsonl"
    cols = tuple(h.strip() for h in head.split(","))
    if cols[:3] == AZURE_HEADER:
        return "azure"
    if {"client_id", "window_start_s", "rate_rps"} <= set(cols):
        return "servegen"
    return "csv"


def read_any(path: str | os.PathLike[str]) -> RawTrace:
    """Read a row-per-request trace in whichever format :func:`sniff_format` finds."""
    fmt = sniff_format(path)
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "azure":
        return read_azure_llm(path)
    if fmt == "servegen":
        raise TraceFormatError(str(path), None, "a ServeGen rates file is not a row-per-request "
                                                "trace; use ServeGenReplay")
    return read_generic_csv(path)
