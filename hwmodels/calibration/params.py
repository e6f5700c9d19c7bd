"""The fittable parameters of a device spec: names, bounds, neutral defaults, reading, setting.

A name is a :class:`~hwmodels.specs.DeviceSpec` field (``eff_memory``), an entry of one of
its tables (``eff_precision.int8``, ``interference.mig``) or a serving-stack parameter
(``stacks.triton.us_per_mb``). Both fits use them: :mod:`hwmodels.calibration.fitting`
(published targets) and :mod:`hwmodels.calibration.profiles` (measured profiles).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hwmodels.calibration.prediction import STACK_PARAMS, stack_params
from hwmodels.interference import DEFAULTS as INTERFERENCE_DEFAULTS
from hwmodels.specs import DeviceSpec

FIXED_STACK_PARAMS: frozenset[tuple[str, str]] = frozenset({("eager", "host_us")})
"""Stack parameters that published-target fits set, not fit: ``eager.host_us`` (0 there: the
DeepLearningExamples PyTorch rows are fitted with additive per-kernel costs; a profile fit of
measured eager latencies fits it)."""

GLOBAL_PARAMS: dict[str, tuple[float, float]] = {
    "eff_compute_half_mflop": (0.01, 200.0),
    "eff_memory": (0.2, 1.0),
    "launch_us": (0.1, 50.0),
    "batch_overhead_us": (1.0, 5000.0),
    "eff_precision.int8": (0.3, 1.5),
}
"""Device parameters that may be fitted (shared by all GPUs unless fitted per device)."""

PER_DEVICE_PARAMS: dict[str, tuple[float, float]] = {
    "eff_compute_max": (0.05, 1.0),
    "interference.mig": (1e-4, 0.5),
}
"""Device parameters fitted per device by default, with bounds."""

STACK_BOUNDS: dict[str, tuple[float, float]] = {
    "request_us": (1.0, 1e5),
    "us_per_mb": (1.0, 1e5),
    "server_c": (0.01, 1000.0),
    "eff_scale": (0.05, 1.5),
    "batch_us": (1.0, 1e5),
    "launch_us": (0.01, 500.0),
    "host_us": (0.5, 500.0),
}
"""Bounds of the stack parameters (``stacks.<stack>.<key>``)."""

DEFAULT_PER_DEVICE = ("eff_compute_max", "interference.mig")

CPU_OWN_PARAMS = ("eff_compute_max", "eff_compute_half_mflop")
"""Parameters fitted for each CPU in a fit (the GPU-wide globals do not apply to CPUs, and a
CPU engine spreading one small batch over a hundred cores loses more than a GPU does)."""


def param_bounds(name: str) -> tuple[float, float]:
    """Bounds of a fittable parameter name (``eff_memory``, ``stacks.triton.us_per_mb``, ...).

    Raises:
        ValueError: unknown name.
    """
    if name.startswith("stacks."):
        parts = name.split(".")
        if len(parts) == 3 and parts[1] in STACK_PARAMS and parts[2] in STACK_PARAMS[parts[1]]:
            return STACK_BOUNDS[parts[2]]
    elif name in GLOBAL_PARAMS or name in PER_DEVICE_PARAMS:
        return {**GLOBAL_PARAMS, **PER_DEVICE_PARAMS}[name]
    known = [*GLOBAL_PARAMS, *PER_DEVICE_PARAMS,
             *(f"stacks.{s}.{k}" for s, kv in STACK_PARAMS.items() for k in kv)]
    raise ValueError(f"unknown fit parameter {name!r}; known: {', '.join(known)}")


@dataclass(frozen=True)
class FitParam:
    """One fitted parameter: ``scope`` is ``"global"`` (every device of the kind) or a device."""

    name: str
    scope: str
    lo: float
    hi: float
    x0: float

    @property
    def label(self) -> str:
        return f"{self.scope}.{self.name}"


def get_param(device: DeviceSpec, name: str) -> float:
    """The current value of fittable parameter ``name`` in ``device``."""
    if name.startswith("stacks."):
        _, stack, key = name.split(".")
        return float(stack_params(device, stack)[key])
    if "." in name:
        table, key = name.split(".", 1)
        current = dict(getattr(device, table))
        if table == "eff_precision":
            return float(current.get(key, 1.0))
        if table == "interference":
            return float(current.get(key, INTERFERENCE_DEFAULTS[key]))
        return float(current[key])
    return float(getattr(device, name))


def default_value(name: str) -> float:
    """The neutral starting value of a fittable parameter (the field's default).

    Fits start here rather than from the specs' current values, so that a fit does not depend
    on earlier fits written into ``conf/hw`` (and a held-out experiment cannot see, through its
    starting point, the rows it holds out).
    """
    if name.startswith("stacks."):
        _, stack, key = name.split(".")
        return STACK_PARAMS[stack][key]
    if name.startswith("eff_precision."):
        return 1.0
    if name.startswith("interference."):
        return INTERFERENCE_DEFAULTS[name.split(".", 1)[1]]
    field_ = next(f for f in dataclasses.fields(DeviceSpec) if f.name == name)
    return float(field_.default)  # type: ignore[arg-type]


def reset_fitted(device: DeviceSpec) -> DeviceSpec:
    """``device`` with every parameter a published-target fit may set back at its default."""
    return device.replace(
        **{n: default_value(n) for n in GLOBAL_PARAMS if "." not in n},
        eff_compute_max=default_value("eff_compute_max"),
        eff_precision={}, stacks={},
        interference={k: v for k, v in device.interference.items() if k != "mig"},
    )


def set_param(device: DeviceSpec, name: str, value: float) -> DeviceSpec:
    """``device`` with fittable parameter ``name`` set to ``value``."""
    if name.startswith("stacks."):
        _, stack, key = name.split(".")
        stacks = {k: dict(v) for k, v in device.stacks.items()}
        stacks.setdefault(stack, {})[key] = float(value)
        return device.replace(stacks=stacks)
    if "." in name:
        table, key = name.split(".", 1)
        current = dict(getattr(device, table))
        current[key] = float(value)
        return device.replace(**{table: current})
    return device.replace(**{name: float(value)})


def apply_params(devices: Mapping[str, DeviceSpec], params: Sequence[FitParam],
                 x: Sequence[float]) -> dict[str, DeviceSpec]:
    """Devices with parameter values ``x`` applied: global device parameters to every GPU,
    global stack parameters to every device, then the per-device ones."""
    out = dict(devices)
    pairs = list(zip(params, x, strict=True))
    for p, v in pairs:
        if p.scope != "global":
            continue
        for n, d in out.items():
            if d.kind == "gpu" or p.name.startswith("stacks."):
                out[n] = set_param(d, p.name, v)
    for p, v in pairs:
        if p.scope != "global":
            out[p.scope] = set_param(out[p.scope], p.name, v)
    return out


def clip(v: float, lo: float, hi: float) -> float:
    """``v`` just inside ``(lo, hi)`` (a starting point strictly within the bounds)."""
    return min(max(v, lo * 1.0001), hi / 1.0001)
