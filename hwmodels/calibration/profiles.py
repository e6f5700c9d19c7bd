"""Profiles: batch latencies measured on a local device, predicted and fitted.

A profile CSV (``experiments.calibrate mode=profile`` writes one; users may fill their own
from measurements) has the columns :data:`PROFILE_COLUMNS`:

``model``
    A :data:`hwmodels.workloads.MODEL_NAMES` name, optionally ``@N`` for ``seq_len`` (BERT,
    GPT-2 prefill) or ``context_len`` (GPT-2 decode), e.g. ``bert-base@128``.
``batch``
    Samples per batch.
``share``
    Fraction of the device the measured model may use (CPU: threads / cores; GPU: MPS
    active-thread fraction, 1 = whole device).
``latency_ms``
    Measured batch latency (the fastest of several timed runs: on a shared machine the
    others are disturbed by unrelated load; a co-runner slows every run).
``corunner_model``, ``corunner_batch``
    What ran at the same time in another process (empty when alone). The co-runner used the
    remaining ``1 - share`` of the device, or all of it when ``share`` is 1 (both then
    oversubscribe and the OS or driver time-slices them).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwmodels.calibration.params import clip, default_value, set_param
from hwmodels.interference import InterferenceModel
from hwmodels.latency import LatencyModel
from hwmodels.partitions import (
    Partition,
)
from hwmodels.specs import DeviceSpec
from hwmodels.workloads import (
    WorkloadProfile,
    build_profile,
)

PROFILE_COLUMNS = ("model", "batch", "share", "latency_ms", "corunner_model", "corunner_batch")
"""Columns of a profile CSV (see the module docstring)."""


@dataclass(frozen=True)
class ProfileRow:
    """One measurement of a profile CSV (see the module docstring)."""

    model: str
    batch: int
    share: float
    latency_ms: float
    corunner_model: str = ""
    corunner_batch: int = 0
    line: int = 0

    @property
    def colocated(self) -> bool:
        return bool(self.corunner_model)


def parse_model(spec: str) -> WorkloadProfile:
    """A profile from ``name`` or ``name@N`` (``seq_len``/``context_len``; see the module
    docstring).

    Raises:
        ValueError: unknown model or bad length.
    """
    name, _, n = spec.partition("@")
    if not n:
        return build_profile(name)
    try:
        length = int(n)
    except ValueError:
        raise ValueError(f"model '{spec}': the part after '@' must be an integer") from None
    if name.endswith("-decode"):
        return build_profile(name, context_len=length)
    return build_profile(name, seq_len=length)


def read_profile(path: str | Path) -> list[ProfileRow]:
    """Rows of a profile CSV.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column or a malformed row, naming the file and line.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{path}: empty file; expected a header {','.join(PROFILE_COLUMNS)}")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in PROFILE_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path} line 1: missing column(s) {', '.join(missing)}")
    out = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise ValueError(f"{path} line {lineno}: expected {len(header)} fields, got {len(row)}")
        rec = {h: c.strip() for h, c in zip(header, row, strict=True)}
        try:
            item = ProfileRow(
                rec["model"], int(rec["batch"]), float(rec["share"]), float(rec["latency_ms"]),
                rec["corunner_model"], int(rec["corunner_batch"] or 0), lineno)
            parse_model(item.model)
            if item.corunner_model:
                parse_model(item.corunner_model)
        except ValueError as exc:
            raise ValueError(f"{path} line {lineno}: {exc}") from None
        if item.batch < 1 or not 0 < item.share <= 1 or not item.latency_ms > 0:
            raise ValueError(f"{path} line {lineno}: need batch >= 1, 0 < share <= 1, "
                             "latency_ms > 0")
        if item.corunner_model and item.corunner_batch < 1:
            raise ValueError(f"{path} line {lineno}: corunner_batch must be >= 1")
        out.append(item)
    if not out:
        raise ValueError(f"{path}: no measurements")
    return out


def write_profile(path: str | Path, rows: Iterable[ProfileRow]) -> str:
    """The CSV text of ``rows`` (also written to ``path`` unless it is empty)."""
    lines = [",".join(PROFILE_COLUMNS)]
    for r in rows:
        lines.append(f"{r.model},{r.batch},{r.share:g},{r.latency_ms:.4f},{r.corunner_model},"
                     f"{r.corunner_batch if r.corunner_model else ''}")
    text = "\n".join(lines) + "\n"
    if str(path):
        Path(path).write_text(text, encoding="utf-8")
    return text


def share_partitions(device: DeviceSpec, share: float, colocated: bool
                     ) -> tuple[Partition, Partition]:
    """The measured job's partition and its co-runner's for a profile row."""
    total = device.sm_count
    mine = max(1, round(share * total))
    other = total - mine if mine < total else total
    mode = "mps" if colocated or mine < total else "exclusive"
    bw = 1.0
    a = Partition(f"share-{mine}", mine, bw, device.mem_gb * mine / total, mode != "mps", mode)
    b = Partition(f"share-{other}", other, bw, device.mem_gb * other / total, False, "mps")
    return a, b


def predict_profile(rows: Sequence[ProfileRow], device: DeviceSpec,
                    precision: str = "fp32") -> np.ndarray:
    """Predicted ``latency_ms`` of every profile row on ``device``."""
    model = LatencyModel(device, precision)
    intf = InterferenceModel(device, precision) if any(r.colocated for r in rows) else None
    out = np.empty(len(rows))
    for i, r in enumerate(rows):
        prof = parse_model(r.model)
        mine, other = share_partitions(device, r.share, r.colocated)
        t = float(model.latency_s(prof, r.batch, mine))
        if r.colocated and intf is not None:
            co = parse_model(r.corunner_model)
            t *= float(intf.slowdowns([mine, other], [(prof, r.batch),
                                                      (co, r.corunner_batch)])[0])
        out[i] = t * 1e3
    return out


PROFILE_PARAMS: dict[str, tuple[float, float]] = {
    "sm_contention": (1e-3, 10.0),
    "eff_compute_max": (0.02, 1.0),
    "eff_compute_half_mflop": (0.001, 500.0),
    "eff_memory": (0.05, 1.0),
    "launch_us": (0.1, 2000.0),
    "batch_overhead_us": (1.0, 1e5),
}
"""Device parameters fitted to solo profile rows. On a CPU running eager PyTorch,
``eff_memory`` also absorbs the traffic of the unfused operators (batch norm, activations and
adds run as separate passes over memory; the profiles count fused engines), so it comes out
far below the fraction of the bandwidth a single stream reaches."""

PROFILE_INTERFERENCE: dict[str, tuple[float, float]] = {
    "interference.mps_sm": (0.05, 3.0),
    "interference.mps_bw": (1e-3, 10.0),
    "interference.mps_cache": (1e-3, 3.0),
}
"""Interference parameters fitted to co-located profile rows."""


@dataclass
class ProfileFit:
    """What :func:`fit_profile` found: the fitted device, parameters, and per-row results."""

    device: DeviceSpec
    params: dict[str, float]
    train: np.ndarray
    predicted_ms: np.ndarray
    measured_ms: np.ndarray
    cost: float
    success: bool


def fit_profile(rows: Sequence[ProfileRow], device: DeviceSpec, train: np.ndarray,
                precision: str = "fp32", *, prior_weight: float = 0.02) -> ProfileFit:
    """Fit the device's efficiencies (solo rows) and interference (co-located rows).

    Args:
        rows: Profile measurements.
        device: The device to fit (the fitted parameters start from
            :func:`~hwmodels.calibration.params.default_value`).
        train: Boolean mask of the rows to fit on; the others are held out.
        precision: Precision of the measurements.
        prior_weight: Weight of the log distance from the starting values.

    Raises:
        ValueError: no solo row in the training mask.
    """
    from scipy.optimize import least_squares

    train = np.asarray(train, dtype=bool)
    solo = [r for r, m in zip(rows, train, strict=True) if m and not r.colocated]
    if not solo:
        raise ValueError("profile fit needs at least one training row measured alone")
    names = list(PROFILE_PARAMS)
    if any(r.colocated for r, m in zip(rows, train, strict=True) if m):
        names += list(PROFILE_INTERFERENCE)
    bounds = {**PROFILE_PARAMS, **PROFILE_INTERFERENCE}
    x0 = np.log([clip(default_value(n) or 0.1, *bounds[n]) for n in names])
    lo = np.log([bounds[n][0] for n in names])
    hi = np.log([bounds[n][1] for n in names])
    fit_rows = [r for r, m in zip(rows, train, strict=True) if m]
    measured = np.array([r.latency_ms for r in fit_rows])

    def with_params(z: np.ndarray) -> DeviceSpec:
        d = device
        for n, v in zip(names, np.exp(z), strict=True):
            d = set_param(d, n, float(v))
        return d

    def residuals(z: np.ndarray) -> np.ndarray:
        pred = predict_profile(fit_rows, with_params(z), precision)
        return np.concatenate([np.log(pred / measured), prior_weight * (z - x0)])

    sol = least_squares(residuals, x0, bounds=(lo, hi), method="trf", diff_step=1e-3,
                        max_nfev=300)
    fitted = with_params(sol.x)
    return ProfileFit(
        device=fitted,
        params={n: float(v) for n, v in zip(names, np.exp(sol.x), strict=True)},
        train=train,
        predicted_ms=predict_profile(rows, fitted, precision),
        measured_ms=np.array([r.latency_ms for r in rows]),
        cost=float(sol.cost),
        success=bool(sol.success),
    )
