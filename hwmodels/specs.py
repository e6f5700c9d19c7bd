"""Device specifications: published numbers with their sources, plus calibrated efficiencies.

A :class:`DeviceSpec` is a frozen record loaded from a YAML file in ``conf/hw/`` (the Hydra
``hw`` group reads the same files). Published fields carry a source in ``sources``; the
``eff_*``/overhead fields are fitted by ``python -m experiments.calibrate mode=fit``.

Besides the roofline efficiencies, a spec carries four small parameter tables (plain mappings of
floats, so that Hydra can override them as ``hw.interference.mps_bw=0.5``); each is read, with
documented defaults, by one model class:

* ``stacks``: serving-stack overheads on top of the engine (:mod:`hwmodels.calibration`),
* ``interference``: co-runner slowdowns (:class:`hwmodels.interference.InterferenceModel`),
* ``reconfig``: re-partitioning costs (:class:`hwmodels.reconfig.ReconfigModel`),
* ``power``: idle and dynamic power (:class:`hwmodels.power.PowerModel`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8")

DEVICE_KINDS = ("gpu", "cpu")

#: Where named device specs are looked up: ``$LDSGYM_HW_PATH`` (os.pathsep-separated), then
#: the repository's ``conf/hw``, then ``calibration/`` (fitted ``<device>-calibrated.yaml``).
DEFAULT_HW_DIR = Path(__file__).resolve().parent.parent / "conf" / "hw"
CALIBRATED_HW_DIR = Path(__file__).resolve().parent.parent / "calibration"

_TABLES = ("interference", "reconfig", "power")


@dataclass(frozen=True)
class DeviceSpec:
    """One accelerator (or CPU) model.

    Attributes:
        name: Marketing name, e.g. ``"A100-SXM4-80GB"``.
        sm_count: Streaming multiprocessors (or CPU cores) available outside MIG mode.
        kind: ``"gpu"`` or ``"cpu"`` (a CPU's "SMs" are its cores; it has no MIG).
        clock_ghz: Boost clock.
        peak_tflops: Dense peak per precision (TFLOP/s, TOP/s for int8).
        mem_bw_gbs: Peak memory bandwidth in GB/s.
        mem_gb: Memory capacity in GB.
        l2_mb: Last-level cache in MB.
        l2_act_fraction: Fraction of the L2 (of a MIG slice's share of it) that holds a
            layer's activations: a GPU layer whose inputs and outputs fit in it moves no
            activation bytes to or from DRAM (0, the default: activations always go to DRAM;
            see :mod:`hwmodels.latency`).
        tdp_w: Board power limit in W.
        idle_w: Idle power in W.
        pcie_gbs: Host link bandwidth per direction in GB/s.
        nvlink_gbs: Total NVLink bandwidth in GB/s (0 if none).
        mig: Name of the MIG profile table (see :mod:`hwmodels.partitions`) or ``None``.
        eff_compute_max: Fitted fraction of peak compute reached by large kernels.
        eff_compute_half_mflop: Fitted per-SM work (MFLOP) at which a kernel reaches half of
            ``eff_compute_max`` (small kernels under-fill the SMs).
        eff_vector_half_mflop: The same for layers on the CUDA cores (batch norm, pooling,
            depthwise convolutions); 0 (the default): ``eff_compute_half_mflop``.
        eff_memory: Fitted fraction of peak bandwidth reached by streaming kernels.
        launch_us: Fitted per-kernel launch/tail overhead in microseconds.
        batch_overhead_us: Fitted fixed cost per batch (host dispatch, copies) in microseconds.
        bw_sm_fraction: Fitted fraction of the SMs that saturates the memory bandwidth: an
            MPS share with a fraction ``s`` of the SMs reaches at most ``s / bw_sm_fraction``
            of it (0, the default: no such limit; see :mod:`hwmodels.latency`).
        sm_contention: Fitted contention coefficient ``sigma`` of the universal scalability
            law: ``S`` SMs (cores) compute like ``S / (1 + sigma * (S - 1))`` of them. 0 (the
            default, perfect scaling) for GPUs; CPUs with shared caches, memory and - in a
            virtual machine - shared physical cores scale worse.
        eff_precision: Fitted multiplier of ``eff_compute_max`` per precision for tensor-core
            layers (e.g. INT8 engines reach a smaller fraction of their peak than FP16 ones);
            precisions not listed use 1.
        stacks: Serving-stack overheads, ``{stack: {parameter: value}}`` (see
            :data:`hwmodels.calibration.STACK_PARAMS`).
        interference: Parameters of :class:`hwmodels.interference.InterferenceModel`.
        reconfig: Parameters of :class:`hwmodels.reconfig.ReconfigModel`.
        power: Parameters of :class:`hwmodels.power.PowerModel`.
        aliases: Other published names of the device (vendors' and papers' spellings, e.g.
            ``H100-SXM``, ``H100-SXM5``), by which calibration finds it; see
            :func:`hwmodels.calibration.device_name`.
        sources: Where each published number comes from.
    """

    name: str
    sm_count: int
    peak_tflops: Mapping[str, float]
    mem_bw_gbs: float
    mem_gb: float
    clock_ghz: float = 1.0
    l2_mb: float = 0.0
    l2_act_fraction: float = 0.0
    tdp_w: float = 0.0
    idle_w: float = 0.0
    pcie_gbs: float = 0.0
    nvlink_gbs: float = 0.0
    mig: str | None = None
    eff_compute_max: float = 0.6
    eff_compute_half_mflop: float = 2.0
    eff_vector_half_mflop: float = 0.0
    eff_memory: float = 0.8
    launch_us: float = 3.0
    batch_overhead_us: float = 100.0
    kind: str = "gpu"
    sm_contention: float = 0.0
    bw_sm_fraction: float = 0.0
    eff_precision: Mapping[str, float] = field(default_factory=dict)
    stacks: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    interference: Mapping[str, float] = field(default_factory=dict)
    reconfig: Mapping[str, float] = field(default_factory=dict)
    power: Mapping[str, float] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.sm_count <= 0:
            problems.append(f"sm_count must be positive, got {self.sm_count}")
        if self.mem_bw_gbs <= 0:
            problems.append(f"mem_bw_gbs must be positive, got {self.mem_bw_gbs}")
        if not 0 < self.eff_compute_max <= 1:
            problems.append(f"eff_compute_max must be in (0, 1], got {self.eff_compute_max}")
        if not 0 < self.eff_memory <= 1:
            problems.append(f"eff_memory must be in (0, 1], got {self.eff_memory}")
        bad = [p for p in self.peak_tflops if p not in PRECISIONS]
        if bad:
            problems.append(f"peak_tflops has unknown precision(s) {bad}; known: {PRECISIONS}")
        bad = [p for p in self.eff_precision if p not in PRECISIONS]
        if bad:
            problems.append(f"eff_precision has unknown precision(s) {bad}; known: {PRECISIONS}")
        if any(not 0 < v <= 2 for v in self.eff_precision.values()):
            problems.append(
                f"eff_precision values must be in (0, 2], got {dict(self.eff_precision)}")
        if self.kind not in DEVICE_KINDS:
            problems.append(f"kind must be one of {DEVICE_KINDS}, got {self.kind!r}")
        if self.kind == "cpu" and self.mig is not None:
            problems.append("a cpu has no MIG (set mig: null)")
        if not 0 <= self.bw_sm_fraction <= 1:
            problems.append(f"bw_sm_fraction must be in [0, 1], got {self.bw_sm_fraction}")
        if not 0 <= self.l2_act_fraction <= 1:
            problems.append(f"l2_act_fraction must be in [0, 1], got {self.l2_act_fraction}")
        for attr in ("sm_contention", "eff_compute_half_mflop", "eff_vector_half_mflop",
                     "launch_us", "batch_overhead_us", "tdp_w", "idle_w", "l2_mb", "pcie_gbs",
                     "nvlink_gbs"):
            if getattr(self, attr) < 0:
                problems.append(f"{attr} must be >= 0, got {getattr(self, attr)}")
        if problems:
            raise ValueError(f"hw '{self.name}': " + "; ".join(problems))

    def peak(self, precision: str) -> float:
        """Peak FLOP/s for ``precision``; falls back to fp16 then fp32 when not listed."""
        for p in (precision, "fp16", "fp32"):
            if p in self.peak_tflops:
                return float(self.peak_tflops[p]) * 1e12
        raise ValueError(f"hw '{self.name}' lists no peak for precision '{precision}'")

    def eff_compute(self, precision: str) -> float:
        """Largest fraction of the ``precision`` tensor peak reached (``eff_compute_max`` times
        the precision's multiplier), capped at 1."""
        return min(1.0, self.eff_compute_max * float(self.eff_precision.get(precision, 1.0)))

    def table(self, name: str) -> dict[str, float]:
        """One of the parameter tables (``"interference"``, ``"reconfig"``, ``"power"``)."""
        if name not in _TABLES:
            raise ValueError(f"unknown parameter table {name!r}; known: {_TABLES}")
        return dict(getattr(self, name))

    def to_mapping(self) -> dict[str, Any]:
        """Plain data (YAML/JSON-able), the inverse of :meth:`from_mapping`."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "stacks":
                value = {k: dict(v) for k, v in value.items()}
            elif isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def replace(self, **changes: Any) -> DeviceSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, origin: str = "hw") -> DeviceSpec:
        """Build from a plain mapping (a YAML file or a resolved Hydra ``hw`` node).

        Raises:
            ValueError: naming ``origin`` and the unknown or missing keys.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in data if k not in names and not str(k).startswith("_"))
        if unknown:
            raise ValueError(f"{origin}: unknown key(s) {unknown}; allowed: {sorted(names)}")
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"{origin}: missing key(s) {missing}")
        kwargs = {k: v for k, v in data.items() if k in names}
        try:
            kwargs["peak_tflops"] = _floats(kwargs["peak_tflops"], "peak_tflops")
            aliases = kwargs.get("aliases") or ()
            if isinstance(aliases, str) or not all(isinstance(a, str) for a in aliases):
                raise ValueError(f"aliases must be a list of names, got {aliases!r}")
            kwargs["aliases"] = tuple(aliases)
            kwargs["sources"] = {str(k): str(v)
                                 for k, v in dict(kwargs.get("sources") or {}).items()}
            for key in ("eff_precision", *_TABLES):
                kwargs[key] = _floats(kwargs.get(key) or {}, key)
            kwargs["stacks"] = {str(k): _floats(v or {}, f"stacks.{k}")
                                for k, v in dict(kwargs.get("stacks") or {}).items()}
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:  # wrong value types
            text = str(exc)
            raise ValueError(text if text.startswith(origin) else f"{origin}: {text}") from None


def _floats(data: Any, key: str) -> dict[str, float]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{key} must be a mapping, got {type(data).__name__}")
    out = {}
    for k, v in data.items():
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{key}.{k} must be a number, got {v!r}") from None
    return out


def hw_search_path() -> list[Path]:
    """Directories searched for ``<name>.yaml`` device files, in order."""
    extra = [Path(p) for p in os.environ.get("LDSGYM_HW_PATH", "").split(os.pathsep) if p]
    return [*extra, DEFAULT_HW_DIR, CALIBRATED_HW_DIR]


def available_devices() -> list[str]:
    """Names of every device YAML on the search path."""
    found: set[str] = set()
    for d in hw_search_path():
        if d.is_dir():
            found.update(p.stem for p in d.glob("*.yaml"))
    return sorted(found)


@lru_cache(maxsize=64)
def _load_file(path: str) -> DeviceSpec:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping of device fields")
    return DeviceSpec.from_mapping(data, origin=path)


def load_device(spec: str | Mapping[str, Any] | DeviceSpec) -> DeviceSpec:
    """Resolve a device from a name (``"a100-80gb"``), a YAML path, a mapping or a spec.

    Raises:
        ValueError: unknown name (listing the known ones) or a malformed file/mapping.
    """
    if isinstance(spec, DeviceSpec):
        return spec
    if isinstance(spec, Mapping):
        return DeviceSpec.from_mapping(spec)
    candidate = Path(spec)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise ValueError(f"hw file {spec}: no such file")
        return _load_file(str(candidate.resolve()))
    for d in hw_search_path():
        path = d / f"{spec}.yaml"
        if path.is_file():
            return _load_file(str(path.resolve()))
    raise ValueError(f"hw '{spec}': unknown device; known: {', '.join(available_devices())}")
