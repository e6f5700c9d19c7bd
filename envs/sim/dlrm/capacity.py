"""Analytic estimates of a deployment: Che hit rates of the row caches and the capacity.

:func:`estimate_capacity` bounds the requests/s the embedding nodes, the links and the dense
devices sustain and gives the unloaded latency (for the env's ``load`` and the SLA default);
its hit rates and cache contents come from :func:`che_hit_rates`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.sim.dlrm.layout import ShardLayout
from envs.sim.dlrm.skew import bucket_masses, cdf
from envs.sim.dlrm.spec import RandomDisruption
from envs.sim.packing import pack, unpack


def che_hit_rates(seg_rows: Sequence[int], seg_track: Sequence[int], rates: Sequence[float],
                  alpha: float, capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """Lookup hit rate and cached rows of segments sharing one LRU cache (Che's approximation).

    Row ``k`` of segment ``j`` is looked up at rate ``rates[j] * p_j(k)``; under LRU it is
    cached with probability ``1 - exp(-rate * T)`` where the characteristic time ``T`` fills
    the cache: ``sum_j sum_{k < track_j} (1 - exp(-rate_jk T)) = capacity``. Rows past the
    tracked head are never cached.

    Returns:
        ``(hit, rows)``: per segment, the fraction of its lookups that hit and the expected
        rows of it in the cache.
    """
    parts: list[tuple[np.ndarray, np.ndarray, float] | None] = []
    for rows, track, rate in zip(seg_rows, seg_track, rates, strict=True):
        if track <= 0 or rate <= 0:
            parts.append(None)
            continue
        edges, _, p = bucket_masses(int(rows), alpha, n_geo=300)
        cut = np.clip(np.minimum(edges[1:], track) - edges[:-1], 0, None).astype(np.float64)
        parts.append((cut, p, float(rate)))

    def fill(T: float) -> tuple[np.ndarray, np.ndarray]:
        hit = np.zeros(len(parts))
        held = np.zeros(len(parts))
        for j, part in enumerate(parts):
            if part is not None:
                c, p, rate = part
                h = -np.expm1(-rate * p * T)
                held[j] = float((c * h).sum())
                hit[j] = float((c * p * h).sum())
        return hit, held

    tracked = sum(float(part[0].sum()) for part in parts if part is not None)
    if tracked <= capacity:
        full = [(0.0, 0.0) if part is None else (float((part[0] * part[1]).sum()),
                                                 float(part[0].sum())) for part in parts]
        return np.array([f[0] for f in full]), np.array([f[1] for f in full])
    lo, hi = 1e-12, 1e15
    for _ in range(80):
        mid = math.sqrt(lo * hi)
        if fill(mid)[1].sum() < capacity:
            lo = mid
        else:
            hi = mid
    return fill(math.sqrt(lo * hi))


def _seg_lookups(lay: ShardLayout) -> np.ndarray:
    """Lookups per request of each segment ``(segments,)``."""
    spec = lay.spec
    S = spec.n_shards
    J = len(lay.seg_rows)
    pooling = np.asarray(spec.pooling, dtype=np.float64)
    seg_share = np.ones(J)
    if spec.row_wise:  # share of the table's lookups in this residue class of ranks
        for j, (t, s) in enumerate(zip(lay.seg_table, lay.seg_shard, strict=True)):
            rows = int(spec.table_rows[t])
            if rows <= 4096:
                ks = np.arange(s, rows, S)
                seg_share[j] = float((cdf(ks + 2.0, rows, spec.alpha)
                                      - cdf(ks + 1.0, rows, spec.alpha)).sum())
            else:
                seg_share[j] = 1.0 / S
    return np.asarray(spec.batch * pooling[lay.seg_table] * seg_share)


@dataclass(frozen=True)
class CapacityEstimate:
    """Requests/s the deployment sustains, by resource, and the unloaded latency.

    Attributes:
        capacity_qps: ``min`` of the three bounds.
        nodes_qps: Bound of the embedding nodes with the best split of each shard's traffic
            over its replicas (and the mean straggler slowdown).
        links_qps: Bound of the busiest link direction under that split.
        dense_qps: Bound of the dense devices.
        solo_s: Latency of one request in an empty system.
        service_s: Expected service time per (shard, node) ``(S, N)`` (inf where not held).
        split: The traffic split used ``(S, N)``.
        hit: Expected lookup hit rate per node on its cached segments ``(N,)``.
        row_hit: Expected hit rate per (node, shard) ``(N, S)`` (a prior for the router).
        warm_rows: Expected rows of each segment in each node's cache ``(N, segments)``.
    """

    capacity_qps: float
    nodes_qps: float
    links_qps: float
    dense_qps: float
    solo_s: float
    service_s: np.ndarray
    split: np.ndarray
    hit: np.ndarray
    row_hit: np.ndarray
    warm_rows: np.ndarray

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["warm_rows"] = pack(self.warm_rows)  # integers, mostly repeats: compressed
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["warm_rows"] = unpack(state["warm_rows"])
        object.__setattr__(self, "__dict__", state)  # frozen: no __setattr__


def estimate_capacity(layout: ShardLayout, stragglers: RandomDisruption | None = None,
                      iterations: int = 300) -> CapacityEstimate:
    """Analytic capacity of a deployment (Che hit rates, balanced split, per-resource bounds).

    Each replica is assumed to get an equal share of its shard's lookups for the hit rates;
    the split that balances node load is then found by iterative proportional fitting. The
    simulator's caches work at sub-request granularity and routing changes hit rates, so the
    true saturation point differs by some percent (``tests/test_shard_sim.py`` measures it).
    """
    lay = layout
    spec = lay.spec
    N, S = spec.n_nodes, spec.n_shards
    J = len(lay.seg_rows)
    seg_lookups = _seg_lookups(lay)
    hit_seg = np.zeros((N, J))
    warm = np.zeros((N, J), dtype=np.int64)
    node_hit = np.zeros(N)
    memo: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
    reps = np.array([len(set(r)) for r in spec.replicas], dtype=np.float64)
    for n in range(N):
        held = [j for j in range(J) if lay.holds[n, lay.seg_shard[j]] and not lay.seg_pinned[j]]
        if not held:
            continue
        rates = seg_lookups[held] / reps[lay.seg_shard[held]]
        key = (*held, -lay.cache_rows[n])
        if key not in memo:
            memo[key] = che_hit_rates(lay.seg_rows[held].tolist(), lay.seg_track[held].tolist(),
                                      rates.tolist(), spec.alpha, lay.cache_rows[n])
        h, rows_held = memo[key]
        hit_seg[n, held] = h
        warm[n, held] = np.floor(rows_held).astype(np.int64)
        node_hit[n] = float((h * rates).sum() / rates.sum())
    service = np.full((S, N), np.inf)
    lookups_s = np.zeros(S)
    row_hit = np.full((N, S), 0.5)
    for s in range(S):
        segs = np.flatnonzero(lay.seg_shard == s)
        total = float(seg_lookups[segs].sum())
        lookups_s[s] = total
        cach = segs[~lay.seg_pinned[segs]]
        for n in range(N):
            if not lay.holds[n, s]:
                continue
            miss = float((seg_lookups[cach] * (1.0 - hit_seg[n, cach])).sum())
            service[s, n] = spec.node_overhead_s + max(lay.c_fast_list[n] * (total - miss),
                                                       lay.c_slow_list[n] * miss)
            if len(cach) and seg_lookups[cach].sum() > 0:
                row_hit[n, s] = 1.0 - miss / float(seg_lookups[cach].sum())
    held_sn = np.isfinite(service)
    cost = np.where(held_sn, service, 0.0)
    x = held_sn / held_sn.sum(axis=1, keepdims=True)
    for _ in range(iterations):
        load = (cost * x).sum(axis=0)
        x = np.where(held_sn, x / np.maximum(load, 1e-12)[None, :], 0.0)
        x = x / x.sum(axis=1, keepdims=True)
    load = (cost * x).sum(axis=0)
    derate = 1.0
    if stragglers is not None:
        derate = 1.0 + stragglers.fraction * (stragglers.factor - 1.0)
    nodes_qps = 1.0 / (float(load.max()) * derate)
    req_bytes = spec.header_bytes + lookups_s * spec.id_bytes
    resp_bytes = lay.resp_bytes
    down = (x * req_bytes[:, None]).sum(axis=0)
    up = (x * resp_bytes[:, None]).sum(axis=0)
    bps = np.array([lk.payload_bps for lk in spec.links])
    links_qps = float(np.min(bps / np.maximum(np.maximum(down, up), 1e-12)))
    dense_qps = spec.dense_servers / (spec.bottom_s + spec.top_s)
    fixed = np.array([(lk.latency_us + lk.rpc_us) * 1e-6 for lk in spec.links])
    fan = [float(np.min(np.where(held_sn[s], 2 * fixed + req_bytes[s] / bps + service[s]
                                 + resp_bytes[s] / bps, np.inf))) for s in range(S)]
    solo = max(spec.bottom_s, max(fan)) + spec.top_s
    return CapacityEstimate(min(nodes_qps, links_qps, dense_qps), nodes_qps, links_qps,
                            dense_qps, solo, service, x, node_hit, row_hit, warm)


def added_row_hit(layout: ShardLayout, estimate: CapacityEstimate) -> np.ndarray:
    """Hit rate of every (node, shard) ``(N, S)``, as :attr:`CapacityEstimate.row_hit`: where
    the node holds the shard, the estimate's; elsewhere the Che estimate of the node's cache
    (its own size) holding its shards plus that one, with each shard's lookups split evenly over
    its replicas (the added shard's over one more). A prior for placing a new replica."""
    lay = layout
    spec = lay.spec
    N, S = spec.n_nodes, spec.n_shards
    seg_lookups = _seg_lookups(lay)
    reps = np.array([len(set(r)) for r in spec.replicas], dtype=np.float64)
    out = np.array(estimate.row_hit, dtype=np.float64, copy=True)
    memo: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
    for n in range(N):
        for s in range(S):
            if lay.holds[n, s]:
                continue
            cach = np.flatnonzero((lay.seg_shard == s) & ~lay.seg_pinned)
            if not len(cach) or seg_lookups[cach].sum() <= 0:
                continue
            held = np.array([j for j in range(len(lay.seg_rows)) if not lay.seg_pinned[j]
                             and (lay.holds[n, lay.seg_shard[j]] or lay.seg_shard[j] == s)])
            sh = lay.seg_shard[held]
            rates = seg_lookups[held] / (reps[sh] + (sh == s))
            key = (*held.tolist(), -lay.cache_rows[n])
            if key not in memo:
                memo[key] = che_hit_rates(lay.seg_rows[held].tolist(),
                                          lay.seg_track[held].tolist(), rates.tolist(),
                                          spec.alpha, lay.cache_rows[n])
            h = memo[key][0]
            mine = sh == s
            miss = float((seg_lookups[held][mine] * (1.0 - h[mine])).sum())
            out[n, s] = 1.0 - miss / float(seg_lookups[cach].sum())
    return out
