"""``ldsgym/ShardRouting-v0``: route each sub-request of a sharded DLRM to one replica."""

from __future__ import annotations

import math
import operator
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.actions import checked_action
from envs.rewards import GoodputReward, Outcome, Reward, ViolationReward, make_reward
from envs.sim.dlrm import (
    CapacityEstimate,
    ClusterSpec,
    FaultEvent,
    RandomDisruption,
    ShardLayout,
    ShardSim,
    balance_tables,
    estimate_capacity,
    kernels,
    place_replicas,
)
from envs.sim.dlrm.compiled import CompiledShardSim, make_shard_sim
from envs.sim.dlrm.popularity import ShardPopularity, expected_reads
from envs.sim.dlrm.skew import DEFAULT_ALPHA, FITTED
from hwmodels.energy import ClusterEnergy
from hwmodels.latency import LatencyModel
from hwmodels.links import LinkSpec, get_link
from hwmodels.partitions import make_layout
from hwmodels.power import PowerModel
from hwmodels.specs import DeviceSpec, load_device
from hwmodels.storage import get_tier
from hwmodels.workloads import DLRM_V2_MULTI_HOT, DLRM_V2_ROWS, WorkloadProfile, build_profile
from traces.arrivals import ModelClass, TraceSource, WorkloadMix, mix_from_spec
from traces.presets import get_trace

Obs = dict[str, np.ndarray]
_CLIP = 10.0
_QUEUE_NORM = 8.0  # outstanding sub-requests per node that read as 1.0
_mul = operator.mul
#: Observation entries added by ``request_obs=True`` (see the class docstring).
REQUEST_KEYS = ("req_routed", "slack", "link_depth", "ssd_depth")
#: Reward types that are pure functions of the outcome (their value of an empty one is cached).
_PURE_REWARDS = (GoodputReward, ViolationReward)
#: The compiled step's link sums (segment.send_observe) add floats in order from 0.0, as
#: CPython's ``sum`` did before 3.12; from 3.12 ``sum`` compensates its rounding (Neumaier),
#: so there the fused step takes its info from ``_info`` (the reference) instead.
_KERNEL_SUMS = sys.version_info < (3, 12)
_INT_TYPES = (int, np.int64)  # actions that take step's inline check (checked_action's)


#: The ``clip`` ufunc: ``np.clip`` without its Python-level wrapper (same loops, same bits).
clip_ufunc: np.ufunc = (getattr(np, "_core", None) or np.core).umath.clip


def clip(x: float, hi: float = _CLIP) -> float:
    """``np.clip(x, 0, hi)`` of one float, to the bit (NaN and -0.0 pass through)."""
    return 0.0 if x < 0.0 else (hi if x > hi else x)

#: Straggler defaults: each node slows down 3x about 10 times a second for ~10 ms (about 9% of
#: the time). Time is compressed so that an episode of a few hundred milliseconds sees some.
DEFAULT_STRAGGLERS: dict[str, float] = {"rate_hz": 10.0, "duration_ms": 10.0, "factor": 3.0}
#: Random failures for ``faults="random"``: each node fails about twice a second for ~20 ms.
DEFAULT_RANDOM_FAULTS: dict[str, float] = {"rate_hz": 2.0, "duration_ms": 20.0}


@dataclass(frozen=True)
class ShardPreset:
    """A registered variant of ``ShardRouting`` (constructor kwargs that differ from the base).

    Attributes:
        nodes: Embedding nodes.
        shards: Shards.
        replication: Replicas per shard.
        partition: ``"table"`` or ``"row"``.
        extra: Other constructor kwargs.
        shared_data: The trace replays real data from the shared directory: registered only
            where that data is present.
    """

    nodes: int = 8
    shards: int = 8
    replication: int = 3
    partition: str = "table"
    extra: dict[str, Any] = field(default_factory=dict)
    shared_data: bool = False

    def kwargs(self) -> dict[str, Any]:
        """The kwargs to register (JSON-able)."""
        return {"nodes": self.nodes, "shards": self.shards, "replication": self.replication,
                "partition": self.partition, **self.extra}


#: ``node_tiers`` of ``ldsgym/ShardRouting-Tiers-v0``: 2 GPU-hosted nodes, their HBM in front
#: of host DRAM (1 GiB of HBM as the row cache), 4 DRAM nodes with an NVMe SSD behind (256 MB
#: row cache) and 2 SSD-backed nodes with a small DRAM cache (8 MB), interleaved (GPU, DRAM,
#: DRAM, SSD, twice) so that each half of the chained-declustered shards sees every kind
#: (grouped, DLRMv2's hot table would sit on both GPU nodes and the links would bound the
#: cluster). Tier figures are :data:`hwmodels.storage.TIERS` (hbm: A100-80GB HBM2e 2039 GB/s,
#: published_targets T144; dram: T134; nvme-ssd: T133). A GPU keeps far more reads in flight
#: than a CPU's 64: by Little's law 2039 GB/s x 0.5 us is about 1 MB, 2048 rows of 512 B
#: (an assumption; at 64 the HBM's assumed 0.5 us latency would make it slower than DRAM).
#: The GPU nodes' energy adds the A100-80GB's idle power and its memory-bound dynamic power.
_GPU_NODE: dict[str, Any] = {"fast": "hbm", "slow": "dram", "cache_mb": 1024.0,
                             "queue_depth": 2048.0, "accelerator": "a100-80gb"}
TIER_NODES: tuple[dict[str, Any], ...] = (
    _GPU_NODE,
    {"count": 2, "fast": "dram", "slow": "nvme-ssd", "cache_mb": 256.0},
    {"fast": "dram", "slow": "nvme-ssd", "cache_mb": 8.0},
    _GPU_NODE,
    {"count": 2, "fast": "dram", "slow": "nvme-ssd", "cache_mb": 256.0},
    {"fast": "dram", "slow": "nvme-ssd", "cache_mb": 8.0},
)

#: Variants registered as ``ldsgym/ShardRouting-<name>-v0``.
SHARD_PRESETS: dict[str, ShardPreset] = {
    "16N": ShardPreset(nodes=16, shards=16, replication=3),
    # Table-wise sharding cannot spread DLRMv2's hot 100-lookup table over 64 nodes, so the
    # large cluster hashes rows over 16 shards (4 replicas each: one shard per node).
    "64N": ShardPreset(nodes=64, shards=16, replication=4, partition="row"),
    "RowWise": ShardPreset(partition="row"),
    # The default cluster with the request-aware observation entries (``request_obs``).
    "RequestAware": ShardPreset(extra={"request_obs": True}),
    # Scenarios where a myopic router pays (each with the request-aware entries):
    # heterogeneous nodes: two on 100G, four on 25G, two on 10G links, and the two 10G nodes
    # also serve at half speed all episode (older hosts).
    "Hetero": ShardPreset(extra={
        "request_obs": True,
        "link": ["ethernet-100g"] * 2 + ["ethernet-25g"] * 4 + ["ethernet-10g"] * 2,
        "faults": [{"start_ms": 0.0, "duration_ms": 1e9, "target": n, "kind": "node",
                    "mode": "slow", "factor": 2.0} for n in (6, 7)]}),
    # Scheduled slowdowns of nodes and links during the episode (a few hundred ms).
    "Slowdowns": ShardPreset(extra={
        "request_obs": True,
        "faults": [
            {"start_ms": 20.0, "duration_ms": 60.0, "target": 0, "kind": "node", "mode": "slow",
             "factor": 4.0},
            {"start_ms": 50.0, "duration_ms": 80.0, "target": 3, "kind": "link", "mode": "slow",
             "factor": 4.0},
            {"start_ms": 100.0, "duration_ms": 100.0, "target": 5, "kind": "node",
             "mode": "slow", "factor": 3.0}]}),
    # Bursty arrivals (gamma inter-arrival times with a high coefficient of variation).
    "Bursty": ShardPreset(extra={"request_obs": True, "trace": "gamma-bursty"}),
    # Real bursty arrivals: the Azure LLM code trace (training windows; -test: the held-out
    # last 20%), time compressed to the cluster's rate: at 70% load latency_greedy keeps only
    # 55-71% of requests in their SLA (100% on Poisson arrivals).
    "AzureCode": ShardPreset(extra={"request_obs": True, "trace": "azure-code"},
                             shared_data=True),
    "AzureCode-test": ShardPreset(extra={"request_obs": True, "trace": "azure-code-test"},
                                  shared_data=True),
    "Faults": ShardPreset(extra={"faults": "random"}),
    # Heterogeneous memory tiers per node (TIER_NODES): GPU/HBM, DRAM+SSD and SSD-backed
    # nodes, each shard's replicas on different kinds.
    "Tiers": ShardPreset(extra={"request_obs": True,
                                "node_tiers": [dict(t) for t in TIER_NODES]}),
}


def recsys_tables(model: str, n_tables: int | None = None) -> tuple[tuple[int, ...],
                                                                    tuple[int, ...], int]:
    """``(rows, pooling, dim)`` of a recommendation model's embedding tables.

    ``dlrm-v2`` uses the MLPerf table sizes and multi-hot sizes; other ``recsys`` profiles
    are read from their embedding layers (rows = params / dim, pooling = gathered / dim).
    ``n_tables`` cycles through the model's tables to make a wider (or narrower) model.

    Raises:
        ValueError: not a recommendation model, or ``n_tables < 1``.
    """
    prof = build_profile(model)
    if prof.family != "recsys":
        raise ValueError(f"model '{model}': not a recommendation model (family {prof.family})")
    emb = [lay for lay in prof.layers if lay.kind == "embedding"]
    dim = round(emb[0].act_out)
    if model == "dlrm-v2":
        rows, pooling = tuple(DLRM_V2_ROWS), tuple(DLRM_V2_MULTI_HOT)
    else:
        rows = tuple(int(lay.params // dim) for lay in emb)
        pooling = tuple(round(lay.act_in / dim) for lay in emb)
    if n_tables is not None:
        if n_tables < 1:
            raise ValueError(f"tables must be >= 1, got {n_tables}")
        rows = tuple(rows[t % len(rows)] for t in range(n_tables))
        pooling = tuple(pooling[t % len(pooling)] for t in range(n_tables))
    return rows, pooling, dim


def dense_latency_s(device: DeviceSpec, model: str, batch: int,
                    precision: str = "fp16") -> tuple[float, float]:
    """``(bottom, top)`` MLP latency of one request of ``batch`` samples on the whole device.

    The profile's layers before the embeddings form the bottom MLP; those after (feature
    interaction and the top/over arch) the top MLP; each is timed by the roofline model
    (:class:`hwmodels.latency.LatencyModel`) as a model of its own.
    """
    prof = build_profile(model)
    first = next(i for i, lay in enumerate(prof.layers) if lay.kind == "embedding")
    last = max(i for i, lay in enumerate(prof.layers) if lay.kind == "embedding")
    part = make_layout(device, ["full"])[0]
    lat = LatencyModel(device, precision)
    out = []
    for name, layers in (("bottom", prof.layers[:first]), ("top", prof.layers[last + 1:])):
        sub = WorkloadProfile(f"{model}.{name}", "recsys", tuple(layers), prof.description,
                              prof.source)
        out.append(float(lat.latency_s(sub, batch, part)))
    return out[0], out[1]


def dense_busy_w(device: DeviceSpec, model: str, batch: int, precision: str = "fp16") -> float:
    """Power of a dense device while it runs the DLRM's MLPs (the bottom and top MLPs'
    :meth:`hwmodels.power.PowerModel.busy_w`, weighted by their latencies)."""
    prof = build_profile(model)
    first = next(i for i, lay in enumerate(prof.layers) if lay.kind == "embedding")
    last = max(i for i, lay in enumerate(prof.layers) if lay.kind == "embedding")
    part = make_layout(device, ["full"])[0]
    pm = PowerModel(device, precision)
    num = den = 0.0
    for name, layers in (("bottom", prof.layers[:first]), ("top", prof.layers[last + 1:])):
        sub = WorkloadProfile(f"{model}.{name}", "recsys", tuple(layers), prof.description,
                              prof.source)
        t = float(pm.latency.latency_s(sub, batch, part))
        num += pm.busy_w(sub, batch, part) * t
        den += t
    return num / den if den > 0 else device.idle_w


def _disruption(spec: Mapping[str, float] | None, defaults: Mapping[str, float]
                ) -> RandomDisruption | None:
    if spec is None:
        return None
    d = {**defaults, **spec}
    unknown = set(d) - {"rate_hz", "duration_ms", "factor"}
    if unknown:
        raise ValueError(f"disruption: unknown key(s) {sorted(unknown)}")
    return RandomDisruption(float(d["rate_hz"]), float(d["duration_ms"]) * 1e-3,
                            float(d.get("factor", 1.0)))


#: Keys of a ``node_tiers`` entry.
NODE_TIER_KEYS = ("count", "fast", "slow", "cache_mb", "queue_depth", "accelerator")


def _node_tiers(spec: Sequence[Mapping[str, Any]] | None, nodes: int, fast: str, slow: str,
               cache_mb: float, queue_depth: float, row_bytes: int
               ) -> tuple[dict[str, Any], list[DeviceSpec | None]]:
    """The per-node fields of :class:`ClusterSpec` (``node_fast``, ``node_slow``,
    ``node_cache_rows``, ``node_queue_depth``) and each node's accelerator from
    ``node_tiers``: a list of node groups in node order, each ``{count, fast, slow, cache_mb,
    queue_depth, accelerator}`` (``count`` default 1; ``accelerator``, a ``conf/hw`` device
    whose memory is the fast tier, only adds its power to the node's, default none; the
    others default to the env's ``fast_tier``, ``slow_tier``, ``cache_mb``, ``queue_depth``);
    the counts must add up to ``nodes``. None gives ``({}, [None] * nodes)`` (every node the
    same).

    Raises:
        ValueError: not a list of dicts, an unknown key, tier or device, a count below 1 or
            counts that do not add up to ``nodes``, a cache below 0 or a queue depth below 1.
    """
    if spec is None:
        return {}, [None] * nodes
    if isinstance(spec, (str, Mapping)) or not isinstance(spec, Sequence) or not spec:
        raise ValueError("node_tiers: expected a non-empty list of {count, fast, slow, "
                         f"cache_mb, queue_depth}} dicts, got {spec!r}")
    fasts: list[Any] = []
    slows: list[Any] = []
    rows: list[int] = []
    depths: list[float] = []
    accels: list[DeviceSpec | None] = []
    for i, entry in enumerate(spec):
        if not isinstance(entry, Mapping):
            raise ValueError(f"node_tiers[{i}]: expected a dict, got {entry!r}")
        unknown = sorted(set(entry) - set(NODE_TIER_KEYS))
        if unknown:
            raise ValueError(f"node_tiers[{i}]: unknown key(s) {unknown}; known: "
                             f"{', '.join(NODE_TIER_KEYS)}")
        try:
            count = int(entry.get("count", 1))
            mb = float(entry.get("cache_mb", cache_mb))
            qd = float(entry.get("queue_depth", queue_depth))
        except (TypeError, ValueError):
            raise ValueError(f"node_tiers[{i}]: count, cache_mb and queue_depth must be "
                             f"numbers, got {dict(entry)!r}") from None
        if count < 1 or count != entry.get("count", 1):
            raise ValueError(f"node_tiers[{i}]: count must be an integer >= 1, got "
                             f"{entry.get('count')!r}")
        if not mb >= 0:
            raise ValueError(f"node_tiers[{i}]: cache_mb must be >= 0, got {mb}")
        if not qd >= 1:
            raise ValueError(f"node_tiers[{i}]: queue_depth must be >= 1, got {qd}")
        try:
            ft = get_tier(str(entry.get("fast", fast)))
            st = get_tier(str(entry.get("slow", slow)))
            acc = entry.get("accelerator")
            dev = load_device(str(acc)) if acc is not None else None
        except (KeyError, ValueError) as exc:
            raise ValueError(f"node_tiers[{i}]: {exc.args[0] if exc.args else exc}") from None
        fasts += [ft] * count
        slows += [st] * count
        rows += [int(mb * 2**20 // row_bytes)] * count
        depths += [qd] * count
        accels += [dev] * count
    if len(fasts) != nodes:
        raise ValueError(f"node_tiers: the counts add up to {len(fasts)} nodes, the cluster "
                         f"has {nodes}")
    return ({"node_fast": tuple(fasts), "node_slow": tuple(slows),
             "node_cache_rows": tuple(rows), "node_queue_depth": tuple(depths)}, accels)


def _faults(spec: str | Mapping[str, float] | Sequence[Mapping[str, Any]] | None
            ) -> tuple[tuple[FaultEvent, ...], RandomDisruption | None]:
    if spec is None:
        return (), None
    if isinstance(spec, str):
        if spec != "random":
            raise ValueError(f"faults: expected 'random', a dict or a list, got '{spec}'")
        return (), _disruption({}, DEFAULT_RANDOM_FAULTS)
    if isinstance(spec, Mapping):
        return (), _disruption(spec, DEFAULT_RANDOM_FAULTS)
    events = []
    for i, f in enumerate(spec):
        f = dict(f)
        try:
            events.append(FaultEvent(float(f.pop("start_ms")) * 1e-3,
                                     float(f.pop("duration_ms")) * 1e-3, int(f.pop("target")),
                                     str(f.pop("kind", "node")), str(f.pop("mode", "fail")),
                                     float(f.pop("factor", 4.0))))
        except KeyError as exc:
            raise ValueError(f"faults[{i}]: missing {exc}") from None
        if f:
            raise ValueError(f"faults[{i}]: unknown key(s) {sorted(f)}")
    return tuple(events), None


class ShardRoutingEnv(gym.Env[Obs, np.int64]):
    """Route the sub-requests of a sharded recommendation model to embedding-node replicas.

    ## Description

    One DLRM (MLPerf DLRMv2 by default: 26 tables, 214 lookups per sample) serves requests of
    ``batch`` samples. Its tables are split into ``shards`` shards (whole tables balanced by
    load, or every table's rows hashed over the shards) and each shard is replicated on
    ``replication`` of ``nodes`` embedding nodes (chained declustering). A central node runs the
    bottom and top MLPs on a dense device (roofline latency of the model's MLP layers). A
    request fans out one sub-request per shard over the nodes' links (fair-shared bandwidth,
    latency and RPC overhead), each node serves lookups from DRAM (pinned small tables, and a
    row cache whose hit rate follows the calibrated Zipf-like row popularity) or its NVMe SSD,
    and the request completes when the last sub-request is back and the top MLP has run.
    Nodes straggle at random; with ``faults`` they also fail (sub-requests on them are retried
    elsewhere or fail, never lost). The simulator is :mod:`envs.sim.dlrm`.

    The agent routes one sub-request per step. All sub-requests of a request are decided at its
    arrival instant (in shard order); time advances after the last one.

    ``info`` (every step): ``sla_attainment``, ``goodput``, ``p50/p99/mean_latency_ms`` are
    end-to-end *request* metrics, ``requests_arrived/completed/good/dropped/in_system`` count
    requests; ``arrived``, ``completed``, ``good``, ``late``, ``dropped`` (``_rejected`` shed,
    ``_overflow`` node queue full, ``_failed`` no live replica or retries exhausted) and
    ``in_system`` count *sub-requests*, the decision unit, so ``arrived == completed + dropped
    + in_system`` holds at every step; also ``cache_hit_rate`` (lookups of SSD-backed tables
    served from DRAM), ``link_utilization`` (mean and ``_max`` over link directions),
    ``utilization`` (nodes), ``dense_utilization``, ``retried``, ``invalid_actions``,
    ``capacity_qps``; and energy (:mod:`hwmodels.energy`): ``energy_j`` so far,
    ``energy_per_query_j`` (per completed request) and ``power_w`` (mean since the start).

    ## Action Space

    ``Discrete(N + 1)``: ``0..N-1`` send the sub-request to that node; ``N`` sheds it (its
    request fails), allowed only with ``allow_shed=True``. :meth:`action_masks` allows the
    nodes that hold the shard and are up. It is never all-false: a sub-request whose every
    replica is down fails in the simulator without being presented. The action rule of every
    ldsgym env (:mod:`envs.actions`): ``step`` raises ``ValueError``, changing nothing, for a
    masked action, an index out of range or a non-integer; an unmasked agent (or a checker
    sampling the whole space) can use :class:`envs.wrappers.NearestValidAction`, which
    substitutes the next valid node and counts it. (``info["invalid_actions"]`` stays 0: it
    counted the substitutions this env made before that rule.)

    ## Observation Space

    A ``Dict`` of float32 boxes in ``[0, 10]`` (``N`` nodes, ``S`` shards); times in units of
    the request's SLA:

    | key         | shape | meaning                                                         |
    |-------------|-------|-----------------------------------------------------------------|
    | ``queue``   | (N,)  | sub-requests outstanding at each node / 8                       |
    | ``work``    | (N,)  | estimated work queued at each node (x measured slowdown) / SLA  |
    | ``link``    | (N,)  | payload bytes in flight on each node's link / (bandwidth x SLA) |
    | ``hit``     | (N,)  | each node's recent row-cache hit rate (all its shards)          |
    | ``hit_shard``| (N,) | each node's recent hit rate on this shard (0: not held)         |
    | ``occupancy``| (N,) | used share of each node's fast tier (pinned tables + cache)     |
    | ``slow``    | (N,)  | each node's measured slowdown (1 = nominal)                     |
    | ``up``      | (N,)  | 1 if the node is up and reachable                               |
    | ``holds``   | (N,)  | 1 if the node holds this sub-request's shard                    |
    | ``finish``  | (N,)  | predicted time until the response is back from each node / SLA  |
    | ``shard``   | (S,)  | one-hot shard of the sub-request                                |
    | ``size``    | (2,)  | its lookups / mean per sub-request; its response bytes / mean   |
    | ``request`` | (2,)  | its request's sub-requests left to route (this one too) / S;    |
    |             |       | the latest predicted finish among those already routed / SLA    |
    | ``rates``   | (1,)  | recent request rate / capacity                                  |

    With ``request_obs=True`` (``ldsgym/ShardRouting-RequestAware-v0``) four more (N,) entries
    describe the request around the decision (:data:`REQUEST_KEYS`):

    | key          | meaning                                                               |
    |--------------|-----------------------------------------------------------------------|
    | ``req_routed``| latest predicted finish of this request's sub-requests already routed |
    |              | to each node (0: none) / SLA                                          |
    | ``slack``    | how far each node's ``finish`` lies below the request's critical path |
    |              | (the latest predicted finish routed so far) / SLA; 0: it would extend |
    | ``link_depth``| messages in flight on each node's link (both directions) / 8        |
    | ``ssd_depth``| outstanding sub-requests x the node's recent miss rate / 8: the       |
    |              | expected sub-requests waiting on the SSD                              |

    Per-shard cache warmth is ``hit_shard``.

    ``finish`` = link backlog and transfer + (queued work + this service at the node's
    running hit estimate) x measured slowdown + the response's transfer: what a
    latency-predictive router (C3, Clockwork) computes.

    ## Rewards

    A reward object (:mod:`envs.rewards`) weighs the *requests* that finished since the last
    decision (sub-requests only count through their request). Default ``goodput``:
    ``good - late - dropped - backlog_weight * backlog``. Worked example: routing the last
    sub-request of a request advances time 0.4 ms, during which two requests complete within
    their SLA and one fails because its node crashed with no retries left:
    ``r = 2 - 0 - 1 = 1``; steps that route the other sub-requests of a request take no time
    and get ``0``.

    ## Starting State

    Empty queues, caches warm (each holding the rows an LRU holds in steady state, Che's
    approximation), no node down; the first request's first sub-request is pending.

    ## Episode End

    Episodes last ``episode_queries`` *sub-request arrivals* (each a decision unless its shard
    has no live replica), a truncation. The last request is cut to the shards the budget still
    covers. After the last decision the system drains, so the final ``info`` counts every
    sub-request and request as completed or dropped.

    ## Arguments

    ``gym.make("ldsgym/ShardRouting-v0", nodes=8, shards=8, replication=3, partition="table",
    tables=None, model="dlrm-v2", batch=64, hw="a100-80gb", dense_devices=None, link=
    "ethernet-25g", fast_tier="dram", slow_tier="nvme-ssd", cache_mb=64, cache_policy="lru",
    pin_rows=65536, track_rows=0, workload=None, sla_ms=None, sla_multiple=8, trace="poisson",
    load=0.8, episode_queries=1000, reward="goodput", stragglers=DEFAULT_STRAGGLERS,
    faults=None, allow_shed=False, node_hw="xeon-8380h-4s", energy=None, ...)``. ``load`` is
    the offered load as a fraction of the analytic capacity
    (:func:`envs.sim.dlrm.estimate_capacity`: the busiest node under the best split, the links,
    the dense devices). ``link`` is a :data:`hwmodels.links.LINKS` name or a
    list with one per node. ``workload`` gives request classes (``weight``, ``sla_ms`` or
    ``sla_multiple``, ``priority``; their names are labels, the served model is ``model``);
    without it every request has SLA ``sla_ms`` or ``sla_multiple`` x the unloaded latency.
    ``faults`` is ``"random"``, a dict (``rate_hz``, ``duration_ms``) of random node failures
    (never the last live replica of a shard), or a list of ``{start_ms, duration_ms, target,
    kind: node|link, mode: fail|slow, factor}``. ``alpha`` is the row-popularity exponent or
    the name of a fit in :data:`envs.sim.dlrm.skew.FITTED` (default: both years' statistics).
    ``node_hw`` is the embedding nodes' host (its ``idle_w``, ``tdp_w`` and power table set
    their power; the dense devices' is ``hw``'s) and ``energy`` overrides fields of
    :class:`hwmodels.energy.ClusterEnergy` (``idle_w``, ``node_dynamic_w``,
    ``fast_j_per_read``, ``slow_j_per_read``, ``link_j_per_byte``, ``dense_dynamic_w``);
    energy never changes the dynamics, only ``info`` and a reward with ``energy_weight``.
    ``popularity`` makes shard popularity drift during the episode: a hot set of shards whose
    sub-requests carry more long-tail lookups, moving every phase
    (:class:`envs.sim.dlrm.popularity.ShardPopularity`: ``hot``, ``factor``, ``phases``,
    ``shift``, ``first``, ``random``, or explicit ``weights``); None (default) keeps it fixed.
    ``node_tiers`` gives nodes memory tiers of their own: a list of node groups in node order,
    each ``{count, fast, slow, cache_mb, queue_depth}`` (:data:`hwmodels.storage.TIERS`
    names; keys left out take the env's ``fast_tier``, ``slow_tier``, ``cache_mb`` and
    ``queue_depth``; the counts add up to ``nodes``; ``accelerator``, a ``conf/hw`` device,
    adds its power to the node's energy), e.g. GPU-hosted nodes with HBM in front of DRAM
    next to DRAM nodes with an SSD behind (``ldsgym/ShardRouting-Tiers-v0``); service times,
    the routers' predictions, the capacity estimate and the energy use each node's.

    ## Version History

    * v0: first release.
    * v0 (unchanged dynamics): masked, out-of-range and non-integer actions raise ``ValueError``
      in every env (:mod:`envs.actions`) instead of being replaced by the next valid node; valid
      actions give the same episodes as before (golden trajectories bit-identical).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        nodes: int = 8,
        shards: int = 8,
        replication: int = 3,
        partition: str = "table",
        tables: int | None = None,
        model: str = "dlrm-v2",
        batch: int = 64,
        hw: str | Mapping[str, Any] | DeviceSpec = "a100-80gb",
        dense_devices: int | None = None,
        precision: str = "fp16",
        link: str | Sequence[str] = "ethernet-25g",
        fast_tier: str = "dram",
        slow_tier: str = "nvme-ssd",
        cache_mb: float = 64.0,
        cache_policy: str = "lru",
        pin_rows: int = 65536,
        track_rows: int = 0,
        elem_bytes: int = 4,
        queue_depth: float = 64.0,
        node_overhead_us: float = 20.0,
        queue_capacity: int = 64,
        max_retries: int = 2,
        retry_delay_ms: float = 1.0,
        alpha: float | str = "all",
        workload: str | Sequence[Mapping[str, Any]] | WorkloadMix | None = None,
        sla_ms: float | None = None,
        sla_multiple: float = 8.0,
        trace: str | TraceSource = "poisson",
        load: float = 0.8,
        episode_queries: int = 1000,
        reward: str | dict[str, Any] | Reward = "goodput",
        stragglers: Mapping[str, float] | None = DEFAULT_STRAGGLERS,
        faults: str | Mapping[str, float] | Sequence[Mapping[str, Any]] | None = None,
        allow_shed: bool = False,
        rate_window_s: float = 0.05,
        ewma: float = 0.2,
        node_hw: str | Mapping[str, Any] | DeviceSpec = "xeon-8380h-4s",
        energy: Mapping[str, float] | None = None,
        request_obs: bool = False,
        popularity: Mapping[str, Any] | None = None,
        node_tiers: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        if load <= 0:
            raise ValueError(f"load must be > 0, got {load}")
        if episode_queries < 1:
            raise ValueError(f"episode_queries must be >= 1, got {episode_queries}")
        if partition not in ("table", "row"):
            raise ValueError(f"partition must be 'table' or 'row', got '{partition}'")
        if nodes < 1 or shards < 1 or batch < 1:
            raise ValueError("nodes, shards and batch must be >= 1")
        if cache_policy not in ("lru", "lfu"):
            raise ValueError(f"cache_policy must be 'lru' or 'lfu', got '{cache_policy}'")
        if isinstance(alpha, str):
            if alpha not in FITTED:
                raise ValueError(f"alpha '{alpha}': unknown fit; known: {', '.join(FITTED)}")
            alpha_v = FITTED[alpha].alpha
        else:
            alpha_v = float(alpha) if alpha is not None else DEFAULT_ALPHA
        if alpha_v <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha_v}")
        rows, pooling, dim = recsys_tables(model, tables)
        self.device = load_device(hw)
        bottom_s, top_s = dense_latency_s(self.device, model, batch, precision)
        tier_fields, accelerators = _node_tiers(node_tiers, nodes, fast_tier, slow_tier,
                                                cache_mb, queue_depth, dim * elem_bytes)
        links = [link] * nodes if isinstance(link, str) else list(link)
        if len(links) != nodes:
            raise ValueError(f"link: {len(links)} links for {nodes} nodes")
        link_specs: tuple[LinkSpec, ...] = tuple(get_link(str(x)) for x in links)
        row_bytes = dim * elem_bytes
        if partition == "row":
            shard_tables = tuple(tuple(range(len(rows))) for _ in range(shards))
        else:
            slow_weight = [p * (1.0 if r > pin_rows else 0.05) for r, p in zip(rows, pooling,
                                                                                strict=True)]
            shard_tables = balance_tables(slow_weight, shards)
        self.cluster = ClusterSpec(
            n_nodes=nodes, table_rows=rows, pooling=pooling, dim=dim, elem_bytes=elem_bytes,
            batch=batch, row_wise=partition == "row", shard_tables=shard_tables,
            replicas=place_replicas(nodes, shards, replication), fast=get_tier(fast_tier),
            slow=get_tier(slow_tier), queue_depth=queue_depth,
            node_overhead_s=node_overhead_us * 1e-6,
            cache_rows=int(cache_mb * 2**20 // row_bytes), track_rows=track_rows,
            pin_rows=pin_rows, cache_policy=cache_policy, links=link_specs, bottom_s=bottom_s,
            top_s=top_s, dense_servers=dense_devices or max(1, nodes // 8), alpha=alpha_v,
            queue_capacity=queue_capacity, max_retries=max_retries,
            retry_delay_s=retry_delay_ms * 1e-3, **tier_fields)
        self.layout = ShardLayout(self.cluster)
        self.node_device = load_device(node_hw)
        node_pm = PowerModel(self.node_device)
        host_dynamic_w = ((self.node_device.tdp_w - self.node_device.idle_w)
                          * node_pm.params["memory_weight"])
        # A node with an accelerator (node_tiers) adds its idle power, and its memory-bound
        # dynamic power while the node serves (embedding lookups are memory-bound).
        node_idle = [self.node_device.idle_w + (a.idle_w if a is not None else 0.0)
                     for a in accelerators]
        node_dynamic = [host_dynamic_w + ((a.tdp_w - a.idle_w)
                                          * PowerModel(a).params["memory_weight"]
                                          if a is not None else 0.0) for a in accelerators]
        self.energy_model = ClusterEnergy.build(
            n_nodes=nodes, node_idle_w=node_idle, node_dynamic_w=node_dynamic,
            fast=[self.cluster.fast_of(n) for n in range(nodes)],
            slow=[self.cluster.slow_of(n) for n in range(nodes)], row_bytes=row_bytes,
            links=link_specs, dense_servers=self.cluster.dense_servers,
            dense_idle_w=self.device.idle_w,
            dense_busy_w=dense_busy_w(self.device, model, batch, precision), overrides=energy)
        self.stragglers = _disruption(stragglers, DEFAULT_STRAGGLERS)
        self.faults, self.random_faults = _faults(faults)
        for f in self.faults:
            if not 0 <= f.target < nodes:
                raise ValueError(f"faults: target {f.target} out of range [0, {nodes})")
        self.capacity: CapacityEstimate = estimate_capacity(self.layout, self.stragglers)
        self.capacity_qps = self.capacity.capacity_qps
        self.solo_ms = self.capacity.solo_s * 1e3
        if workload is None:
            self.mix = WorkloadMix((ModelClass(
                model, sla_ms=sla_ms if sla_ms is not None else 1.0,
                sla_multiple=None if sla_ms is not None else sla_multiple),))
        elif isinstance(workload, WorkloadMix):
            self.mix = workload
        elif isinstance(workload, str):
            raise ValueError(f"workload '{workload}': give request classes as a list of dicts")
        else:
            self.mix = mix_from_spec([dict(m) for m in workload])
        self.trace = get_trace(trace)
        self.load = float(load)
        self.episode_queries = int(episode_queries)
        self.reward_fn = make_reward(reward)
        #: Whether the reward prices joules (else its energy term is 0 and not computed).
        self._prices_energy = bool(getattr(self.reward_fn, "energy_weight", 0.0))
        self.allow_shed = bool(allow_shed)
        self.rate_window_s = float(rate_window_s)
        self.ewma = float(ewma)

        N, S = nodes, shards
        self.n_nodes, self.n_shards = N, S
        self._n_links = 2 * N  # link directions (link_utilization's len(busy))
        lay = self.layout
        self._mean_lookups = lay.lookups_per_request / S
        self._mean_resp = float(np.mean(lay.resp_bytes))
        self._bps = np.array([lk.payload_bps for lk in link_specs])
        self._fixed = np.array([(lk.latency_us + lk.rpc_us) * 1e-6 for lk in link_specs])
        self._onehot = np.eye(S, dtype=np.float32)
        self._holds_f = lay.holds.T.astype(np.float64)  # (S, N)
        box = spaces.Box
        per_node = ("queue", "work", "link", "hit", "hit_shard", "occupancy", "slow", "up",
                    "holds", "finish")
        obs_spaces: dict[str, spaces.Space[Any]] = {
            k: box(0.0, _CLIP, (N,), np.float32) for k in per_node}
        for k in ("hit", "hit_shard", "occupancy", "up", "holds"):
            obs_spaces[k] = box(0.0, 1.0, (N,), np.float32)
        obs_spaces["shard"] = box(0.0, 1.0, (S,), np.float32)
        obs_spaces["size"] = box(0.0, _CLIP, (2,), np.float32)
        obs_spaces["request"] = box(0.0, _CLIP, (2,), np.float32)
        obs_spaces["rates"] = box(0.0, _CLIP, (1,), np.float32)
        self.request_obs = bool(request_obs)
        #: Drifting shard popularity (None: stationary), and each shard's expected SSD reads
        #: per sub-request that its weights scale.
        self.popularity = ShardPopularity.parse(popularity, S)
        self._shard_reads = expected_reads(self.capacity.service_s, self.cluster.node_overhead_s,
                                           lay.c_slow)
        if self.request_obs:
            for k in REQUEST_KEYS:
                obs_spaces[k] = box(0.0, _CLIP, (N,), np.float32)
        self._req_node = np.zeros(N)
        self.observation_space: spaces.Dict = spaces.Dict(obs_spaces)  # type: ignore[assignment]
        self.action_space = spaces.Discrete(N + 1)
        self.sim: ShardSim | None = None
        kernels.warm_up()
        self._last_obs: Obs | None = None
        # (per episode, see _alloc_buffers)
        self._out: np.ndarray | None = None
        self._out_size = 0
        self._req_node_k = self._req_node
        self._zero_reward: tuple[Reward, float] | None = None
        self._synced = False  # _reward's snapshot is of the state now (see there)
        self._shard_masks: dict[int, np.ndarray] = {}  # shard -> mask, at _mask_version
        self._mask_version = -1
        self._summary_key: tuple[Any, ...] | None = None
        self._info_base: dict[str, Any] | None = None  # _info at _summary_key
        # energy_j's terms that only events change, and (sim, events, now) they are of.
        self._energy_key: tuple[Any, ...] | None = None
        self._energy_part = (0.0, 0.0)

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Obs, dict[str, Any]]:
        """Draw a new trace and run to the first sub-request."""
        super().reset(seed=seed)
        trace_seed, sim_seed = (int(x) for x in self.np_random.integers(0, 2**63 - 1, size=2))
        # Requests needed to cover the budget of sub-requests (the last one may be cut).
        n_req = -(-self.episode_queries // self.n_shards)
        arrivals = self.trace.sample(np.random.default_rng(trace_seed), self.mix, n_req,
                                     self.load * self.capacity_qps)
        arrivals = arrivals.resolve_sla(np.full(len(self.mix.models), self.solo_ms))
        self.sim = make_shard_sim(
            self.layout, arrivals.time_s, arrivals.sla_ms * 1e-3, self.episode_queries,
            np.random.default_rng(sim_seed), faults=self.faults, stragglers=self.stragglers,
            random_faults=self.random_faults, ewma=self.ewma, row_hit0=self.capacity.row_hit,
            warm_rows=self.capacity.warm_rows, recycle=self.sim,
            extra_reads=self._extra_reads(len(arrivals.time_s), trace_seed))
        self._max_sla = float(arrivals.sla_ms.max()) * 1e-3 if len(arrivals) else 1.0
        self._rate = 0.0
        self._rate_t = 0.0
        self._seen_req = -1
        self._req_pred = 0.0
        self._snapshot = (0, 0, 0, 0.0)
        self._synced = False  # (the snapshot is not of this episode's state)
        self._invalid = 0
        self._alloc_buffers()
        self.sim.advance()
        self._on_pending()
        self._energy_prev = self.energy_j()  # what the reward's energy term counts from
        return self._obs(), self._info()

    def step(self, action: np.int64 | int) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        """Route (or shed) the pending sub-request and run to the next one."""
        sim = self.sim
        if sim is None or sim.pending is None:
            raise RuntimeError("call reset() before step()")
        # _pending_mask's cached mask when it holds, else _pending_mask
        if (sim.topology_version != self._mask_version
                or (mask := self._shard_masks.get(sim.pending.shard)) is None):
            mask = self._pending_mask(sim)
        # checked_action's checks, its common case inline (the action space is
        # Discrete(N + 1)): anything else goes through it (it raises or converts)
        a = int(action) if type(action) in _INT_TYPES else -1
        N = self.n_nodes
        if not 0 <= a <= N or not mask[a]:
            a = checked_action(action, self.action_space, mask)
        if a == N:
            sim.shed()
        else:
            if (type(sim) is CompiledShardSim and sim is self._rate_sim
                    and sim.link_version == self._rate_version):
                # The request's prediction bookkeeping below, route(a), advance() and
                # _on_pending in one compiled call when the next sub-request is of the same
                # request (_on_pending then only runs routing_obs, and the link rates
                # it keeps are current: no event runs in between); None, nothing done,
                # otherwise.
                out = sim.route_observe(a, self._consts, self._req_pred, self._rate,
                                        self._out_size)
                if out is not None:
                    # (_on_pending's bookkeeping: _finish is _fin, _node_key None and
                    # _routed empty in compiled mode)
                    self._out = out
                    busy, busy_max, links, self._req_pred = self._acc.tolist()
                    # _reward() of a step with no event at the last one's instant: the
                    # empty outcome's value when its conditions hold (see there)
                    zero = self._zero_reward
                    if (self._synced and zero is not None and zero[0] is self.reward_fn
                            and not self._prices_energy):
                        reward = zero[1]
                    else:
                        reward = self._reward()
                    # _views(out), inline
                    self._out_given = True
                    q, w, lk, h, hs, oc, sl, up, ho, fi, sh, sz, rq, ra = self._out_slices
                    views = {"queue": out[q], "work": out[w], "link": out[lk], "hit": out[h],
                             "hit_shard": out[hs], "occupancy": out[oc], "slow": out[sl],
                             "up": out[up], "holds": out[ho], "finish": out[fi],
                             "shard": out[sh], "size": out[sz], "request": out[rq],
                             "rates": out[ra]}
                    if self.request_obs:
                        for k, sl_ in zip(REQUEST_KEYS, self._req_slices, strict=True):
                            views[k] = out[sl_]
                    self._last_obs = views
                    if not _KERNEL_SUMS:
                        return views, reward, False, False, self._info()
                    # _info, from route_observe's sums (self._acc: the busy seconds of all
                    # link directions, the most of one, the link joules, as
                    # link_utilization and energy_j add them): the last step's _info ran at
                    # this instant with no event since (its summary key and energy_j's terms
                    # kept between events hold), and the decision only sent a sub-request,
                    # so only the sub-request counts, the links and the energy change
                    # (test_routed_step_info_is_info: info == _info()).
                    base = self._info_base
                    assert base is not None
                    now = sim.events.now
                    counts = sim.sub
                    arrived = counts.arrived
                    base["arrived"] = arrived
                    base["in_system"] = arrived - counts.completed - base["dropped"]
                    if now <= 0:  # link_utilization(now)
                        base["link_utilization"] = base["link_utilization_max"] = 0.0
                    else:
                        base["link_utilization"] = busy / (self._n_links * now)
                        base["link_utilization_max"] = busy_max / now
                    info = base.copy()
                    head, dense = self._energy_part
                    e = head + links + dense
                    completed = sim.req.completed
                    info["energy_j"] = e
                    info["energy_per_query_j"] = e / completed if completed else 0.0
                    info["power_w"] = e / now if now > 0 else 0.0
                    return views, reward, False, False, info
            pred = float(self._finish[a])
            if pred > self._req_node[a]:
                self._req_node[a] = pred
            if pred > self._req_pred:  # max(self._req_pred, pred), keeping the first on ties
                self._req_pred = pred
            sim.route(a)
            self._routed.append(a)
        sim.advance()
        truncated = sim.pending is None
        if not truncated:
            self._on_pending()
        reward = self._reward()
        obs = self._obs() if not truncated else self._last_obs
        assert obs is not None
        return obs, reward, False, truncated, self._info()

    def action_masks(self) -> np.ndarray:
        """Valid actions: the pending shard's live replicas (and shedding if allowed)."""
        sim = self.sim
        if sim is None or (sub := sim.pending) is None:
            return np.ones(self.n_nodes + 1, dtype=bool)
        # _pending_mask's cached mask when it holds, else _pending_mask
        if (sim.topology_version != self._mask_version
                or (mask := self._shard_masks.get(sub.shard)) is None):
            mask = self._pending_mask(sim)
        return mask.copy()

    def _pending_mask(self, sim: ShardSim) -> np.ndarray:
        """The mask of the pending sub-request (cached until it or the topology changes; do
        not modify)."""
        sub = sim.pending
        assert sub is not None
        if sim.topology_version != self._mask_version:
            self._shard_masks.clear()
            self._mask_version = sim.topology_version
        mask = self._shard_masks.get(sub.shard)
        if mask is None:
            mask = np.zeros(self.n_nodes + 1, dtype=bool)
            mask[sim.valid_nodes(sub.shard)] = True
            mask[self.n_nodes] = self.allow_shed
            self._shard_masks[sub.shard] = mask
        return mask

    def latency_counts(self) -> list[int]:
        """Request latency histogram so far (bins: ``envs.sim.metrics.BIN_EDGES_S``)."""
        return list(self.sim.req.latency.counts) if self.sim is not None else []

    # ------------------------------------------------------------------ helpers
    def _extra_reads(self, n_arrivals: int, trace_seed: int) -> np.ndarray | None:
        """``ShardSim(extra_reads=...)`` of the episode's popularity schedule (None when
        stationary); a random schedule draws from its own generator (seeded from the trace's
        seed), so the other streams stay those of the stationary episode."""
        if self.popularity is None:
            return None
        rng = np.random.default_rng([trace_seed, 0x9E3779B9])
        return self.popularity.extra_reads(n_arrivals, self._shard_reads, rng)

    def _alloc_buffers(self) -> None:
        """Scratch arrays of the per-step arithmetic (reused; nothing returned aliases them)."""
        N = self.n_nodes
        self._shard_masks.clear()
        self._mask_version = -1
        self._lb = np.empty((2, N))  # bytes in flight per link direction
        self._rw = np.empty(N)  # remaining work
        self._b1 = np.empty(N)
        self._b2 = np.empty(N)
        self._b3 = np.empty(N)
        self._b4 = np.empty(N)
        self._vals = np.empty((10, N))
        self._lb_flat = self._lb.reshape(-1)  # views
        self._vals_flat = self._vals.reshape(-1)
        # (sim, events handled, request) when the node rows above were last computed in full,
        # and the nodes routed since (only their rows changed when the key still holds).
        self._node_key: tuple[Any, ...] | None = None
        self._routed: list[int] = []
        self._rows_full = True  # _obs must fill every row of _vals
        # Per shard: the response's transfer time t_up at the current link speeds.
        self._t_up: dict[int, np.ndarray] = {}
        # (sim, link_version) that _rate_n and _t_up are of
        self._rate_sim: ShardSim | None = None
        self._rate_version = -1
        self._one = np.array(1.0)
        self._c_fast = np.array(self.layout.c_fast)
        self._c_slow = np.array(self.layout.c_slow)
        self._overhead = np.array(self.cluster.node_overhead_s)
        # routing_obs's constants (see there): fixed link cost per node; overhead, mean
        # lookups and response bytes, capacity; the link payload rate now per node (_rate_n
        # is a view of it); seconds per fast-tier and per slow-tier read per node; which
        # nodes hold each shard; then route_observe's rows (segment.send_observe: one array
        # argument for five): the link joules per byte per node; the predicted finish per
        # node (_fin: routing_obs's fin); the request-aware entries' req_node (_req_node);
        # the sums it adds (_acc: the busy seconds of all link directions, the most of one,
        # the link joules, the request's latest predicted finish: _req_pred).
        S = self.n_shards
        self._consts = np.zeros((9 + S, max(N, 4)))
        self._consts[0, :N] = self._fixed
        self._consts[1, :4] = (self.cluster.node_overhead_s, self._mean_lookups,
                               self._mean_resp, self.capacity_qps)
        self._consts[3, :N] = self.layout.c_fast
        self._consts[4, :N] = self.layout.c_slow
        self._consts[5:5 + S, :N] = self._holds_f
        self._consts[5 + S, :N] = self.energy_model.link_j_per_byte
        self._bind_rows()
        self._out = None  # the observation's entries, when jitted
        # Where each entry of the observation is in _out, in the order of _obs's dict (then
        # the request-aware entries, REQUEST_KEYS, which the kernel computes when it gets
        # _req_node: an empty array without them).
        x = 10 * N + self.n_shards
        self._out_slices = (*(slice(r * N, (r + 1) * N) for r in range(10)),
                            slice(10 * N, x), slice(x, x + 2), slice(x + 2, x + 4),
                            slice(x + 4, x + 5))
        x += 5
        self._req_slices = tuple(slice(x + r * N, x + (r + 1) * N) for r in range(4))
        self._out_size = x + (4 * N if self.request_obs else 0)
        self._out_given = False  # _obs returned views of it already

    def _bind_rows(self) -> None:
        """The views of rows of ``_consts`` (see :meth:`_alloc_buffers`)."""
        N, S = self.n_nodes, self.n_shards
        c = self._consts
        self._rate_n = c[2, :N]
        self._fin = self._finish = c[6 + S, :N]
        self._req_node = c[7 + S, :N]
        self._req_node_k = self._req_node if self.request_obs else np.zeros(0)
        self._acc = c[8 + S, :4]

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "_lb" in state:  # pickle copied the views: point them at the buffers again
            self._lb_flat = self._lb.reshape(-1)
            self._vals_flat = self._vals.reshape(-1)
            self._bind_rows()

    def _on_pending(self) -> None:
        """Bookkeeping when a new sub-request becomes pending (rates, per-request state)."""
        sim = self.sim
        assert sim is not None and sim.pending is not None
        req = sim.pending.req
        if req.id != self._seen_req:
            self._seen_req = req.id
            self._req_pred = 0.0
            if self.request_obs:
                self._req_node[:] = 0.0
            now = sim.events.now
            decay = math.exp(-(now - self._rate_t) / self.rate_window_s)
            self._rate = self._rate * decay + 1.0 / self.rate_window_s
            self._rate_t = now
        if not kernels.AVAILABLE:
            self._out = None
            self._finish = self._predict_finish()
            return
        # _predict_finish and the entries of _obs (clipped, float32, into a new self._out)
        # in one compiled pass (kernels.routing_obs: the same operations on every node, so
        # the same bits)
        sub = sim.pending
        if sim.link_version != self._rate_version or sim is not self._rate_sim:
            np.multiply(self._bps, sim.link_factor, out=self._rate_n)
            self._t_up.clear()
            self._rate_sim, self._rate_version = sim, sim.link_version
        self._node_key = None  # the incremental buffers of _predict_finish are not kept
        self._routed.clear()
        out = self._out = np.empty(self._out_size, dtype=np.float32)
        self._out_given = False
        kernels.routing_obs(sim.events.now, sub.shard, sub.d_tracked, sub.d_untracked,
                            sub.lookups, sub.req_bytes, sub.resp_bytes, req.inv_sla,
                            sim.fanout_left_count() + 1, self._req_pred, self._rate,
                            sim.row_hit, sim.node_state, sim.outstanding, self._consts,
                            self._req_node_k, self._fin, out)
        self._finish = self._fin

    def _predict_finish(self) -> np.ndarray:
        """Seconds until the pending sub-request's response would be back, per node.

        :meth:`envs.sim.dlrm.cluster.ShardSim.predict_finish` (the same operations in the same
        order, so the same bits) into reused buffers; also leaves the link backlogs, the
        remaining work and the link rates there for :meth:`_obs`.
        """
        sim = self.sim
        assert sim is not None and sim.pending is not None
        sub = sim.pending
        now = sim.now
        lb, rw = self._lb, self._rw
        key = (sim, sim.events_handled, sub.req)
        if key == self._node_key:
            # No event since the last decision of this request: only the routed nodes moved.
            for a in self._routed:
                self._update_node(sim, a, now, sub.req.inv_sla)
        else:
            sim.link_bytes_both(now, out=lb)
            np.subtract(sim.service_end, now, out=rw)
            np.maximum(rw, 0.0, out=rw)
            rw += sim.work_s
            self._node_key = key
            self._rows_full = True
        self._routed.clear()
        if sim.link_version != self._rate_version or sim is not self._rate_sim:
            np.multiply(self._bps, sim.link_factor, out=self._rate_n)
            self._t_up.clear()
            self._rate_sim, self._rate_version = sim, sim.link_version
        rate = self._rate_n
        # (Positional outputs and 0-d constants: the ufuncs' cheapest calling forms.)
        add, sub_, mul = np.add, np.subtract, np.multiply
        b1, b2, b3 = self._b1, self._b2, self._b3
        # miss = d_tracked * (1 - row_hit) + d_untracked
        miss = sub_(self._one, sim.row_hit[:, sub.shard], b1)
        mul(miss, sub.d_tracked, miss)
        add(miss, sub.d_untracked, miss)
        # svc = overhead + max(c_fast * (lookups - miss), c_slow * miss)
        svc = sub_(sub.lookups, miss, b2)
        mul(svc, self._c_fast, svc)
        np.maximum(svc, mul(miss, self._c_slow, b3), out=svc)
        add(svc, self._overhead, svc)
        # t_down = fixed + (bytes down + req_bytes) / rate; t_up = fixed + resp_bytes / rate
        t_down = add(lb[0], sub.req_bytes, b3)
        np.divide(t_down, rate, t_down)
        add(t_down, self._fixed, t_down)
        t_up = self._t_up.get(sub.shard)
        if t_up is None:
            t_up = np.divide(sub.resp_bytes, rate)
            t_up += self._fixed
            self._t_up[sub.shard] = t_up
        # t_down + (remaining + svc) * slow + t_up
        add(svc, rw, svc)
        mul(svc, sim.measured_slow, svc)
        fin = add(t_down, svc, self._fin)
        add(fin, t_up, fin)
        return fin

    def _update_node(self, sim: ShardSim, a: int, now: float, inv_sla: float) -> None:
        """Refresh node ``a``'s entries of the node rows after routing to it, in plain floats
        with numpy's semantics (the same bits as recomputing the whole rows)."""
        x = float(sim.service_end[a]) - now
        rw = (x if x > 0.0 or x != x else 0.0) + float(sim.work_s[a])  # np.maximum(x, 0.0)
        self._rw[a] = rw
        N = self.n_nodes
        b = N + a
        lbb, lbt, lbr = sim.inflight_bytes, sim.inflight_t, sim.inflight_rate
        left = float(lbb[a]) - (now - float(lbt[a])) * float(lbr[a])
        down = left if left > 0.0 or left != left else 0.0
        left = float(lbb[b]) - (now - float(lbt[b])) * float(lbr[b])
        up = left if left > 0.0 or left != left else 0.0
        lb = self._lb_flat  # (2, N) flattened: downlinks, then uplinks
        lb[a] = down
        lb[b] = up
        vals = self._vals_flat  # (10, N) flattened, row r at r * N
        vals[a] = int(sim.outstanding[a]) / _QUEUE_NORM
        vals[b] = rw * float(sim.measured_slow[a]) * inv_sla
        vals[b + N] = (down + up) / float(self._rate_n[a]) * inv_sla

    def _obs(self) -> Obs:
        sim = self.sim
        assert sim is not None and sim.pending is not None
        sub = sim.pending
        out = self._out
        if out is not None:  # _on_pending's routing_obs filled it at this instant
            if self._out_given:  # a second call: its arrays must not alias the first's
                out = out.copy()
            return self._views(out)
        inv_sla = sub.req.inv_sla  # 1 / max(deadline - arrival, 1e-9)
        s = sub.shard
        holds = self._holds_f[s]
        vals = self._vals
        # _predict_finish ran at this instant for this sub-request: its buffers are current.
        mul = np.multiply
        if self._rows_full:
            np.divide(sim.outstanding, _QUEUE_NORM, vals[0])
            mul(self._rw, sim.measured_slow, vals[1])
            mul(vals[1], inv_sla, vals[1])
            lb = self._lb
            np.add(lb[0], lb[1], vals[2])
            np.divide(vals[2], self._rate_n, vals[2])
            mul(vals[2], inv_sla, vals[2])
            feat = sim.node_features  # hit rate, occupancy, slowdown, up
            vals[3] = feat[0]
            vals[5:8] = feat[1:4]
            self._rows_full = False
        mul(sim.row_hit[:, s], holds, vals[4])
        vals[8] = holds
        mul(self._fin, inv_sla, vals[9])
        flat = np.empty(vals.shape, dtype=np.float32)
        clip_ufunc(vals, 0.0, _CLIP, out=flat, casting="unsafe")
        return self._obs_dict(flat, sim, sub, inv_sla)

    def _views(self, out: np.ndarray) -> Obs:
        """The observation as views of ``out`` (``routing_obs``'s entries; new, or a copy)."""
        self._out_given = True
        q, w, lk, h, hs, oc, sl, up, ho, fi, sh, sz, rq, ra = self._out_slices
        obs = {"queue": out[q], "work": out[w], "link": out[lk], "hit": out[h],
               "hit_shard": out[hs], "occupancy": out[oc], "slow": out[sl], "up": out[up],
               "holds": out[ho], "finish": out[fi], "shard": out[sh], "size": out[sz],
               "request": out[rq], "rates": out[ra]}
        if self.request_obs:
            for k, sl_ in zip(REQUEST_KEYS, self._req_slices, strict=True):
                obs[k] = out[sl_]
        self._last_obs = obs
        return obs

    def _obs_dict(self, flat: np.ndarray, sim: ShardSim, sub: Any, inv_sla: float) -> Obs:
        """The observation from its clipped node rows ``flat`` ((10, N) float32, new)."""
        s = sub.shard
        left = sim.fanout_left_count() + 1
        ex = np.array([clip(sub.lookups / self._mean_lookups),
                       clip(sub.resp_bytes / self._mean_resp), clip(left / self.n_shards),
                       clip(self._req_pred * inv_sla), clip(self._rate / self.capacity_qps)],
                      dtype=np.float32)
        obs = {"queue": flat[0], "work": flat[1], "link": flat[2], "hit": flat[3],
               "hit_shard": flat[4], "occupancy": flat[5], "slow": flat[6], "up": flat[7],
               "holds": flat[8], "finish": flat[9], "shard": self._onehot[s].copy(),
               "size": ex[0:2], "request": ex[2:4], "rates": ex[4:5]}
        if self.request_obs:
            self._request_obs(obs, sim, inv_sla)
        self._last_obs = obs
        return obs

    def _request_obs(self, obs: Obs, sim: ShardSim, inv_sla: float) -> None:
        """Add the request-aware entries (:data:`REQUEST_KEYS`) to ``obs``."""
        N = self.n_nodes
        vals = np.empty((4, N))
        np.multiply(self._req_node, inv_sla, vals[0])
        np.subtract(self._req_pred, self._fin, vals[1])
        np.maximum(vals[1], 0.0, out=vals[1])
        vals[1] *= inv_sla
        vals[2] = sim.link_messages[:N]  # messages in flight per link (PsLink.n)
        vals[2] += sim.link_messages[N:]
        vals[2] /= _QUEUE_NORM
        np.subtract(1.0, sim.hit_rate, vals[3])
        vals[3] *= sim.outstanding
        vals[3] /= _QUEUE_NORM
        flat = np.empty((4, N), dtype=np.float32)
        clip_ufunc(vals, 0.0, _CLIP, out=flat, casting="unsafe")
        for i, k in enumerate(REQUEST_KEYS):
            obs[k] = flat[i]

    def _reward(self) -> float:
        """The reward for the requests that finished since the last call."""
        sim = self.sim
        assert sim is not None
        sim.sync_backlog()
        c = sim.req
        good = c.good
        snap = (good, c.completed - good, c.dropped_rejected + c.dropped_overflow
                + c.dropped_expired + c.dropped_failed, sim.backlog)
        old = self._snapshot
        self._snapshot = snap
        # A fused step (no event, the same instant) may take the empty outcome's reward
        # without this call when the backlog is finite and not -0.0: the backlog then stays
        # as it is (sync_backlog adds the rate, finite as the backlog is, times 0.0, +-0.0)
        # and so does this snapshot (step; test_fused_reward_is_reward).
        b = snap[3]
        self._synced = b - b == 0.0 and (b != 0.0 or math.copysign(1.0, b) > 0.0)
        if snap == old and not self._prices_energy:
            # Nothing finished or dropped and the same backlog (most steps): _reward_of's
            # cached value of the empty outcome when it has one and the backlog difference
            # is +0.0 (its test; not so for a NaN or an infinite backlog, or -0.0 - 0.0).
            zero = self._zero_reward
            d = snap[3] - old[3]
            if (zero is not None and zero[0] is self.reward_fn and d == 0.0
                    and math.copysign(1.0, d) > 0.0):
                return zero[1]
        return self._reward_of(snap[0] - old[0], snap[1] - old[1], snap[2] - old[2], 0,
                               snap[3] - old[3],
                               self._energy_delta() if self._prices_energy else 0.0)

    def _energy_delta(self) -> float:
        """Joules since the last reward when the reward prices energy (else 0, not computed)."""
        if not self._prices_energy:
            return 0.0
        e = self.energy_j()
        delta = e - self._energy_prev
        self._energy_prev = e
        return delta

    def energy_breakdown(self) -> dict[str, float]:
        """Joules spent so far by part (:meth:`hwmodels.energy.ClusterEnergy.breakdown_j`):
        the idle floor of every device and link, node service, fast- and slow-tier reads,
        bytes on the links and dense-device MLP time. Node and dense busy time count from
        the start of each service."""
        sim = self.sim
        if sim is None:
            return {}
        return self.energy_model.breakdown_j(sim.now, sim.sub.busy_s, sim.fast_reads,
                                             sim.slow_reads, sim.link_bytes_sent,
                                             sum(sim.req.busy_s))

    def energy_j(self) -> float:
        """Joules spent so far (the sum of :meth:`energy_breakdown`, inlined: every step's
        ``info`` has it)."""
        sim = self.sim
        if sim is None:
            return 0.0
        m = self.energy_model
        # sum(j * b for ...) from 0.0: the same additions in the same order as a loop
        # (floats: CPython adds them in C doubles), with the products made by map in C.
        links = sum(map(_mul, m.link_j_per_byte, sim.link_bytes_sent), 0.0)
        # Only events change time, busy times and reads (routing, shedding and placement
        # add link bytes only): the other terms are kept between events, and added in the
        # same order, ``idle + busy + fast + slow + links + dense``.
        now = sim.events.now
        key = (sim, sim.events_handled, now)
        if key != self._energy_key:
            fast_j, slow_j = m.reads_j(sim.fast_reads, sim.slow_reads)
            self._energy_part = (m.idle_w * now + m.busy_j(sim.sub.busy_s) + fast_j
                                 + slow_j, m.dense_dynamic_w * sum(sim.req.busy_s))
            self._energy_key = key
        head, dense = self._energy_part
        return head + links + dense

    def _reward_of(self, good: int, late: int, dropped: int, reconfigurations: int,
                   backlog: float, energy: float = 0.0) -> float:
        """``float(reward_fn(Outcome(...)))``; an empty outcome (most steps: the sub-requests
        of one request are routed at one instant) reuses the built-in rewards' value of it."""
        fn = self.reward_fn
        if energy:
            return float(fn(Outcome(good, late, dropped, energy, reconfigurations, backlog)))
        if (not (good or late or dropped or reconfigurations) and backlog == 0.0
                and math.copysign(1.0, backlog) > 0.0):
            zero = self._zero_reward
            if zero is not None and zero[0] is fn:
                return zero[1]
            value = float(fn(Outcome(good, late, dropped, 0.0, reconfigurations, backlog)))
            if type(fn) in _PURE_REWARDS:
                self._zero_reward = (fn, value)
            return value
        if type(fn) in _PURE_REWARDS:  # (their value() is their __call__ of the fields)
            return float(fn.value(good, late, dropped, 0.0,  # type: ignore[attr-defined]
                                  reconfigurations, backlog))
        return float(fn(Outcome(good, late, dropped, 0.0, reconfigurations, backlog)))

    def _info(self) -> dict[str, Any]:
        sim = self.sim
        assert sim is not None
        now = sim.events.now
        sub = sim.sub
        req = sim.req
        # The request summary only changes with an event, time or a failed request (a shed
        # or an unroutable sub-request): reuse it between the decisions of one request, and
        # so every entry that changes only with those; the others are refreshed below.
        key = (sim, sim.events_handled, now, req.dropped_failed)
        mean_link, max_link = sim.link_utilization(now)  # a link's first message at `now`
        sub_dropped = (sub.dropped_rejected + sub.dropped_overflow + sub.dropped_expired
                       + sub.dropped_failed)
        base = self._info_base
        if key != self._summary_key or base is None:
            # The request summary (FanoutCounters.summary: its keys first, in its order)
            # with the sub-request counts in place of its request counts and the nodes'
            # utilization in place of the dense devices', then the env's own entries: one
            # dict display, the same values (test_info_is_the_summary_info).
            self._summary_key = key
            node_ahead, dense_ahead = sim.busy_ahead_s(now)
            _, p50, p99, mean = req.latency.read_ms()
            completed, good = req.completed, req.good
            req_dropped = (req.dropped_rejected + req.dropped_overflow + req.dropped_expired
                           + req.dropped_failed)
            finished = completed + req_dropped
            if now > 0:
                dense = req.busy_s
                goodput = good / now
                dense_util = (sum(dense) - dense_ahead) / (len(dense) * now)
                util = (sum(sub.busy_s) - node_ahead) / (self.n_nodes * now)
            else:
                goodput = dense_util = util = 0.0
            lookups = sim.cache_lookups_total
            sub_completed, sub_good = sub.completed, sub.good
            base = self._info_base = {
                "sla_attainment": good / finished if finished else 1.0,
                "goodput": goodput,
                "p50_latency_ms": p50, "p99_latency_ms": p99, "mean_latency_ms": mean,
                # Sub-requests: the decision unit, so the conservation law is in these.
                "arrived": sub.arrived, "completed": sub_completed, "good": sub_good,
                "late": sub_completed - sub_good, "dropped": sub_dropped,
                "dropped_rejected": sub.dropped_rejected,
                "dropped_overflow": sub.dropped_overflow,
                "dropped_expired": sub.dropped_expired,
                "in_system": sub.arrived - sub_completed - sub_dropped,
                "utilization": util,
                "energy_per_query_j": 0.0,  # (every info sets it: see below)
                "sim_time_s": now,
                "dropped_failed": sub.dropped_failed,
                # Requests, end to end (sla_attainment, goodput and latencies are theirs).
                "requests_arrived": req.arrived, "requests_completed": completed,
                "requests_good": good, "requests_dropped": req_dropped,
                "requests_in_system": req.arrived - completed - req_dropped,
                "dense_utilization": dense_util,
                "retried": sim.sub_retried,
                "cache_hit_rate": sim.cache_hits_total / lookups if lookups else 0.0,
                "link_utilization": mean_link, "link_utilization_max": max_link,
                "capacity_qps": self.capacity_qps, "invalid_actions": self._invalid,
            }
        else:
            # Between events at one instant only routing, shedding and unroutable
            # sub-requests change the state: the sub-request counts, and the links a message
            # joined. (base is kept as the last info, less the energy entries.)
            base["arrived"] = sub.arrived
            base["dropped"] = sub_dropped
            base["dropped_rejected"] = sub.dropped_rejected
            base["dropped_failed"] = sub.dropped_failed
            base["in_system"] = sub.arrived - sub.completed - sub_dropped
            base["link_utilization"] = mean_link
            base["link_utilization_max"] = max_link
            base["invalid_actions"] = self._invalid
        info = base.copy()
        # energy_j so far, energy_per_query_j (per completed request) and the mean power_w
        # since the episode began.
        e = self.energy_j()
        completed = req.completed
        info["energy_j"] = e
        info["energy_per_query_j"] = e / completed if completed else 0.0
        info["power_w"] = e / now if now > 0 else 0.0
        return info
