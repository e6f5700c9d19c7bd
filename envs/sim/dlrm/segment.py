"""The compiled event loop of :class:`envs.sim.dlrm.compiled.CompiledShardSim`.

:func:`run_segment` handles, in one call, the events between two of Python's: link and service
completions and request completions (``LINK_DONE``, ``SERVICE_DONE``, ``REQUEST_DONE`` of
:mod:`envs.sim.dlrm.cluster`), on the simulator's state as arrays, with the same operations in
the same order as :class:`envs.sim.dlrm.cluster.ShardSim`'s handlers (the reference). It stops
at the first event of another kind (arrivals, stragglers, faults: they draw from the random
generator or change the topology, so Python handles them, and the stream stays the same), pops
it and hands it back. :func:`send` is :meth:`ShardSim._send` on the same arrays.

The event heap holds ``(time, seq)`` keys as the reference's ``(time, 0, seq, event)`` tuples
(``seq`` is unique, so the order is the same); an event of a link or a node is live while its
``seq`` is the one the link or node holds (the reference's cancelled flag). Every index below
is a column of the arrays that :class:`~envs.sim.dlrm.compiled.CompiledShardSim` builds.
"""

from __future__ import annotations

import numpy as np

from envs.sim.dlrm.kernels import earliest_replica, lru_access, routing_obs
from envs.sim.jit import NO_NRT, njit

LINK_DONE = 1
SERVICE_DONE = 2
REQUEST_DONE = 3
_EPS_BYTES = 1e-3
#: The id of an aborted migration's message (stale).
ABORTED = -(2**62)
_INF = np.inf

# F: float globals
F_NOW, F_BACKLOG, F_RATE, F_BT, F_LBMAX, F_OVERHEAD, F_ROWB, F_TOP, F_EWMA = range(9)
N_F = 9
# G: int globals
(I_SEQ, I_HSIZE, I_EVH, I_SUBC, I_SUBG, I_OVF, I_REQC, I_REQG, I_REQDF, I_CLT, I_CHT,
 I_NSUBS, I_NREQS, I_LATN, I_DENN, I_QCAP, I_RET, I_KIND, I_TGT, I_SMASK, I_RMASK, I_N, I_S,
 I_D, I_SENDSEQ) = range(25)
N_I = 25
# return codes (G[I_RET])
(RET_EVENT, RET_DONE, RET_EMPTY, RET_GROW_HEAP, RET_GROW_MSG, RET_FLUSH, RET_GROW_ALIVE,
 RET_MIGRATION) = range(8)
# links, floats (2N, 8) and ints (2N, 5); link id = 2 * node + up; K_MIG: migrations on it
# (messages with ids < 0: -1 - their index in CompiledShardSim's list)
L_BPS, L_FIXED, L_FACTOR, L_V, L_T, L_BUSY, L_BYTES, L_SUMF = range(8)
K_N, K_SEQ, K_EV, K_MH, K_MIG = range(5)
# nodes, floats (N, 2) and ints (N, 5)
D_SLOW, D_SVC = range(2)
E_SERV, E_EV, E_QH, E_QT, E_QL = range(5)
# sub-requests (slot = id & smask), floats and ints
S_EST, S_FF, S_REQB, S_RESPB = range(4)
(U_ID, U_RID, U_SHARD, U_NODE, U_STATE, U_FSEQ, U_KS, U_NK, U_DU, U_LOOK, U_TRK,
 U_NEXT, U_RETRIES, U_SENDSEQ) = range(14)
# requests (slot = id & rmask)
R_ARR, R_DL, R_INV, R_BOT, R_GATH = range(5)
Q_ID, Q_FAN, Q_LEFT, Q_RES, Q_FAILED, Q_LIVE = range(6)
# per-node float rows (k, N)
A_SUBBUSY, A_FAST, A_SLOW, A_LBS, A_OCCP, A_OCCF, A_CFAST, A_CSLOW, A_CSIZE = range(9)
N_A = 9
# per-node int rows
B_CLOOK, B_CHIT = range(2)
# LRU cache scalars (N, 9): LruRowCache's oldest, _base, tick, size, capacity, _stale, the
# length of its alive array (a row of the (N, A) array), where its last1 starts in the
# concatenation of the nodes' last1 arrays, and its length
C_OLD, C_BASE, C_TICK, C_SIZE, C_CAP, C_STALE, C_ALEN, C_L1OFF, C_NKEYS = range(9)
N_C = 9
# columns of the growable tables, int64 with the float columns read through a float64 view:
# events (time | seq, kind, target), messages per link (finish | seq, sid), sub-requests
# (S_* | U_*), requests (R_* | Q_*); buffers, float64: latency | dense job (k, start, end)
N_SF, N_SI = 4, 14
N_RF, N_RI = 5, 6


def state_size(N: int, S: int, D: int) -> int:
    """int64 words of the fixed state (:func:`unpack`)."""
    return (N_I + N_F + 2 * N * 8 + 2 * N * 5 + N * 2 + N * 5 + N_A * N + 2 * N + N * N_C
            + 2 * N + 2 * D + 15 * N + N * S + N + N * S)


@njit(cache=True, nogil=True, error_model="numpy")
def unpack(st: np.ndarray) -> tuple[np.ndarray, ...]:
    """The views of the fixed state ``st`` (int64; float parts through a float64 view):
    ``G, F, lkf, lki, nd_f, nd_i, NA, NI, cache_i, link_busy, dense_free, req_busy,
    node_state, row_hit, outstanding, key_off``."""
    N, S, D = st[I_N], st[I_S], st[I_D]
    fl = st.view(np.float64)
    o = 0
    G = st[o:o + N_I]
    o += N_I
    F = fl[o:o + N_F]
    o += N_F
    lkf = fl[o:o + 2 * N * 8].reshape((2 * N, 8))
    o += 2 * N * 8
    lki = st[o:o + 2 * N * 5].reshape((2 * N, 5))
    o += 2 * N * 5
    nd_f = fl[o:o + N * 2].reshape((N, 2))
    o += N * 2
    nd_i = st[o:o + N * 5].reshape((N, 5))
    o += N * 5
    NA = fl[o:o + N_A * N].reshape((N_A, N))
    o += N_A * N
    NI = st[o:o + 2 * N].reshape((2, N))
    o += 2 * N
    cache_i = st[o:o + N * N_C].reshape((N, N_C))
    o += N * N_C
    link_busy = fl[o:o + 2 * N]
    o += 2 * N
    dense_free = fl[o:o + D]
    o += D
    req_busy = fl[o:o + D]
    o += D
    node_state = fl[o:o + 15 * N].reshape((15, N))
    o += 15 * N
    row_hit = fl[o:o + N * S].reshape((N, S))
    o += N * S
    outstanding = st[o:o + N]
    o += N
    key_off = st[o:o + N * S].reshape((N, S))
    return (G, F, lkf, lki, nd_f, nd_i, NA, NI, cache_i, link_busy, dense_free, req_busy,
            node_state, row_hit, outstanding, key_off)


@njit(cache=True, nogil=True, error_model="numpy")
def tables(hp: np.ndarray, mh: np.ndarray, sub: np.ndarray, req: np.ndarray
           ) -> tuple[np.ndarray, ...]:
    """The float and int views of the growable tables: ``hp_t, hp_s, mh_f, mh_i, sub_f,
    sub_i, req_f, req_i``."""
    return (hp.view(np.float64)[:, 0], hp[:, 1:4], mh.view(np.float64)[:, :, 0],
            mh[:, :, 1:3], sub.view(np.float64)[:, :N_SF], sub[:, N_SF:],
            req.view(np.float64)[:, :N_RF], req[:, N_RF:])


@njit(cache=True, nogil=True, error_model="numpy")
def _less(hp_t: np.ndarray, hp_s: np.ndarray, a: int, b: int) -> bool:
    return hp_t[a] < hp_t[b] or (hp_t[a] == hp_t[b] and hp_s[a, 0] < hp_s[b, 0])


@njit(cache=True, nogil=True, error_model="numpy")
def heap_push(G: np.ndarray, hp_t: np.ndarray, hp_s: np.ndarray, t: float, seq: int,
              kind: int, target: int) -> None:
    """Push event ``(t, seq)`` of ``kind`` about ``target`` (room checked by the caller)."""
    i = G[I_HSIZE]
    G[I_HSIZE] = i + 1
    while i > 0:
        p = (i - 1) >> 1
        if hp_t[p] < t or (hp_t[p] == t and hp_s[p, 0] < seq):
            break
        hp_t[i] = hp_t[p]
        hp_s[i, 0] = hp_s[p, 0]
        hp_s[i, 1] = hp_s[p, 1]
        hp_s[i, 2] = hp_s[p, 2]
        i = p
    hp_t[i] = t
    hp_s[i, 0] = seq
    hp_s[i, 1] = kind
    hp_s[i, 2] = target


@njit(cache=True, nogil=True, error_model="numpy")
def schedule(G: np.ndarray, hp_t: np.ndarray, hp_s: np.ndarray, t: float, kind: int,
             target: int) -> None:
    """``EventQueue.push``: the next seq."""
    seq = G[I_SEQ] + 1
    G[I_SEQ] = seq
    heap_push(G, hp_t, hp_s, t, seq, kind, target)


@njit(cache=True, nogil=True, error_model="numpy")
def _heap_pop(G: np.ndarray, hp_t: np.ndarray, hp_s: np.ndarray) -> None:
    n = G[I_HSIZE] - 1
    G[I_HSIZE] = n
    if n == 0:
        return
    t = hp_t[n]
    s0, s1, s2 = hp_s[n, 0], hp_s[n, 1], hp_s[n, 2]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and (hp_t[c + 1] < hp_t[c]
                          or (hp_t[c + 1] == hp_t[c] and hp_s[c + 1, 0] < hp_s[c, 0])):
            c += 1
        if t < hp_t[c] or (t == hp_t[c] and s0 < hp_s[c, 0]):
            break
        hp_t[i] = hp_t[c]
        hp_s[i, 0] = hp_s[c, 0]
        hp_s[i, 1] = hp_s[c, 1]
        hp_s[i, 2] = hp_s[c, 2]
        i = c
    hp_t[i] = t
    hp_s[i, 0] = s0
    hp_s[i, 1] = s1
    hp_s[i, 2] = s2


@njit(cache=True, nogil=True, error_model="numpy")
def _mh_push(mh_f: np.ndarray, mh_i: np.ndarray, lki: np.ndarray, lid: int, f: float,
             seq: int, sid: int) -> None:
    i = lki[lid, K_MH]
    lki[lid, K_MH] = i + 1
    while i > 0:
        p = (i - 1) >> 1
        if mh_f[lid, p] < f or (mh_f[lid, p] == f and mh_i[lid, p, 0] < seq):
            break
        mh_f[lid, i] = mh_f[lid, p]
        mh_i[lid, i, 0] = mh_i[lid, p, 0]
        mh_i[lid, i, 1] = mh_i[lid, p, 1]
        i = p
    mh_f[lid, i] = f
    mh_i[lid, i, 0] = seq
    mh_i[lid, i, 1] = sid


@njit(cache=True, nogil=True, error_model="numpy")
def _mh_pop(mh_f: np.ndarray, mh_i: np.ndarray, lki: np.ndarray, lid: int) -> None:
    n = lki[lid, K_MH] - 1
    lki[lid, K_MH] = n
    if n == 0:
        return
    f = mh_f[lid, n]
    s0, s1 = mh_i[lid, n, 0], mh_i[lid, n, 1]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and (mh_f[lid, c + 1] < mh_f[lid, c]
                          or (mh_f[lid, c + 1] == mh_f[lid, c]
                              and mh_i[lid, c + 1, 0] < mh_i[lid, c, 0])):
            c += 1
        if f < mh_f[lid, c] or (f == mh_f[lid, c] and s0 < mh_i[lid, c, 0]):
            break
        mh_f[lid, i] = mh_f[lid, c]
        mh_i[lid, i, 0] = mh_i[lid, c, 0]
        mh_i[lid, i, 1] = mh_i[lid, c, 1]
        i = c
    mh_f[lid, i] = f
    mh_i[lid, i, 0] = s0
    mh_i[lid, i, 1] = s1


@njit(cache=True, nogil=True, error_model="numpy")
def _mh_stale(mh_i: np.ndarray, sub_i: np.ndarray, smask: int, lid: int) -> bool:
    """The top message's entry is not its current flow (aborted)."""
    sid = mh_i[lid, 0, 1]
    if sid < 0:  # a migration: stale once aborted (its id replaced by ABORTED)
        return sid == ABORTED
    slot = sid & smask
    return sub_i[slot, U_ID] != sid or sub_i[slot, U_FSEQ] != mh_i[lid, 0, 0]


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _advance_link(lkf: np.ndarray, lki: np.ndarray, lid: int, now: float) -> int:
    """``PsLink._advance(now)``: link ``lid``'s virtual bytes and busy time moved to ``now``;
    its count of messages in flight (unchanged)."""
    n = lki[lid, K_N]
    dt = now - lkf[lid, L_T]
    if dt > 0.0 and n:
        lkf[lid, L_V] += dt * lkf[lid, L_BPS] * lkf[lid, L_FACTOR] / n
        lkf[lid, L_BUSY] += dt
    lkf[lid, L_T] = now
    return n


@njit(cache=True, nogil=True, error_model="numpy")
def _link_pop(lkf: np.ndarray, lki: np.ndarray, mh_f: np.ndarray, mh_i: np.ndarray,
              sub_i: np.ndarray, smask: int, lid: int, now: float, out: np.ndarray) -> int:
    """Link ``lid``'s completion at ``now``: advance its processor-sharing state, pop the
    messages that finished (stale ones dropped) into ``out``; their count. One copy for the
    segment kernel and for ``link_done_pop`` (the completions Python handles)."""
    lki[lid, K_EV] = 0
    n = _advance_link(lkf, lki, lid, now)
    limit = lkf[lid, L_V] + _EPS_BYTES
    sum_finish = lkf[lid, L_SUMF]
    nd = 0
    while lki[lid, K_MH] > 0:
        if _mh_stale(mh_i, sub_i, smask, lid):
            _mh_pop(mh_f, mh_i, lki, lid)
            continue
        f = mh_f[lid, 0]
        if f > limit:
            break
        sid = mh_i[lid, 0, 1]
        _mh_pop(mh_f, mh_i, lki, lid)
        if sid >= 0:
            sub_i[sid & smask, U_FSEQ] = 0
        else:
            lki[lid, K_MIG] -= 1
        n -= 1
        sum_finish -= f
        out[nd] = sid
        nd += 1
    lki[lid, K_N] = n
    lkf[lid, L_SUMF] = 0.0 if n == 0 else sum_finish
    return nd


@njit(cache=True, nogil=True, error_model="numpy")
def _link_add(F: np.ndarray, lkf: np.ndarray, lki: np.ndarray, mh_f: np.ndarray,
              mh_i: np.ndarray, sub_f: np.ndarray, sub_i: np.ndarray, lid: int,
              nbytes: float, sid: int, slot: int) -> None:
    """``PsLink.add(now, nbytes, sub)``."""
    now = F[F_NOW]
    n = _advance_link(lkf, lki, lid, now)
    finish = lkf[lid, L_V] + nbytes
    seq = lki[lid, K_SEQ] + 1
    lki[lid, K_SEQ] = seq
    if sid >= 0:
        sub_i[slot, U_FSEQ] = seq
        sub_f[slot, S_FF] = finish
    else:
        lki[lid, K_MIG] += 1
    _mh_push(mh_f, mh_i, lki, lid, finish, seq, sid)
    lki[lid, K_N] = n + 1
    lkf[lid, L_BYTES] += nbytes
    lkf[lid, L_SUMF] += finish


@njit(cache=True, nogil=True, error_model="numpy")
def _relink(F: np.ndarray, G: np.ndarray, hp_t: np.ndarray, hp_s: np.ndarray,
            lkf: np.ndarray, lki: np.ndarray, mh_f: np.ndarray, mh_i: np.ndarray,
            sub_i: np.ndarray, link_busy: np.ndarray, node_state: np.ndarray,
            lid: int) -> None:
    """``ShardSim._relink``: the link's completion event again, and its observed state."""
    now = F[F_NOW]
    smask = G[I_SMASK]
    while lki[lid, K_MH] > 0 and _mh_stale(mh_i, sub_i, smask, lid):
        _mh_pop(mh_f, mh_i, lki, lid)
    n = lki[lid, K_N]
    factor = lkf[lid, L_FACTOR]
    empty = lki[lid, K_MH] == 0
    if not n:
        if empty or factor <= 0.0:
            t = _INF
        else:
            x = mh_f[lid, 0] - lkf[lid, L_V]
            t = lkf[lid, L_T] + max(x, 0.0) / (lkf[lid, L_BPS] * factor / n)
        left = 0.0
        rate = 0.0
    else:
        bps = lkf[lid, L_BPS]
        rate = bps * factor
        lt = lkf[lid, L_T]
        v = lkf[lid, L_V]
        if empty or factor <= 0.0:
            t = _INF
        else:
            x = mh_f[lid, 0] - v
            t = lt + (0.0 if 0.0 > x else x) / (rate / n)
        dt = now - lt
        v = v + (dt * bps * factor / n if dt > 0 else 0.0)
        x = lkf[lid, L_SUMF] - n * v
        left = 0.0 if 0.0 > x else x
    if t < _INF:
        seq = G[I_SEQ] + 1
        G[I_SEQ] = seq
        lki[lid, K_EV] = seq
        heap_push(G, hp_t, hp_s, t, seq, LINK_DONE, lid)
    else:
        lki[lid, K_EV] = 0
    up = lid & 1
    node = lid >> 1
    node_state[up, node] = left
    node_state[2 + up, node] = now
    node_state[4 + up, node] = rate
    node_state[13 + up, node] = n
    busy = lkf[lid, L_BUSY]
    link_busy[up * node_state.shape[1] + node] = busy
    if busy > F[F_LBMAX]:
        F[F_LBMAX] = busy


@njit(cache=True, nogil=True, error_model="numpy")
def _first_row(G: np.ndarray, sub_f: np.ndarray, sub_i: np.ndarray, node: int, sid: int,
               rid: int, shard: int, n_keys: int, d_untracked: int, lookups: int,
               tracked: int, key_start: int, req_bytes: float, resp_bytes: float) -> None:
    """A sub-request's row when it is first sent (it joins the sub-requests in the system)."""
    slot = sid & G[I_SMASK]
    sub_i[slot, U_ID] = sid
    sub_i[slot, U_RID] = rid
    sub_i[slot, U_SHARD] = shard
    sub_i[slot, U_NODE] = node
    sub_i[slot, U_STATE] = 1
    sub_i[slot, U_FSEQ] = 0
    sub_i[slot, U_KS] = key_start
    sub_i[slot, U_NK] = n_keys
    sub_i[slot, U_DU] = d_untracked
    sub_i[slot, U_LOOK] = lookups
    sub_i[slot, U_TRK] = tracked
    sub_i[slot, U_NEXT] = -1
    sub_i[slot, U_RETRIES] = 0
    sub_f[slot, S_REQB] = req_bytes
    sub_f[slot, S_RESPB] = resp_bytes
    G[I_NSUBS] += 1


@njit(cache=True, nogil=True, error_model="numpy")
def _send(F: np.ndarray, G: np.ndarray, hp_t: np.ndarray, hp_s: np.ndarray, lkf: np.ndarray,
          lki: np.ndarray, mh_f: np.ndarray, mh_i: np.ndarray, sub_f: np.ndarray,
          sub_i: np.ndarray, NA: np.ndarray, link_busy: np.ndarray, row_hit: np.ndarray,
          node_state: np.ndarray, outstanding: np.ndarray, node: int, sid: int, rid: int,
          shard: int, n_keys: int, d_untracked: int, lookups: int, tracked: int,
          key_start: int, req_bytes: float, resp_bytes: float, first: bool) -> None:
    """``ShardSim._send(sub, node)``: the sub-request's row in the table (``first``; a
    retried one has its row), then the send (its slot free and room in the heaps: checked by
    the caller)."""
    slot = sid & G[I_SMASK]
    if first:
        _first_row(G, sub_f, sub_i, node, sid, rid, shard, n_keys, d_untracked, lookups,
                   tracked, key_start, req_bytes, resp_bytes)
    else:
        sub_i[slot, U_NODE] = node
        sub_i[slot, U_STATE] = 1
        shard = sub_i[slot, U_SHARD]
        n_keys = sub_i[slot, U_NK]
        d_untracked = sub_i[slot, U_DU]
        lookups = sub_i[slot, U_LOOK]
        req_bytes = sub_f[slot, S_REQB]
    seq = G[I_SENDSEQ] + 1  # (the order of the node's members)
    G[I_SENDSEQ] = seq
    sub_i[slot, U_SENDSEQ] = seq
    miss = n_keys * (1.0 - row_hit[node, shard]) + d_untracked
    fast = NA[A_CFAST, node] * (lookups - miss)
    slow = NA[A_CSLOW, node] * miss
    est = F[F_OVERHEAD] + (slow if slow > fast else fast)
    sub_f[slot, S_EST] = est
    node_state[7, node] = node_state[7, node] + est
    outstanding[node] += 1
    NA[A_LBS, node] += req_bytes
    _link_add(F, lkf, lki, mh_f, mh_i, sub_f, sub_i, 2 * node, req_bytes, sid, slot)
    _relink(F, G, hp_t, hp_s, lkf, lki, mh_f, mh_i, sub_i, link_busy, node_state, 2 * node)


@njit(cache=True, nogil=True, error_model="numpy")
def _fail_sub(F: np.ndarray, G: np.ndarray, sub_i: np.ndarray, req_f: np.ndarray,
              req_i: np.ndarray, slot: int) -> None:
    """``ShardSim._fail_sub(sub, count=False)`` of a sub-request in the system."""
    sub_i[slot, U_STATE] = 5
    G[I_NSUBS] -= 1
    r = sub_i[slot, U_RID] & G[I_RMASK]
    req_i[r, Q_RES] += 1
    req_i[r, Q_LEFT] -= 1
    if not req_i[r, Q_FAILED]:
        req_i[r, Q_FAILED] = 1
        G[I_REQDF] += 1
        now = F[F_NOW]
        F[F_BACKLOG] += F[F_RATE] * (now - F[F_BT])
        F[F_BT] = now
        F[F_RATE] -= req_f[r, R_INV]
    if req_i[r, Q_RES] == req_i[r, Q_FAN] and req_i[r, Q_LIVE]:
        req_i[r, Q_LIVE] = 0
        G[I_NREQS] -= 1


@njit(cache=True, nogil=True, error_model="numpy")
def _start_service(F: np.ndarray, G: np.ndarray, hp_t: np.ndarray, hp_s: np.ndarray,
                   nd_f: np.ndarray, nd_i: np.ndarray, sub_i: np.ndarray, sub_f: np.ndarray,
                   NA: np.ndarray, NI: np.ndarray, cache_i: np.ndarray, keys: np.ndarray,
                   key_off: np.ndarray, row_hit: np.ndarray, node_state: np.ndarray,
                   l1: np.ndarray, alive2: np.ndarray, node: int, sid: int,
                   ready: float) -> None:
    """``ShardSim._start_service`` with an LRU cache."""
    slot = sid & G[I_SMASK]
    now = F[F_NOW]
    if ready > now:
        now = ready
    w = node_state[7, node] - sub_f[slot, S_EST]
    node_state[7, node] = w if w > 1e-15 else 0.0
    shard = sub_i[slot, U_SHARD]
    n_keys = sub_i[slot, U_NK]
    tracked = sub_i[slot, U_TRK]
    cap = cache_i[node, C_CAP]
    if n_keys and cap:
        cache_i[node, C_STALE] = 0
        t = cache_i[node, C_TICK]
        base = cache_i[node, C_BASE]
        alen = cache_i[node, C_ALEN]
        row = alive2[node]
        if t - base >= alen:  # LruRowCache._compact (room checked by run_segment)
            oldest = cache_i[node, C_OLD]
            a0 = oldest - base
            keep = t - oldest
            for j in range(keep):
                row[j] = row[a0 + j]
            alen = max(64, 2 * keep + 1)
            for j in range(keep, alen):
                row[j] = 0
            cache_i[node, C_ALEN] = alen
            base = oldest
            cache_i[node, C_BASE] = base
        ks = sub_i[slot, U_KS]
        o1 = cache_i[node, C_L1OFF]
        misses, oldest, size = lru_access(l1[o1:o1 + cache_i[node, C_NKEYS]], row[:alen],
                                          keys[ks: ks + n_keys], key_off[node, shard],
                                          cache_i[node, C_OLD], base, t, cap,
                                          cache_i[node, C_SIZE])
        cache_i[node, C_OLD] = oldest
        cache_i[node, C_SIZE] = size
        cache_i[node, C_TICK] = t + 1
        hits = tracked - misses
    elif n_keys:
        hits, misses = tracked - n_keys, n_keys
    else:
        hits, misses = 0, 0
    size = cache_i[node, C_SIZE]
    NA[A_CSIZE, node] = size
    full = NA[A_OCCF, node]
    node_state[9, node] = ((NA[A_OCCP, node] + float(size) * F[F_ROWB]) / full
                           if full > 0 else 0.0)
    du = sub_i[slot, U_DU]
    lookups = sub_i[slot, U_LOOK]
    slow_reads = misses + du
    NA[A_SLOW, node] += slow_reads
    NA[A_FAST, node] += lookups - slow_reads
    fast = NA[A_CFAST, node] * (lookups - slow_reads)
    slow_ = NA[A_CSLOW, node] * slow_reads
    nominal = F[F_OVERHEAD] + (slow_ if slow_ > fast else fast)
    slow = nd_f[node, D_SLOW]
    service = nominal * slow
    nd_i[node, E_SERV] = sid
    nd_f[node, D_SVC] = service
    end = now + service
    node_state[6, node] = end
    seq = G[I_SEQ] + 1
    G[I_SEQ] = seq
    nd_i[node, E_EV] = seq
    heap_push(G, hp_t, hp_s, end, seq, SERVICE_DONE, node)
    NA[A_SUBBUSY, node] += service
    a = F[F_EWMA]
    cacheable = tracked + du
    if cacheable:
        NI[B_CLOOK, node] += cacheable
        NI[B_CHIT, node] += hits
        G[I_CLT] += cacheable
        G[I_CHT] += hits
        hr = node_state[8, node]
        node_state[8, node] = hr + a * (hits / cacheable - hr)
    if n_keys:
        rh = row_hit[node, shard]
        row_hit[node, shard] = rh + a * (1.0 - misses / n_keys - rh)
    ms = node_state[10, node]
    node_state[10, node] = ms + a * (slow - ms)


@njit(cache=True, nogil=True, error_model="numpy")
def _at_node(F: np.ndarray, G: np.ndarray, hp_t: np.ndarray, hp_s: np.ndarray,
             nd_f: np.ndarray, nd_i: np.ndarray, sub_f: np.ndarray, sub_i: np.ndarray,
             req_f: np.ndarray, req_i: np.ndarray, NA: np.ndarray, NI: np.ndarray,
             cache_i: np.ndarray, keys: np.ndarray, key_off: np.ndarray, row_hit: np.ndarray,
             node_state: np.ndarray, outstanding: np.ndarray, l1: np.ndarray,
             alive2: np.ndarray, node: int, sid: int, slot: int, arrive: float) -> None:
    """A sub-request reaches its node at ``arrive``: ShardSim._on_link_done's start of an
    idle node's service, or ShardSim._enqueue."""
    qcap = G[I_QCAP]
    smask = G[I_SMASK]
    busy = nd_i[node, E_SERV] >= 0
    if not busy and nd_i[node, E_QL] == 0 and qcap > 0:
        sub_i[slot, U_STATE] = 2
        _start_service(F, G, hp_t, hp_s, nd_f, nd_i, sub_i, sub_f, NA, NI,
                       cache_i, keys, key_off, row_hit, node_state, l1,
                       alive2, node, sid, arrive)
    elif nd_i[node, E_QL] + busy >= qcap:  # ShardSim._enqueue: overflow
        node_state[7, node] -= sub_f[slot, S_EST]
        nn = sub_i[slot, U_NODE]
        if nn >= 0:
            outstanding[nn] -= 1
        G[I_OVF] += 1
        _fail_sub(F, G, sub_i, req_f, req_i, slot)
    else:
        sub_i[slot, U_STATE] = 2
        if not busy:
            _start_service(F, G, hp_t, hp_s, nd_f, nd_i, sub_i, sub_f, NA,
                           NI, cache_i, keys, key_off, row_hit, node_state,
                           l1, alive2, node, sid, arrive)
        else:
            sub_f[slot, S_FF] = arrive
            sub_i[slot, U_NEXT] = -1
            if nd_i[node, E_QL] == 0:
                nd_i[node, E_QH] = sid
            else:
                sub_i[nd_i[node, E_QT] & smask, U_NEXT] = sid
            nd_i[node, E_QT] = sid
            nd_i[node, E_QL] += 1


@njit(cache=True, nogil=True, error_model="numpy")
def _migration_done(lkf: np.ndarray, lki: np.ndarray, mh_f: np.ndarray, mh_i: np.ndarray,
                    lid: int, now: float) -> bool:
    """Whether a migration is among the messages that ``lid``'s completion at ``now`` pops
    (those with finish <= v + eps after the link's sync, as :func:`_link_done_pop`)."""
    n = lki[lid, K_N]
    v = lkf[lid, L_V]
    dt = now - lkf[lid, L_T]
    if dt > 0.0 and n:
        v += dt * lkf[lid, L_BPS] * lkf[lid, L_FACTOR] / n
    limit = v + _EPS_BYTES
    for j in range(lki[lid, K_MH]):
        if mh_i[lid, j, 1] < 0 and mh_f[lid, j] <= limit:
            return True
    return False


@njit(cache=True, nogil=True, error_model="numpy")
def _segment(F: np.ndarray, G: np.ndarray, hp_t: np.ndarray, hp_s: np.ndarray,
                lkf: np.ndarray, lki: np.ndarray, mh_f: np.ndarray, mh_i: np.ndarray,
                nd_f: np.ndarray, nd_i: np.ndarray, sub_f: np.ndarray, sub_i: np.ndarray,
                req_f: np.ndarray, req_i: np.ndarray, NA: np.ndarray, NI: np.ndarray,
                cache_i: np.ndarray, link_busy: np.ndarray, dense_free: np.ndarray,
                req_busy: np.ndarray, dense_buf: np.ndarray, lat_buf: np.ndarray,
                keys: np.ndarray, key_off: np.ndarray, row_hit: np.ndarray,
                node_state: np.ndarray, outstanding: np.ndarray, l1: np.ndarray,
                alive2: np.ndarray, scratch: np.ndarray, drain: bool) -> None:
    """Handle events until the next one is not a link, service or request completion; pop
    that one and return it (``G[I_RET] == RET_EVENT``, ``G[I_KIND]``, ``G[I_TGT]``, the
    time in ``F[F_NOW]``). Draining, stop (``RET_DONE``) when nothing is in the system; an
    empty heap gives ``RET_EMPTY``; a full array ``RET_GROW_*``/``RET_FLUSH`` (before the
    event that would not fit: grow or flush and call again); a link completion that finishes
    a migration ``RET_MIGRATION`` (popped: Python handles it)."""
    smask = G[I_SMASK]
    rmask = G[I_RMASK]
    hcap = hp_t.shape[0]
    mcap = mh_f.shape[1]
    top_s = F[F_TOP]
    n_dense = dense_free.shape[0]
    while True:
        if drain and G[I_NSUBS] == 0 and G[I_NREQS] == 0:
            G[I_RET] = RET_DONE
            return
        # the next live event (cancelled ones are dropped)
        while G[I_HSIZE] > 0:
            kind = hp_s[0, 1]
            target = hp_s[0, 2]
            if kind == LINK_DONE:
                if hp_s[0, 0] == lki[target, K_EV]:
                    break
            elif kind == SERVICE_DONE:
                if hp_s[0, 0] == nd_i[target, E_EV]:
                    break
            else:
                break
            _heap_pop(G, hp_t, hp_s)
        if G[I_HSIZE] == 0:
            G[I_RET] = RET_EMPTY
            return
        kind = hp_s[0, 1]
        target = hp_s[0, 2]
        if kind == SERVICE_DONE or (kind == LINK_DONE and not target & 1):
            # room for the compaction of the node's LRU alive array (one access at most)
            node = target if kind == SERVICE_DONE else target >> 1
            t = cache_i[node, C_TICK]
            if (cache_i[node, C_CAP] and t - cache_i[node, C_BASE] >= cache_i[node, C_ALEN]
                    and max(64, 2 * (t - cache_i[node, C_OLD]) + 1) > alive2.shape[1]):
                G[I_RET] = RET_GROW_ALIVE
                return
        if kind == LINK_DONE:
            nl = lki[target, K_N]
            if G[I_HSIZE] + nl + 2 > hcap:
                G[I_RET] = RET_GROW_HEAP
                return
            if G[I_DENN] + nl > dense_buf.shape[0] or nl > scratch.shape[0]:
                G[I_RET] = RET_FLUSH
                return
            if lki[target, K_MIG] and _migration_done(lkf, lki, mh_f, mh_i, target,
                                                       hp_t[0]):
                # Python finishes the migration among the messages (pops the event here)
                now = hp_t[0]
                _heap_pop(G, hp_t, hp_s)
                F[F_NOW] = now
                G[I_EVH] += 1
                G[I_RET] = RET_MIGRATION
                G[I_KIND] = kind
                G[I_TGT] = target
                return
        elif kind == SERVICE_DONE:
            if G[I_HSIZE] + 2 > hcap:
                G[I_RET] = RET_GROW_HEAP
                return
            if lki[2 * target + 1, K_MH] + 1 > mcap:
                G[I_RET] = RET_GROW_MSG
                return
        elif kind == REQUEST_DONE:
            if G[I_LATN] + 1 > lat_buf.shape[0]:
                G[I_RET] = RET_FLUSH
                return
        now = hp_t[0]
        _heap_pop(G, hp_t, hp_s)
        F[F_NOW] = now
        G[I_EVH] += 1
        if kind == LINK_DONE:
            lid = target
            node = lid >> 1
            up = lid & 1
            arrive = now + lkf[lid, L_FIXED]
            nd = _link_pop(lkf, lki, mh_f, mh_i, sub_i, smask, lid, now, scratch)
            for j in range(nd):
                sid = scratch[j]
                slot = sid & smask
                if up:  # ShardSim._deliver(sub, arrive)
                    nn = sub_i[slot, U_NODE]
                    if nn >= 0:
                        outstanding[nn] -= 1
                    sub_i[slot, U_STATE] = 4
                    G[I_NSUBS] -= 1
                    r = sub_i[slot, U_RID] & rmask
                    G[I_SUBC] += 1
                    if arrive <= req_f[r, R_DL]:
                        G[I_SUBG] += 1
                    req_i[r, Q_LEFT] -= 1
                    req_i[r, Q_RES] += 1
                    if arrive > req_f[r, R_GATH]:
                        req_f[r, R_GATH] = arrive
                    if not req_i[r, Q_FAILED] and req_i[r, Q_LEFT] == 0:
                        bot = req_f[r, R_BOT]
                        gat = req_f[r, R_GATH]
                        rd = bot if bot > gat else gat
                        k = 0
                        for kk in range(1, n_dense):
                            if dense_free[kk] < dense_free[k]:
                                k = kk
                        dfk = dense_free[k]
                        start = dfk if dfk > rd else rd
                        dense_free[k] = start + top_s
                        req_busy[k] += top_s
                        d = G[I_DENN]
                        dense_buf[d, 0] = k
                        dense_buf[d, 1] = start
                        dense_buf[d, 2] = start + top_s
                        G[I_DENN] = d + 1
                        seq = G[I_SEQ] + 1
                        G[I_SEQ] = seq
                        heap_push(G, hp_t, hp_s, start + top_s, seq, REQUEST_DONE,
                                  req_i[r, Q_ID])
                    elif req_i[r, Q_FAILED] and req_i[r, Q_RES] == req_i[r, Q_FAN]:
                        if req_i[r, Q_LIVE]:
                            req_i[r, Q_LIVE] = 0
                            G[I_NREQS] -= 1
                else:
                    _at_node(F, G, hp_t, hp_s, nd_f, nd_i, sub_f, sub_i, req_f, req_i, NA, NI,
                             cache_i, keys, key_off, row_hit, node_state, outstanding, l1,
                             alive2, node, sid, slot, arrive)
            _relink(F, G, hp_t, hp_s, lkf, lki, mh_f, mh_i, sub_i, link_busy, node_state,
                    lid)
        elif kind == SERVICE_DONE:
            node = target
            sid = nd_i[node, E_SERV]
            slot = sid & smask
            nd_i[node, E_SERV] = -1
            nd_i[node, E_EV] = 0
            sub_i[slot, U_STATE] = 3
            nbytes = sub_f[slot, S_RESPB]
            NA[A_LBS, node] += nbytes
            lid = 2 * node + 1
            _link_add(F, lkf, lki, mh_f, mh_i, sub_f, sub_i, lid, nbytes, sid, slot)
            _relink(F, G, hp_t, hp_s, lkf, lki, mh_f, mh_i, sub_i, link_busy, node_state,
                    lid)
            if nd_i[node, E_QL]:
                nxt = nd_i[node, E_QH]
                nd_i[node, E_QH] = sub_i[nxt & smask, U_NEXT]
                nd_i[node, E_QL] -= 1
                _start_service(F, G, hp_t, hp_s, nd_f, nd_i, sub_i, sub_f, NA, NI, cache_i,
                               keys, key_off, row_hit, node_state, l1, alive2, node, nxt,
                               sub_f[nxt & smask, S_FF])
        elif kind == REQUEST_DONE:
            r = target & rmask
            req_i[r, Q_LIVE] = 0
            G[I_NREQS] -= 1
            G[I_REQC] += 1
            li = G[I_LATN]
            lat_buf[li] = now - req_f[r, R_ARR]
            G[I_LATN] = li + 1
            if now <= req_f[r, R_DL]:
                G[I_REQG] += 1
            F[F_BACKLOG] += F[F_RATE] * (now - F[F_BT])
            F[F_BT] = now
            F[F_RATE] -= req_f[r, R_INV]
        else:
            G[I_RET] = RET_EVENT
            G[I_KIND] = kind
            G[I_TGT] = target
            return


@njit(cache=True, nogil=True, error_model="numpy")
def run_segment(st: np.ndarray, hp: np.ndarray, mh: np.ndarray, sub: np.ndarray,
                req: np.ndarray, buf: np.ndarray, keys: np.ndarray, l1: np.ndarray,
                alive2: np.ndarray, drain: bool) -> None:
    """:func:`_segment` on the packed state (few arguments: a call costs less): ``st`` the
    fixed state (:func:`unpack`), the growable tables (:func:`tables`), ``buf`` the
    latencies (column 0) and dense jobs (1-3) recorded for Python, ``keys`` the
    sub-requests' keys, ``l1`` the nodes' LRU ``last1`` arrays end to end, ``alive2`` their
    ``alive`` arrays as rows."""
    (G, F, lkf, lki, nd_f, nd_i, NA, NI, cache_i, link_busy, dense_free, req_busy,
     node_state, row_hit, outstanding, key_off) = unpack(st)
    hp_t, hp_s, mh_f, mh_i, sub_f, sub_i, req_f, req_i = tables(hp, mh, sub, req)
    scratch = np.empty(mh.shape[1], dtype=np.int64)
    _segment(F, G, hp_t, hp_s, lkf, lki, mh_f, mh_i, nd_f, nd_i, sub_f, sub_i, req_f, req_i,
             NA, NI, cache_i, link_busy, dense_free, req_busy, buf[:, 1:4], buf[:, 0], keys,
             key_off, row_hit, node_state, outstanding, l1, alive2, scratch, drain)


@njit(cache=True, nogil=True, error_model="numpy")
def send(st: np.ndarray, hp: np.ndarray, mh: np.ndarray, sub: np.ndarray, node: int,
         sid: int, rid: int, shard: int, n_keys: int, d_untracked: int, lookups: int,
         tracked: int, key_start: int, req_bytes: float, resp_bytes: float,
         first: bool) -> int:
    """:func:`_send` on the packed state. Returns 0, or (nothing done) 1 when the
    sub-request's slot is taken, 2 when the event heap, 3 when the link's messages are full."""
    if first and sub[sid & st[I_SMASK], N_SF + U_STATE] < 4:
        return 1
    if st[I_HSIZE] + 2 > hp.shape[0]:
        return 2
    v = unpack(st)
    G, F, lkf, lki, NA, link_busy = v[0], v[1], v[2], v[3], v[6], v[9]
    node_state, row_hit, outstanding = v[12], v[13], v[14]
    if lki[2 * node, K_MH] + 1 > mh.shape[1]:
        return 3
    hp_t, hp_s, mh_f, mh_i, sub_f, sub_i = tables(hp, mh, sub, sub)[:6]
    _send(F, G, hp_t, hp_s, lkf, lki, mh_f, mh_i, sub_f, sub_i, NA, link_busy, row_hit,
          node_state, outstanding, node, sid, rid, shard, n_keys, d_untracked, lookups,
          tracked, key_start, req_bytes, resp_bytes, first)
    return 0


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def send_earliest(st: np.ndarray, hp: np.ndarray, mh: np.ndarray, sub: np.ndarray, sid: int,
                  rid: int, shard: int, n_keys: int, d_untracked: int, lookups: int,
                  tracked: int, key_start: int, req_bytes: float, resp_bytes: float,
                  now: float, holds: np.ndarray, row_hit: np.ndarray, node_state: np.ndarray,
                  fixed: np.ndarray, bps: np.ndarray, c_fast: np.ndarray, c_slow: np.ndarray,
                  overhead: float) -> int:
    """:func:`envs.sim.dlrm.kernels.earliest_replica` of a new sub-request, then
    :func:`send` of it there, in one call (``ShardSim.route_earliest``). Returns the node,
    or (nothing done) -1 when no replica is live, ``-1 - code`` when :func:`send` returns
    ``code`` (no room; the choice does not change when the caller grows and calls again)."""
    node = earliest_replica(now, shard, n_keys, d_untracked, lookups, req_bytes, resp_bytes,
                            holds, row_hit, node_state, fixed, bps, c_fast, c_slow, overhead)
    if node < 0:
        return -1
    ret = send(st, hp, mh, sub, node, sid, rid, shard, n_keys, d_untracked, lookups, tracked,
               key_start, req_bytes, resp_bytes, True)
    return node if ret == 0 else -1 - ret


# columns of a request's sub-request rows (fan_rows): int64, the byte counts through a float64
# view
W_SID, W_RID, W_SHARD, W_NK, W_DU, W_LOOK, W_TRK, W_KS, W_REQB, W_RESPB = range(10)
N_W = 10


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def fan_rows(fan: np.ndarray, split: np.ndarray, lookups: np.ndarray, req_bytes: np.ndarray,
             resp_bytes: np.ndarray, sid: int, rid: int, fanout: int, kw: int) -> None:
    """The rows of a request's ``fanout`` sub-requests (ids from ``sid``, shard ``s`` in row
    ``s``; their keys from ``kw`` in the key store), table-wise: ``split`` is
    :func:`envs.sim.dlrm.kernels.split_sorted`'s ``out`` (first distinct key and first lookup
    per shard, untracked lookups), ``lookups``,
    ``req_bytes`` and ``resp_bytes`` per shard (what ``ShardSim._subrequests`` makes the
    :class:`~envs.sim.dlrm.records.SubRequest` objects of)."""
    ff = fan.view(np.float64)
    for s in range(fanout):
        fan[s, W_SID] = sid + s
        fan[s, W_RID] = rid
        fan[s, W_SHARD] = s
        fan[s, W_NK] = split[0, s + 1] - split[0, s]
        fan[s, W_DU] = split[2, s]
        fan[s, W_LOOK] = lookups[s]
        fan[s, W_TRK] = split[1, s + 1] - split[1, s]
        fan[s, W_KS] = kw + split[0, s]
        ff[s, W_REQB] = req_bytes[s]
        ff[s, W_RESPB] = resp_bytes[s]


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def send_observe(st: np.ndarray, hp: np.ndarray, mh: np.ndarray, sub: np.ndarray,
                 fan: np.ndarray, k: int, node: int, inv_sla: float, left: int,
                 req_pred: float, req_rate: float, consts: np.ndarray, out: np.ndarray) -> int:
    """:func:`send` of the new sub-request of row ``k`` of ``fan`` (:func:`fan_rows`) to
    ``node``, then :func:`envs.sim.dlrm.kernels.routing_obs` of row ``k + 1``'s (the next of
    the request) at the same instant, on the state after the send, in one call; then, of the
    state after the send, two sums and a maximum (below). Returns 0, or (nothing done)
    :func:`send`'s code.

    ``consts`` is ``routing_obs``'s with four more rows (one argument, not five: numba
    unboxes each array argument): the link joules per byte per node; ``routing_obs``'s
    ``fin`` (its first ``N`` entries); ``req_node`` (the first ``N``; ``routing_obs`` gets
    them when ``out`` has the request-aware entries, else none); and the outputs: the sum of
    the busy seconds of every link direction (downlinks first), the most busy seconds of one
    (``F_LBMAX``), the link joules, the sum over nodes of the joules per byte times the
    bytes sent on the node's link, and ``req_pred`` after the send. Each sum adds in order
    from 0.0, as CPython 3.11's ``sum`` of a list of floats (what ``link_utilization`` and
    the env's ``energy_j`` compute). ``inv_sla`` .. ``req_rate`` and ``out`` as in
    ``routing_obs``, but first, as the env's ``step`` before a send: ``pred = fin[node]``
    (the sent sub-request's predicted finish there) raises ``req_node[node]`` and
    ``req_pred`` to it when greater."""
    ff = fan.view(np.float64)
    ret = send(st, hp, mh, sub, node, fan[k, W_SID], fan[k, W_RID], fan[k, W_SHARD],
               fan[k, W_NK], fan[k, W_DU], fan[k, W_LOOK], fan[k, W_TRK], fan[k, W_KS],
               ff[k, W_REQB], ff[k, W_RESPB], True)
    if ret:
        return ret
    v = unpack(st)
    N = st[I_N]
    R = consts.shape[0]
    req_aware = out.shape[0] == 14 * N + st[I_S] + 5
    fin = consts[R - 3, :N]
    req_node = consts[R - 2, :N]
    pred = fin[node]
    if pred > req_node[node]:
        req_node[node] = pred
    if pred > req_pred:
        req_pred = pred
    k2 = k + 1
    routing_obs(v[1][F_NOW], fan[k2, W_SHARD], fan[k2, W_NK], fan[k2, W_DU],
                fan[k2, W_LOOK], ff[k2, W_REQB], ff[k2, W_RESPB], inv_sla, left, req_pred,
                req_rate, v[13], v[12], v[14], consts, req_node[:N if req_aware else 0], fin,
                out)
    acc = consts[R - 1]
    acc[3] = req_pred
    link_busy = v[9]
    s = 0.0
    for i in range(link_busy.shape[0]):
        s += link_busy[i]
    acc[0] = s
    acc[1] = v[1][F_LBMAX]
    lbs = v[6][A_LBS]
    j_per_byte = consts[R - 4]
    s = 0.0
    for i in range(lbs.shape[0]):
        s += j_per_byte[i] * lbs[i]
    acc[2] = s
    return 0


@njit(cache=True, nogil=True, error_model="numpy")
def send_rows_earliest(st: np.ndarray, hp: np.ndarray, mh: np.ndarray, sub: np.ndarray,
                       fan: np.ndarray, k0: int, k1: int, holds: np.ndarray,
                       fixed: np.ndarray, bps: np.ndarray, c_fast: np.ndarray,
                       c_slow: np.ndarray, overhead: float, nodes: np.ndarray) -> int:
    """:func:`send_earliest` of the new sub-requests of rows ``k0 .. k1 - 1`` of ``fan``
    (:func:`fan_rows`) in order, at the same instant, each to its earliest live replica
    (``nodes[k]`` gets it), stopping before one with no live replica or no room. Returns how
    many were sent (``k1 - k0``: all), and in ``st[I_RET]`` 0, -1 (no live replica) or
    :func:`send`'s code."""
    G = st[:N_I]
    G[I_RET] = 0
    ff = fan.view(np.float64)
    v = unpack(st)
    now = v[1][F_NOW]
    node_state, row_hit = v[12], v[13]
    for k in range(k0, k1):
        node = earliest_replica(now, fan[k, W_SHARD], fan[k, W_NK], fan[k, W_DU],
                                fan[k, W_LOOK], ff[k, W_REQB], ff[k, W_RESPB], holds, row_hit,
                                node_state, fixed, bps, c_fast, c_slow, overhead)
        if node < 0:
            G[I_RET] = -1
            return k - k0
        ret = send(st, hp, mh, sub, node, fan[k, W_SID], fan[k, W_RID], fan[k, W_SHARD],
                   fan[k, W_NK], fan[k, W_DU], fan[k, W_LOOK], fan[k, W_TRK], fan[k, W_KS],
                   ff[k, W_REQB], ff[k, W_RESPB], True)
        if ret:
            G[I_RET] = ret
            return k - k0
        nodes[k] = node
    return k1 - k0


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def push_event(st: np.ndarray, hp: np.ndarray, t: float, kind: int, target: int) -> None:
    """``EventQueue.push`` of an event (room checked by the caller)."""
    G = st[:N_I]
    schedule(G, hp.view(np.float64)[:, 0], hp[:, 1:4], t, kind, target)


@njit(cache=True, nogil=True, error_model="numpy")
def arrive(st: np.ndarray, hp: np.ndarray, req: np.ndarray, keys: np.ndarray,
           rel: np.ndarray, kw: int, n: int, rid: int, arrival: float, deadline: float,
           inv_sla: float, bottom_done: float, fanout: int, next_t: float, next_i: int) -> int:
    """The array part of an arrival: the request's row, its keys ``rel[:n]`` at ``kw`` in
    ``keys``, and the next arrival's event (none when ``next_i < 0``). Returns 0, or (nothing
    done) 1 when the request's slot is taken, 2 when the event heap is full."""
    G = st[:N_I]
    r = rid & G[I_RMASK]
    if req[r, N_RF + Q_LIVE]:
        return 1
    if next_i >= 0 and G[I_HSIZE] + 1 > hp.shape[0]:
        return 2
    rf = req.view(np.float64)
    rf[r, R_ARR] = arrival
    rf[r, R_DL] = deadline
    rf[r, R_INV] = inv_sla
    rf[r, R_BOT] = bottom_done
    rf[r, R_GATH] = arrival
    req[r, N_RF + Q_ID] = rid
    req[r, N_RF + Q_FAN] = fanout
    req[r, N_RF + Q_LEFT] = fanout
    req[r, N_RF + Q_RES] = 0
    req[r, N_RF + Q_FAILED] = 0
    req[r, N_RF + Q_LIVE] = 1
    G[I_NREQS] += 1
    keys[kw:kw + n] = rel[:n]
    if next_i >= 0:
        schedule(G, hp.view(np.float64)[:, 0], hp[:, 1:4], next_t, 0, next_i)
    return 0


# ---------------------------------------------------------------------- migrations (Python)
# A link completion that finishes a migration is handled by CompiledShardSim in Python, in
# the reference's order: pop the finished messages, then each (a migration by ShardSim's
# _finish_migration, a sub-request by at_node), then relink.


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def link_done_pop(st: np.ndarray, mh: np.ndarray, sub: np.ndarray, lid: int,
                  out: np.ndarray) -> int:
    """The messages that ``lid``'s completion at now pops (into ``out``; their count)."""
    v = unpack(st)
    G, F, lkf, lki = v[0], v[1], v[2], v[3]
    mh_f, mh_i = mh.view(np.float64)[:, :, 0], mh[:, :, 1:3]
    sub_i = sub[:, N_SF:]
    smask = G[I_SMASK]
    now = F[F_NOW]
    return _link_pop(lkf, lki, mh_f, mh_i, sub_i, smask, lid, now, out)


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def at_node(st: np.ndarray, hp: np.ndarray, sub: np.ndarray, req: np.ndarray,
            keys: np.ndarray, l1: np.ndarray, alive2: np.ndarray, node: int, sid: int,
            arrive: float) -> None:
    """:func:`_at_node` on the packed state (room checked by run_segment before)."""
    v = unpack(st)
    G = v[0]
    _at_node(v[1], G, hp.view(np.float64)[:, 0], hp[:, 1:4], v[4], v[5],
             sub.view(np.float64)[:, :N_SF], sub[:, N_SF:], req.view(np.float64)[:, :N_RF],
             req[:, N_RF:], v[6], v[7], v[8], keys, v[15], v[13], v[12], v[14], l1, alive2,
             node, sid, sid & G[I_SMASK], arrive)


@njit(cache=True, nogil=True, error_model="numpy")
def relink(st: np.ndarray, hp: np.ndarray, mh: np.ndarray, sub: np.ndarray, lid: int) -> None:
    """:func:`_relink` on the packed state (room checked by the caller)."""
    v = unpack(st)
    hp_t, hp_s, mh_f, mh_i, _, sub_i = tables(hp, mh, sub, sub)[:6]
    _relink(v[1], v[0], hp_t, hp_s, v[2], v[3], mh_f, mh_i, sub_i, v[9], v[12], lid)


@njit(cache=True, nogil=True, error_model="numpy")
def link_send(st: np.ndarray, hp: np.ndarray, mh: np.ndarray, sub: np.ndarray, node: int,
              mid: int, nbytes: float) -> int:
    """``link.add(now, nbytes, migration)`` on ``node``'s down link, then relink (``mid``
    < 0). Returns 0, or (nothing done) 2 when the event heap, 3 when the link's messages
    are full."""
    if st[I_HSIZE] + 1 > hp.shape[0]:
        return 2
    v = unpack(st)
    F, lkf, lki, NA = v[1], v[2], v[3], v[6]
    if lki[2 * node, K_MH] + 1 > mh.shape[1]:
        return 3
    hp_t, hp_s, mh_f, mh_i, sub_f, sub_i = tables(hp, mh, sub, sub)[:6]
    NA[A_LBS, node] += nbytes
    _link_add(F, lkf, lki, mh_f, mh_i, sub_f, sub_i, 2 * node, nbytes, mid, 0)
    _relink(F, v[0], hp_t, hp_s, lkf, lki, mh_f, mh_i, sub_i, v[9], v[12], 2 * node)
    return 0


@njit(cache=True, nogil=True, error_model="numpy")
def set_factor(st: np.ndarray, hp: np.ndarray, mh: np.ndarray, sub: np.ndarray, lid: int,
               factor: float) -> None:
    """``PsLink.set_factor(now, factor)``, then relink (room checked by the caller)."""
    v = unpack(st)
    F, lkf, lki = v[1], v[2], v[3]
    _advance_link(lkf, lki, lid, F[F_NOW])
    lkf[lid, L_FACTOR] = factor
    hp_t, hp_s, mh_f, mh_i, _, sub_i = tables(hp, mh, sub, sub)[:6]
    _relink(F, v[0], hp_t, hp_s, lkf, lki, mh_f, mh_i, sub_i, v[9], v[12], lid)



@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def abort(st: np.ndarray, mh: np.ndarray, sub: np.ndarray, lid: int, mid: int, seq: int,
          finish: float) -> None:
    """``PsLink.abort(now, msg)`` of a message (``flow_seq = seq``, ``flow_finish =
    finish``): a sub-request's (``mid >= 0``; its flow_seq becomes -1) or a migration's (its
    entry's id becomes :data:`ABORTED`)."""
    v = unpack(st)
    F, lkf, lki = v[1], v[2], v[3]
    now = F[F_NOW]
    n = _advance_link(lkf, lki, lid, now)
    if seq <= 0:
        return
    if mid >= 0:
        sub[mid & st[I_SMASK], N_SF + U_FSEQ] = -1
    else:
        for j in range(lki[lid, K_MH]):
            if mh[lid, j, 2] == mid:
                mh[lid, j, 2] = ABORTED
        lki[lid, K_MIG] -= 1
    lki[lid, K_N] = n - 1
    lkf[lid, L_SUMF] -= finish
    if n - 1 == 0:
        lki[lid, K_MH] = 0
        lkf[lid, L_SUMF] = 0.0
