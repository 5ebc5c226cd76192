"""A tiny in-memory driver for the worker logic: the reference for what each effect means.

It runs every invocation of a run as a cooperative thread in one process, performs effects
instantly against dicts, and logs them. Tests assert on the logged effect sequence; it
also executes a plan without Redis when the task results come from ``execute``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from faasplan.worker.branch import dag_parts, execute_branch, initial_invocations
from faasplan.worker.effects import (
    Execute,
    Fetch,
    Invoke,
    Join,
    Notify,
    Parallel,
    Payload,
    Sleep,
    Spawn,
    Store,
    Track,
    WaitFor,
)
from faasplan.worker.log import CLIENT, Event, invocation_label, invoke_events, logged
from faasplan.worker.spec import RunSpec

Executor = Callable[[Execute], Payload]


@dataclass
class _Thread:
    gen: Generator[Any, Any, Any]
    worker: int
    done: bool = False
    result: Any = None


@dataclass
class InMemoryRun:
    """Outcome of :func:`run_in_memory`: storage contents, effect log, worker count.

    ``events`` is the decision log (:mod:`faasplan.worker.log`), stamped with the number
    of effects performed so far instead of a clock.
    """

    store: dict[str, Payload]
    log: list[tuple[int, Any]]
    workers: int
    executed: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class DeadlockError(RuntimeError):
    """Every remaining thread waits for something no thread will ever provide."""


def run_in_memory(spec: RunSpec, execute: Executor, preload: dict[str, Payload] | None = None
                  ) -> InMemoryRun:
    """Run all workers of ``spec`` to completion; ``execute`` computes each task's output.

    Effects are performed in a deterministic FIFO order. The log holds
    ``(worker number, effect)`` pairs; worker 0 is the first invocation. Every invocation
    has a sandbox of its own, so a DAG part is transferred (full size) each time an
    invocation fetches it.
    """
    store: dict[str, Payload] = dict(preload or {})
    # Like the runtime's client, the DAG's parts are stored before the run.
    for key, nbytes in dag_parts(spec).items():
        store.setdefault(key, Payload(nbytes))
    tracked: dict[str, set[str]] = {}
    notified: set[str] = set()
    log: list[tuple[int, Any]] = []
    executed: list[str] = []
    runnable: deque[tuple[_Thread, Any]] = deque()
    blocked: list[tuple[_Thread, Any]] = []
    workers = 0
    events: list[Event] = []

    def clock() -> float:
        return float(len(log))

    def start(gen: Generator[Any, Any, Any], worker: int) -> _Thread:
        th = _Thread(gen, worker)
        runnable.append((th, None))
        return th

    def invoke(inv: Any) -> None:
        nonlocal workers
        label = invocation_label(inv, workers)
        events.append(Event(label, "start", None, None, inv.memory_mb, clock(), clock(), "cold"))
        start(logged(execute_branch(spec, inv), label, events.append, clock), workers)
        workers += 1

    for inv in initial_invocations(spec):
        events.extend(invoke_events(CLIENT, inv, 0.0, 0.0))
        invoke(inv)

    def available(effect: Any) -> bool:
        if isinstance(effect, Fetch):
            return not effect.wait or effect.key in store
        if isinstance(effect, WaitFor):
            return effect.channel in notified
        if isinstance(effect, Join):
            return all(h.done for h in effect.handles)
        if isinstance(effect, Parallel):
            return all(available(e) for e in effect.effects)
        return True

    def perform(th: _Thread, effect: Any) -> Any:
        nonlocal workers
        if isinstance(effect, Fetch):
            if effect.key not in store:
                raise KeyError(f"fetch of missing key {effect.key!r} for task {effect.task!r}")
            return store[effect.key]
        if isinstance(effect, Store):
            store[effect.key] = effect.payload
            return None
        if isinstance(effect, Track):
            members = tracked.setdefault(effect.task, set())
            before = len(members)
            members.add(effect.upstream)
            return len(members) == effect.expected and before != len(members)
        if isinstance(effect, Notify):
            notified.add(effect.channel)
            return None
        if isinstance(effect, WaitFor | Sleep):
            return None
        if isinstance(effect, Invoke):
            invoke(effect.invocation)
            return None
        if isinstance(effect, Execute):
            executed.append(effect.task)
            return execute(effect)
        if isinstance(effect, Spawn):
            return start(effect.branch, th.worker)
        if isinstance(effect, Join):
            return [h.result for h in effect.handles]
        if isinstance(effect, Parallel):
            return [perform(th, e) for e in effect.effects]
        raise TypeError(f"unknown effect {effect!r}")

    while runnable or blocked:
        if not runnable:
            still: list[tuple[_Thread, Any]] = []
            for th, eff in blocked:
                (runnable if available(eff.effect) else still).append((th, eff))
            if not runnable:
                raise DeadlockError(f"{len(still)} worker threads blocked: {[e for _, e in still]}")
            blocked = still
            # Performing a blocked effect happens when the thread runs again below.
        th, value = runnable.popleft()
        if isinstance(value, _Blocked):
            value = perform(th, value.effect)
        try:
            effect = th.gen.send(value)
        except StopIteration as stop:
            th.done, th.result = True, stop.value
            continue
        log.append((th.worker, effect))
        if available(effect):
            runnable.append((th, _Blocked(effect)))
        else:
            blocked.append((th, _Blocked(effect)))
    return InMemoryRun(store, log, workers, executed, events)


@dataclass(frozen=True, slots=True)
class _Blocked:
    effect: Any
