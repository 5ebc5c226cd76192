"""Bandwidth shared fairly by concurrent transfers (max-min fairness, fluid model).

Every transfer goes through the storage server's link and through one endpoint's link
(a worker, or the client). An endpoint's concurrent transfers split its capacity
equally; the server's capacity is then shared max-min fairly: transfers capped lower by
their endpoint keep their cap, the others split what is left equally.

Transfers whose per-transfer cap is the same form a *class*; all transfers of a class
progress at one rate, so a class keeps a running count of bytes served per transfer
(``served``) and a heap of the values at which its transfers finish. A change (a start
or an end) costs O(classes + log transfers) instead of touching every transfer. There are
few classes in practice: one per (endpoint capacity, concurrent transfers of it).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

import simpy

Done = Callable[[], None]

# A transfer is complete when it lacks less than this many ms at its rate (float dust).
_TIME_TOLERANCE = 1e-9


class Endpoint:
    """One side of transfers (a worker's network interface): ``capacity`` bytes per ms."""

    __slots__ = ("capacity", "flows")

    def __init__(self, capacity: float) -> None:
        if not capacity > 0:
            raise ValueError(f"endpoint capacity must be > 0 bytes/ms, got {capacity!r}")
        self.capacity = capacity
        self.flows: list[_Flow] = []


class _Flow:
    __slots__ = ("cls", "done", "endpoint", "finish", "nbytes", "on_done")

    def __init__(self, nbytes: float, endpoint: Endpoint, on_done: Done) -> None:
        self.nbytes = nbytes
        self.endpoint = endpoint
        self.on_done = on_done
        self.cls: _Class | None = None
        self.finish = 0.0
        self.done = False


class _Class:
    __slots__ = ("cap", "count", "heap", "rate", "served")

    def __init__(self, cap: float) -> None:
        self.cap = cap
        self.served = 0.0
        self.rate = 0.0
        self.count = 0
        self.heap: list[tuple[float, int, _Flow]] = []


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

    def transfer(self, nbytes: float, endpoint: Endpoint, on_done: Done) -> None:
        """Start moving ``nbytes`` through ``endpoint``; call ``on_done()`` when complete."""
        if nbytes <= 0:
            on_done()
            return
        self._advance()
        flow = _Flow(float(nbytes), endpoint, on_done)
        endpoint.flows.append(flow)
        self.active += 1
        self._rebase(endpoint)
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

    def _class(self, cap: float) -> _Class:
        c = self._classes.get(cap)
        if c is None:
            c = self._classes[cap] = _Class(cap)
        return c

    def _rebase(self, endpoint: Endpoint) -> None:
        """Move the endpoint's transfers into the class of its new per-transfer cap."""
        flows = endpoint.flows
        if not flows:
            return
        new = self._class(endpoint.capacity / len(flows))
        for f in flows:
            old = f.cls
            if old is new:
                continue
            if old is None:
                remaining = f.nbytes
            else:
                remaining = f.finish - old.served
                old.count -= 1
                if old.count == 0:
                    del self._classes[old.cap]
            f.cls = new
            f.finish = new.served + remaining
            new.count += 1
            self._seq += 1
            heapq.heappush(new.heap, (f.finish, self._seq, f))

    def _rates(self) -> None:
        """Max-min fair rates: low caps are met first, the rest split the remainder."""
        left = self.capacity
        n = self.active
        for cap in sorted(self._classes):
            c = self._classes[cap]
            fair = left / n
            if cap <= fair:
                c.rate = cap
                left -= cap * c.count
                n -= c.count
            else:
                c.rate = fair

    def _schedule(self) -> None:
        self._wake_event = None
        if not self.active:
            return
        self._rates()
        delay = math.inf
        for c in self._classes.values():
            top = _top(c)
            if top is None:
                continue
            d = 0.0 if c.rate == math.inf else max(top.finish - c.served, 0.0) / c.rate
            delay = min(delay, d)
        ev = self.env.timeout(delay)
        ev.callbacks.append(self._wake)
        self._wake_event = ev

    def _wake(self, event: Any) -> None:
        if event is not self._wake_event:
            return  # superseded by a later start or end
        self._advance()
        tol = _TIME_TOLERANCE * max(1.0, self.env.now)
        finished: list[_Flow] = []
        for c in list(self._classes.values()):
            while True:
                top = _top(c)
                if top is None or (c.rate != math.inf and top.finish - c.served > tol * c.rate):
                    break
                heapq.heappop(c.heap)
                finished.append(top)
        touched: dict[int, Endpoint] = {}
        for f in finished:
            f.done = True
            c = f.cls
            assert c is not None
            c.count -= 1
            if c.count == 0:
                self._classes.pop(c.cap, None)
            f.endpoint.flows.remove(f)
            touched[id(f.endpoint)] = f.endpoint
            self.active -= 1
        for ep in touched.values():
            self._rebase(ep)
        self._schedule()
        for f in finished:
            f.on_done()


def _top(c: _Class) -> _Flow | None:
    """The class's next transfer to finish, dropping heap entries of moved transfers."""
    heap = c.heap
    while heap:
        finish, _, f = heap[0]
        if f.done or f.cls is not c or f.finish != finish:
            heapq.heappop(heap)
            continue
        return f
    return None
