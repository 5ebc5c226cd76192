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

import math
from collections.abc import Callable
from typing import Any, Final

import simpy

from faasplan.simulator.clock import Clock, clock_of, heap_pop, heap_push

Done = Callable[[Any], None]

# A transfer is complete when it lacks less than this many ms (relative to the clock).
_TIME_TOLERANCE: Final = 1e-9
INF: Final = math.inf


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


class _Token:
    """Names one scheduled wake-up (a compiled object: cheaper to make than ``object()``)."""

    __slots__ = ()


class FairShareNetwork:
    """Transfers through one server link of ``capacity`` bytes per ms (``inf``: no limit).

    Parameters
    ----------
    env : simpy.Environment
        Time is ``env.now`` in ms.
    capacity : float
        The server's throughput in bytes per ms, shared by all transfers.
    plain_callbacks : bool
        Queue wake-ups as plain callbacks on the environment's clock
        (:mod:`faasplan.simulator.clock`) instead of SimPy timeouts; run the environment
        with :func:`~faasplan.simulator.clock.run_queue` then (``env.run()`` works too,
        through the clock, more slowly).
    """

    def __init__(self, env: simpy.Environment, capacity: float, *,
                 plain_callbacks: bool = False) -> None:
        if not capacity > 0:
            raise ValueError(f"server capacity must be > 0 bytes/ms, got {capacity!r}")
        self.env = env
        self.capacity = capacity
        self.active = 0
        self._classes: dict[float, _Class] = {}
        self._last = 0.0
        self._seq = 0
        self._wake_event: Any = None
        self._wake_at = INF
        # Plain callbacks: the environment's clock queues them and gives the time (run by
        # run_queue); otherwise SimPy's timeouts and time (run by SimPy's own loop).
        self._clock: Clock | None = clock_of(env) if plain_callbacks else None

    def _time(self) -> float:
        clock = self._clock
        return clock.now if clock is not None else float(self.env._now)

    def transfer(self, nbytes: float, endpoint: Endpoint, on_done: Done, arg: Any = None
                 ) -> None:
        """Start moving ``nbytes`` through ``endpoint``; call ``on_done(arg)`` when complete."""
        if nbytes <= 0:
            on_done(arg)
            return
        now = self._time()
        dt = now - self._last
        if dt > 0:  # :meth:`_advance`, inlined
            for cl in self._classes.values():
                if cl.rate != INF:
                    cl.served += cl.rate * dt
            self._last = now
        c = endpoint.cls
        local = endpoint.offset if c is None else c.served + endpoint.offset
        self._seq += 1
        heap_push(endpoint.flows, (local + nbytes, self._seq, on_done, arg))
        self.active += 1
        self._regroup(endpoint, local, len(endpoint.flows) - 1)
        self._schedule()

    # -- internals ------------------------------------------------------------------------
    def _advance(self, now: float) -> None:
        dt = now - self._last
        if dt > 0:
            for c in self._classes.values():
                if c.rate != INF:
                    c.served += c.rate * dt
            self._last = now

    def _regroup(self, endpoint: Endpoint, local: float, before: int) -> None:
        """Put ``endpoint`` (which had ``before`` transfers) in the class of its new cap."""
        classes = self._classes
        old = endpoint.cls
        if old is not None:
            old.count -= before
            if old.count == 0:
                del classes[old.cap]
        endpoint.version += 1
        flows = endpoint.flows
        n = len(flows)
        if n == 0:
            endpoint.cls = None
            endpoint.offset = local
            return
        cap = endpoint.capacity / n
        new = classes.get(cap)
        if new is None:
            new = classes[cap] = _Class(cap)
        new.count += n
        endpoint.cls = new
        endpoint.offset = offset = local - new.served
        self._seq += 1
        heap_push(new.heap, (flows[0][0] - offset, self._seq, endpoint.version, endpoint))

    def _schedule(self) -> None:
        """Set max-min fair rates, then wake up when the next transfer finishes.

        Rates: transfers with low caps get them first, the rest split what is left.
        """
        if not self.active:
            self._wake_event = None
            self._wake_at = INF
            return
        classes = self._classes
        left = self.capacity
        n = self.active
        delay = INF
        for cap in (sorted(classes) if len(classes) > 1 else classes):
            c = classes[cap]
            fair = left / n
            if cap <= fair:
                rate = c.rate = cap
                left -= cap * c.count
                n -= c.count
            else:
                rate = c.rate = fair
            heap = c.heap
            while heap and heap[0][3].version != heap[0][2]:
                heap_pop(heap)  # entries of endpoints that moved since
            if heap:
                d = 0.0 if rate == INF else (heap[0][0] - c.served) / rate
                if d < delay:
                    delay = d
        if delay < 0.0:
            delay = 0.0
        clock = self._clock
        when = self._time() + delay
        if when >= self._wake_at:
            return  # a wake-up is due no later; it reschedules if it comes early
        self._wake_at = when
        if clock is not None:
            # A fresh token per wake-up: the entries it supersedes find a different one.
            token = self._wake_event = _Token()
            clock.at(when, self._wake, token)
            return
        ev = self.env.timeout(delay)
        ev.callbacks.append(self._wake)
        self._wake_event = ev

    def _wake(self, event: Any) -> None:
        if event is not self._wake_event:
            return  # superseded by a later start or end
        now = self._time()
        self._advance(now)
        self._wake_at = INF
        tol = _TIME_TOLERANCE * (now if now > 1.0 else 1.0)
        done: list[tuple[Done, Any]] = []
        for c in list(self._classes.values()):
            slack = INF if c.rate == INF else tol * c.rate
            heap = c.heap
            while heap:
                key, _, version, endpoint = heap[0]
                if endpoint.version != version:
                    heap_pop(heap)
                    continue
                if key - c.served > slack:
                    break
                heap_pop(heap)
                local = c.served + endpoint.offset
                flows = endpoint.flows
                before = len(flows)
                while flows and flows[0][0] - local <= slack:
                    item = heap_pop(flows)
                    done.append((item[2], item[3]))
                self.active -= before - len(flows)
                self._regroup(endpoint, local, before)
        self._schedule()
        for on_done, arg in done:
            on_done(arg)
