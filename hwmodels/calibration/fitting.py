"""Fitting device and serving-stack parameters to published targets (:func:`fit_targets`).

The parameters are :mod:`hwmodels.calibration.params`'; the error is that of
:func:`hwmodels.calibration.validation.evaluate`. scipy is imported by the fit itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hwmodels.calibration.params import (
    CPU_OWN_PARAMS,
    DEFAULT_PER_DEVICE,
    FIXED_STACK_PARAMS,
    GLOBAL_PARAMS,
    PER_DEVICE_PARAMS,
    FitParam,
    apply_params,
    clip,
    default_value,
    param_bounds,
    reset_fitted,
    set_param,
)
from hwmodels.calibration.plans import PERF_KINDS, Plan, plan_target
from hwmodels.calibration.prediction import STACK_PARAMS
from hwmodels.calibration.targets import Target
from hwmodels.calibration.validation import evaluate
from hwmodels.specs import DeviceSpec


@dataclass
class FitResult:
    """What :func:`fit_targets` found.

    Attributes:
        devices: Every input device with the fitted parameters applied.
        params: ``label -> value`` of the fitted parameters.
        train_ids: The target ids fitted on.
        fitted_devices: Devices whose own parameters were fitted.
        cost: Final sum of squared log errors.
        success: Whether the optimiser converged.
        message: The optimiser's message.
    """

    devices: dict[str, DeviceSpec]
    params: dict[str, float]
    train_ids: list[str]
    fitted_devices: list[str]
    cost: float
    success: bool
    message: str


def _relevant(name: str, plans: Sequence[Plan]) -> bool:
    """Whether some plan's prediction depends on parameter ``name``."""
    perf = [p for p in plans if p.kind in PERF_KINDS]
    if name == "interference.mig":
        return any(p.kind == "mig_interf" for p in plans) or any(
            p.kind == "aggregate" for p in perf)
    if name == "eff_precision.int8":
        return any(p.precision == "int8" for p in perf)
    if name.startswith("stacks."):
        _, stack, key = name.split(".")
        used = [p for p in perf if p.stack == stack]
        if key == "server_c":
            return any(p.kind == "server" for p in used)
        return bool(used)
    return bool(perf)


def fit_targets(targets: Sequence[Target], devices: Mapping[str, DeviceSpec],
                train_ids: Iterable[str], *, per_device: Sequence[str] = DEFAULT_PER_DEVICE,
                prior_weight: float = 0.02, max_nfev: int = 200) -> FitResult:
    """Fit efficiencies and stack overheads to the training targets (log relative error).

    Every parameter starts from :func:`~hwmodels.calibration.params.default_value`.
    Parameters named in ``per_device`` are fitted for each device that has training rows
    depending on them; the other :data:`~hwmodels.calibration.params.GLOBAL_PARAMS` are
    shared by every GPU and the other stack parameters by every device. Devices without
    training rows get, for each per-device
    parameter, the geometric mean of the values fitted for devices of their kind (or keep
    theirs when none was fitted). A weak prior (``prior_weight`` times the log distance from
    the starting value) keeps parameters that the data cannot pin down where they were.

    Raises:
        ValueError: no training target can be predicted, or an unknown parameter name.
    """
    from scipy.optimize import least_squares

    for name in per_device:
        param_bounds(name)
    original = devices
    # Start every device from the defaults: parameters that no training row pins down must
    # not keep values an earlier fit (written into conf/hw) got from the held-out rows.
    devices = {n: reset_fitted(d) for n, d in devices.items()}
    train = set(train_ids)
    planned = [(t, plan_target(t, devices)) for t in targets if t.id in train]
    usable = [(t, p) for t, p in planned if isinstance(p, Plan) and p.fittable]
    if not usable:
        raise ValueError("no fittable target among the training ids")
    plans = [p for _, p in usable]
    used_devices = sorted({p.device for p in plans if p.device is not None})
    gpu_plans = [p for p in plans if p.device and devices[p.device].kind == "gpu"]

    def start(name: str, lo: float, hi: float) -> float:
        return clip(default_value(name) or lo * 10, lo, hi)
    candidates = [*GLOBAL_PARAMS, *PER_DEVICE_PARAMS,
                  *(f"stacks.{s}.{k}" for s, kv in STACK_PARAMS.items() for k in kv
                    if (s, k) not in FIXED_STACK_PARAMS)]
    params: list[FitParam] = []
    for name in candidates:
        lo, hi = param_bounds(name)
        for dev in used_devices:
            if devices[dev].kind == "cpu" and name in CPU_OWN_PARAMS and name not in per_device:
                mine = [p for p in plans if p.device == dev]
                if _relevant(name, mine):
                    params.append(FitParam(name, dev, lo, hi, start(name, lo, hi)))
        if name in per_device:
            for dev in used_devices:
                mine = [p for p in plans if p.device == dev]
                if _relevant(name, mine):
                    params.append(FitParam(name, dev, lo, hi, start(name, lo, hi)))
        elif name.startswith("stacks.") and _relevant(name, plans):
            params.append(FitParam(name, "global", lo, hi, start(name, lo, hi)))
        elif name in GLOBAL_PARAMS and _relevant(name, gpu_plans):
            params.append(FitParam(name, "global", lo, hi, start(name, lo, hi)))
    x0 = np.log([p.x0 for p in params])
    lo_z = np.log([p.lo for p in params])
    hi_z = np.log([p.hi for p in params])

    def residuals(z: np.ndarray) -> np.ndarray:
        devs = apply_params(devices, params, np.exp(z))
        res: list[float] = []
        for t, p in usable:
            res.extend(evaluate(t, p, devs).log_ratios)
        res.extend(prior_weight * (z - x0))
        return np.asarray(res)

    sol = least_squares(residuals, x0, bounds=(lo_z, hi_z), method="trf", x_scale=1.0,
                        diff_step=1e-3, max_nfev=max_nfev)
    values = np.exp(sol.x)
    fitted = apply_params(devices, params, values)
    for name, d in devices.items():
        if d.kind == "cpu" and name not in used_devices:
            fitted[name] = original[name]  # CPUs are fitted from profiles, not from GPU rows
            continue
        for pname in per_device:
            if pname.startswith("interference.mig") and d.mig is None:
                continue
            own = [v for p, v in zip(params, values, strict=True)
                   if p.name == pname and p.scope != "global" and devices[p.scope].kind == d.kind]
            has_own = any(p.name == pname and p.scope == name for p in params)
            if own and not has_own:
                fitted[name] = set_param(fitted[name], pname, float(np.exp(np.mean(np.log(own)))))
    return FitResult(
        devices=fitted,
        params={p.label: float(v) for p, v in zip(params, values, strict=True)},
        train_ids=sorted(t.id for t, _ in usable),
        fitted_devices=used_devices,
        cost=float(sol.cost),
        success=bool(sol.success),
        message=str(sol.message),
    )
