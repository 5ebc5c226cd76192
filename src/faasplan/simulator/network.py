"""Bandwidth shared fairly by concurrent transfers (max-min fairness, fluid model).

Every transfer goes through the storage server's link and through one endpoint's link
(a worker, or the client). An endpoint's concurrent transfers split its capacity
equally; the server's capacity is then shared max-min fairly: transfers capped lower by
their endpoint keep their cap, the others split what is left equally.

Bookkeeping is in "bytes served per transfer" (virtual time) so that a change costs
O(classes + log transfers), not O(transfers):

* endpoints whose transfers have the same per-transfer cap (capacity / active transfers)
  form a *class*; every transfer of a class moves at the class's rate, and the class
  counts ``served``, the bytes each of its transfers has moved while in it;
* an endpoint keeps its transfers in a heap keyed by the endpoint-local byte count at
  which each finishes, and an ``offset`` converting its class's count to its own;
* the class keeps a heap of its endpoints keyed by their next finish.

There are few classes in practice: one per (endpoint capacity, active transfers).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

import simpy

Done = Callable[[Any], None]

# A transfer is complete when it lacks less than this many ms (relative to the clock).
_TIME_TOLERANCE = 1e-9


class Endpoint:
    """One side of transfers (a worker's network interface): ``capacity`` bytes per ms."""

    __slots__ = ("capacity", "cls", "flows", "offset", "version")

    def __init__(self, capacity: float) -> None:
        if not capacity > 0:
            raise ValueError(f"endpoint capacity must be > 0 bytes/ms, got {capacity!r}")
        self.capacity = capacity
        # (bytes served to this endpoint's transfers when it finishes, seq, on_done, arg)
        self.flows: list[tuple[float, int, Done, Any]] = []
        self.cls: _Class | None = None
        self.offset = 0.0  # endpoint-local served = class served + offset
        self.version = 0

    @property
    def active(self) -> int:
        """Transfers under way through this endpoint."""
        return len(self.flows)


class _Class:
    __slots__ = ("cap", "count", "heap", "rate", "served")

    def __init__(self, cap: float) -> None:
        self.cap = cap
        self.served = 0.0
        self.rate = 0.0
        self.count = 0  # transfers in the class
        self.heap: list[tuple[float, int, int, Endpoint]] = []


class FairShareNetwork:
    """Transfers through one server link of ``capacity`` bytes per ms (``inf``: no limit).

    Parameters
    ----------
    env : simpy.Environment
        Time is ``env.now`` in ms.
    capacity : float
        The server's throughput in bytes per ms, shared by all transfers.
    """

    def __init__(self, env: simpy.Environment, capacity: float) -> None:
        if not capacity > 0:
            raise ValueError(f"server capacity must be > 0 bytes/ms, got {capacity!r}")
        self.env = env
        self.capacity = capacity
        self.active = 0
        self._classes: dict[float, _Class] = {}
        self._last = 0.0
        self._seq = 0
        self._wake_event: Any = None
        self._wake_at = math.inf

    def transfer(self, nbytes: float, endpoint: Endpoint, on_done: Done, arg: Any = None
                 ) -> None:
        """Start moving ``nbytes`` through ``endpoint``; call ``on_done(arg)`` when complete."""
        if nbytes <= 0:
            on_done(arg)
            return
        self._advance()
        local = self._local_served(endpoint)
        self._seq += 1
        heapq.heappush(endpoint.flows, (local + nbytes, self._seq, on_done, arg))
        self.active += 1
        self._regroup(endpoint, local, len(endpoint.flows) - 1)
        self._schedule()

    # -- internals ------------------------------------------------------------------------
    def _advance(self) -> None:
        now = self.env.now
        dt = now - self._last
        if dt > 0:
            for c in self._classes.values():
                if c.rate != math.inf:
                    c.served += c.rate * dt
        self._last = now

    @staticmethod
    def _local_served(endpoint: Endpoint) -> float:
        c = endpoint.cls
        return endpoint.offset if c is None else c.served + endpoint.offset

    def _regroup(self, endpoint: Endpoint, local: float, before: int) -> None:
        """Put ``endpoint`` (which had ``before`` transfers) in the class of its new cap."""
        old = endpoint.cls
        if old is not None:
            old.count -= before
            if old.count == 0:
                del self._classes[old.cap]
        endpoint.version += 1
        n = len(endpoint.flows)
        if n == 0:
            endpoint.cls = None
            endpoint.offset = local
            return
        cap = endpoint.capacity / n
        new = self._classes.get(cap)
        if new is None:
            new = self._classes[cap] = _Class(cap)
        new.count += n
        endpoint.cls = new
        endpoint.offset = local - new.served
        self._seq += 1
        heapq.heappush(new.heap, (endpoint.flows[0][0] - endpoint.offset, self._seq,
                                  endpoint.version, endpoint))

    def _rates(self) -> None:
        """Max-min fair rates: low caps are met first, the rest split the remainder."""
        left = self.capacity
        n = self.active
        classes = self._classes
        for cap in (sorted(classes) if len(classes) > 1 else classes):
            c = self._classes[cap]
            fair = left / n
            if cap <= fair:
                c.rate = cap
                left -= cap * c.count
                n -= c.count
            else:
                c.rate = fair

    def _schedule(self) -> None:
        if not self.active:
            self._wake_event = None
            self._wake_at = math.inf
            return
        self._rates()
        delay = math.inf
        for c in self._classes.values():
            top = _top(c)
            if top is None:
                continue
            d = 0.0 if c.rate == math.inf else max(top - c.served, 0.0) / c.rate
            delay = min(delay, d)
        when = self.env.now + delay
        if when == self._wake_at:
            return  # the pending wake-up is still right
        ev = self.env.timeout(delay)
        ev.callbacks.append(self._wake)
        self._wake_event = ev
        self._wake_at = when

    def _wake(self, event: Any) -> None:
        if event is not self._wake_event:
            return  # superseded by a later start or end
        self._advance()
        self._wake_at = math.inf
        tol = _TIME_TOLERANCE * max(1.0, self.env.now)
        done: list[tuple[Done, Any]] = []
        for c in list(self._classes.values()):
            slack = math.inf if c.rate == math.inf else tol * c.rate
            while True:
                top = _top(c)
                if top is None or top - c.served > slack:
                    break
                endpoint = heapq.heappop(c.heap)[3]
                local = c.served + endpoint.offset
                before = len(endpoint.flows)
                flows = endpoint.flows
                while flows and flows[0][0] - local <= slack:
                    item = heapq.heappop(flows)
                    done.append((item[2], item[3]))
                self.active -= before - len(flows)
                self._regroup(endpoint, local, before)
        self._schedule()
        for on_done, arg in done:
            on_done(arg)


def _top(c: _Class) -> float | None:
    """The class's next finish (in its served count), dropping stale endpoint entries."""
    heap = c.heap
    while heap:
        key, _, version, endpoint = heap[0]
        if endpoint.version != version:
            heapq.heappop(heap)
            continue
        return key
    return None
