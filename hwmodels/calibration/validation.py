"""Validation: each planned target's prediction against its published value, and statistics.

:func:`validate` gives one :class:`Result` per target (a ``validation.csv`` row; a skipped
row carries its reason), :func:`summarize` the median, 90th percentile and largest relative
error per group, and :func:`is_performance` picks the throughput and latency rows the
calibration goal is about.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hwmodels.calibration.plans import PERF_KINDS, Plan, plan_target
from hwmodels.calibration.prediction import (
    link_values,
    mig_table_row,
    model_row,
    predict,
    storage_values,
)
from hwmodels.calibration.targets import Bound, Target
from hwmodels.specs import DeviceSpec


@dataclass(frozen=True)
class Result:
    """One validated target (a ``validation.csv`` row).

    Attributes:
        id: Target id.
        category: Target category.
        predicted: Predicted value(s) as text (empty when skipped).
        published: Published value as text.
        rel_error: Relative error (NaN when skipped; the worst of several numbers).
        reason: Why the row was skipped (empty when predicted).
        kind: The plan kind (empty when skipped).
        device: The device name (empty when none).
        model: The target's model.
        log_ratios: ``log(predicted / published)`` per point number (for fitting).
    """

    id: str
    category: str
    predicted: str
    published: str
    rel_error: float
    reason: str = ""
    kind: str = ""
    device: str = ""
    model: str = ""
    log_ratios: tuple[float, ...] = ()

    @property
    def skipped(self) -> bool:
        return bool(self.reason)


def _fmt(values: Sequence[float]) -> str:
    return " / ".join(f"{v:.4g}" for v in values)


def evaluate(t: Target, plan: Plan | str, devices: Mapping[str, DeviceSpec]) -> Result:
    """Predict one planned target and compare it with the published value."""
    if isinstance(plan, str):
        return Result(t.id, t.category, "", t.value, math.nan, plan, model=t.model)
    dev = plan.device or ""
    if plan.kind == "mig_table":
        pred, _, err = mig_table_row(plan)
        return Result(t.id, t.category, pred, t.value, err, "", plan.kind, dev, t.model)
    if plan.kind == "model":
        pred, _, err = model_row(plan)
        reason = "" if not math.isnan(err) else f"model '{t.model}' has no profile"
        return Result(t.id, t.category, pred, t.value, err, reason, plan.kind, dev, t.model)
    try:
        if plan.kind == "link":
            values = link_values(plan)
        elif plan.kind == "storage":
            values = storage_values(plan)
        else:
            values = predict(plan, devices)
    except KeyError as exc:
        return Result(t.id, t.category, "", t.value, math.nan, f"not modelled: {exc}",
                      model=t.model)
    pub = list(plan.published)
    if len(values) != len(pub):
        return Result(t.id, t.category, _fmt(values), t.value, math.nan,
                      f"predicted {len(values)} numbers for {len(pub)} published", plan.kind,
                      dev, t.model)
    if plan.percent:
        values_c = [1.0 + v / 100.0 for v in values]
        pub = [Bound(1.0 + b.lo / 100.0, 1.0 + b.hi / 100.0) for b in pub]
    else:
        values_c = list(values)
    err = max(b.error(v) for b, v in zip(pub, values_c, strict=True))
    if plan.percent:  # fit the change itself: -1.6% vs -0.9% is a factor, not 0.7%
        logs = tuple(math.log(v / b.lo) for b, v in zip(plan.published, values, strict=True)
                     if b.point and b.lo * v > 0)
    else:
        logs = tuple(math.log(max(v, 1e-300) / b.lo)
                     for b, v in zip(pub, values_c, strict=True) if b.point and b.lo > 0)
    return Result(t.id, t.category, _fmt(values), t.value, err, "", plan.kind, dev, t.model,
                  logs)


def validate(targets: Iterable[Target], devices: Mapping[str, DeviceSpec]) -> list[Result]:
    """Predict every target that can be predicted (the others carry a reason)."""
    return [evaluate(t, plan_target(t, devices), devices) for t in targets]


@dataclass(frozen=True)
class Summary:
    """Error statistics of a group of results."""

    group: str
    n: int
    skipped: int
    median: float
    p90: float
    max: float


def summarize(results: Sequence[Result], key: Callable[[Result], str] | None = None
              ) -> list[Summary]:
    """Median, 90th percentile and largest relative error per group (default: category)."""
    key = key or (lambda r: r.category)
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(key(r), []).append(r)
    out = []
    for g in sorted(groups):
        rs = groups[g]
        errs = np.array([r.rel_error for r in rs if not r.skipped and np.isfinite(r.rel_error)])
        n_skip = sum(r.skipped for r in rs)
        if errs.size:
            out.append(Summary(g, int(errs.size), n_skip, float(np.median(errs)),
                               float(np.percentile(errs, 90)), float(errs.max())))
        else:
            out.append(Summary(g, 0, n_skip, math.nan, math.nan, math.nan))
    return out


PERFORMANCE_CATEGORIES = ("2-MIG", "3-throughput", "3-latency", "3-batch")
"""Categories whose throughput/latency rows the calibration goal is about."""


def is_performance(r: Result) -> bool:
    """A predicted throughput or latency row (the calibration goal's population)."""
    return r.kind in PERF_KINDS and not r.skipped
