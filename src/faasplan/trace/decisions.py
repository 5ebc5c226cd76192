"""Per-task decisions of a run, derived from its decision log by one function.

:func:`decisions` reads nothing but the log (:mod:`faasplan.worker.log`), so it gives the
same answer for the in-memory reference, the simulator and the runtime whenever their
worker logic decided the same. What may legitimately differ between two correct drivers
is named once, in :data:`TIMING_DEPENDENT`, with the reason, and :func:`raced_tasks` says
for which tasks of a plan.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from faasplan.worker.effects import is_dag_part
from faasplan.worker.log import Event
from faasplan.worker.spec import RunSpec

DECISION_COLUMNS: tuple[str, ...] = ("task", "worker", "startup", "output", "fetched",
                                     "literals", "subdag")
"""``worker``: label of the invocation that executed the task. ``startup``: ``cold`` or
``warm`` for the first task of an invocation, else ``none``. ``output``: ``streamed``,
``stored``, ``carried`` (sent inside an invocation) or ``local`` (never left the worker).
``fetched``: upstream tasks whose outputs it downloaded, sorted and comma-joined.
``literals``: large literal arguments it downloaded. ``subdag``: for the task an
invocation was started with, ``inline`` or ``ref`` (the worker fetches the stored parts
of the tasks it runs); empty for tasks a running worker continued with."""

TIMING_DEPENDENT: dict[str, str] = {
    "startup": "whether a warm sandbox is free when an invocation arrives depends on when "
               "earlier invocations ended; only the real clock or the models decide it",
    "worker": "of a raced task (raced_tasks): the fan-in runs on whichever worker records "
              "its last input, and a flexible worker continues with it there",
    "subdag": "of a raced task: it is started by an invocation in one run and continued "
              "by a running worker in another",
    "fetched": "of a raced task or of a fan-in started by an invocation: which inputs a "
               "worker holds, or sends along, depends on which upstream finished last",
}
"""Decision fields that two correct drivers may disagree on, and why."""


def decisions(log: Iterable[Event]) -> pd.DataFrame:
    """One row per executed task (columns :data:`DECISION_COLUMNS`), sorted by task id.

    Raises
    ------
    ValueError
        A task was executed more than once: the log belongs to a broken run.
    """
    events = list(log)
    executed: dict[str, str] = {}
    first_of: dict[str, str] = {}   # worker label -> its first executed task
    started: dict[str, str] = {}    # worker label -> cold/warm
    subdag: dict[str, str] = {}     # root task -> inline/ref
    stored: dict[str, str] = {}
    carried: set[str] = set()
    fetched: dict[str, set[str]] = {}
    literals: dict[str, set[str]] = {}
    for ev in events:
        kind = ev.kind
        if kind == "execute" and ev.task is not None:
            if ev.task in executed:
                raise ValueError(f"task {ev.task!r} executed twice (by {executed[ev.task]!r} "
                                 f"and {ev.worker!r})")
            executed[ev.task] = ev.worker
            first_of.setdefault(ev.worker, ev.task)
        elif kind == "start":
            started[ev.worker] = ev.info
        elif kind == "invoke" and ev.task is not None and ev.info != "prewarm":
            subdag[ev.task] = ev.info
        elif kind == "store" and ev.key is not None and ev.key.startswith("out:"):
            stored[ev.key[4:]] = "streamed" if ev.info == "stream" else "stored"
        elif kind == "carry" and ev.key is not None:
            carried.add(ev.key[4:])
        elif kind == "fetch" and ev.task is not None and ev.key is not None \
                and not is_dag_part(ev.key):
            if ev.key.startswith("out:"):
                fetched.setdefault(ev.task, set()).add(ev.key[4:])
            else:
                literals.setdefault(ev.task, set()).add(ev.key)
    rows = []
    for tid in sorted(executed):
        worker = executed[tid]
        startup = started.get(worker, "none") if first_of[worker] == tid else "none"
        output = stored.get(tid) or ("carried" if tid in carried else "local")
        rows.append((tid, worker, startup, output, ",".join(sorted(fetched.get(tid, ()))),
                     ",".join(sorted(literals.get(tid, ()))),
                     subdag.get(tid, "") if first_of[worker] == tid else ""))
    return pd.DataFrame(rows, columns=list(DECISION_COLUMNS))


def raced_tasks(spec: RunSpec) -> tuple[frozenset[str], frozenset[str]]:
    """Tasks whose worker, and tasks whose fetched inputs, depend on timing.

    Returns ``(raced, fetch_raced)``. ``raced``: flexible fan-ins (no delayed-I/O owner
    decides them) and the flexible tasks a worker continues with after one. Their
    ``worker`` and ``subdag`` are in :data:`TIMING_DEPENDENT`. ``fetch_raced``: those,
    their dependents, and every fan-in entry that an invocation starts, whose ``fetched``
    depends on which input arrived last.
    """
    raced: set[str] = set()
    for tid in spec.order:
        info = spec.tasks[tid]
        if info.placement.worker is not None:
            continue
        fan_in = len(info.upstream) > 1 and tid not in spec.delayed_owner
        if fan_in or any(u in raced for u in info.upstream):
            raced.add(tid)
    fetch_raced = set(raced)
    for tid in spec.order:
        info = spec.tasks[tid]
        if any(u in raced for u in info.upstream):
            fetch_raced.add(tid)
        if len(info.upstream) > 1 and spec.is_entry(tid):
            fetch_raced.add(tid)
    return frozenset(raced), frozenset(fetch_raced)


def dag_bytes(log: Iterable[Event], spec: RunSpec) -> tuple[int, int]:
    """DAG bytes of a run from its log: ``(requested, transferred)``.

    ``requested``: the stored size of every DAG part a worker asked for (the same in
    every driver whenever the same tasks ran on the same invocations); ``transferred``:
    what actually moved, which is less when a warm sandbox already held a part
    (timing-dependent, as ``startup`` is). Inline subDAGs travel inside invocations and
    are not counted here.
    """
    sizes = {key: n for tid in spec.order for key, n in spec.task_parts(tid)}
    requested = transferred = 0
    for ev in log:
        if ev.kind == "fetch" and ev.key is not None and is_dag_part(ev.key):
            requested += sizes.get(ev.key, ev.nbytes)
            transferred += ev.nbytes
    return requested, transferred
