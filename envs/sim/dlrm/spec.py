"""The static description of a sharded deployment: the cluster, its faults and disruptions.

:class:`ClusterSpec` is everything static about the deployment (tables, shards, replicas,
tiers, links, dense devices); :class:`FaultEvent` is a scheduled fault and
:class:`RandomDisruption` the random stragglers or failures of every node. The simulator is
:class:`envs.sim.dlrm.cluster.ShardSim`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwmodels.links import LinkSpec
from hwmodels.storage import StorageTier


@dataclass(frozen=True)
class FaultEvent:
    """A scheduled fault.

    Attributes:
        start_s: When it starts (seconds from the episode start).
        duration_s: How long it lasts.
        target: Node index (its link, for ``kind="link"``).
        kind: ``"node"`` or ``"link"``.
        mode: ``"fail"`` (down) or ``"slow"`` (service or bandwidth divided by ``factor``).
        factor: Slowdown factor for ``mode="slow"`` (> 1).
    """

    start_s: float
    duration_s: float
    target: int
    kind: str = "node"
    mode: str = "fail"
    factor: float = 4.0

    def __post_init__(self) -> None:
        if self.kind not in ("node", "link"):
            raise ValueError(f"fault kind must be 'node' or 'link', got {self.kind!r}")
        if self.mode not in ("fail", "slow"):
            raise ValueError(f"fault mode must be 'fail' or 'slow', got {self.mode!r}")
        if self.start_s < 0 or self.duration_s <= 0:
            raise ValueError("fault start must be >= 0 and duration > 0")
        if self.mode == "slow" and self.factor <= 1.0:
            raise ValueError(f"fault factor must be > 1, got {self.factor}")


@dataclass(frozen=True)
class RandomDisruption:
    """Alternating renewal process per node: up for Exp(1/rate), disrupted for Exp(duration).

    Attributes:
        rate_hz: Disruptions per second per node (0 disables).
        duration_s: Mean length of a disruption.
        factor: Slowdown factor (stragglers); ignored for failures.
    """

    rate_hz: float = 0.0
    duration_s: float = 0.01
    factor: float = 3.0

    def __post_init__(self) -> None:
        if self.rate_hz < 0 or self.duration_s <= 0 or self.factor < 1.0:
            raise ValueError("disruption: rate_hz >= 0, duration_s > 0, factor >= 1 needed")

    @property
    def fraction(self) -> float:
        """Long-run fraction of time a node is disrupted."""
        if self.rate_hz <= 0:
            return 0.0
        return self.duration_s / (1.0 / self.rate_hz + self.duration_s)


@dataclass(frozen=True)
class ClusterSpec:
    """Everything static about the sharded deployment.

    Attributes:
        n_nodes: Embedding nodes ``N``.
        table_rows: Rows per table ``(T,)``.
        pooling: Lookups per sample per table ``(T,)``.
        dim: Elements per embedding row.
        elem_bytes: Bytes per element of stored rows and of pooled results.
        batch: Samples per request ``B``.
        row_wise: Shards are row ranges of every table (else whole tables).
        shard_tables: Tables of each shard (table-wise), or every table for each shard.
        replicas: Nodes holding each shard.
        fast: Fast tier of every node (pinned tables and the row cache), unless
            :attr:`node_fast` gives one per node.
        slow: Slow tier (the full cached tables), unless :attr:`node_slow` gives one per
            node.
        queue_depth: Reads in flight per tier on a node.
        node_overhead_s: Fixed cost of serving one sub-request (RPC handling, pooling setup).
        cache_rows: Row-cache capacity per node (rows), unless :attr:`node_cache_rows`
            gives one per node.
        track_rows: Most popular rows per segment the cache admits (<= 0: automatic, see
            :class:`~envs.sim.dlrm.layout.ShardLayout`).
        pin_rows: Segments with at most this many rows are pinned in the fast tier.
        cache_policy: ``"lru"`` or ``"lfu"``.
        links: Link of each node to the central node.
        bottom_s: Bottom-MLP latency of one request on a dense device.
        top_s: Top-MLP (interaction + over-arch) latency of one request.
        dense_servers: Dense devices at the central node.
        alpha: Popularity exponent of rows.
        queue_capacity: Most sub-requests queued or served on one node; more are dropped.
        max_retries: Retries of a sub-request whose node failed.
        retry_delay_s: Time for the client to notice a failure and resend.
        id_bytes: Bytes per looked-up id in a request message.
        header_bytes: Bytes of every message's header.
        node_fast: Fast tier of each node (empty: :attr:`fast` on every node).
        node_slow: Slow tier of each node (empty: :attr:`slow` on every node).
        node_cache_rows: Row-cache capacity of each node (empty: :attr:`cache_rows` on
            every node).
        node_queue_depth: Reads in flight per tier on each node (empty: :attr:`queue_depth`
            on every node).
    """

    n_nodes: int
    table_rows: tuple[int, ...]
    pooling: tuple[int, ...]
    dim: int
    elem_bytes: int
    batch: int
    row_wise: bool
    shard_tables: tuple[tuple[int, ...], ...]
    replicas: tuple[tuple[int, ...], ...]
    fast: StorageTier
    slow: StorageTier
    queue_depth: float
    node_overhead_s: float
    cache_rows: int
    track_rows: int
    pin_rows: int
    cache_policy: str
    links: tuple[LinkSpec, ...]
    bottom_s: float
    top_s: float
    dense_servers: int
    alpha: float
    queue_capacity: int = 64
    max_retries: int = 2
    retry_delay_s: float = 0.001
    id_bytes: int = 8
    header_bytes: int = 64
    node_fast: tuple[StorageTier, ...] = ()
    node_slow: tuple[StorageTier, ...] = ()
    node_cache_rows: tuple[int, ...] = ()
    node_queue_depth: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for name in ("node_fast", "node_slow", "node_cache_rows", "node_queue_depth"):
            k = len(getattr(self, name))
            if k not in (0, self.n_nodes):
                raise ValueError(f"{name}: {k} entries for {self.n_nodes} nodes")

    def fast_of(self, node: int) -> StorageTier:
        """Node ``node``'s fast tier."""
        return self.node_fast[node] if self.node_fast else self.fast

    def slow_of(self, node: int) -> StorageTier:
        """Node ``node``'s slow tier."""
        return self.node_slow[node] if self.node_slow else self.slow

    def cache_rows_of(self, node: int) -> int:
        """Node ``node``'s row-cache capacity (rows)."""
        return int(self.node_cache_rows[node]) if self.node_cache_rows else self.cache_rows

    def queue_depth_of(self, node: int) -> float:
        """Node ``node``'s reads in flight per tier."""
        return float(self.node_queue_depth[node]) if self.node_queue_depth else self.queue_depth

    @property
    def n_shards(self) -> int:
        """Shards ``S``."""
        return len(self.shard_tables)

    @property
    def row_bytes(self) -> int:
        """Bytes of one stored row."""
        return self.dim * self.elem_bytes

    def read_cost_s(self, tier: StorageTier, queue_depth: float | None = None) -> float:
        """Seconds per random row read on ``tier`` at ``queue_depth`` reads in flight
        (default :attr:`queue_depth`; linear in reads)."""
        moved = math.ceil(self.row_bytes / tier.access_bytes) * tier.access_bytes
        qd = self.queue_depth if queue_depth is None else queue_depth
        return max(tier.latency_us * 1e-6 / qd, 1.0 / tier.iops,
                   moved / (tier.bandwidth_gbs * 1e9))
