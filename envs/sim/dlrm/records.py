"""The dynamic records of the sharded simulator: requests, sub-requests, migrations, counters.

:class:`Request` and :class:`SubRequest` are what is in the system (a sub-request: the
lookups of one request in one shard); :class:`Migration` is shard data in flight to a new
replica; :class:`FanoutCounters` counts requests that fail; :class:`Arena` is the reused
memory of the sub-requests' keys and counts.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from envs.sim.metrics import Counters
from envs.sim.packing import Ints, set_slots_state


class Arena:
    """Reused memory for the arrays that outlive a request's draw: its distinct keys and
    their counts, which its sub-requests keep as views until they are done.

    Fresh arrays of that size (tens of kB per request) come from memory that the allocator
    keeps returning to the operating system, so every request paid page faults on them (as
    much time as the sort). Here they are slices of a few large int64 buffers instead; a
    buffer is reused once nothing points into it any more (views keep their base alive, so
    its reference count says so exactly), and its contents are always written before they
    are read.

    Args:
        size: Elements per buffer (bigger requests get arrays of their own).
    """

    __slots__ = ("_bufs", "_cur", "_pos", "size")

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self._bufs: list[np.ndarray] = []
        self._cur: np.ndarray | None = None
        self._pos = 0

    def __getstate__(self) -> dict[str, Any]:
        """Only the size: the buffers are scratch memory (written before read), and the live
        arrays that were views into them are pickled as arrays of their own."""
        return {"size": self.size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["size"])  # type: ignore[misc]

    def take(self, n: int) -> np.ndarray:
        """``n`` int64 elements (uninitialised) no live array shares."""
        cur = self._cur
        pos = self._pos
        if cur is None or pos + n > self.size:
            if n > self.size:
                return np.empty(n, dtype=np.int64)
            cur = self._cur = self._free()
            pos = 0
        self._pos = pos + n
        return cur[pos:pos + n]

    def _free(self) -> np.ndarray:
        """A buffer no view points into (a new one when every buffer is in use)."""
        self._cur = None
        for buf, refs in zip(self._bufs, _refcounts(self._bufs), strict=True):
            if refs <= _UNREFERENCED:
                return buf
        buf = np.empty(self.size, dtype=np.int64)
        self._bufs.append(buf)
        return buf


def _refcounts(objs: list[np.ndarray]) -> list[int]:
    """``sys.getrefcount`` of each object of ``objs``."""
    return [sys.getrefcount(x) for x in objs]


#: What :func:`_refcounts` says of an object that only its list holds (measured, as what the
#: interpreter counts of the list, the loop and the call may change between versions).
_UNREFERENCED = _refcounts([np.empty(0)])[0]


class Request:
    """One request in the system."""

    __slots__ = ("arrival", "bottom_done", "deadline", "done", "failed", "fanout", "gathered",
                 "id", "inv_sla", "left", "resolved")

    def __init__(self, rid: int, arrival: float, deadline: float, bottom_done: float,
                 fanout: int) -> None:
        self.id = rid
        self.arrival = arrival
        self.deadline = deadline
        self.inv_sla = 1.0 / max(deadline - arrival, 1e-9)
        self.bottom_done = bottom_done
        self.fanout = fanout
        self.left = fanout  # sub-requests not yet back
        self.resolved = 0  # sub-requests back or failed
        self.gathered = arrival  # latest delivery so far
        self.failed = False
        self.done = False


class SubRequest:
    """The lookups of one request in one shard, and where they are."""

    __slots__ = ("counts", "d_tracked", "d_untracked", "est_s", "flow_finish", "flow_seq", "id",
                 "keys", "lookups", "node", "req", "req_bytes", "resp_bytes", "retries",
                 "shard", "state", "tracked_lookups")

    def __init__(self, sid: int, req: Request, shard: int, keys: np.ndarray,
                 counts: np.ndarray, d_untracked: int, lookups: int, req_bytes: float,
                 resp_bytes: float, tracked_lookups: int, flow_seq: int = 0) -> None:
        self.id = sid
        self.req = req
        self.shard = shard
        self.keys = keys  # distinct tracked shard-space keys (do not modify)
        self.counts = counts  # lookups of each
        #: ``counts.sum()``: lookups of tracked rows.
        self.tracked_lookups = tracked_lookups
        self.d_tracked = len(keys)
        self.d_untracked = d_untracked  # distinct rows never cached (always read from SSD)
        self.lookups = lookups  # all lookups, pinned ones included
        self.req_bytes = req_bytes
        self.resp_bytes = resp_bytes
        self.node = -1
        self.retries = 0
        self.state = 0  # 0 new, 1 to node, 2 queued/serving, 3 to central, 4 done, 5 failed
        self.est_s = 0.0
        #: the message sequence of its flow on a link (0: none yet; before it is sent, the
        #: compiled simulator keeps where its keys start in the key store here)
        self.flow_seq = flow_seq
        self.flow_finish = 0.0

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with ``keys`` (increasing) and ``counts`` as :class:`Ints`: a few bytes a
        row instead of 16 (a queue of thousands of sub-requests stays small)."""
        state = {n: getattr(self, n) for n in self.__slots__ if hasattr(self, n)}
        state["keys"] = Ints(self.keys)
        state["counts"] = Ints(self.counts)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        set_slots_state(self, state)


#: The slots' own descriptors of ``keys`` and ``counts`` (:class:`RangeSubRequest` puts a
#: property in front of them).
_KEYS = SubRequest.__dict__["keys"]
_COUNTS = SubRequest.__dict__["counts"]


class RangeSubRequest(SubRequest):
    """A :class:`SubRequest` whose ``keys`` and ``counts`` are the views
    ``rel[lo:hi]`` and ``counts[lo:hi]`` of its request's arrays, made when first read (the
    compiled simulator's own path never reads them: two slices a sub-request saved). The
    arrays are held from the start, as the views would hold them (an :class:`Arena` sees
    their buffers in use). Pickled (and copied) as a plain :class:`SubRequest`."""

    __slots__ = ("_range",)

    def __init__(self, sid: int, req: Request, shard: int, rel: np.ndarray,
                 counts: np.ndarray, lo: int, hi: int, d_untracked: int, lookups: int,
                 req_bytes: float, resp_bytes: float, tracked_lookups: int,
                 flow_seq: int = 0) -> None:
        self.id = sid
        self.req = req
        self.shard = shard
        self._range = (rel, counts, lo, hi)
        self.tracked_lookups = tracked_lookups
        self.d_tracked = hi - lo
        self.d_untracked = d_untracked
        self.lookups = lookups
        self.req_bytes = req_bytes
        self.resp_bytes = resp_bytes
        self.node = -1
        self.retries = 0
        self.state = 0
        self.est_s = 0.0
        self.flow_seq = flow_seq
        self.flow_finish = 0.0

    def _views(self) -> None:
        rel, counts, lo, hi = self._range
        _KEYS.__set__(self, rel[lo:hi])
        _COUNTS.__set__(self, counts[lo:hi])

    @property
    def keys(self) -> np.ndarray:
        """Distinct tracked shard-space keys (do not modify)."""
        try:
            return _KEYS.__get__(self, RangeSubRequest)
        except AttributeError:
            self._views()
            return _KEYS.__get__(self, RangeSubRequest)

    @keys.setter
    def keys(self, value: np.ndarray) -> None:
        _KEYS.__set__(self, value)

    @property
    def counts(self) -> np.ndarray:
        """Lookups of each key."""
        try:
            return _COUNTS.__get__(self, RangeSubRequest)
        except AttributeError:
            self._views()
            return _COUNTS.__get__(self, RangeSubRequest)

    @counts.setter
    def counts(self, value: np.ndarray) -> None:
        _COUNTS.__set__(self, value)

    def __getstate__(self) -> dict[str, Any]:
        state = {n: getattr(self, n) for n in SubRequest.__slots__ if hasattr(self, n)}
        state["keys"] = Ints(self.keys)
        state["counts"] = Ints(self.counts)
        return state

    def __reduce_ex__(self, protocol: Any) -> Any:
        return _plain_subrequest, (), self.__getstate__()


def _plain_subrequest() -> SubRequest:
    """An empty :class:`SubRequest` (what a :class:`RangeSubRequest` unpickles into)."""
    return SubRequest.__new__(SubRequest)


class Migration:
    """Data in flight to a node that will serve a shard (see
    :meth:`envs.sim.dlrm.cluster.ShardSim.add_replica`)."""

    __slots__ = ("flow_finish", "flow_seq", "node", "shard", "warm")

    def __init__(self, shard: int, node: int, warm: np.ndarray | None) -> None:
        self.shard = shard
        self.node = node
        self.warm = warm
        self.flow_seq = 0
        self.flow_finish = 0.0


class FanoutCounters(Counters):
    """:class:`Counters` plus requests that failed (a sub-request could not be served)."""

    __slots__ = ("dropped_failed",)

    def __init__(self, n_partitions: int) -> None:
        super().__init__(n_partitions)
        self.dropped_failed = 0

    @property
    def dropped(self) -> int:
        """All drops, failures included."""
        return (self.dropped_rejected + self.dropped_overflow + self.dropped_expired
                + self.dropped_failed)

    @property
    def in_system(self) -> int:
        """Arrived and neither completed nor dropped."""
        return self.arrived - self.completed - self.dropped

    def summary(self, elapsed_s: float, busy_ahead_s: float = 0.0,
                busy_total_s: float | None = None) -> dict[str, float]:
        """:meth:`Counters.summary` with failures counted as drops."""
        out = super().summary(elapsed_s, busy_ahead_s, busy_total_s)
        f = self.dropped_failed
        if f:
            finished = self.completed + self.dropped
            out["dropped"] += f
            out["in_system"] -= f
            out["sla_attainment"] = self.good / finished if finished else 1.0
        out["dropped_failed"] = f
        return out
