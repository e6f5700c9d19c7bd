"""Cost of re-partitioning a GPU: drain, destroy/create instances, reload weights, warm up.

Changing a layout takes these steps, in order (each with a documented, overridable mean; the
spec's ``reconfig`` table overrides :data:`DEFAULTS`, e.g. ``hw.reconfig.gi_create_s=1.0``)::

    drain      the running batches finish (the caller passes how long; default drain_s)
    mode       MIG mode toggles when switching between MIG and non-MIG layouts (mig_mode_s)
    destroy    each MIG instance that goes away: gi_destroy_s + gi_destroy_slice_s per compute
               slice of its profile (serial, one driver call each)
    create     each new MIG instance: gi_create_s + gi_create_slice_s per compute slice of its
               profile (serial)
    restart    each model process on a new or changed partition starts a CUDA context
               (context_s, in parallel); an MPS client whose share changes must restart
               (published_targets T066), unless a standby "shadow" client takes over
               (GSLICE, T065: < 0.1 ms, mps_shadow_s) when mps_shadow > 0
    reload     the weights of every (re)loaded model cross PCIe once; transfers share the
               host link: sum(bytes) / (pcie_gbs * pcie_eff) + load_s per model (engine
               deserialisation), the per-model parts in parallel
    warmup     the first batches of each reloaded model run slowly: warmup_s (in parallel)

A sample multiplies every step's mean by an independent log-normal factor with mean 1 and
coefficient of variation ``cv``, so ``mean()`` is the exact expectation of ``sample()``.

Sources: MIG mode toggle 4-5 s on A100-SXM4-80GB (published_targets T063, mig-parted log) and
about 2 s on A100-PCIe-40GB (T064). Instance create/destroy: one measured A100 log (T162, low
confidence) has creating 7 x 1g take 2.5 s and destroying them 4.4 s: ``gi_create_slice_s`` =
2.5 / 7 = 0.357 s per compute slice and ``gi_destroy_s`` = 4.4 / 7 = 0.629 s per instance.
Checked on the same log's 7 x 1g -> 2 x 3g switch (not used to set them): 4.4 + 2 x 3 x 0.357
= 6.54 s against 6.5 s measured (the earlier per-instance assumptions, 0.3 s and 0.6 s, gave
3.3 s). Assumed: that creation scales with the compute slices (the log has one 3g data point)
and destruction does not (only 1g instances were destroyed), and no fixed per-instance
creation cost (``gi_create_s`` = 0). CUDA context start and engine load are assumptions (a
second or so on datacenter GPUs). PCIe bandwidth comes from the device spec (T126, T127).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from hwmodels.partitions import make_layout, mig_table
from hwmodels.specs import DeviceSpec
from hwmodels.workloads import WorkloadProfile, build_profile

DEFAULTS: dict[str, float] = {
    "drain_s": 0.0,
    "mig_mode_s": 4.5,
    "gi_destroy_s": 0.629,
    "gi_destroy_slice_s": 0.0,
    "gi_create_s": 0.0,
    "gi_create_slice_s": 0.357,
    "context_s": 1.0,
    "load_s": 0.5,
    "pcie_eff": 0.8,
    "warmup_s": 0.5,
    "mps_shadow": 0.0,
    "mps_shadow_s": 1e-4,
    "cv": 0.2,
}
"""Means in seconds (``pcie_eff``: fraction of the PCIe peak reached by weight copies; ``cv``:
coefficient of variation of every step; ``mps_shadow`` > 0: MPS share changes switch to a
standby client instead of restarting). Sources in the module docstring."""

STEPS = ("drain", "mode", "destroy", "create", "restart", "reload", "warmup")

Model = WorkloadProfile | str | None


class ReconfigModel:
    """Random time to change a device's layout (see the module docstring).

    Args:
        device: The device; its ``reconfig`` table overrides :data:`DEFAULTS`.
        precision: Weight precision (bytes copied per parameter).
        params: Further overrides.

    Raises:
        ValueError: unknown or negative parameters.
    """

    def __init__(self, device: DeviceSpec, precision: str = "fp16",
                 params: Mapping[str, float] | None = None) -> None:
        merged = {**DEFAULTS, **device.reconfig, **(params or {})}
        unknown = sorted(set(merged) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"hw '{device.name}': unknown reconfig parameter(s) {unknown}; "
                             f"known: {sorted(DEFAULTS)}")
        bad = {k: v for k, v in merged.items() if not v >= 0}
        if bad:
            raise ValueError(f"hw '{device.name}': reconfig parameters must be >= 0: {bad}")
        if merged["pcie_eff"] <= 0:
            raise ValueError("reconfig pcie_eff must be > 0")
        self.device = device
        self.precision = precision
        self.params = merged

    def steps(self, old_layout: Sequence[str], new_layout: Sequence[str],
              models: Sequence[Model], old_models: Sequence[Model] | None = None,
              drain_s: float | None = None) -> dict[str, float]:
        """Mean seconds of each step (:data:`STEPS`).

        Args:
            old_layout: Current layout spec (as for :func:`hwmodels.partitions.make_layout`).
            new_layout: Target layout spec.
            models: Model served on each partition of ``new_layout`` (None: left empty).
            old_models: Model on each partition of ``old_layout``; a kept partition whose
                model changes is reloaded. Default: kept partitions keep their model.
            drain_s: Time for the running batches to finish (default: the ``drain_s``
                parameter).

        Raises:
            ValueError: a layout is invalid or ``models`` does not match ``new_layout``.
        """
        p = self.params
        old = [str(x) for x in old_layout]
        new = [str(x) for x in new_layout]
        make_layout(self.device, old)
        make_layout(self.device, new)
        if len(models) != len(new):
            raise ValueError(f"{len(models)} models for a layout of {len(new)} partitions")
        if old_models is not None and len(old_models) != len(old):
            raise ValueError(f"{len(old_models)} old models for {len(old)} old partitions")
        kind_old, kind_new = _kind(old), _kind(new)
        out = dict.fromkeys(STEPS, 0.0)
        out["drain"] = p["drain_s"] if drain_s is None else float(drain_s)
        if old == new and (old_models is None or _names(old_models) == _names(models)):
            out["drain"] = 0.0
            return out
        if (kind_old == "mig") != (kind_new == "mig"):
            out["mode"] = p["mig_mode_s"]
        # Which new partitions are fresh (need a process start and a weight load)?
        kept = Counter(old) & Counter(new) if kind_old == kind_new else Counter()
        old_by_name: dict[str, list[str | None]] = {}
        for i, name in enumerate(old):
            old_by_name.setdefault(name, []).append(
                None if old_models is None else _name(old_models[i]))
        fresh: list[Model] = []
        for name, model in zip(new, models, strict=True):
            if kept[name] > 0:
                kept[name] -= 1
                was = old_by_name[name].pop(0)
                if old_models is None or was == _name(model):
                    continue
            fresh.append(model)
        same_kind = kind_old == kind_new
        if kind_old == "mig":
            gone = Counter(old) - Counter(new) if same_kind else Counter(old)
            out["destroy"] = sum(n * (p["gi_destroy_s"] + p["gi_destroy_slice_s"]
                                      * self._slices(name)) for name, n in gone.items())
        if kind_new == "mig":
            made = Counter(new) - Counter(old) if same_kind else Counter(new)
            out["create"] = sum(n * (p["gi_create_s"] + p["gi_create_slice_s"]
                                     * self._slices(name)) for name, n in made.items())
        loaded = [m for m in fresh if m is not None]
        if loaded:
            shadow = kind_old == kind_new == "mps" and p["mps_shadow"] > 0
            out["restart"] = p["mps_shadow_s"] if shadow else p["context_s"]
            nbytes = sum(_profile(m).weight_bytes(self.precision) for m in loaded)
            link = max(self.device.pcie_gbs, 1e-3) * 1e9 * p["pcie_eff"]
            out["reload"] = 0.0 if shadow else nbytes / link + p["load_s"]
            out["warmup"] = 0.0 if shadow else p["warmup_s"]
        return out

    def _slices(self, name: str) -> int:
        """Compute slices of MIG profile ``name`` on this device."""
        assert self.device.mig is not None
        return mig_table(self.device.mig).profile(name).compute_slices

    def mean(self, old_layout: Sequence[str], new_layout: Sequence[str],
             models: Sequence[Model], old_models: Sequence[Model] | None = None,
             drain_s: float | None = None) -> float:
        """Expected seconds of the change (the sum of :meth:`steps`)."""
        return float(sum(self.steps(old_layout, new_layout, models, old_models,
                                    drain_s).values()))

    def sample(self, rng: np.random.Generator, old_layout: Sequence[str],
               new_layout: Sequence[str], models: Sequence[Model],
               old_models: Sequence[Model] | None = None,
               drain_s: float | None = None) -> float:
        """One random duration of the change, in seconds (its mean is :meth:`mean`)."""
        steps = np.array(list(self.steps(old_layout, new_layout, models, old_models,
                                         drain_s).values()))
        cv = self.params["cv"]
        if cv == 0:
            return float(steps.sum())
        sigma = np.sqrt(np.log1p(cv * cv))
        factors = rng.lognormal(-0.5 * sigma * sigma, sigma, size=steps.shape)
        return float((steps * factors).sum())


def _kind(layout: Sequence[str]) -> str:
    if list(layout) == ["full"]:
        return "full"
    if all(x.startswith("mps:") for x in layout):
        return "mps"
    if len(layout) == 1 and layout[0].startswith("ts:"):
        return "time"
    return "mig"


def _profile(model: WorkloadProfile | str) -> WorkloadProfile:
    return build_profile(model) if isinstance(model, str) else model


def _name(model: Model) -> str | None:
    if model is None:
        return None
    return model if isinstance(model, str) else model.name


def _names(models: Sequence[Model]) -> list[str | None]:
    return [_name(m) for m in models]
