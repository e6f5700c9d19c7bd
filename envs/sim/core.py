"""A SimPy-shaped discrete-event core: a heap of ``(time, priority, seq, event)``.

No module-level state: every simulator owns its :class:`EventQueue`, and ties are broken by a
per-instance sequence counter so runs are exactly reproducible. Cancelled events keep their
heap slot and carry a flag; :meth:`EventQueue.pop` skips them.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

_heappush = heapq.heappush


@dataclass(slots=True, eq=False)
class Event:
    """A scheduled happening.

    Attributes:
        time: Simulated time in seconds.
        kind: Integer event type, interpreted by the simulator that scheduled it.
        target: Integer the event is about (a partition, a node, ...).
        cancelled: Set by :meth:`EventQueue.cancel`; the event is then skipped.
    """

    time: float
    kind: int
    target: int = 0
    cancelled: bool = field(default=False)


class EventQueue:
    """The event heap of one simulator: every simulator's loop runs on it.

    The contract (what the hot loops of ``envs.sim.device`` and ``envs.sim.dlrm`` rely on):
    events enter only through :meth:`schedule` or :meth:`push` (which number them) and leave
    through :meth:`cancel` (a flag) or by being popped. A loop may pop :attr:`heap` itself
    with ``heapq.heappop`` instead of calling :meth:`pop_until` (a method call per event is
    a measurable share of a step): it then skips entries whose event is ``cancelled`` and
    sets :attr:`now` to the popped time, exactly as :meth:`pop_until` does.

    Attributes:
        now: Time of the last popped event (seconds); loops that pop :attr:`heap` set it.
        heap: The heap of ``(time, priority, seq, Event)`` entries: ``heap[0][0]`` (when
            ``heap`` is not empty) is a lower bound on the next live event's time.
    """

    __slots__ = ("_seq", "heap", "now")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, int, Event]] = []
        self._seq = 0
        self.now = 0.0

    def __len__(self) -> int:
        return len(self.heap)

    def clear(self) -> None:
        """Back to a new queue's state (no events, time 0, numbering from the start)."""
        self.heap.clear()
        self._seq = 0
        self.now = 0.0

    def schedule(self, time: float, kind: int, target: int = 0, priority: int = 0) -> Event:
        """Add an event at ``time`` (not before :attr:`now`)."""
        if time < self.now:
            raise ValueError(f"cannot schedule at {time} before now={self.now}")
        ev = Event(time, kind, target)
        seq = self._seq = self._seq + 1
        _heappush(self.heap, (time, priority, seq, ev))
        return ev

    def push(self, time: float, event: Any) -> None:
        """Add an event object a simulator made itself (for example a cheaper list with its
        own cancel flag, which the simulator's loop then pops and checks), numbered as
        :meth:`schedule` numbers its events; ``time`` must not be before :attr:`now`."""
        seq = self._seq = self._seq + 1
        _heappush(self.heap, (time, 0, seq, event))

    @staticmethod
    def cancel(event: Event) -> None:
        """Mark ``event`` so it is skipped when its time comes."""
        event.cancelled = True

    def peek(self) -> float:
        """Time of the next live event, or ``inf`` when there is none."""
        heap = self.heap
        while heap and heap[0][3].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else float("inf")

    def pop_until(self, time: float) -> Event | None:
        """Remove and return the next live event if it is due at or before ``time``.

        The simulators' inner loop: ``while (ev := q.pop_until(t)) is not None: handle(ev)``.
        Returns ``None`` (and leaves :attr:`now` alone) when the next live event is later, or
        there is none.
        """
        heap = self.heap
        pop = heapq.heappop
        while heap:
            top = heap[0]
            if top[0] > time:
                return None
            pop(heap)
            ev = top[3]
            if not ev.cancelled:
                self.now = top[0]
                return ev
        return None

    def pop(self) -> Event:
        """Remove and return the next live event, advancing :attr:`now` to its time.

        Raises:
            IndexError: the queue holds no live event.
        """
        heap = self.heap
        while True:
            time, _, _, ev = heapq.heappop(heap)
            if not ev.cancelled:
                self.now = time
                return ev
