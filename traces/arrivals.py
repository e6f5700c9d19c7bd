"""Arrivals: when requests come, for which model, how big, with which SLA and priority.

Everything here is pure numpy and driven by a :class:`numpy.random.Generator` passed in.
A *trace source* turns (generator, workload mix, count, target rate) into :class:`Arrivals`;
synthetic processes draw the times, replayed traces read them from a file.

SLA resolution: a model (or one of its request classes) may give its SLA as a multiple of the
model's *solo latency* (``sla_multiple``) instead of absolute milliseconds. Traces do not know
latencies, so :class:`Arrivals` carries the multiple per request in ``sla_multiple`` (NaN where
the SLA is absolute) and a stand-in in ``sla_ms`` (the model's ``sla_ms``). The environment,
which knows each model's solo latency on its hardware, calls :meth:`Arrivals.resolve_sla` once
per episode before using ``sla_ms``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, cast, runtime_checkable

import numpy as np
import numpy.typing as npt

from traces.sizes import SizeDist


def _empty_i32() -> np.ndarray:
    return np.empty(0, dtype=np.int32)


def _empty_f64() -> np.ndarray:
    return np.empty(0, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class RequestClass:
    """One SLA/priority class of a model's requests (e.g. interactive vs. batch).

    Unset fields (None) fall back to the model's value.

    Attributes:
        name: Label of the class.
        weight: Relative share of the model's requests in this class.
        sla_ms: Absolute SLA in ms.
        sla_multiple: SLA as a multiple of the model's solo latency (resolved by the env);
            takes precedence over ``sla_ms``.
        priority: Priority class, larger is more important.
    """

    name: str = "default"
    weight: float = 1.0
    sla_ms: float | None = None
    sla_multiple: float | None = None
    priority: int | None = None

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"request class '{self.name}': weight must be >= 0")
        if self.sla_ms is not None and self.sla_ms <= 0:
            raise ValueError(f"request class '{self.name}': sla_ms must be > 0")
        if self.sla_multiple is not None and self.sla_multiple <= 0:
            raise ValueError(f"request class '{self.name}': sla_multiple must be > 0")


@dataclass(frozen=True, slots=True)
class ModelClass:
    """One served model (or tenant) in a workload mix.

    Attributes:
        name: Workload profile name (see :mod:`hwmodels.workloads`).
        weight: Relative popularity (normalised over the mix).
        sla_ms: Latency SLA of its queries in milliseconds (a stand-in when
            ``sla_multiple`` is set, see the module docstring).
        priority: Priority class, larger is more important (PREMA-style tokens use it).
        sla_multiple: SLA as a multiple of the model's solo latency, or None for the absolute
            ``sla_ms``. The environment resolves it (:meth:`Arrivals.resolve_sla`).
        size: Distribution of the request size (batch items, or prompt tokens for LLMs);
            None means every request has size 1. Replays with a size column use the file's.
        output_size: Distribution of the output size (generated tokens); None means 0.
        classes: SLA/priority classes of this model's requests, drawn by their weights;
            empty means one class given by ``sla_ms``/``sla_multiple``/``priority``.
    """

    name: str
    weight: float = 1.0
    sla_ms: float = 100.0
    priority: int = 0
    sla_multiple: float | None = None
    size: SizeDist | None = None
    output_size: SizeDist | None = None
    classes: tuple[RequestClass, ...] = ()

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"workload model '{self.name}': weight must be >= 0")
        if self.sla_ms <= 0:
            raise ValueError(f"workload model '{self.name}': sla_ms must be > 0")
        if self.sla_multiple is not None and self.sla_multiple <= 0:
            raise ValueError(f"workload model '{self.name}': sla_multiple must be > 0")
        object.__setattr__(self, "classes", tuple(self.classes))
        if self.classes and sum(c.weight for c in self.classes) <= 0:
            raise ValueError(f"workload model '{self.name}': class weights sum to zero")


def constant_column(n: int, value: float, dtype: npt.DTypeLike) -> np.ndarray:
    """A column of ``n`` requests that all have ``value``: a read-only broadcast view, which
    takes no memory of the trace's length (filling one costs seconds on an hour-long trace at
    GPU rates, most of it first touches of fresh memory)."""
    return np.broadcast_to(np.array(value, dtype=dtype), (n,))


def _gather(per_model: np.ndarray, model: np.ndarray, view: bool = False) -> np.ndarray:
    """``per_model[model]``, as a cheap fill when every model has the same value (with
    ``view``: no fill, :func:`constant_column`)."""
    first = per_model[:1]
    if np.array_equal(per_model, np.broadcast_to(first, per_model.shape), equal_nan=True):
        if view:
            return constant_column(len(model), first[0], per_model.dtype)
        return np.full(len(model), first[0], dtype=per_model.dtype)
    return per_model[model]


@dataclass(frozen=True)
class WorkloadMix:
    """The models served together and how often each is asked for."""

    models: tuple[ModelClass, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
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
    def sla_multiple(self) -> np.ndarray:
        """Per-model SLA multiple of the solo latency (NaN where the SLA is absolute)."""
        return np.array([np.nan if m.sla_multiple is None else m.sla_multiple
                         for m in self.models], dtype=np.float64)

    @property
    def priorities(self) -> np.ndarray:
        """Per-model priority class."""
        return np.array([m.priority for m in self.models], dtype=np.int8)

    def index(self, name: str) -> int:
        """Position of model ``name`` in the mix.

        Raises:
            KeyError: no such model.
        """
        for i, m in enumerate(self.models):
            if m.name == name:
                return i
        raise KeyError(name)

    def sample_models(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` model indices drawn by popularity (int32)."""
        if len(self.models) == 1:
            return np.zeros(n, dtype=np.int32)
        cdf = np.cumsum(self.probabilities)
        cdf[-1] = 1.0
        u = rng.random(n)
        if len(cdf) > 16:
            return np.searchsorted(cdf, u, side="right").astype(np.int32)
        # Same result as searchsorted(side="right"), about 4x faster for small mixes.
        out = np.zeros(n, dtype=np.int32)
        for c in cdf[:-1]:
            np.add(out, u >= c, out=out, casting="unsafe")
        return out

    def sample_labels(self, rng: np.random.Generator,
                      model: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-request SLA, SLA multiple and priority for requests of the given models.

        Models with request classes draw a class per request (one uniform draw per such
        request); the others take the model's values without touching ``rng``.

        Returns:
            ``(sla_ms float64, sla_multiple float64 (NaN = absolute), priority int8)``; the
            last two are read-only views (:func:`constant_column`) where every request has the
            same value (no model with request classes, one value for all models).
        """
        sla = _gather(self.sla_ms, model)
        const = not any(m.classes for m in self.models)
        mult = _gather(self.sla_multiple, model, view=const)
        prio = _gather(self.priorities, model, view=const)
        for k, m in enumerate(self.models):
            if not m.classes:
                continue
            idx = np.flatnonzero(model == k)
            if len(idx) == 0:
                continue
            w = np.array([c.weight for c in m.classes], dtype=np.float64)
            cdf = np.cumsum(w / w.sum())
            cdf[-1] = 1.0
            cls = np.searchsorted(cdf, rng.random(len(idx)), side="right")
            c_sla = np.array([m.sla_ms if c.sla_ms is None else c.sla_ms for c in m.classes])
            c_mult = np.array([
                c.sla_multiple if c.sla_multiple is not None
                else (np.nan if c.sla_ms is not None or m.sla_multiple is None
                      else m.sla_multiple)
                for c in m.classes], dtype=np.float64)
            c_prio = np.array([m.priority if c.priority is None else c.priority
                               for c in m.classes], dtype=np.int8)
            sla[idx] = c_sla[cls]
            mult[idx] = c_mult[cls]
            prio[idx] = c_prio[cls]
        return sla, mult, prio

    def sample_sizes(self, rng: np.random.Generator, model: np.ndarray,
                     which: Literal["size", "output_size"] = "size") -> np.ndarray:
        """Per-request sizes (int32) from each model's ``size`` or ``output_size`` distribution.

        Models without one get 1 (``size``) or 0 (``output_size``), drawing nothing; where
        none has one, output sizes are a read-only view (:func:`constant_column`; sizes stay
        an array, which simulators hand to compiled kernels).
        """
        if which == "output_size" and all(m.output_size is None for m in self.models):
            return constant_column(len(model), 0, np.int32)
        out = np.full(len(model), 1 if which == "size" else 0, dtype=np.int32)
        for k, m in enumerate(self.models):
            dist = getattr(m, which)
            if dist is None:
                continue
            idx = np.flatnonzero(model == k) if len(self.models) > 1 else slice(None)
            cnt = len(model) if isinstance(idx, slice) else len(idx)
            if cnt:
                out[idx] = dist.sample(rng, cnt)
        return out


@dataclass(frozen=True)
class Arrivals:
    """A batch of requests in arrival order (struct of arrays).

    Columns may be read-only (replays; a column that is the same for every request of a
    generated trace is a :func:`constant_column` view): copy one before writing to it.

    Attributes:
        time_s: Arrival times in seconds from the episode start, non-decreasing (float64).
        model: Index into ``models`` (int32).
        size: Items in the request (images, samples) or prompt tokens of an LLM request;
            1 for single queries (int32).
        sla_ms: Latency budget of each request (float64); where ``sla_multiple`` is finite
            this is a stand-in until :meth:`resolve_sla` is called.
        priority: Priority class (int8), larger is more important.
        models: Model names the indices refer to.
        output_size: Output tokens of LLM requests (int32); 0 when unknown.
        tenant: Index into ``tenants`` (int32), -1 when the trace has no tenants.
        tenants: Tenant names the indices refer to.
        sla_multiple: SLA as a multiple of the model's solo latency (float64), NaN where the
            SLA is absolute.
        start_s: Where the episode's time 0 falls on the trace's own clock, in seconds: a
            window drawn at an offset into a trace (a replayed window, a mix schedule started
            at an offset) reports that offset, so ``start_s + time_s`` is trace time; 0 for a
            trace that starts at its own time 0.
    """

    time_s: np.ndarray
    model: np.ndarray
    size: np.ndarray
    sla_ms: np.ndarray
    priority: np.ndarray
    models: tuple[str, ...] = field(default_factory=tuple)
    output_size: np.ndarray = field(default_factory=_empty_i32)
    tenant: np.ndarray = field(default_factory=_empty_i32)
    tenants: tuple[str, ...] = field(default_factory=tuple)
    sla_multiple: np.ndarray = field(default_factory=_empty_f64)
    start_s: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.time_s)
        if n and not len(self.output_size):
            object.__setattr__(self, "output_size", constant_column(n, 0, np.int32))
        if n and not len(self.tenant):
            object.__setattr__(self, "tenant", constant_column(n, -1, np.int32))
        if n and not len(self.sla_multiple):
            object.__setattr__(self, "sla_multiple", constant_column(n, np.nan, np.float64))
        for name in ("model", "size", "sla_ms", "priority", "output_size", "tenant",
                     "sla_multiple"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Arrivals.{name} has {len(getattr(self, name))} rows, not {n}")

    def __len__(self) -> int:
        return len(self.time_s)

    @property
    def duration_s(self) -> float:
        """Time from the first to the last arrival."""
        return float(self.time_s[-1] - self.time_s[0]) if len(self) > 1 else 0.0

    @property
    def mean_rate_qps(self) -> float:
        """Mean arrival rate, ``(n - 1) / duration`` (the inverse of the mean gap)."""
        d = self.duration_s
        return (len(self) - 1) / d if d > 0 else float("nan")

    @property
    def needs_sla_resolution(self) -> bool:
        """True when some SLA is a multiple of the solo latency (see :meth:`resolve_sla`)."""
        mult = self.sla_multiple
        if len(mult) and mult.strides[0] == 0:  # a constant_column: one value
            return bool(np.isfinite(mult[0]))
        return bool(np.isfinite(mult).any())

    def resolve_sla(self, solo_latency_ms: np.ndarray | Sequence[float]) -> Arrivals:
        """Arrivals whose ``sla_ms`` is ``sla_multiple * solo latency`` where a multiple is set.

        Args:
            solo_latency_ms: Either one value per model (indexed like ``models``), or one per
                request (e.g. the solo latency at the request's size).

        Returns:
            A copy with ``sla_ms`` resolved (``sla_multiple`` kept, so resolving again with
            other latencies works).
        """
        solo = np.asarray(solo_latency_ms, dtype=np.float64)
        if solo.ndim != 1 or len(solo) not in (len(self.models), len(self)):
            raise ValueError(f"resolve_sla: expected {len(self.models)} per-model or "
                             f"{len(self)} per-request latencies, got shape {solo.shape}")
        per_req = solo if len(solo) == len(self) and len(solo) != len(self.models) else \
            solo[self.model]
        mult = self.sla_multiple
        sla = np.where(np.isfinite(mult), mult * per_req, self.sla_ms)
        return self._replace(sla_ms=sla)

    def take(self, index: np.ndarray | slice) -> Arrivals:
        """The requests at ``index`` (keep it sorted by time to stay in arrival order)."""
        return Arrivals(
            time_s=self.time_s[index], model=self.model[index], size=self.size[index],
            sla_ms=self.sla_ms[index], priority=self.priority[index], models=self.models,
            output_size=self.output_size[index], tenant=self.tenant[index],
            tenants=self.tenants, sla_multiple=self.sla_multiple[index], start_s=self.start_s)

    def identical(self, other: Arrivals) -> bool:
        """True when every array and name list equals ``other``'s exactly."""
        names = ("time_s", "model", "size", "sla_ms", "priority", "output_size", "tenant",
                 "sla_multiple")
        return (self.models == other.models and self.tenants == other.tenants
                and all(np.array_equal(getattr(self, k), getattr(other, k), equal_nan=True)
                        for k in names))

    def _replace(self, **changes: object) -> Arrivals:
        kw: dict[str, object] = {k: getattr(self, k) for k in self.__dataclass_fields__}
        kw.update(changes)
        return Arrivals(**kw)  # type: ignore[arg-type]

    @classmethod
    def from_mix(cls, times: np.ndarray, mix: WorkloadMix, rng: np.random.Generator, *,
                 model: np.ndarray | None = None, size: np.ndarray | None = None,
                 output_size: np.ndarray | None = None, sla_ms: np.ndarray | None = None,
                 priority: np.ndarray | None = None, tenant: np.ndarray | None = None,
                 tenants: tuple[str, ...] = (), start_s: float = 0.0) -> Arrivals:
        """Label ``times`` with what the trace does not say, drawing it from ``mix``.

        Draw order (fixed, for reproducibility): models, request classes, sizes, output sizes;
        a column given by the caller is not drawn.

        Args:
            times: Arrival times, non-decreasing.
            mix: The workload mix.
            rng: Generator for the draws.
            model: Model indices into ``mix`` (drawn by popularity when None).
            size: Request sizes (from the models' size distributions when None).
            output_size: Output sizes (from the models' output-size distributions when None).
            sla_ms: Absolute per-request SLA from the trace (overrides the mix's SLA classes).
            priority: Per-request priority from the trace.
            tenant: Tenant indices into ``tenants``.
            tenants: Tenant names.
            start_s: The window's start on the trace's clock (:attr:`start_s`).
        """
        n = len(times)
        if model is None:
            model = mix.sample_models(rng, n)
        sla, mult, prio = mix.sample_labels(rng, model)
        if sla_ms is not None:
            sla = np.asarray(sla_ms, dtype=np.float64)
            mult = np.full(n, np.nan)
        if priority is not None:
            prio = np.asarray(priority, dtype=np.int8)
        if size is None:
            size = mix.sample_sizes(rng, model, "size")
        if output_size is None:
            output_size = mix.sample_sizes(rng, model, "output_size")
        return cls(
            time_s=np.asarray(times, dtype=np.float64),
            model=np.asarray(model, dtype=np.int32),
            size=np.asarray(size, dtype=np.int32),
            sla_ms=sla,
            priority=prio,
            models=mix.names,
            output_size=np.asarray(output_size, dtype=np.int32),
            tenant=(constant_column(n, -1, np.int32) if tenant is None
                    else np.asarray(tenant, dtype=np.int32)),
            tenants=tuple(tenants),
            sla_multiple=mult,
            start_s=float(start_s),
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


_MODEL_KEYS = ("name", "weight", "sla_ms", "priority", "sla_multiple", "size", "output_size",
               "classes")
_CLASS_KEYS = ("name", "weight", "sla_ms", "sla_multiple", "priority")


def _model_from_dict(i: int, m: Mapping[str, object]) -> ModelClass:
    unknown = sorted(set(m) - set(_MODEL_KEYS))
    if unknown:
        raise ValueError(f"workload.models[{i}]: unknown key(s) {unknown}; allowed: "
                         f"{sorted(_MODEL_KEYS)}")
    if "name" not in m:
        raise ValueError(f"workload.models[{i}]: missing 'name'")
    kw = dict(m)
    for key in ("size", "output_size"):
        if kw.get(key) is not None:
            kw[key] = SizeDist.from_spec(kw[key])  # type: ignore[arg-type]
    classes: list[RequestClass] = []
    raw_classes = cast("Sequence[Mapping[str, object] | RequestClass]",
                       kw.pop("classes", None) or ())
    for j, c in enumerate(raw_classes):
        if isinstance(c, RequestClass):
            classes.append(c)
            continue
        bad = sorted(set(c) - set(_CLASS_KEYS))
        if bad:
            raise ValueError(f"workload.models[{i}].classes[{j}]: unknown key(s) {bad}; "
                             f"allowed: {sorted(_CLASS_KEYS)}")
        classes.append(RequestClass(**c))  # type: ignore[arg-type]
    return ModelClass(**kw, classes=tuple(classes))  # type: ignore[arg-type]


def mix_from_spec(models: Sequence[Mapping[str, object] | ModelClass],
                  zipf_s: float | None = None) -> WorkloadMix:
    """Build a :class:`WorkloadMix` from plain dicts (a resolved ``workload`` config).

    Each dict takes the :class:`ModelClass` fields; ``size``/``output_size`` are
    :class:`~traces.sizes.SizeDist` dicts (or an int for a constant) and ``classes`` a list of
    :class:`RequestClass` dicts.

    Args:
        models: The models, most popular first when ``zipf_s`` is given.
        zipf_s: When set, replace the weights by Zipf popularity ``1 / rank ** zipf_s``.
    """
    out = [m if isinstance(m, ModelClass) else _model_from_dict(i, m)
           for i, m in enumerate(models)]
    if zipf_s is not None:
        w = zipf_weights(len(out), zipf_s)
        out = [_with_weight(m, float(wk)) for m, wk in zip(out, w, strict=True)]
    return WorkloadMix(tuple(out))


def zipf_weights(k: int, s: float) -> np.ndarray:
    """Zipf popularity of ``k`` items: ``1 / rank ** s``, normalised (rank 1 first)."""
    if k <= 0:
        raise ValueError(f"zipf: need at least one item, got {k}")
    if s < 0:
        raise ValueError(f"zipf: exponent must be >= 0, got {s}")
    w = np.arange(1, k + 1, dtype=np.float64) ** -float(s)
    return w / w.sum()


def zipf_mix(names: Sequence[str], s: float = 1.0, *, sla_ms: float = 100.0,
             sla_multiple: float | None = None, priority: int = 0,
             size: SizeDist | Mapping[str, object] | int | None = None,
             output_size: SizeDist | Mapping[str, object] | int | None = None) -> WorkloadMix:
    """A mix whose popularity is Zipf over ``names`` (first = most popular).

    Args:
        names: Model names, most popular first.
        s: Zipf exponent (0 = uniform; ~1 is typical of model popularity).
        sla_ms: Absolute SLA of every model.
        sla_multiple: SLA as a multiple of solo latency for every model (resolved by the env).
        priority: Priority of every model.
        size: Size distribution of every model (spec accepted by ``SizeDist.from_spec``).
        output_size: Output-size distribution of every model.
    """
    w = zipf_weights(len(names), s)
    sd = None if size is None else SizeDist.from_spec(size)
    od = None if output_size is None else SizeDist.from_spec(output_size)
    return WorkloadMix(tuple(
        ModelClass(name=nm, weight=float(wk), sla_ms=sla_ms, priority=priority,
                   sla_multiple=sla_multiple, size=sd, output_size=od)
        for nm, wk in zip(names, w, strict=True)))


def _with_weight(m: ModelClass, weight: float) -> ModelClass:
    return ModelClass(name=m.name, weight=weight, sla_ms=m.sla_ms, priority=m.priority,
                      sla_multiple=m.sla_multiple, size=m.size, output_size=m.output_size,
                      classes=m.classes)
