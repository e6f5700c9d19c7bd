"""Where a deployment's rows live: tables over shards, shards over nodes, rows over keys.

:func:`balance_tables` shards whole tables (table-wise), :func:`place_replicas` puts each
shard's replicas on nodes (chained declustering), and :class:`ShardLayout` builds, once per
:class:`~envs.sim.dlrm.spec.ClusterSpec`, the static tables every episode of the simulator
shares: segments, cache key spaces, per-table lookup counts and the precomputed sampling law.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from envs.sim.dlrm.skew import cdf, law_norm
from envs.sim.dlrm.spec import ClusterSpec

#: Most cached tables whose binomial lookup counts are drawn one at a time (cheaper than
#: one array draw up to about this many; the same numbers either way).
_SCALAR_DRAWS = 12


def _split_integer(total: int, weights: np.ndarray) -> np.ndarray:
    """``total`` split in proportion to ``weights`` (largest remainders; sums to ``total``)."""
    w = np.asarray(weights, dtype=np.float64)
    share = total * w / w.sum()
    out = np.floor(share).astype(np.int64)
    rest = total - int(out.sum())
    if rest:
        out[np.argsort(-(share - out), kind="stable")[:rest]] += 1
    return out


def balance_tables(weights: Sequence[float], n_shards: int) -> tuple[tuple[int, ...], ...]:
    """Table-wise sharding: longest-processing-time greedy on per-table load ``weights``.

    Raises:
        ValueError: more shards than tables.
    """
    if n_shards > len(weights):
        raise ValueError(f"n_shards={n_shards}: table-wise sharding needs <= {len(weights)} "
                         "shards (one table each at least)")
    loads = [0.0] * n_shards
    shards: list[list[int]] = [[] for _ in range(n_shards)]
    for t in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        s = min(range(n_shards), key=lambda i: (loads[i], i))
        shards[s].append(t)
        loads[s] += weights[t]
    return tuple(tuple(sorted(s)) for s in shards)


def place_replicas(n_nodes: int, n_shards: int, replication: int) -> tuple[tuple[int, ...], ...]:
    """Chained declustering: replica ``k`` of shard ``s`` on node ``(s * N // S + k) % N``.

    Raises:
        ValueError: more replicas than nodes.
    """
    if not 1 <= replication <= n_nodes:
        raise ValueError(f"replication={replication}: must be in [1, n_nodes={n_nodes}]")
    return tuple(tuple((s * n_nodes // n_shards + k) % n_nodes for k in range(replication))
                 for s in range(n_shards))


class ShardLayout:
    """The static tables of a :class:`ClusterSpec`, built once and shared by every episode.

    Segments are the (shard, table) pairs: a whole table (table-wise) or the rows of a table
    whose popularity rank ``k`` has ``k % S == s`` (row-wise: ids are hashed over the shards,
    so every shard gets a similar share of hot rows; local rank ``k // S``). Each cached
    segment's tracked head (the rows its node's cache may admit) gets a range of *shard-space
    keys*; a node's cache key space is the concatenation of the shard spaces it holds.

    Args:
        spec: The deployment.
    """

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        N, S, T = spec.n_nodes, spec.n_shards, len(spec.table_rows)
        rows = np.asarray(spec.table_rows, dtype=np.int64)
        B = spec.batch
        # A table is pinned when each of its segments fits under pin_rows.
        seg_rows_t = -(-rows // S) if spec.row_wise else rows
        table_pinned = seg_rows_t <= spec.pin_rows
        # Tracked head per segment: spec.track_rows, or (<= 0) enough for 4x the (largest)
        # cache over the node holding the most cached segments (at most 2**18 rows).
        cached_in = np.array([sum(not table_pinned[t] for t in tables)
                              for tables in spec.shard_tables])
        per_node = np.zeros(N, dtype=np.int64)
        for s_, reps in enumerate(spec.replicas):
            for n in set(reps):
                per_node[n] += cached_in[s_]
        most = max(int(per_node.max()), 1)
        #: Row-cache capacity of each node (rows).
        self.cache_rows: list[int] = [spec.cache_rows_of(n) for n in range(N)]
        #: Rows of a segment's tracked head (the most popular rows its cache may admit).
        self.track_rows = int(spec.track_rows) if spec.track_rows > 0 else int(
            min(2**18, max(1024, 4 * max(self.cache_rows) // most)))
        track = self.track_rows
        # Segments: (shard, table) pairs with their rows, tracked head and key offset.
        seg_of = np.full((S, T), -1, dtype=np.int64)
        seg_rows: list[int] = []
        seg_track: list[int] = []
        seg_pinned: list[bool] = []
        seg_shard: list[int] = []
        seg_table: list[int] = []
        for s, tables in enumerate(spec.shard_tables):
            for t in tables:
                r = int(-(-(rows[t] - s) // S)) if spec.row_wise else int(rows[t])
                if r <= 0:
                    continue
                seg_of[s, t] = len(seg_rows)
                pinned = bool(table_pinned[t])
                seg_rows.append(r)
                seg_pinned.append(pinned)
                seg_track.append(0 if pinned else min(r, track))
                seg_shard.append(s)
                seg_table.append(t)
        self.seg_rows = np.array(seg_rows, dtype=np.int64)
        self.seg_track = np.array(seg_track, dtype=np.int64)
        self.seg_pinned = np.array(seg_pinned, dtype=bool)
        self.seg_shard = np.array(seg_shard, dtype=np.int64)
        self.seg_table = np.array(seg_table, dtype=np.int64)
        self.seg_of = seg_of
        # Shard-space key offsets of tracked segments; each shard's tracked rows are 0..K_s-1.
        key_off = np.zeros(len(seg_rows), dtype=np.int64)
        shard_keys = np.zeros(S, dtype=np.int64)
        for j, s in enumerate(seg_shard):
            key_off[j] = shard_keys[s]
            shard_keys[s] += seg_track[j]
        self.seg_key_off = key_off
        self.shard_keys = shard_keys
        # Request-wide keys: shard s's keys start at shard_base[s] (int32 when they fit).
        self.shard_base = np.concatenate([[0], np.cumsum(shard_keys)]).astype(np.int64)
        self.key_dtype = np.int32 if self.shard_base[-1] < 2**31 else np.int64
        self.gseg_off = (self.shard_base[np.array(seg_shard, dtype=np.int64)] + key_off
                         if len(seg_shard) else np.zeros(0, dtype=np.int64)).astype(self.key_dtype)
        # Per node: offset of each held shard's key space in the node's cache key space.
        self.holds = np.zeros((N, S), dtype=bool)
        self.node_key_off = np.zeros((N, S), dtype=np.int64)
        self.node_keys = np.zeros(N, dtype=np.int64)
        for s, reps in enumerate(spec.replicas):
            for n in reps:
                if not self.holds[n, s]:
                    self.holds[n, s] = True
                    self.node_key_off[n, s] = self.node_keys[n]
                    self.node_keys[n] += shard_keys[s]
        self.replicas = [list(r) for r in spec.replicas]
        self.node_key_off_list = self.node_key_off.tolist()
        # Lookups of one request per table; cached tables are sampled, pinned ones counted.
        n_t = np.asarray(spec.pooling, dtype=np.int64) * B
        cached_t = np.flatnonzero(~table_pinned & (n_t > 0))
        self.c_tables = cached_t
        self.c_n = n_t[cached_t]
        # Ranks below this bound are in a tracked head (row-wise: local rank < track_rows).
        bound = np.minimum(rows[cached_t], track * (S if spec.row_wise else 1))
        self.c_bound = bound.astype(np.float64)
        self.c_ptracked = cdf(bound + 1.0, rows[cached_t], spec.alpha)
        # The binomial draws table by table (as plain ints) when there are few tables: see
        # ShardSim._make_subrequests_jit.
        self.c_scalar = len(cached_t) <= _SCALAR_DRAWS
        self.c_n_p = list(zip(self.c_n.tolist(), self.c_ptracked.tolist(), strict=True))
        self.c_n_total = int(self.c_n.sum())
        self.c_norm = law_norm(self.c_bound, spec.alpha)
        table_shard = np.zeros(T, dtype=np.int64)
        if not spec.row_wise:
            for s, tables in enumerate(spec.shard_tables):
                table_shard[list(tables)] = s
        self.c_shard = table_shard[cached_t]
        self.c_keyoff = (self.gseg_off[seg_of[table_shard[cached_t], cached_t]]
                         if not spec.row_wise else np.zeros(0, dtype=self.key_dtype))
        self.single = bool(len(bound) == 0 or bound.max() <= 2**24)
        # The same in the sampling dtype (what sample_ranks converts them to per lookup).
        dtype = np.float32 if self.single else np.float64
        self.c_norm_d = self.c_norm.astype(dtype)
        self.c_ub = self.c_bound.astype(dtype).astype(np.int64) - 1
        self.c_power = dtype(1.0 / (1.0 - spec.alpha)) if abs(spec.alpha - 1.0) >= 1e-9 else None
        self.row_pvals = np.full(S, 1.0 / S)
        # Row-wise: request-wide key offset of (cached table i, shard s) at i * S + s, and
        # the shifts that replace % S and // S on ranks (>= 0) when S is a power of two.
        self.c_row_base = np.arange(len(cached_t), dtype=np.int64) * S
        self.c_gseg = (self.gseg_off[seg_of[:, cached_t]].T.reshape(-1) if spec.row_wise
                       else np.zeros(0, dtype=self.key_dtype))
        self.shard_shift = S.bit_length() - 1 if S & (S - 1) == 0 else -1
        # Pinned lookups per shard: fixed (row-wise: each table's split by its rows' mass).
        pinned_look = np.zeros(S, dtype=np.int64)
        for tp in np.flatnonzero(table_pinned & (n_t > 0)).tolist():
            if spec.row_wise:
                ks = np.arange(int(rows[tp]))
                mass = np.bincount(ks % S, weights=cdf(ks + 2.0, int(rows[tp]), spec.alpha)
                                   - cdf(ks + 1.0, int(rows[tp]), spec.alpha), minlength=S)
                pinned_look += _split_integer(int(n_t[tp]), mass)
            else:
                pinned_look[table_shard[tp]] += n_t[tp]
        self.pinned_lookups = pinned_look
        self.pinned_lookups_list: list[int] = pinned_look.tolist()
        if not spec.row_wise:
            cached_look = np.bincount(self.c_shard, weights=self.c_n, minlength=S)
            self.cached_lookups_tw = cached_look.astype(np.int64)
            #: Lookups of each shard's sub-request (table-wise: the same every request).
            self.lookups_tw: list[int] = (pinned_look + self.cached_lookups_tw).tolist()
            #: Request bytes of each shard's sub-request (table-wise).
            self.req_bytes_tw: list[int] = [spec.header_bytes + n * spec.id_bytes
                                            for n in self.lookups_tw]
        #: Lookups of one request.
        self.lookups_per_request = int(n_t.sum())
        # Messages: ids out, pooled rows back (one pooled vector per sample and table).
        tables_in = np.array([len(t) for t in spec.shard_tables])
        self.resp_bytes = (spec.header_bytes + B * tables_in * spec.row_bytes).astype(float)
        self.resp_bytes_list: list[float] = self.resp_bytes.tolist()
        #: Seconds per row read from each node's fast and slow tier ``(N,)``, and the same as
        #: lists of floats.
        self.c_fast = np.array([spec.read_cost_s(spec.fast_of(n), spec.queue_depth_of(n))
                                for n in range(N)])
        self.c_slow = np.array([spec.read_cost_s(spec.slow_of(n), spec.queue_depth_of(n))
                                for n in range(N)])
        self.c_fast_list: list[float] = self.c_fast.tolist()
        self.c_slow_list: list[float] = self.c_slow.tolist()
        #: Every node has the same read costs (then the scalar formulas of a homogeneous
        #: cluster apply, with their bits).
        self.uniform_tiers = bool((self.c_fast == self.c_fast[0]).all()
                                  and (self.c_slow == self.c_slow[0]).all())
        # Bytes pinned in the fast tier per node (for the occupancy feature).
        pinned_rows = np.zeros(S)
        for j in range(len(seg_rows)):
            if seg_pinned[j]:
                pinned_rows[seg_shard[j]] += seg_rows[j]
        self.pinned_bytes = (self.holds @ pinned_rows) * spec.row_bytes
