"""Published targets: reading a targets CSV and parsing its published values.

A targets CSV has the columns :data:`TARGET_COLUMNS` (``calibration/published_targets.csv``
in the shared folder is the reference). :func:`read_targets` reads its rows as
:class:`Target` records and :func:`parse_published` a published value as :class:`Bound`
intervals; what each row means is :func:`hwmodels.calibration.plans.plan_target`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

TARGET_COLUMNS = ("id", "category", "quantity", "hardware", "model", "batch", "value", "unit",
                  "source", "note", "confidence")
"""Columns a targets CSV must have."""


@dataclass(frozen=True)
class Target:
    """One row of a targets CSV (all fields as text) and its line number."""

    id: str
    category: str
    quantity: str
    hardware: str
    model: str
    batch: str
    value: str
    unit: str
    source: str
    note: str
    confidence: str
    line: int = 0


def read_targets(path: str | Path) -> list[Target]:
    """Rows of a targets CSV.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column, a malformed row or a duplicate id, naming the file and
            line.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{path}: empty file; expected a header with {', '.join(TARGET_COLUMNS)}")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in TARGET_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path} line 1: missing column(s) {', '.join(missing)}")
    out: list[Target] = []
    seen: set[str] = set()
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise ValueError(f"{path} line {lineno}: expected {len(header)} fields, got {len(row)}")
        rec = {h: c.strip() for h, c in zip(header, row, strict=True)}
        if not rec["id"]:
            raise ValueError(f"{path} line {lineno}: empty id")
        if rec["id"] in seen:
            raise ValueError(f"{path} line {lineno}: duplicate id {rec['id']}")
        if not rec["value"]:
            raise ValueError(f"{path} line {lineno}: empty value for {rec['id']}")
        seen.add(rec["id"])
        out.append(Target(**{c: rec[c] for c in TARGET_COLUMNS}, line=lineno))
    return out


@dataclass(frozen=True)
class Bound:
    """A published number: a point (``lo == hi``) or a range."""

    lo: float
    hi: float

    @property
    def point(self) -> bool:
        return self.lo == self.hi

    def error(self, predicted: float) -> float:
        """Relative error of ``predicted`` (0 inside a range, else to the nearest end)."""
        if self.lo <= predicted <= self.hi:
            return 0.0
        ref = self.lo if predicted < self.lo else self.hi
        return abs(predicted - ref) / abs(ref) if ref else abs(predicted - ref)


_NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"

_SUFFIX = {"": 1.0, "K": 1e3, "k": 1e3, "M": 1e6, "G": 1e9}


def parse_number(text: str) -> float | None:
    """The number ``text`` is (an optional k/K/M/G suffix), or None when it is not one."""
    m = re.fullmatch(rf"\s*({_NUM})\s*([kKMG]?)\s*", text)
    return float(m.group(1)) * _SUFFIX[m.group(2)] if m else None


def parse_published(text: str) -> list[Bound] | None:
    """``"469.1 / 2.128"`` -> two points; ``"4-5"`` a range; ``"<0.1"`` ``[0, 0.1]``; ``"~2"``
    a point; None if a part is not a number."""
    out = []
    text = re.sub(r"\(.*?\)", "", text)  # drop remarks in parentheses
    for part in text.split("/"):
        part = part.strip().lstrip("~").strip()
        if part.startswith("<"):
            v = parse_number(part[1:])
            if v is None:
                return None
            out.append(Bound(0.0, v))
            continue
        m = re.fullmatch(rf"({_NUM})\s*-\s*({_NUM})", part)
        if m and not part.startswith("-"):
            out.append(Bound(float(m.group(1)), float(m.group(2))))
            continue
        v = parse_number(part)
        if v is None:
            return None
        out.append(Bound(v, v))
    return out


def parse_numbers(text: str) -> list[float]:
    """Every number in ``text``, in order (with their k/K/M/G suffixes applied)."""
    return [float(m.group(1)) * _SUFFIX[m.group(2)]
            for m in re.finditer(rf"({_NUM})([kKMG]?)\b", text)]
