"""Plain callbacks on a SimPy environment's event queue, and the loop that runs them.

A SimPy event costs an object, a callback list and, for a process, a generator
resumption. Most steps of a simulated run only need "call ``fn(arg)`` at time ``t``", so
the models queue that directly: an entry ``(time, priority, id, fn, arg)`` in the same
heap, numbered by the same counter, as SimPy's ``(time, priority, id, event)``. Ties
are broken exactly as SimPy breaks them, so replacing an event by a callback queued at
the same moment changes nothing about the order in which things happen.

Only :func:`run_queue` knows these entries; an environment holding them must be run with
it (it runs ordinary SimPy events too, exactly as :meth:`simpy.Environment.step` does).

>>> import simpy
>>> env = simpy.Environment()
>>> seen = []
>>> call_later(env, 5.0, seen.append, "callback")
>>> _ = env.timeout(5.0).callbacks.append(lambda _: seen.append("event"))
>>> call_soon(env, seen.append, "urgent", URGENT)
>>> run_queue(env)
>>> seen, env.now
(['urgent', 'callback', 'event'], 5.0)
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from typing import Any, Final

import simpy
import simpy.events
from simpy.events import Event

__all__ = ["NORMAL", "URGENT", "Clock", "Done", "call_later", "call_soon", "clock_of",
           "on_event", "queue_pop", "queue_push", "run_queue"]

NORMAL: Final = 1
"""SimPy's priority of an ordinary event."""
URGENT: Final = 0
"""SimPy's priority of a process start or an interruption (before NORMAL ones)."""
if (NORMAL, URGENT) != (simpy.events.NORMAL, simpy.events.URGENT):  # pragma: no cover
    raise ImportError(f"this SimPy numbers its priorities {simpy.events.NORMAL} and "
                      f"{simpy.events.URGENT}, not {NORMAL} and {URGENT}; install a SimPy "
                      "of the 4.x series")

Done = Callable[[Any], Any]
"""What a model calls with an operation's result."""


class Clock:
    """The time and the event queue of one SimPy environment, as the models read them.

    ``queue`` and ``eid`` are the environment's own heap and counter, so entries queued
    here and SimPy's events are ordered together. ``now`` follows the environment's
    time while :func:`run_queue` runs it (which sets both); the models that queue plain
    callbacks read it here, where compiled code reads it directly, instead of on the
    environment. Get an environment's one clock with :func:`clock_of`.
    """

    __slots__ = ("eid", "env", "now", "queue")

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.now: float = env._now
        self.queue: list[Any] = env._queue
        self.eid: Iterator[int] = env._eid

    def at(self, when: float, fn: Done, arg: Any, priority: int = NORMAL) -> None:
        """Call ``fn(arg)`` at time ``when`` (not before now), after what is queued for it."""
        queue_push(self.queue, (when, priority, next(self.eid), fn, arg))

    def later(self, delay: float, fn: Done, arg: Any) -> None:
        """:func:`call_later` on this clock's environment."""
        if delay < 0:
            raise ValueError(f"Negative delay {delay}")
        queue_push(self.queue, (self.now + delay, NORMAL, next(self.eid), fn, arg))

    def soon(self, fn: Done, arg: Any, priority: int = NORMAL) -> None:
        """:func:`call_soon` on this clock's environment."""
        queue_push(self.queue, (self.now, priority, next(self.eid), fn, arg))


_CLOCK_ATTR: Final = "_faasplan_clock"


def clock_of(env: simpy.Environment) -> Clock:
    """The :class:`Clock` of ``env`` (made on first use; one per environment)."""
    clock = env.__dict__.get(_CLOCK_ATTR)
    if clock is None:
        clock = Clock(env)
        env.__dict__[_CLOCK_ATTR] = clock
    return clock


def call_later(env: simpy.Environment, delay: float, fn: Done, arg: Any,
               priority: int = NORMAL) -> None:
    """Call ``fn(arg)`` ``delay`` ms from now, where a ``Timeout(delay)`` would fire.

    Raises
    ------
    ValueError
        ``delay`` is negative.
    """
    if delay < 0:
        raise ValueError(f"Negative delay {delay}")
    queue: list[Any] = env._queue
    queue_push(queue, (env._now + delay, priority, next(env._eid), fn, arg))


def call_soon(env: simpy.Environment, fn: Done, arg: Any, priority: int = NORMAL) -> None:
    """Call ``fn(arg)`` at the current time, after what is already queued for it
    (``priority`` ``URGENT``: where a new process would start)."""
    queue: list[Any] = env._queue
    queue_push(queue, (env._now, priority, next(env._eid), fn, arg))


def on_event(event: Event, fn: Callable[[Event], Any]) -> None:
    """Call ``fn(event)`` when ``event`` is processed (at once if it already was)."""
    if event.callbacks is None:
        fn(event)
    else:
        event.callbacks.append(fn)


def run_queue(env: simpy.Environment) -> None:
    """Process the queue until it is empty: plain callbacks and SimPy events alike.

    For an event this does what :meth:`simpy.Environment.step` does: its callbacks, then
    a crash if it failed and nobody defused it. The time is set on the environment and
    on its :class:`Clock` alike.
    """
    clock = clock_of(env)
    queue = clock.queue
    while queue:
        item = queue_pop(queue)
        env._now = item[0]
        clock.now = item[0]
        if len(item) == 5:
            item[3](item[4])
            continue
        event = item[3]  # a SimPy event: (time, priority, id, event)
        callbacks, event.callbacks = event.callbacks, None
        for callback in callbacks:
            callback(event)
        if not event._ok and not hasattr(event, "_defused"):
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc


# -- the heap ----------------------------------------------------------------------------
# heapq's functions on the same list, with the entries' order written out: compiled, the
# comparison of two (time, priority, id) keys is two or three machine comparisons instead
# of a tuple comparison that compares each item as a Python object. Every id is unique,
# so the order in which entries leave the heap is the same as with heapq (SimPy's own
# heappush on the same list keeps the same invariant). The bandwidth model's heaps use
# them too: their entries are ``(key, seq, ...)`` with a unique ``seq``, so a comparison
# never reaches their third item.
def _before(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether queue entry ``a`` comes out before ``b``: by time, priority, then id."""
    ta: float = a[0]
    tb: float = b[0]
    if ta != tb:
        return ta < tb
    pa: int = a[1]
    pb: int = b[1]
    if pa != pb:
        return pa < pb
    ia: int = a[2]
    ib: int = b[2]
    return ia < ib


def _settle(queue: list[Any], pos: int, entry: tuple[Any, ...]) -> None:
    """Put ``entry`` at ``pos``, or above it while it comes out before its parent."""
    while pos > 0:
        parent_pos = (pos - 1) >> 1
        parent = queue[parent_pos]
        if not _before(entry, parent):
            break
        queue[pos] = parent
        pos = parent_pos
    queue[pos] = entry


def queue_push(queue: list[Any], entry: tuple[Any, ...]) -> None:
    """Add ``entry`` to the event queue ``queue`` (``heapq.heappush``)."""
    queue.append(entry)
    _settle(queue, len(queue) - 1, entry)


def queue_pop(queue: list[Any]) -> tuple[Any, ...]:
    """Remove and return the first entry of the event queue ``queue`` (``heapq.heappop``)."""
    last = queue.pop()
    if not queue:
        return last
    first: tuple[Any, ...] = queue[0]
    # heapq's sift: move the smaller child up until a leaf, then settle ``last`` there.
    end = len(queue)
    pos = 0
    child = 1
    while child < end:
        right = child + 1
        if right < end and not _before(queue[child], queue[right]):
            child = right
        queue[pos] = queue[child]
        pos = child
        child = 2 * pos + 1
    _settle(queue, pos, last)
    return first


if __file__.endswith(".py"):
    # Interpreted (FAASPLAN_PURE_PYTHON=1, or no compiled core): heapq's C functions are
    # faster than the ones above, and give the same order.
    globals().update(queue_push=heapq.heappush, queue_pop=heapq.heappop)
