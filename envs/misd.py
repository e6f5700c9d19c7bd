"""Pieces shared by the MISD environments (one GPU, many models): layouts, tables, slowdowns.

:func:`normalise_layout` reads a layout in any of the accepted spellings for a sharing mode;
:class:`PartitionTables` turns a layout into what the simulators read (latency per batch
size, which models fit, power, the layout's nominal capacity); :class:`CoRunnerSlowdowns` is
the picklable interference callable :class:`envs.sim.misd.SharedGpuSim` asks when a batch
starts or stops.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwmodels.interference import Demand, InterferenceModel
from hwmodels.latency import LatencyModel
from hwmodels.partitions import Partition, make_layout
from hwmodels.specs import DeviceSpec
from hwmodels.workloads import WorkloadProfile

#: Sharing modes of the ``sharing`` argument: MIG slices, MPS shares, time slices.
SHARING_MODES = ("mig", "mps", "ts")


def normalise_layout(layout: Sequence[Any], sharing: str | None = None) -> tuple[list[str], str]:
    """A layout spec for :func:`hwmodels.partitions.make_layout` and its sharing mode.

    Accepted spellings: MIG profile names (``[3g, 2g, 1g, 1g]``, or ``[full]``); MPS shares as
    ``[mps:50, mps:30, mps:20]`` or, with ``sharing="mps"``, plain percentages ``[50, 30,
    20]``; time slicing as ``[ts:3]`` or, with ``sharing="ts"``, ``[3]`` or ``[ts, ts, ts]``.

    Args:
        layout: The layout as given.
        sharing: ``mig``, ``mps``, ``ts`` or None (inferred from the layout).

    Raises:
        ValueError: an unknown sharing mode, or a layout that does not match it.
    """
    items = [str(x).strip() for x in layout]
    if not items:
        raise ValueError("layout is empty")
    if sharing is None:
        if all(x.startswith("mps:") for x in items):
            sharing = "mps"
        elif all(x.startswith("ts") for x in items):
            sharing = "ts"
        else:
            sharing = "mig"
    if sharing not in SHARING_MODES:
        raise ValueError(f"sharing '{sharing}': unknown; known: {', '.join(SHARING_MODES)}")
    if sharing == "mps":
        out = [x if x.startswith("mps:") else f"mps:{x}" for x in items]
    elif sharing == "ts":
        if len(items) == 1 and items[0].startswith("ts:"):
            out = items
        elif len(items) == 1 and items[0].isdigit():
            out = [f"ts:{items[0]}"]
        elif all(x == "ts" for x in items):
            out = [f"ts:{len(items)}"]
        else:
            raise ValueError(f"layout {items}: time slicing looks like [ts:3], [3] or "
                             "[ts, ts, ts]")
    else:
        bad = [x for x in items if x.startswith(("mps:", "ts"))]
        if bad:
            raise ValueError(f"layout {items}: {bad} are not MIG profiles; set sharing: mps|ts")
        out = items
    return out, sharing


@dataclass(frozen=True)
class PartitionTables:
    """What the simulators read about one layout.

    Attributes:
        partitions: The partitions.
        latency: ``latency[p][m][b - 1]``: seconds of a batch of ``b`` items.
        fits: ``fits[p][m]``: the model's weights (+20% workspace) fit the partition.
        power_w: ``(idle_w, busy_w)`` per partition; time slices split the device's idle power
            and each draws the device's full dynamic power while it runs.
        capacity_qps: Queries/s the layout sustains for the mix at full batches (each
            partition serving the whole mix it can hold; time slices count as one device).
        per_item_s: ``(P, M)`` seconds per item at full batches (inf where it does not fit).
    """

    partitions: tuple[Partition, ...]
    latency: list[list[list[float]]]
    fits: list[list[bool]]
    power_w: list[tuple[float, float]]
    capacity_qps: float
    per_item_s: np.ndarray

    @classmethod
    def build(cls, device: DeviceSpec, layout: Sequence[str], profiles: Sequence[WorkloadProfile],
              probabilities: np.ndarray, max_batch: int, precision: str = "fp16",
              table_len: int | None = None,
              cache: dict[tuple[Any, ...], np.ndarray] | None = None) -> PartitionTables:
        """Tables for ``layout`` (a :func:`make_layout` spec).

        Args:
            device: The GPU.
            layout: Layout spec.
            profiles: The mix's models.
            probabilities: The mix's popularity (for the capacity).
            max_batch: Largest batch.
            precision: Engine precision.
            table_len: Length of the latency tables (default ``max_batch``).
            cache: Latency tables per ``(partition, model index)``, shared between layouts.

        Raises:
            ValueError: the layout is invalid.
        """
        parts = make_layout(device, list(layout))
        model = LatencyModel(device, precision)
        n = max(max_batch, table_len or 1)
        cache = {} if cache is None else cache
        lat_rows = []
        for part in parts:
            row = []
            for m, prof in enumerate(profiles):
                key = (part, m, n, precision)
                tab = cache.get(key)
                if tab is None:
                    tab = cache[key] = model.table_s(prof, part, n)
                row.append(tab)
            lat_rows.append(row)
        lat = np.array(lat_rows)  # (P, M, B)
        fits = np.array([[prof.weight_bytes(precision) * 1.2 <= part.mem_gb * 1e9
                          for prof in profiles] for part in parts])
        per_item = np.where(fits, lat[:, :, max_batch - 1] / max_batch, np.inf)
        mix_cost = (per_item * probabilities).sum(axis=1)
        caps = np.where(np.isfinite(mix_cost), 1.0 / mix_cost, 0.0)
        sliced = np.array([p.mode == "time" for p in parts])
        cap = float(caps[~sliced].sum()) + (float(caps[sliced].sum() / sliced.sum())
                                            if sliced.any() else 0.0)
        n_ts = int(sliced.sum())
        power = []
        for part in parts:
            if part.mode == "time":
                idle = device.idle_w / n_ts
                power.append((idle, idle + device.tdp_w - device.idle_w))
            else:
                share = part.sms / device.sm_count
                power.append((device.idle_w * share, device.tdp_w * share))
        return cls(parts, lat.tolist(), fits.tolist(), power, cap, per_item)


class CoRunnerSlowdowns:
    """The interference callable of :class:`envs.sim.misd.SharedGpuSim` over named layouts.

    ``slowdowns(layout_id, jobs)`` looks the layout's partitions (per slot; None for an empty
    slot) up in ``layouts`` and returns the factors of
    :meth:`InterferenceModel.slowdowns_from_demands` for the running jobs, one per slot (1 for
    idle and empty slots). The formula is evaluated here on plain floats, term for term and in
    the same order as the interference model (so the same floats; a test compares them), which
    is several times faster than going through its dataclasses: the simulator asks whenever a
    batch starts or stops in a running set it has not seen yet.

    Args:
        model: The calibrated interference model of the device.
        profiles: The mix's models (``jobs`` name them by index).
        layouts: Partitions per slot of each layout id.
        isolated_mig: Treat MIG slices as perfectly isolated (factor 1), as
            ``PartitionPlacement-v0`` always has.
    """

    def __init__(self, model: InterferenceModel, profiles: Sequence[WorkloadProfile],
                 layouts: Mapping[Hashable, Sequence[Partition | None]],
                 isolated_mig: bool = True) -> None:
        self.model = model
        self.profiles = list(profiles)
        self.layouts = dict(layouts)
        self.isolated_mig = isolated_mig
        self._demands: dict[tuple[int, int, Partition], Demand] = {}
        # Per (layout id, slot, model, items): (c, m, d, s, busy, overhead) of the job there.
        self._rows: dict[tuple[Hashable, int, int, int], tuple[float, ...]] = {}
        self._domains: dict[Hashable, list[str | None]] = {}
        p = model.params
        self._mig, self._ts = p["mig"], p["ts_switch"]
        self._mps = (p["mps_sm"], p["mps_bw"], p["mps_cache"])
        self._cpu = model.device.kind == "cpu"
        self._total = float(model.device.sm_count)
        self._sigma = model.device.sm_contention
        self._mig_total = model._mig_total

    def demand(self, m: int, items: int, part: Partition) -> Demand:
        """The solo-run demand of ``items`` of model ``m`` on ``part`` (cached)."""
        key = (m, items, part)
        d = self._demands.get(key)
        if d is None:
            d = self._demands[key] = self.model.demand(self.profiles[m], items, part)
        return d

    def _domain_list(self, layout_id: Hashable) -> list[str | None]:
        """Per slot, its interference domain (None: empty, or isolated)."""
        doms = self._domains.get(layout_id)
        if doms is None:
            doms = []
            for part in self.layouts[layout_id]:
                mode = None if part is None else part.mode
                if mode == "exclusive" or (self.isolated_mig and mode == "mig"):
                    mode = None
                doms.append(mode)
            self._domains[layout_id] = doms
        return doms

    def _row(self, layout_id: Hashable, i: int, m: int, items: int) -> tuple[float, ...]:
        key = (layout_id, i, m, items)
        row = self._rows.get(key)
        if row is None:
            part = self.layouts[layout_id][i]
            assert part is not None
            d = self.demand(m, items, part)
            row = self._rows[key] = (d.compute, d.memory, d.bandwidth, d.sm_share, d.busy,
                                     d.overhead)
        return row

    def __call__(self, layout_id: Hashable,
                 jobs: tuple[tuple[int, int] | None, ...]) -> list[float]:
        """Slowdown per slot."""
        doms = self._domain_list(layout_id)
        n = len(doms)
        out = [1.0] * n
        rows: list[tuple[float, ...] | None] = [None] * n
        count = 0
        for i in range(n):
            job = jobs[i]
            if job is not None and doms[i] is not None:
                rows[i] = self._row(layout_id, i, job[0], job[1])
                count += 1
        if count < 2:
            return out
        shared = ("mps", "time")
        cpu, total, sigma = self._cpu, self._total, self._sigma
        mps_sm, mps_bw, mps_cache = self._mps
        for i in range(n):
            ri = rows[i]
            if ri is None:
                continue
            mode = doms[i]
            others = [rj for j, rj in enumerate(rows) if j != i and rj is not None
                      and (doms[j] == mode or (mode in shared and doms[j] in shared))]
            if not others:
                continue
            # The expressions of InterferenceModel.slowdowns_from_demands, in its order.
            ci, mi, di_bw, si, _, oi = ri
            if mode == "mig":
                rest = max(self._mig_total - si, 1e-9)
                busy = sum(rj[3] * rj[4] for rj in others) / rest
                out[i] = 1.0 + self._mig * min(busy, 1.0)
            elif mode == "time":
                out[i] = (1.0 + sum(rj[4] for rj in others)) * (1.0 + self._ts)
            else:  # mps
                c = ci + (oi if cpu else 0.0)
                bw = sum(rj[2] for rj in others)
                nn = total * (si + sum(rj[3] * (rj[4] + (rj[5] if cpu else 0.0))
                                       for rj in others))
                n_i = total * si
                stretch = (max(1.0, nn / total) * (1.0 + sigma * (min(nn, total) - 1.0))
                           / (1.0 + sigma * max(n_i - 1.0, 0.0)))
                out[i] = (1.0 + c * mps_sm * max(0.0, stretch - 1.0)
                          + (mi * mps_bw + c * mps_cache) * bw
                          + mi * max(0.0, di_bw + bw - 1.0))
        return out

    def __getstate__(self) -> dict[str, Any]:
        # The interference model caches by object id, which a copy must not inherit.
        self.model._cache.clear()
        return self.__dict__.copy()
