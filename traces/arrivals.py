"""Arrivals: when requests come, for which model, how big, with which SLA and priority.

Everything here is pure numpy and driven by a :class:`numpy.random.Generator` passed in.
A *trace source* turns (generator, workload mix, count, target rate) into :class:`Arrivals`;
synthetic processes draw the times, replayed traces read them from a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True, slots=True)
class ModelClass:
    """One served model (or tenant) in a workload mix.

    Attributes:
        name: Workload profile name (see :mod:`hwmodels.workloads`).
        weight: Relative popularity (normalised over the mix).
        sla_ms: Latency SLA of its queries in milliseconds.
        priority: Priority class, larger is more important (PREMA-style tokens use it).
    """

    name: str
    weight: float = 1.0
    sla_ms: float = 100.0
    priority: int = 0

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"workload model '{self.name}': weight must be >= 0")
        if self.sla_ms <= 0:
            raise ValueError(f"workload model '{self.name}': sla_ms must be > 0")


@dataclass(frozen=True)
class WorkloadMix:
    """The models served together and how often each is asked for."""

    models: tuple[ModelClass, ...]

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("workload: at least one model is needed")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"workload: model names must be unique, got {names}")
        if sum(m.weight for m in self.models) <= 0:
            raise ValueError("workload: model weights sum to zero")

    @property
    def names(self) -> tuple[str, ...]:
        """Model names in mix order."""
        return tuple(m.name for m in self.models)

    @property
    def probabilities(self) -> np.ndarray:
        """Normalised popularity."""
        w = np.array([m.weight for m in self.models], dtype=np.float64)
        return w / w.sum()

    @property
    def sla_ms(self) -> np.ndarray:
        """Per-model SLA in ms."""
        return np.array([m.sla_ms for m in self.models], dtype=np.float64)

    @property
    def priorities(self) -> np.ndarray:
        """Per-model priority class."""
        return np.array([m.priority for m in self.models], dtype=np.int8)

    def sample_models(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` model indices drawn by popularity (int32)."""
        if len(self.models) == 1:
            return np.zeros(n, dtype=np.int32)
        cdf = np.cumsum(self.probabilities)
        cdf[-1] = 1.0
        return np.searchsorted(cdf, rng.random(n), side="right").astype(np.int32)


@dataclass(frozen=True)
class Arrivals:
    """A batch of requests in arrival order (struct of arrays).

    Attributes:
        time_s: Arrival times in seconds from the episode start, non-decreasing (float64).
        model: Index into ``models`` (int32).
        size: Items in the request (images, samples); 1 for single queries (int32).
        sla_ms: Latency budget of each request (float64).
        priority: Priority class (int8), larger is more important.
        models: Model names the indices refer to.
    """

    time_s: np.ndarray
    model: np.ndarray
    size: np.ndarray
    sla_ms: np.ndarray
    priority: np.ndarray
    models: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        n = len(self.time_s)
        for name in ("model", "size", "sla_ms", "priority"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Arrivals.{name} has {len(getattr(self, name))} rows, not {n}")

    def __len__(self) -> int:
        return len(self.time_s)

    @property
    def duration_s(self) -> float:
        """Time from the first to the last arrival."""
        return float(self.time_s[-1] - self.time_s[0]) if len(self) > 1 else 0.0

    @classmethod
    def from_mix(cls, times: np.ndarray, mix: WorkloadMix,
                 rng: np.random.Generator) -> Arrivals:
        """Label ``times`` with models drawn from ``mix`` and the models' SLA and priority."""
        n = len(times)
        model = mix.sample_models(rng, n)
        return cls(
            time_s=np.asarray(times, dtype=np.float64),
            model=model,
            size=np.ones(n, dtype=np.int32),
            sla_ms=mix.sla_ms[model],
            priority=mix.priorities[model],
            models=mix.names,
        )


@runtime_checkable
class TraceSource(Protocol):
    """Anything that produces an episode's arrivals."""

    def sample(self, rng: np.random.Generator, mix: WorkloadMix, n: int,
               rate_qps: float) -> Arrivals:
        """Draw ``n`` requests at a mean rate of ``rate_qps`` (replays rescale time to it)."""
        ...


@dataclass(frozen=True)
class Poisson:
    """Poisson arrivals: exponential inter-arrival times (CV = 1).

    Args:
        rate_scale: Multiplies the target rate the environment asks for (1.0 = as asked).
    """

    rate_scale: float = 1.0

    def sample(self, rng: np.random.Generator, mix: WorkloadMix, n: int,
               rate_qps: float) -> Arrivals:
        """``n`` arrivals with mean rate ``rate_qps * rate_scale``."""
        rate = rate_qps * self.rate_scale
        if rate <= 0:
            raise ValueError(f"trace: arrival rate must be > 0, got {rate}")
        times = np.cumsum(rng.exponential(1.0 / rate, size=n))
        return Arrivals.from_mix(times, mix, rng)


def mix_from_spec(models: Sequence[dict[str, object] | ModelClass]) -> WorkloadMix:
    """Build a :class:`WorkloadMix` from plain dicts (a resolved ``workload`` config)."""
    out = []
    for i, m in enumerate(models):
        if isinstance(m, ModelClass):
            out.append(m)
            continue
        allowed = {"name", "weight", "sla_ms", "priority"}
        unknown = sorted(set(m) - allowed)
        if unknown:
            raise ValueError(f"workload.models[{i}]: unknown key(s) {unknown}; allowed: "
                             f"{sorted(allowed)}")
        if "name" not in m:
            raise ValueError(f"workload.models[{i}]: missing 'name'")
        out.append(ModelClass(**m))  # type: ignore[arg-type]
    return WorkloadMix(tuple(out))
