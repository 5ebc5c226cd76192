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

from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any

import simpy
from simpy.events import NORMAL, URGENT, Event

__all__ = ["NORMAL", "URGENT", "Done", "call_later", "call_soon", "on_event", "run_queue"]

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
    heappush(queue, (env._now + delay, priority, next(env._eid), fn, arg))


def call_soon(env: simpy.Environment, fn: Done, arg: Any, priority: int = NORMAL) -> None:
    """Call ``fn(arg)`` at the current time, after what is already queued for it
    (``priority`` ``URGENT``: where a new process would start)."""
    queue: list[Any] = env._queue
    heappush(queue, (env._now, priority, next(env._eid), fn, arg))


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
    pop = heappop
    while queue:
        item = pop(queue)
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
