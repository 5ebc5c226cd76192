"""Plain callbacks on a SimPy environment's event queue, and the loop that runs them.

A SimPy event costs an object, a callback list and, for a process, a generator
resumption. Most steps of a simulated run only need "call ``fn(arg)`` at time ``t``", so
the models queue that directly: an :class:`Entry` ``(time, priority, id, fn, arg)`` in
the environment's heap, numbered by the same counter as SimPy's events. Ties are broken
exactly as SimPy breaks them (time, then priority, then id), so replacing an event by a
callback queued at the same moment changes nothing about the order in which things
happen.

The environment's :class:`Clock` (:func:`clock_of`) takes over its heap: from then on
SimPy's own events are queued as entries too (the clock schedules them, with the same
numbers), so one kind of entry is compared. :func:`run_queue` runs them all, SimPy's
events exactly as :meth:`simpy.Environment.step` does; the clock also stands in for the
environment's ``step``, so ``env.run()`` runs them too, more slowly.

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
import weakref
from collections import namedtuple
from collections.abc import Callable
from typing import Any, Final

import simpy
import simpy.events
from simpy.core import EmptySchedule
from simpy.events import Event

__all__ = ["NORMAL", "URGENT", "Clock", "Done", "Entry", "call_later", "call_soon",
           "clock_of", "fire_event", "heap_pop", "heap_push", "on_event", "queue_pop",
           "queue_push", "run_queue"]

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


class Entry:
    """One queued step: call ``fn(arg)`` at ``time``; ordered by time, priority, id.

    A SimPy event is queued as ``fn`` :func:`fire_event` with the event as ``arg``.
    """

    __slots__ = ("arg", "fn", "id", "priority", "time")

    def __init__(self, time: float, priority: int, id: int, fn: Done, arg: Any) -> None:
        self.time = time
        self.priority = priority
        self.id = id
        self.fn = fn
        self.arg = arg

    def __lt__(self, other: Entry) -> bool:
        return _before(self, other)

    def __getitem__(self, i: int) -> Any:
        """SimPy reads ``queue[0][0]``, the time of the next step (``Environment.peek``)."""
        return (self.time, self.priority, self.id, self.fn, self.arg)[i]

    def __repr__(self) -> str:
        return f"Entry({self.time!r}, {self.priority!r}, {self.id!r}, {self.fn!r}, {self.arg!r})"


def fire_event(event: Any) -> None:
    """Process a SimPy event, as :meth:`simpy.Environment.step` does: its callbacks, then
    a crash if it failed and nobody defused it."""
    callbacks, event.callbacks = event.callbacks, None
    for callback in callbacks:
        callback(event)
    if not event._ok and not hasattr(event, "_defused"):
        exc = type(event._value)(*event._value.args)
        exc.__cause__ = event._value
        raise exc


class Clock:
    """The time, the event queue and the event counter of one SimPy environment, as the
    models read them.

    ``queue`` is the environment's own heap, and the clock schedules SimPy's events on it
    (it replaces the environment's ``schedule``) as :class:`Entry` objects. It also takes
    over the environment's counter (``env._eid``): SimPy's events and the models' steps
    are numbered from the same count, as before. ``now`` follows the environment's time
    while :func:`run_queue` runs it (which sets both). Compiled code reads all three
    directly, where reading them on the environment is a Python attribute lookup. Get an
    environment's one clock with :func:`clock_of`.
    """

    __slots__ = ("env", "ids", "now", "queue")

    def __init__(self, env: simpy.Environment) -> None:
        # (weakly: the environment holds its clock, which would otherwise make a cycle)
        self.env: weakref.ref[simpy.Environment] = weakref.ref(env)
        self.now: float = env._now
        self.queue: list[Any] = env._queue
        self.ids: int = next(env._eid)  # the next number SimPy would have given
        # Steps queued before: SimPy's (time, priority, id, event), and plain callbacks.
        queue: list[Any] = self.queue
        for i, item in enumerate(queue):
            if isinstance(item, tuple):
                queue[i] = Entry(item[0], item[1], item[2], fire_event, item[3]) \
                    if len(item) == 4 else Entry(item[0], item[1], item[2], item[3], item[4])
        heapq.heapify(queue)

    def __iter__(self) -> Clock:
        return self

    def __next__(self) -> Any:  # (Any: the compiled slot returns an object)
        """The next event number (SimPy's ``next(env._eid)``)."""
        n = self.ids
        self.ids = n + 1
        return n

    def step(self) -> None:
        """SimPy's ``Environment.step``: process the next entry (``env.run()`` calls it).

        Raises
        ------
        simpy.core.EmptySchedule
            Nothing is queued.
        """
        queue = self.queue
        if not queue:
            raise EmptySchedule()
        entry = queue_pop(queue)
        env = self.env()
        if env is not None:
            env._now = entry.time
        self.now = entry.time
        entry.fn(entry.arg)

    def schedule(self, event: Event, priority: int = NORMAL, delay: float = 0) -> None:
        """SimPy's ``Environment.schedule``: process ``event`` ``delay`` from now."""
        self.at(self.now + delay, fire_event, event, priority)

    def at(self, when: float, fn: Done, arg: Any, priority: int = NORMAL) -> None:
        """Call ``fn(arg)`` at time ``when`` (not before now), after what is queued for it."""
        n = self.ids
        self.ids = n + 1
        queue_push(self.queue, Entry(when, priority, n, fn, arg))

    def later(self, delay: float, fn: Done, arg: Any) -> None:
        """:func:`call_later` on this clock's environment."""
        if delay < 0:
            raise ValueError(f"Negative delay {delay}")
        self.at(self.now + delay, fn, arg)

    def soon(self, fn: Done, arg: Any, priority: int = NORMAL) -> None:
        """:func:`call_soon` on this clock's environment."""
        self.at(self.now, fn, arg, priority)


_CLOCK_ATTR: Final = "_faasplan_clock"


def clock_of(env: simpy.Environment) -> Clock:
    """The :class:`Clock` of ``env`` (made on first use; one per environment).

    From then on the environment's events are queued by the clock: :func:`run_queue` runs
    them, and so do ``env.run()`` and ``env.step()``, through the clock.
    """
    state = env.__dict__
    clock = state.get(_CLOCK_ATTR)
    if clock is None:
        clock = Clock(env)
        state[_CLOCK_ATTR] = clock
        state["_eid"] = clock
        state["schedule"] = clock.schedule  # SimPy's events call env.schedule(...)
        state["step"] = clock.step  # and env.run() calls env.step()
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
    clock = clock_of(env)
    clock.at(clock.now + delay, fn, arg, priority)


def call_soon(env: simpy.Environment, fn: Done, arg: Any, priority: int = NORMAL) -> None:
    """Call ``fn(arg)`` at the current time, after what is already queued for it
    (``priority`` ``URGENT``: where a new process would start)."""
    clock_of(env).soon(fn, arg, priority)


def on_event(event: Event, fn: Callable[[Event], Any]) -> None:
    """Call ``fn(event)`` when ``event`` is processed (at once if it already was)."""
    if event.callbacks is None:
        fn(event)
    else:
        event.callbacks.append(fn)


def run_queue(env: simpy.Environment) -> None:
    """Process the queue until it is empty: plain callbacks and SimPy events alike.

    The time is set on the environment and on its :class:`Clock` alike.
    """
    clock = clock_of(env)
    queue = clock.queue
    while queue:
        entry = queue_pop(queue)
        env._now = clock.now = entry.time
        entry.fn(entry.arg)


# -- the heaps ---------------------------------------------------------------------------
# heapq's functions, with the entries' order written out: compiled, comparing two entries
# is two or three machine comparisons instead of a call that compares Python objects.
# Every id is unique, so entries leave the heap in the same order as with heapq. The
# event queue holds :class:`Entry` objects; the bandwidth model's heaps hold tuples
# ``(key, seq, ...)`` with a unique ``seq``, so a comparison never reaches their third item.
def _before(a: Entry, b: Entry) -> bool:
    """Whether queue entry ``a`` comes out before ``b``: by time, priority, then id."""
    if a.time != b.time:
        return a.time < b.time
    if a.priority != b.priority:
        return a.priority < b.priority
    return a.id < b.id


def _settle(queue: list[Entry], pos: int, entry: Entry) -> None:
    """Put ``entry`` at ``pos``, or above it while it comes out before its parent."""
    while pos > 0:
        parent_pos = (pos - 1) >> 1
        parent = queue[parent_pos]
        if not _before(entry, parent):
            break
        queue[pos] = parent
        pos = parent_pos
    queue[pos] = entry


def queue_push(queue: list[Entry], entry: Entry) -> None:
    """Add ``entry`` to the event queue ``queue`` (``heapq.heappush``)."""
    queue.append(entry)
    _settle(queue, len(queue) - 1, entry)


def queue_pop(queue: list[Entry]) -> Entry:
    """Remove and return the first entry of the event queue ``queue`` (``heapq.heappop``)."""
    last = queue.pop()
    if not queue:
        return last
    first = queue[0]
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


def _key_before(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether heap item ``a`` comes out before ``b``: by key, then seq."""
    ka: float = a[0]
    kb: float = b[0]
    if ka != kb:
        return ka < kb
    sa: int = a[1]
    sb: int = b[1]
    return sa < sb


def _key_settle(heap: list[Any], pos: int, item: tuple[Any, ...]) -> None:
    while pos > 0:
        parent_pos = (pos - 1) >> 1
        parent = heap[parent_pos]
        if not _key_before(item, parent):
            break
        heap[pos] = parent
        pos = parent_pos
    heap[pos] = item


def heap_push(heap: list[Any], item: tuple[Any, ...]) -> None:
    """Add ``(key, seq, ...)`` to ``heap`` (``heapq.heappush``)."""
    heap.append(item)
    _key_settle(heap, len(heap) - 1, item)


def heap_pop(heap: list[Any]) -> tuple[Any, ...]:
    """Remove and return the smallest ``(key, seq, ...)`` of ``heap`` (``heapq.heappop``)."""
    last = heap.pop()
    if not heap:
        return last
    first: tuple[Any, ...] = heap[0]
    end = len(heap)
    pos = 0
    child = 1
    while child < end:
        right = child + 1
        if right < end and not _key_before(heap[child], heap[right]):
            child = right
        heap[pos] = heap[child]
        pos = child
        child = 2 * pos + 1
    _key_settle(heap, pos, last)
    return first


if __file__.endswith(".py"):
    # Interpreted (FAASPLAN_PURE_PYTHON=1, or no compiled core): heapq's C functions are
    # faster than the ones above, and an entry is a named tuple, which they compare in C
    # (by time, priority, then the unique id) instead of calling Entry.__lt__. The order
    # is the same.
    globals().update(queue_push=heapq.heappush, queue_pop=heapq.heappop,
                     heap_push=heapq.heappush, heap_pop=heapq.heappop,
                     Entry=namedtuple("Entry", ("time", "priority", "id", "fn", "arg")))
