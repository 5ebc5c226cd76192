"""The FaaS platform: invocation delay, concurrency, warm pools, start times and billing."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import simpy
from simpy.events import Event

from faasplan.platform import Platform
from faasplan.worker.effects import Invocation


@dataclass(slots=True, unsafe_hash=True, init=False)
class Sandbox:
    """An execution environment given to one invocation (one per invocation, so a plain
    slotted record rather than a frozen one, which costs several times as much to make;
    treated as immutable).

    ``container`` numbers sandboxes in creation order; ``state`` is ``"cold"`` for a new
    one and ``"warm"`` for one reused within the keep-alive; ``startup_ms`` is the start
    time drawn for this invocation.
    """

    container: int
    memory_mb: int
    state: str
    startup_ms: float

    def __init__(self, container: int, memory_mb: int, state: str, startup_ms: float) -> None:
        # Written out, not generated: compiled, a hand-written initializer is compiled too.
        self.container = container
        self.memory_mb = memory_mb
        self.state = state
        self.startup_ms = startup_ms

    def __reduce__(self) -> tuple[object, ...]:
        return (Sandbox, (self.container, self.memory_mb, self.state, self.startup_ms))


class FaaSModel:
    """Per-memory pools of idle sandboxes, a concurrency limit with a FIFO queue.

    Parameters
    ----------
    env : simpy.Environment
        Time in ms.
    platform : Platform
        Latencies, start times, keep-alive, limit and prices.
    rng : numpy.random.Generator
        Draws cold start times.

    An invocation takes :meth:`invocation_ms`, then :meth:`admit` (queue while the limit
    is reached), then :meth:`start` (warm if an idle sandbox of its memory is within the
    keep-alive, otherwise cold); :meth:`release` returns the sandbox to its pool.
    """

    def __init__(self, env: simpy.Environment, platform: Platform,
                 rng: np.random.Generator) -> None:
        self.env = env
        self.platform = platform
        self.rng = rng
        self.running = 0
        self.cold_starts = 0
        self.warm_starts = 0
        self._created = 0
        self._keep_alive_ms = platform.keep_alive_s * 1000.0
        self._idle: dict[int, list[tuple[float, int]]] = {}
        self._queue: deque[Event] = deque()

    def invocation_ms(self, invocation: Invocation) -> float:
        """Delay between sending ``invocation`` and the platform acting on it."""
        return self.platform.invocation_ms(invocation.nbytes)

    def admit(self) -> Event | None:
        """Take a concurrency slot: ``None`` if one is free, else an event fired when it is."""
        if self.running < self.platform.concurrency_limit:
            self.running += 1
            return None
        event = Event(self.env)
        self._queue.append(event)
        return event

    def start(self, memory_mb: int) -> Sandbox:
        """Give an admitted invocation a sandbox, warm if possible."""
        pool = self._idle.get(memory_mb)
        now = self.env._now
        while pool:
            # Most recently idle first: the others are older, so if it expired so did they.
            idle_since, container = pool.pop()
            if now - idle_since <= self._keep_alive_ms:
                self.warm_starts += 1
                return Sandbox(container, memory_mb, "warm", self.platform.warm_start_ms)
            pool.clear()
        self.cold_starts += 1
        self._created += 1
        median = self.platform.cold_start_median_ms(memory_mb)
        sigma = self.platform.cold_start_sigma
        ms = median * math.exp(sigma * self.rng.standard_normal()) if sigma > 0 else median
        return Sandbox(self._created - 1, memory_mb, "cold", ms)

    def release(self, sandbox: Sandbox) -> None:
        """The invocation ended: its sandbox idles and its slot passes to the queue."""
        self._idle.setdefault(sandbox.memory_mb, []).append((self.env._now, sandbox.container))
        if self._queue:
            self._queue.popleft().succeed(None)
        else:
            self.running -= 1

    def cost_usd(self, memory_mb: int, duration_ms: float) -> float:
        """Price of one invocation that held a sandbox for ``duration_ms``."""
        return self.platform.cost_usd(memory_mb, duration_ms)
