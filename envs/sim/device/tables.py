"""Pieces shared by the MISD environments (one GPU, many models): layouts, tables, slowdowns.

:func:`normalise_layout` reads a layout in any of the accepted spellings for a sharing mode;
:class:`PartitionTables` turns a layout into what the simulators read (latency per batch
size, which models fit, power, the layout's nominal capacity); :class:`CoRunnerSlowdowns` is
the picklable interference callable :class:`envs.sim.device.shared.SharedGpuSim` asks when a batch
starts or stops.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.sim.device import compiled_shared as cs
from envs.sim.device.shared import evict_oldest
from hwmodels.interference import Demand, InterferenceModel
from hwmodels.latency import LatencyModel
from hwmodels.partitions import Partition, make_layout
from hwmodels.specs import DeviceSpec
from hwmodels.workloads import WorkloadProfile

#: ``sum()`` of floats adds them one by one in order up to Python 3.11 (3.12 compensates).
_PLAIN_SUM = sys.version_info < (3, 12)

#: What :class:`CoRunnerSlowdowns` reads about one job (see its ``_row``).
_Row = tuple[float, ...]
#: Per slot, a row or a sum of rows (None: none).
_PerSlot = tuple[tuple[float, ...] | None, ...]

#: :meth:`CoRunnerSlowdowns.kernel_tables`' result: domains, compat, rows, constants.
_KernelTables = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
#: Per slot of a layout of MPS shares (and empty slots): its rows by job, the MPS slots, and
#: per slot the other MPS slots (ascending); see :meth:`CoRunnerSlowdowns._mps_info`.
_MpsInfo = tuple[list[dict[tuple[int, int], _Row]], tuple[int, ...], list[tuple[int, ...]]]

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


def per_item_s(latency: np.ndarray, fits: np.ndarray, max_batch: int) -> np.ndarray:
    """``(P, M)`` seconds per item at full batches: a batch of ``max_batch``'s latency divided
    by ``max_batch`` (``inf`` where the model does not fit). ``latency`` is ``(P, M, B)``
    with ``B >= max_batch`` (tables may reach past ``max_batch`` for large requests)."""
    return np.where(fits, latency[:, :, max_batch - 1] / max_batch, np.inf)


def capacity_qps(per_item: np.ndarray, probabilities: np.ndarray,
                 time_sliced: Sequence[bool]) -> float:
    """Queries/s a layout sustains for a mix at full batches: what ``load=1.0`` means.

    Each partition serves the whole mix it can hold (a partition that cannot hold some model
    of the mix counts as zero); time slices take turns on one device, so together they count
    as one partition of their mean capacity.

    Args:
        per_item: :func:`per_item_s`, ``(P, M)``.
        probabilities: The mix's popularity, ``(M,)``.
        time_sliced: Per partition, whether it is a time slice.
    """
    mix_cost = (per_item * probabilities).sum(axis=1)
    caps = np.where(np.isfinite(mix_cost), 1.0 / mix_cost, 0.0)
    sliced = np.asarray(time_sliced, dtype=bool)
    return float(caps[~sliced].sum()) + (float(caps[sliced].sum() / sliced.sum())
                                         if sliced.any() else 0.0)


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
        per_item = per_item_s(lat, fits, max_batch)
        sliced = [p.mode == "time" for p in parts]
        cap = capacity_qps(per_item, probabilities, sliced)
        n_ts = sum(sliced)
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
    """The interference callable of :class:`envs.sim.device.shared.SharedGpuSim` over named layouts.

    ``slowdowns(layout_id, jobs)`` looks the layout's partitions (per slot; None for an empty
    slot) up in ``layouts`` and returns the factors of
    :meth:`InterferenceModel.slowdowns_from_demands` for the running jobs, one per slot (1 for
    idle and empty slots). The formula is evaluated here on plain floats, term for term and in
    the same order as the interference model (so the same floats; a test compares them), which
    is several times faster than going through its dataclasses: the simulator asks whenever a
    batch starts or stops in a running set it has not seen yet. On layouts of MPS shares (and
    empty slots) the sums and the factors are fused (:meth:`_mps_call`, :meth:`_mps_predicted`):
    the same statements without the cache of sums, whose key costs more than the sums there.

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
        # Per (layout id, slot, model, items): the job's row (see _row).
        self._rows: dict[tuple[Hashable, int, int, int], tuple[float, ...]] = {}
        self._domains: dict[Hashable, list[str | None]] = {}
        # Per (layout id, jobs): _aggregates' result.
        self._aggs: dict[tuple[Hashable, tuple[tuple[int, int] | None, ...]],
                         tuple[_PerSlot, _PerSlot]] = {}
        self._info: dict[Hashable, tuple[list[str | None], list[tuple[int, ...]],
                                         list[dict[tuple[int, int], _Row]]]] = {}
        # Per layout id: _mps_info's result (None: not a layout of MPS shares only).
        self._fused: dict[Hashable, _MpsInfo | None] = {}
        # Per slot, the sums over its co-runners (see _aggregates) for the last (layout id,
        # jobs) _mps_call or _mps_predicted saw.
        self._last_sums: tuple[Hashable, tuple[tuple[int, int] | None, ...],
                               tuple[tuple[float, float] | None, ...]] | None = None
        # Per (layout id, job): the job's row on every MPS slot (None elsewhere).
        self._job_rows: dict[tuple[Hashable, tuple[int, int]], _PerSlot] = {}
        # Per (layout id, models, items): kernel_tables' result.
        self._kernel: dict[tuple[Hashable, int, tuple[int, ...]], _KernelTables] = {}
        p = model.params
        self._mig, self._ts = p["mig"], p["ts_switch"]
        self._mps = (p["mps_sm"], p["mps_bw"], p["mps_cache"])
        self._mps_host, self._mps_overlap = p["mps_host"], p["mps_overlap"]
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

    def _layout_info(self, layout_id: Hashable) -> tuple[
            list[str | None], list[tuple[int, ...]], list[dict[tuple[int, int], _Row]]]:
        """Per slot of the layout: its domain, the slots it interferes with (ascending, itself
        excluded; none for a slot without a domain) and its rows by job (filled lazily)."""
        info = self._info.get(layout_id)
        if info is None:
            doms = self._domain_list(layout_id)
            shared = ("mps", "time")
            compat = []
            for i, mode in enumerate(doms):
                compat.append(() if mode is None else tuple(
                    j for j, dj in enumerate(doms) if j != i and dj is not None
                    and (dj == mode or (mode in shared and dj in shared))))
            info = self._info[layout_id] = (doms, compat, [{} for _ in doms])
        return info

    def _mps_info(self, layout_id: Hashable) -> _MpsInfo | None:
        """:data:`_MpsInfo` of a layout whose slots are MPS shares or empty (None for any
        other layout, or where ``sum()`` does not add one by one): what the fast paths of
        :meth:`__call__` and :meth:`predicted` read."""
        if layout_id in self._fused:
            return self._fused[layout_id]
        doms, compat, slot_rows = self._layout_info(layout_id)
        info: _MpsInfo | None = None
        if _PLAIN_SUM and all(d is None or d == "mps" for d in doms):
            slots = tuple(i for i, d in enumerate(doms) if d is not None)
            info = (slot_rows, slots, compat)
        self._fused[layout_id] = info
        return info

    def _row(self, layout_id: Hashable, i: int, m: int, items: int) -> tuple[float, ...]:
        """What the formula reads about the job on slot ``i``, each term the same float
        whatever it is combined with (see :meth:`_factor`)::

            (bandwidth, sm_share * busy, busy, sm_share * (busy + overhead if cpu),
             sm_share, c * mps_sm, memory * mps_bw + c * mps_cache, memory,
             1 + sigma * max(sm_count * sm_share - 1, 0), max(mig_total - sm_share, 1e-9),
             (overhead + underfill) * mps_host, host * (1 + mps_host), c * mps_overlap)

        with ``c = compute + (overhead if cpu)``.
        """
        key = (layout_id, i, m, items)
        row = self._rows.get(key)
        if row is None:
            part = self.layouts[layout_id][i]
            assert part is not None
            d = self.demand(m, items, part)
            cpu = self._cpu
            mps_sm, mps_bw, mps_cache = self._mps
            si, mi = d.sm_share, d.memory
            c = d.compute + (d.overhead if cpu else 0.0)
            n_i = self._total * si
            row = self._rows[key] = (
                d.bandwidth, si * d.busy, d.busy, si * (d.busy + (d.overhead if cpu else 0.0)),
                si, c * mps_sm, mi * mps_bw + c * mps_cache, mi,
                1.0 + self._sigma * max(n_i - 1.0, 0.0), max(self._mig_total - si, 1e-9),
                (d.overhead + d.underfill) * self._mps_host, d.host * (1.0 + self._mps_host),
                c * self._mps_overlap)
        return row

    def _slot_row(self, layout_id: Hashable, rows: dict[tuple[int, int], tuple[float, ...]],
                  i: int, job: tuple[int, int]) -> tuple[float, ...]:
        row = rows.get(job)
        if row is None:
            row = rows[job] = self._row(layout_id, i, job[0], job[1])
        return row

    def _aggregates(self, layout_id: Hashable, jobs: tuple[tuple[int, int] | None, ...]
                    ) -> tuple[_PerSlot, _PerSlot]:
        """The rows of ``jobs`` (None: idle, or no domain) and per slot ``p`` with a domain,
        the sums over the jobs running on its compatible
        slots ``j != p`` that the formula reads (None: no such job): ``(bandwidth, sm_share *
        (busy + overhead if cpu))`` for MPS, ``(busy,)`` for time slices, ``(sm_share *
        busy,)`` for MIG. Each is added up in slot order from 0, as ``sum()`` does, so it is
        the same float as the interference model's sum. Cached: the simulator asks for the
        running jobs when a batch starts or stops (all slots), and again for the predictions
        of the decisions until the next one (each slot, for the query's model)."""
        key = (layout_id, jobs)
        hit = self._aggs.get(key)
        if hit is not None:
            return hit
        doms, compat, slot_rows = self._layout_info(layout_id)
        n = len(doms)
        rows: list[tuple[float, ...] | None] = [None] * n
        for i in range(n):
            job = jobs[i]
            if job is not None and doms[i] is not None:
                row = slot_rows[i].get(job)
                rows[i] = row if row is not None else self._slot_row(
                    layout_id, slot_rows[i], i, job)
        aggs: list[tuple[float, ...] | None] = [None] * n
        plain = _PLAIN_SUM
        shared: list[int] = []  # MPS slots: summed by _mps_sums
        for p in range(n):
            mode = doms[p]
            if mode is None:
                continue
            if not plain:
                aggs[p] = self._sums(mode, compat[p], rows)
            elif mode == "time" or mode == "mig":  # as _sums: sum() adds in order from 0
                i = 2 if mode == "time" else 1
                acc: float = 0
                k = 0
                for j in compat[p]:
                    rj = rows[j]
                    if rj is not None:
                        acc += rj[i]
                        k = 1
                if k:
                    aggs[p] = (acc,)
            else:
                shared.append(p)
        if shared:
            sums = self._mps_sums(rows, (slot_rows, tuple(shared), compat))
            for p in shared:
                aggs[p] = sums[p]
        # Stored as tuples: tuples of floats leave the garbage collector's watch, so a large
        # cache does not slow its collections down (lists would stay tracked).
        result = (tuple(rows), tuple(aggs))
        if len(self._aggs) > 100_000:
            evict_oldest(self._aggs)
        self._aggs[key] = result
        return result

    @staticmethod
    def _sums(mode: str | None, slots: tuple[int, ...], rows: list[tuple[float, ...] | None]
              ) -> tuple[float, ...] | None:
        """One slot's entry of :meth:`_aggregates`, over the rows of ``slots``, with
        ``sum()`` (:meth:`_aggregates` inlines the same where ``sum()`` adds one by one)."""
        others = [rj for j in slots if (rj := rows[j]) is not None]
        if not others:
            return None
        if mode == "time":
            return (sum([rj[2] for rj in others]),)
        if mode == "mig":
            return (sum([rj[1] for rj in others]),)
        return (sum([rj[0] for rj in others]), sum([rj[3] for rj in others]))

    def _factors(self, doms: list[str | None], mine: Sequence[tuple[float, ...] | None],
                 aggs: Sequence[tuple[float, ...] | None]) -> list[float]:
        """Per slot ``i``, the slowdown of the job of row ``mine[i]`` next to the co-runners
        summed up in ``aggs[i]`` (1 without either): the expressions of
        :meth:`InterferenceModel.slowdowns_from_demands`, in its order (the same floats;
        ``max(a, x)`` is written ``x if x > a else a`` and ``min(x, a)`` ``a if a < x else x``,
        which is what they return; with ``sm_contention == 0`` the stretch's factors of
        exactly 1 are left out, as the demands are finite)."""
        out = [1.0] * len(doms)
        shared: list[int] = []  # MPS slots: their formula is _mps_factors'
        for i, ri in enumerate(mine):
            if ri is None:
                continue
            agg = aggs[i]
            if agg is None:
                continue
            mode = doms[i]
            if mode == "time":
                out[i] = (1.0 + agg[0]) * (1.0 + self._ts)
            elif mode == "mig":
                busy = agg[0] / ri[9]
                out[i] = 1.0 + self._mig * (1.0 if 1.0 < busy else busy)
            else:  # mps (and any other shared mode, as in the interference model)
                shared.append(i)
        if shared:
            self._mps_factors(out, tuple(shared), mine, aggs)
        return out

    def __call__(self, layout_id: Hashable,
                 jobs: tuple[tuple[int, int] | None, ...]) -> list[float]:
        """Slowdown per slot."""
        try:
            mps = self._fused[layout_id]
        except KeyError:
            mps = self._mps_info(layout_id)
        if mps is not None:
            return self._mps_call(layout_id, jobs, mps)
        doms = self._layout_info(layout_id)[0]
        count = 0
        for i, job in enumerate(jobs):
            if job is not None and doms[i] is not None:
                count += 1
        if count < 2:
            return [1.0] * len(doms)
        rows, aggs = self._aggregates(layout_id, jobs)
        return self._factors(doms, rows, aggs)

    def predicted(self, layout_id: Hashable, jobs: tuple[tuple[int, int] | None, ...],
                  job: tuple[int, int], active: Sequence[bool] | None = None) -> list[float]:
        """Per slot ``p``, the slowdown ``job`` would see on ``p`` next to ``jobs`` on the
        other slots: ``self(layout_id, jobs with p's replaced by job)[p]`` for every ``p``
        (1 where ``active[p]`` is False), computed in one pass."""
        try:
            mps = self._fused[layout_id]
        except KeyError:
            mps = self._mps_info(layout_id)
        if mps is not None:
            return self._mps_predicted(layout_id, jobs, job, active, mps)
        doms, _, slot_rows = self._layout_info(layout_id)
        aggs = self._aggregates(layout_id, jobs)[1]
        n = len(doms)
        mine: list[tuple[float, ...] | None] = [None] * n
        for i in range(n):
            if aggs[i] is not None and (active is None or active[i]):
                row = slot_rows[i].get(job)
                mine[i] = row if row is not None else self._slot_row(
                    layout_id, slot_rows[i], i, job)
        return self._factors(doms, mine, aggs)

    # MPS shares only: _aggregates and _factors fused, without the cache of sums (cheaper
    # than building its key). The same statements, so the same floats (a test compares).
    def _mps_rows(self, layout_id: Hashable, jobs: tuple[tuple[int, int] | None, ...],
                  info: _MpsInfo) -> tuple[list[tuple[float, ...] | None], int]:
        """The rows of the running ``jobs`` per slot (None: idle), and how many run."""
        slot_rows, slots, _ = info
        rows: list[tuple[float, ...] | None] = [None] * len(jobs)
        count = 0
        for i in slots:
            job = jobs[i]
            if job is not None:
                row = slot_rows[i].get(job)
                rows[i] = row if row is not None else self._slot_row(
                    layout_id, slot_rows[i], i, job)
                count += 1
        return rows, count

    @staticmethod
    def _mps_sums(rows: list[tuple[float, ...] | None], info: _MpsInfo
                  ) -> tuple[tuple[float, float] | None, ...]:
        """Per slot, ``(bandwidth, sm_share * busy)`` summed over the jobs on its co-runner
        slots in slot order (None: no co-runner runs), idle slots included."""
        _, slots, compat = info
        sums: list[tuple[float, float] | None] = [None] * len(rows)
        for i in slots:
            bw: float = 0
            nn: float = 0
            k = 0
            for j in compat[i]:
                rj = rows[j]
                if rj is not None:
                    bw += rj[0]
                    nn += rj[3]
                    k = 1
            if k:
                sums[i] = (bw, nn)
        return tuple(sums)

    def _mps_factors(self, out: list[float], slots: tuple[int, ...],
                     rows: Sequence[tuple[float, ...] | None],
                     sums: Sequence[tuple[float, ...] | None],
                     active: Sequence[bool] | None = None) -> list[float]:
        """``out[i]``, for each MPS slot ``i`` with a row ``rows[i]`` and co-runner sums
        ``sums[i]`` (and ``active[i]``, when given): the slowdown of the job of that row next
        to those co-runners. One call for all slots; the one place of the MPS formula (the
        fused paths and :meth:`_factors` call it). Returns ``out``."""
        total, sigma = self._total, self._sigma
        for i in slots:
            ri = rows[i]
            agg = sums[i]
            if ri is None or agg is None or (active is not None and not active[i]):
                continue
            bw = agg[0]
            nn = total * (ri[4] + agg[1])
            x = nn / total
            if sigma == 0.0:
                stretch = x if x > 1.0 else 1.0
            else:
                stretch = ((x if x > 1.0 else 1.0)
                           * (1.0 + sigma * ((total if total < nn else nn) - 1.0)) / ri[8])
            x = stretch - 1.0
            y = ri[0] + bw - 1.0
            f = (1.0 + ri[10] + ri[5] * (x if x > 0.0 else 0.0) + ri[6] * bw
                 + ri[7] * (y if y > 0.0 else 0.0) + ri[12] * agg[1])
            out[i] = ri[11] if ri[11] > f else f
        return out

    def _mps_call(self, layout_id: Hashable, jobs: tuple[tuple[int, int] | None, ...],
                  info: _MpsInfo) -> list[float]:
        """:meth:`__call__` on a layout of MPS shares."""
        rows, count = self._mps_rows(layout_id, jobs, info)
        out = [1.0] * len(jobs)
        if count < 2:
            return out
        # The sums of idle slots too: _mps_predicted reads them next (for the same jobs).
        # With count >= 2 every running job has a co-runner, so its sums are not None.
        sums = self._mps_sums(rows, info)
        self._last_sums = (layout_id, jobs, sums)
        return self._mps_factors(out, info[1], rows, sums)

    def _mps_predicted(self, layout_id: Hashable, jobs: tuple[tuple[int, int] | None, ...],
                       job: tuple[int, int], active: Sequence[bool] | None,
                       info: _MpsInfo) -> list[float]:
        """:meth:`predicted` on a layout of MPS shares. The sums over the co-runners of each
        slot are kept for the last ``(layout_id, jobs)`` asked here or in :meth:`_mps_call`
        (the simulator asks for the running set when it changes, then for jobs next to it);
        the rows of ``job`` on every MPS slot, per ``(layout_id, job)``."""
        slot_rows, slots, _ = info
        last = self._last_sums
        if last is not None and last[1] == jobs and last[0] == layout_id:
            sums = last[2]
        else:
            sums = self._mps_sums(self._mps_rows(layout_id, jobs, info)[0], info)
            self._last_sums = (layout_id, jobs, sums)
        key = (layout_id, job)
        mine = self._job_rows.get(key)
        if mine is None:
            rows: list[tuple[float, ...] | None] = [None] * len(sums)
            for i in slots:
                rows[i] = self._slot_row(layout_id, slot_rows[i], i, job)
            mine = self._job_rows[key] = tuple(rows)
        return self._mps_factors([1.0] * len(sums), slots, mine, sums, active)

    @property
    def kernel_ready(self) -> bool:
        """Whether :meth:`kernel_tables` gives tables (else it returns None)."""
        return _PLAIN_SUM

    def kernel_tables(self, layout_id: Hashable, n_models: int, items: tuple[int, ...]
                      ) -> _KernelTables | None:
        """What the compiled interval (:mod:`envs.sim.device.compiled_shared`) reads to compute
        this callable's factors for ``layout_id``, the same floats: per slot its domain
        (``DOM_*``), which slots interfere with which (``compat[i, j]``, ``i`` excluded), the
        rows of :meth:`_row` (``rows[slot, model, n]``) for every model and each batch size
        ``n`` of ``items`` (ascending; the sizes a batch can have) on every slot with a
        partition (NaN elsewhere), and the constants ``(sm_count, sm_contention, mig,
        ts_switch)``. Cached per ``(layout_id, n_models, items)``. None where the kernel's
        sums would not be the same floats (``sum()`` compensates from Python 3.12 on)."""
        if not _PLAIN_SUM:
            return None
        key = (layout_id, n_models, items)
        hit = self._kernel.get(key)
        if hit is not None:
            return hit
        doms, compat, _ = self._layout_info(layout_id)
        P = len(doms)
        code = {None: cs.DOM_NONE, "mps": cs.DOM_MPS, "time": cs.DOM_TIME, "mig": cs.DOM_MIG}
        dom = np.array([code.get(d, cs.DOM_MPS) for d in doms], dtype=np.int64)
        comp = np.zeros((P, P), dtype=np.bool_)
        for i, js in enumerate(compat):
            comp[i, list(js)] = True
        rows = np.full((P, n_models, items[-1] + 1, cs.N_ROW), np.nan)
        parts = self.layouts[layout_id]
        for i in range(P):
            if parts[i] is None:
                continue
            for m in range(n_models):
                for it in items:
                    rows[i, m, it] = self._row(layout_id, i, m, it)
        consts = np.array([self._total, self._sigma, self._mig, self._ts], dtype=np.float64)
        hit = self._kernel[key] = (dom, comp, rows, consts)
        return hit

    def __getstate__(self) -> dict[str, Any]:
        # The interference model caches by object id, which a copy must not inherit.
        self.model._cache.clear()
        state = self.__dict__.copy()
        state["_aggs"] = {}  # a cache of results, rebuilt as needed
        state["_last_sums"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # States pickled before the fused MPS paths existed lack their (derived) caches.
        self.__dict__.setdefault("_fused", {})
        self.__dict__.setdefault("_last_sums", None)
        self.__dict__.setdefault("_job_rows", {})
        self.__dict__.setdefault("_kernel", {})
