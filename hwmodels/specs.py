"""Device specifications: published numbers with their sources, plus calibrated efficiencies.

A :class:`DeviceSpec` is a frozen record loaded from a YAML file in ``conf/hw/`` (the Hydra
``hw`` group reads the same files). Published fields carry a source in ``sources``; the
``eff_*``/overhead fields are fitted by ``python -m experiments.calibrate mode=fit``.
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

#: Where named device specs are looked up: ``$LDSGYM_HW_PATH`` (os.pathsep-separated), then
#: the repository's ``conf/hw``.
DEFAULT_HW_DIR = Path(__file__).resolve().parent.parent / "conf" / "hw"


@dataclass(frozen=True)
class DeviceSpec:
    """One accelerator (or CPU) model.

    Attributes:
        name: Marketing name, e.g. ``"A100-SXM4-80GB"``.
        sm_count: Streaming multiprocessors (or CPU cores) available outside MIG mode.
        clock_ghz: Boost clock.
        peak_tflops: Dense peak per precision (TFLOP/s, TOP/s for int8).
        mem_bw_gbs: Peak memory bandwidth in GB/s.
        mem_gb: Memory capacity in GB.
        l2_mb: Last-level cache in MB.
        tdp_w: Board power limit in W.
        idle_w: Idle power in W.
        pcie_gbs: Host link bandwidth per direction in GB/s.
        nvlink_gbs: Total NVLink bandwidth in GB/s (0 if none).
        mig: Name of the MIG profile table (see :mod:`hwmodels.partitions`) or ``None``.
        eff_compute_max: Fitted fraction of peak compute reached by large kernels.
        eff_compute_half_mflop: Fitted per-SM work (MFLOP) at which a kernel reaches half of
            ``eff_compute_max`` (small kernels under-fill the SMs).
        eff_memory: Fitted fraction of peak bandwidth reached by streaming kernels.
        launch_us: Fitted per-kernel launch/tail overhead in microseconds.
        batch_overhead_us: Fitted fixed cost per batch (host dispatch, copies) in microseconds.
        sources: Where each published number comes from.
    """

    name: str
    sm_count: int
    peak_tflops: Mapping[str, float]
    mem_bw_gbs: float
    mem_gb: float
    clock_ghz: float = 1.0
    l2_mb: float = 0.0
    tdp_w: float = 0.0
    idle_w: float = 0.0
    pcie_gbs: float = 0.0
    nvlink_gbs: float = 0.0
    mig: str | None = None
    eff_compute_max: float = 0.6
    eff_compute_half_mflop: float = 2.0
    eff_memory: float = 0.8
    launch_us: float = 3.0
    batch_overhead_us: float = 100.0
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
        if problems:
            raise ValueError(f"hw '{self.name}': " + "; ".join(problems))

    def peak(self, precision: str) -> float:
        """Peak FLOP/s for ``precision``; falls back to fp16 then fp32 when not listed."""
        for p in (precision, "fp16", "fp32"):
            if p in self.peak_tflops:
                return float(self.peak_tflops[p]) * 1e12
        raise ValueError(f"hw '{self.name}' lists no peak for precision '{precision}'")

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
        kwargs["peak_tflops"] = {str(k): float(v) for k, v in dict(kwargs["peak_tflops"]).items()}
        kwargs["sources"] = {str(k): str(v) for k, v in dict(kwargs.get("sources", {})).items()}
        try:
            return cls(**kwargs)
        except TypeError as exc:  # wrong value types
            raise ValueError(f"{origin}: {exc}") from None


def hw_search_path() -> list[Path]:
    """Directories searched for ``<name>.yaml`` device files, in order."""
    extra = [Path(p) for p in os.environ.get("LDSGYM_HW_PATH", "").split(os.pathsep) if p]
    return [*extra, DEFAULT_HW_DIR]


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
