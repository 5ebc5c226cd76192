"""The decision log: one record per effect the worker logic asked for, the same in every driver.

Drivers do not write these records themselves. Each wraps the branch it steps with
:func:`logged`, which sees every effect as :func:`~faasplan.worker.execute_branch` yields
it and the result the driver sends back, and appends one :class:`Event` per effect. The
only thing a driver contributes is its clock (simulated ms, wall-clock ms, or a counter)
and the two events that belong to a sandbox rather than to an effect (``start``, ``end``).
So the log of the in-memory reference, of the simulator and of the runtime are comparable
field by field (:mod:`faasplan.conformance`), and :mod:`faasplan.trace` derives every
per-task decision from it with one function.

Event kinds and their fields
----------------------------
=============  =================  =====================  ===========  =========================
kind           ``task``           ``key``                ``nbytes``   ``info``
=============  =================  =====================  ===========  =========================
``start``      --                 --                     memory MB    ``cold`` / ``warm``
``end``        --                 --                     --           --
``fetch``      consumer           storage key            received     ``wait``/``stream``/``""``
``store``      producer           storage key            sent         ``stream`` or ``""``
``track``      dependent          upstream id            --           ``ready`` or ``""``
``notify``     --                 channel                --           --
``wait``       waiting task       channel                --           --
``invoke``     root (or none)     invoked worker label   request      ``inline``/``ref``/``prewarm``
``carry``      root               carried key            value        --
``execute``    task               --                     output       input keys, comma-joined
``sleep``      --                 --                     --           --
=============  =================  =====================  ===========  =========================

A ``fetch`` of a DAG part (:func:`~faasplan.worker.effects.is_dag_part`) is logged with the
bytes that moved: 0 when the warm sandbox already held the part for this run.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, NamedTuple

from faasplan.worker.effects import (
    Execute,
    Fetch,
    Invocation,
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

CLIENT = "client"
"""Worker label of the events the client emits (its initial invocations)."""


class Event(NamedTuple):
    """One effect of one worker: who, what, which key, how many bytes, when."""

    worker: str
    kind: str
    task: str | None = None
    key: str | None = None
    nbytes: int = 0
    start: float = 0.0
    end: float = 0.0
    info: str = ""


Emit = Callable[[Event], None]
Clock = Callable[[], float]


def invocation_label(inv: Invocation, number: int = 0) -> str:
    """The worker label every driver gives ``inv``.

    A planned worker's id; ``flex-ROOT`` for a flexible worker (a task roots exactly one
    invocation, so the label is unique and the same in every driver); ``prewarm-N`` for
    the ``number``-th invocation of a run when it only warms a sandbox.
    """
    if inv.prewarm:
        return f"prewarm-{number}"
    if inv.worker is not None:
        return inv.worker
    return f"flex-{inv.roots[0]}"


def invoke_events(worker: str, inv: Invocation, start: float, end: float) -> list[Event]:
    """The events of one invocation request (``invoke``, then one ``carry`` per value)."""
    root = inv.roots[0] if inv.roots else None
    mode = "prewarm" if inv.prewarm else ("inline" if inv.inline_dag else "ref")
    target = "prewarm" if inv.prewarm else invocation_label(inv)
    out = [Event(worker, "invoke", root, target, inv.nbytes, start, end, mode)]
    for key, payload in inv.carried.items():
        out.append(Event(worker, "carry", root, key, payload.nbytes, start, end))
    return out


def _events(worker: str, effect: Any, result: Any, start: float, end: float) -> list[Event]:
    kind = type(effect)
    if kind is Fetch:
        flag = "stream" if effect.stream else ("wait" if effect.wait else "")
        nbytes = result.nbytes if isinstance(result, Payload) else 0
        return [Event(worker, "fetch", effect.task, effect.key, nbytes, start, end, flag)]
    if kind is Store:
        return [Event(worker, "store", effect.task, effect.key, effect.payload.nbytes, start, end,
                      "stream" if effect.stream else "")]
    if kind is Track:
        return [Event(worker, "track", effect.task, effect.upstream, 0, start, end,
                      "ready" if result else "")]
    if kind is Notify:
        return [Event(worker, "notify", None, effect.channel, 0, start, end)]
    if kind is WaitFor:
        return [Event(worker, "wait", effect.task, effect.channel, 0, start, end)]
    if kind is Invoke:
        return invoke_events(worker, effect.invocation, start, end)
    if kind is Execute:
        nbytes = result.nbytes if isinstance(result, Payload) else 0
        return [Event(worker, "execute", effect.task, None, nbytes, start, end,
                      ",".join(sorted(effect.inputs)))]
    if kind is Sleep:
        return [Event(worker, "sleep", None, None, 0, start, end)]
    if kind is Parallel:
        out: list[Event] = []
        for inner, value in zip(effect.effects, result, strict=True):
            out.extend(_events(worker, inner, value, start, end))
        return out
    return []  # Spawn, Join: structure, not decisions


def logged(branch: Generator[Any, Any, Any], worker: str, emit: Emit, clock: Clock
           ) -> Generator[Any, Any, Any]:
    """``branch``, with one :class:`Event` emitted per effect it yields.

    The wrapper forwards every effect unchanged (spawned branches are wrapped too) and
    every result back, so a driver steps it exactly as it steps ``branch``. An event's
    ``start`` is the clock when the effect was yielded, ``end`` when its result came back.
    """
    value: Any = None
    while True:
        try:
            effect = branch.send(value)
        except StopIteration as stop:
            return stop.value
        if type(effect) is Spawn:
            effect = Spawn(logged(effect.branch, worker, emit, clock))
        start = clock()
        value = yield effect
        if type(effect) not in (Spawn, Join):
            for ev in _events(worker, effect, value, start, clock()):
                emit(ev)
