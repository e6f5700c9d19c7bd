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

Two optional columns (after those) say how the latencies were measured; empty cells, or no
column, mean the defaults of the check (``experiments.calibrate``: fp32 on a CPU, fp16 on a
GPU, engine stack):

``stack``
    The serving stack (a key of :data:`~hwmodels.calibration.prediction.STACK_PARAMS`), e.g.
    ``eager`` for PyTorch eager.
``precision``
    The numeric precision (``fp32``, ``tf32``, ``fp16``, ...).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwmodels.calibration.params import STACK_BOUNDS, clip, default_value, set_param
from hwmodels.calibration.prediction import STACK_PARAMS, stack_latency
from hwmodels.interference import InterferenceModel
from hwmodels.latency import LatencyModel
from hwmodels.partitions import (
    Partition,
)
from hwmodels.specs import DeviceSpec
from hwmodels.workloads import (
    BYTES_PER_ELEMENT,
    WorkloadProfile,
    build_profile,
)

PROFILE_COLUMNS = ("model", "batch", "share", "latency_ms", "corunner_model", "corunner_batch")
"""Columns of a profile CSV (see the module docstring)."""

PROFILE_OPTIONAL_COLUMNS = ("stack", "precision")
"""Optional columns of a profile CSV (see the module docstring)."""


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
    stack: str = ""
    precision: str = ""

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
                rec["corunner_model"], int(rec["corunner_batch"] or 0), lineno,
                rec.get("stack", ""), rec.get("precision", ""))
            if item.stack and item.stack not in STACK_PARAMS:
                raise ValueError(f"unknown stack {item.stack!r}; known: "
                                 f"{', '.join(STACK_PARAMS)}")
            if item.precision and item.precision not in BYTES_PER_ELEMENT:
                raise ValueError(f"unknown precision {item.precision!r}; known: "
                                 f"{', '.join(BYTES_PER_ELEMENT)}")
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
    """The CSV text of ``rows`` (also written to ``path`` unless it is empty); the optional
    columns only when some row sets them."""
    rows = list(rows)
    extra = any(r.stack or r.precision for r in rows)
    lines = [",".join(PROFILE_COLUMNS + (PROFILE_OPTIONAL_COLUMNS if extra else ()))]
    for r in rows:
        lines.append(f"{r.model},{r.batch},{r.share:g},{r.latency_ms:.4f},{r.corunner_model},"
                     f"{r.corunner_batch if r.corunner_model else ''}"
                     + (f",{r.stack},{r.precision}" if extra else ""))
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


def _row_models(device: DeviceSpec, row: ProfileRow, precision: str,
                cache: dict[tuple[str, str], tuple[LatencyModel, InterferenceModel]]
                ) -> tuple[LatencyModel, InterferenceModel]:
    """The latency and interference models of ``row``'s stack and precision (the engine
    stack and ``precision`` where the row names none), made once per pair in ``cache``."""
    key = (row.stack or "engine", row.precision or precision)
    pair = cache.get(key)
    if pair is None:
        lat = stack_latency(device, key[1], key[0])
        pair = cache[key] = (lat, InterferenceModel(device, key[1], latency=lat))
    return pair


def predict_profile(rows: Sequence[ProfileRow], device: DeviceSpec,
                    precision: str = "fp32") -> np.ndarray:
    """Predicted ``latency_ms`` of every profile row on ``device`` (``precision`` and the
    engine stack where a row does not name its own; a co-runner runs like the row)."""
    models: dict[tuple[str, str], tuple[LatencyModel, InterferenceModel]] = {}
    out = np.empty(len(rows))
    for i, r in enumerate(rows):
        model, intf = _row_models(device, r, precision, models)
        prof = parse_model(r.model)
        mine, other = share_partitions(device, r.share, r.colocated)
        t = float(model.latency_s(prof, r.batch, mine))
        if r.colocated:
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
"""Device parameters fitted to solo profile rows (on a GPU without ``sm_contention`` but with
:data:`GPU_PROFILE_PARAMS`, and ``stacks.<stack>.host_us`` for a stack with host dispatch: the
other stack parameters are then set neutral, so that the device's own parameters describe that
stack). On a CPU running eager PyTorch, ``eff_memory`` also absorbs the traffic of the unfused
operators (batch norm, activations and adds run as separate passes over memory; the CPU
profiles count fused engines), so it comes out far below the fraction of the bandwidth a single
stream reaches."""

PROFILE_INTERFERENCE: dict[str, tuple[float, float]] = {
    "interference.mps_sm": (0.05, 3.0),
    "interference.mps_bw": (1e-3, 10.0),
    "interference.mps_cache": (1e-3, 3.0),
}
"""Interference parameters fitted to co-located profile rows."""

GPU_PROFILE_PARAMS: dict[str, tuple[float, float]] = {
    "bw_sm_fraction": (0.05, 1.0),
    "eff_vector_half_mflop": (1e-4, 500.0),
}
"""Further device parameters fitted to a GPU's solo rows."""

GPU_PROFILE_INTERFERENCE: dict[str, tuple[float, float]] = {
    "interference.mps_bw": (1e-3, 10.0),
    "interference.mps_cache": (1e-3, 3.0),
    "interference.mps_host": (1e-3, 3.0),
    "interference.mps_overlap": (1e-3, 3.0),
}
"""Interference parameters fitted to a GPU's co-located rows. ``mps_sm`` (oversubscribed
shares) is not among them: MPS measurements give the co-runner the rest of the SMs."""

NEUTRAL_STACK: dict[str, float] = {"eff_scale": 1.0, "batch_us": 0.0, "launch_us": 0.0}
"""Stack parameters set (not fitted) when a profile fit fits a stack's ``host_us``."""


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


PROFILE_START: dict[str, float] = {
    "bw_sm_fraction": 0.5, "eff_vector_half_mflop": 0.1, "stacks.eager.host_us": 20.0,
    **{f"interference.{k}": 0.1 for k in ("mps_bw", "mps_cache", "mps_host", "mps_overlap")},
}
"""Starting values of the profile fit where the field's default is off (0) or is itself a fit
(the GPU interference defaults), so that a fit does not start from an earlier one's result."""


def _start(name: str, lo: float, hi: float) -> float:
    return clip(PROFILE_START.get(name) or default_value(name) or 0.1, lo, hi)


def _solve(names: Sequence[str], bounds: Mapping[str, tuple[float, float]],
           residuals: Callable[[np.ndarray], np.ndarray], prior_weight: float,
           max_nfev: int = 300) -> tuple[np.ndarray, float, bool]:
    """Least squares over log parameters from their starting values (with a log prior)."""
    from scipy.optimize import least_squares

    x0 = np.log([_start(n, *bounds[n]) for n in names])
    lo = np.log([bounds[n][0] for n in names])
    hi = np.log([bounds[n][1] for n in names])
    sol = least_squares(lambda z: np.concatenate([residuals(z), prior_weight * (z - x0)]),
                        x0, bounds=(lo, hi), method="trf", diff_step=1e-3, max_nfev=max_nfev)
    return sol.x, float(sol.cost), bool(sol.success)


def _with(device: DeviceSpec, names: Sequence[str], z: np.ndarray) -> DeviceSpec:
    for n, v in zip(names, np.exp(z), strict=True):
        device = set_param(device, n, float(v))
    return device


def _solo_key(r: ProfileRow) -> tuple[str, int, float, str, str]:
    return (r.model, r.batch, round(r.share, 6), r.stack, r.precision)


def measured_slowdowns(rows: Sequence[ProfileRow]) -> np.ndarray:
    """Per row, its co-located latency over the measured solo latency of the same model, batch,
    share, stack and precision (NaN: solo rows, and co-located rows without that solo row)."""
    solo = {_solo_key(r): r.latency_ms for r in rows if not r.colocated}
    out = np.full(len(rows), np.nan)
    for i, r in enumerate(rows):
        base = solo.get(_solo_key(r)) if r.colocated else None
        if base is not None:
            out[i] = r.latency_ms / base
    return out


def predicted_slowdowns(rows: Sequence[ProfileRow], device: DeviceSpec,
                        precision: str = "fp32") -> np.ndarray:
    """Per row, the predicted co-located over the predicted solo latency (1 for solo rows)."""
    co = predict_profile(rows, device, precision)
    solo = predict_profile([dataclasses.replace(r, corunner_model="", corunner_batch=0)
                            if r.colocated else r for r in rows], device, precision)
    # A solo row of share < 1 runs on an MPS share, as its co-located twin.
    return co / solo


def fit_profile(rows: Sequence[ProfileRow], device: DeviceSpec, train: np.ndarray,
                precision: str = "fp32", *, prior_weight: float = 0.02) -> ProfileFit:
    """Fit the device's efficiencies (solo rows) and interference (co-located rows).

    On a CPU both at once, on the log error of every training row's latency. On a GPU in two
    stages: the solo latency parameters (:data:`PROFILE_PARAMS` but ``sm_contention``,
    :data:`GPU_PROFILE_PARAMS`, a stack's ``host_us``) on the solo training rows; then, with
    those fixed, :data:`GPU_PROFILE_INTERFERENCE` on the co-located training rows, on the log
    error of the slowdown (co-located over solo latency, both measured, when the profile has
    the solo row; else of the latency).

    Args:
        rows: Profile measurements.
        device: The device to fit (the fitted parameters start from
            :func:`~hwmodels.calibration.params.default_value` or :data:`PROFILE_START`).
        train: Boolean mask of the rows to fit on; the others are held out.
        precision: Precision of rows that do not name theirs.
        prior_weight: Weight of the log distance from the starting values.

    Raises:
        ValueError: no solo row in the training mask.
    """
    train = np.asarray(train, dtype=bool)
    solo = [r for r, m in zip(rows, train, strict=True) if m and not r.colocated]
    coloc = [r for r, m in zip(rows, train, strict=True) if m and r.colocated]
    if not solo:
        raise ValueError("profile fit needs at least one training row measured alone")
    gpu = device.kind == "gpu"
    names = [n for n in PROFILE_PARAMS if not (gpu and n == "sm_contention")]
    bounds: dict[str, tuple[float, float]] = {**PROFILE_PARAMS, **GPU_PROFILE_PARAMS,
                                              **PROFILE_INTERFERENCE}
    if gpu:
        names += list(GPU_PROFILE_PARAMS)
    measured_stacks = sorted({r.stack for r in solo if r.stack})
    if any("host_us" in STACK_PARAMS[st] for st in measured_stacks):
        # The fitted device describes the measured stack; other stacks' parameters, fitted
        # with other device parameters, would not fit it.
        device = device.replace(stacks={})
    for stack in measured_stacks:
        if "host_us" in STACK_PARAMS[stack]:
            for k, v in NEUTRAL_STACK.items():
                device = set_param(device, f"stacks.{stack}.{k}", v)
            names.append(f"stacks.{stack}.host_us")
            bounds[f"stacks.{stack}.host_us"] = STACK_BOUNDS["host_us"]
    if coloc and not gpu:
        names += list(PROFILE_INTERFERENCE)
    first = solo if gpu else solo + coloc
    measured = np.array([r.latency_ms for r in first])

    def residuals(z: np.ndarray) -> np.ndarray:
        return np.log(predict_profile(first, _with(device, names, z), precision) / measured)

    z, cost, success = _solve(names, bounds, residuals, prior_weight)
    fitted = _with(device, names, z)
    params = {n: float(v) for n, v in zip(names, np.exp(z), strict=True)}
    if gpu and coloc:
        inames = list(GPU_PROFILE_INTERFERENCE)
        f_meas = measured_slowdowns(rows)[[i for i, (r, m) in enumerate(zip(rows, train,
                                                                            strict=True))
                                            if m and r.colocated]]
        target, base, jobs = _colocated_demands(coloc, fitted, precision, f_meas)

        def f_residuals(zi: np.ndarray) -> np.ndarray:
            dev = _with(fitted, inames, zi)
            out = np.empty(len(jobs))
            models: dict[str, InterferenceModel] = {}
            for k, (prec, lat, parts, demands) in enumerate(jobs):
                model = models.get(prec)
                if model is None:
                    model = models[prec] = InterferenceModel(dev, prec, latency=lat)
                out[k] = model.slowdowns_from_demands(parts, demands)[0]
            return np.log(base * out / target)

        zi, cost2, ok2 = _solve(inames, GPU_PROFILE_INTERFERENCE, f_residuals, prior_weight)
        fitted = _with(fitted, inames, zi)
        params.update({n: float(v) for n, v in zip(inames, np.exp(zi), strict=True)})
        cost, success = cost + cost2, success and ok2
    return ProfileFit(
        device=fitted,
        params=params,
        train=train,
        predicted_ms=predict_profile(rows, fitted, precision),
        measured_ms=np.array([r.latency_ms for r in rows]),
        cost=cost,
        success=success,
    )


def _colocated_demands(rows: Sequence[ProfileRow], device: DeviceSpec, precision: str,
                       f_meas: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """What the interference stage of :func:`fit_profile` needs per co-located row: the
    target (measured slowdown, else measured latency), the factor the slowdown multiplies (1,
    else the predicted solo latency) and the two jobs' solo demands on their partitions."""
    target = np.empty(len(rows))
    base = np.empty(len(rows))
    jobs: list[Any] = []
    lats: dict[tuple[str, str], tuple[LatencyModel, InterferenceModel]] = {}
    for k, r in enumerate(rows):
        lat, model = _row_models(device, r, precision, lats)
        prof, co = parse_model(r.model), parse_model(r.corunner_model)
        mine, other = share_partitions(device, r.share, True)
        demands = [model.demand(prof, r.batch, mine), model.demand(co, r.corunner_batch, other)]
        jobs.append((r.precision or precision, lat, [mine, other], demands))
        if np.isfinite(f_meas[k]):
            target[k], base[k] = f_meas[k], 1.0
        else:
            target[k] = r.latency_ms
            base[k] = float(lat.latency_s(prof, r.batch, mine)) * 1e3
    return target, base, jobs


@dataclass(frozen=True)
class ColocationStats:
    """Errors on co-located profile rows (see :func:`colocation_stats`)."""

    n: int
    latency_median: float
    latency_p90: float
    slowdown_median: float
    slowdown_p90: float
    spearman: float
    measured_mean: float
    predicted_mean: float


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties get their average rank; NaN for fewer than 2 values)."""
    from scipy.stats import rankdata

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2:
        return math.nan
    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def colocation_stats(rows: Sequence[ProfileRow], pred_ms: np.ndarray, f_pred: np.ndarray,
                     train: np.ndarray) -> dict[str, ColocationStats]:
    """For the co-located rows, fitted and held out apart (keys ``"fitted"``, ``"held out"``):
    median and p90 relative error of the co-located latency and of the slowdown, where the
    measured slowdown is over the measured solo row of the same model, batch, share, stack and
    precision (rows without one count for the latency only), and the Spearman rank correlation
    of the predicted (``f_pred``) and measured slowdowns."""
    coloc = np.array([r.colocated for r in rows])
    meas = np.array([r.latency_ms for r in rows])
    f_meas = measured_slowdowns(rows)
    out = {}
    for label, mask in [("fitted", coloc & train), ("held out", coloc & ~train)]:
        if not mask.any():
            continue
        lat_err = np.abs(pred_ms[mask] - meas[mask]) / meas[mask]
        fm, fp = f_meas[mask], np.asarray(f_pred)[mask]
        ok = np.isfinite(fm)
        f_err = np.abs(fp[ok] - fm[ok]) / fm[ok] if ok.any() else np.array([math.nan])
        out[label] = ColocationStats(
            n=int(mask.sum()), latency_median=float(np.median(lat_err)),
            latency_p90=float(np.percentile(lat_err, 90)),
            slowdown_median=float(np.median(f_err)),
            slowdown_p90=float(np.percentile(f_err, 90)),
            spearman=spearman(fp[ok], fm[ok]),
            measured_mean=float(np.mean(fm[ok])) if ok.any() else math.nan,
            predicted_mean=float(np.mean(fp[ok])) if ok.any() else math.nan)
    return out
