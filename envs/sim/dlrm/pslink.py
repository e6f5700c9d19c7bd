"""One direction of a link as a processor-sharing (max-min fair) server of messages.

``n`` messages in flight on a link of ``C`` payload bytes/s each get ``C / n`` (the fair share
of :func:`hwmodels.links.fair_share` when every flow can use any rate). The link keeps a
*virtual clock* ``v``, the bytes each active message has received so far, advancing at
``C / n``; a message of ``b`` bytes added at virtual time ``v0`` is done when ``v = v0 + b``.
A heap ordered by that finish value gives the next completion in O(log n), so adding, aborting
and finishing a message costs O(log n) whatever the number of links or nodes.

The fixed cost of a message (wire latency + RPC overhead, :class:`hwmodels.links.LinkSpec`) is
not part of the sharing: the simulator adds it to the delivery time.
"""

from __future__ import annotations

from heapq import heappop, heappush
from typing import Any

_EPS_BYTES = 1e-3


class PsLink:
    """A fair-shared link direction.

    Args:
        payload_bps: Payload bytes per second at full speed.
        fixed_s: Latency + RPC overhead per message (seconds), added by the caller.

    Attributes:
        factor: Speed multiplier (1 nominal, < 1 degraded; faults set it).
        n: Messages in flight.
        busy_s: Time with at least one message in flight.
        bytes_done: Payload bytes handed to the link (delivered or in flight).
        event: The simulator's pending completion event for this link (or None).
    """

    __slots__ = ("_heap", "_seq", "_sum_finish", "busy_s", "bytes_done", "event", "factor",
                 "fixed_s", "n", "payload_bps", "t", "v")

    def __init__(self, payload_bps: float, fixed_s: float) -> None:
        self.payload_bps = float(payload_bps)
        self.fixed_s = float(fixed_s)
        self.factor = 1.0
        self.v = 0.0
        self.t = 0.0
        self.n = 0
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = 0
        self._sum_finish = 0.0
        self.busy_s = 0.0
        self.bytes_done = 0.0
        self.event: Any = None

    def _sync(self, now: float) -> None:
        dt = now - self.t
        if dt > 0.0 and self.n:
            self.v += dt * self.payload_bps * self.factor / self.n
            self.busy_s += dt
        self.t = now

    def add(self, now: float, nbytes: float, msg: Any) -> None:
        """Start sending ``nbytes`` for ``msg`` (an object with ``flow_seq`` and ``flow_finish``
        attributes that the link sets)."""
        n = self.n
        dt = now - self.t  # _sync(now), inlined
        if dt > 0.0 and n:
            self.v += dt * self.payload_bps * self.factor / n
            self.busy_s += dt
        self.t = now
        nbytes = float(nbytes)
        finish = self.v + nbytes
        seq = self._seq + 1
        self._seq = seq
        msg.flow_seq = seq
        msg.flow_finish = finish
        heappush(self._heap, (finish, seq, msg))
        self.n = n + 1
        self.bytes_done += nbytes
        self._sum_finish += finish

    def abort(self, now: float, msg: Any) -> None:
        """Stop sending ``msg`` (its heap entry is skipped later)."""
        self._sync(now)
        if msg.flow_seq > 0:
            msg.flow_seq = -1
            self.n -= 1
            self._sum_finish -= msg.flow_finish
            if self.n == 0:
                self._heap.clear()
                self._sum_finish = 0.0

    def set_factor(self, now: float, factor: float) -> None:
        """Change the speed (from ``now`` on)."""
        self._sync(now)
        self.factor = float(factor)

    def next_done(self) -> float:
        """Time the next message finishes (``inf`` when none, or when the link is stopped)."""
        heap = self._heap
        while heap and heap[0][2].flow_seq != heap[0][1]:
            heappop(heap)
        if not heap or self.factor <= 0.0:
            return float("inf")
        rate = self.payload_bps * self.factor / self.n
        return self.t + max(heap[0][0] - self.v, 0.0) / rate

    def pop_done(self, now: float) -> list[Any]:
        """The messages finished by ``now`` (removed from the link)."""
        dt = now - self.t  # self._sync(now), inlined
        if dt > 0.0 and self.n:
            self.v += dt * self.payload_bps * self.factor / self.n
            self.busy_s += dt
        self.t = now
        heap = self._heap
        done = []
        limit = self.v + _EPS_BYTES
        while heap:
            finish, seq, msg = heap[0]
            if msg.flow_seq != seq:
                heappop(heap)
                continue
            if finish > limit:
                break
            heappop(heap)
            msg.flow_seq = 0
            self.n -= 1
            self._sum_finish -= finish
            done.append(msg)
        if self.n == 0:
            self._sum_finish = 0.0
        return done

    def state(self, now: float) -> tuple[float, float, float]:
        """``(next_done(), outstanding_bytes(now), drain rate)`` in one call; the drain rate is
        ``payload_bps * factor`` while a message is in flight, else 0."""
        heap = self._heap
        while heap and heap[0][2].flow_seq != heap[0][1]:
            heappop(heap)
        n = self.n
        if not n:
            return (float("inf") if not heap or self.factor <= 0.0
                    else self.t + max(heap[0][0] - self.v, 0.0) / (self.payload_bps
                                                                    * self.factor / n)), 0.0, 0.0
        full = self.payload_bps * self.factor
        if not heap or self.factor <= 0.0:
            done = float("inf")
        else:
            x = heap[0][0] - self.v
            done = self.t + (0.0 if 0.0 > x else x) / (full / n)  # max(x, 0.0)
        dt = now - self.t
        v = self.v + (dt * self.payload_bps * self.factor / n if dt > 0 else 0.0)
        x = self._sum_finish - n * v
        return done, (0.0 if 0.0 > x else x), full

    def outstanding_bytes(self, now: float) -> float:
        """Payload bytes still to send over all messages in flight."""
        if not self.n:
            return 0.0
        dt = now - self.t
        v = self.v + (dt * self.payload_bps * self.factor / self.n if dt > 0 else 0.0)
        return max(self._sum_finish - self.n * v, 0.0)
