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
from collections.abc import Callable
from typing import Any

import simpy
from simpy.events import NORMAL, URGENT, Event

__all__ = ["NORMAL", "URGENT", "Done", "call_later", "call_soon", "on_event", "queue_pop",
           "queue_push", "run_queue"]

Done = Callable[[Any], Any]
"""What a model calls with an operation's result."""


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
    a crash if it failed and nobody defused it.
    """
    queue: list[Any] = env._queue
    while queue:
        item = queue_pop(queue)
        try:
            env._now, _, _, fn, arg = item
        except ValueError:  # a SimPy event: (time, priority, id, event)
            env._now = item[0]
        else:
            fn(arg)
            continue
        event = item[3]
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
