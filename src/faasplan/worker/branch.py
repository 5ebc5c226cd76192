"""The logic one worker runs, written once for the simulator and the runtime.

:func:`execute_branch` is a generator of effect requests (:mod:`faasplan.worker.effects`).
A driver performs each request and sends its result back; nothing here does I/O or reads
a clock. Decisions use only sizes and the plan, never data values.

How a run unfolds
-----------------
* A **planned worker** (``Placement.worker`` set) is invoked once, when its first task
  (its *entry*) becomes ready; it then executes its tasks in topological order, waiting
  for inputs produced elsewhere to be stored.
* A **flexible worker** (``worker=None``) starts at ready root tasks, continues with one
  ready dependent (or all of them with task clustering) and delegates the others to new
  flexible workers.
* An output is uploaded only when some consumer may run on another worker; it is
  uploaded *before* the dependents are tracked, so a dependent made ready always finds
  its inputs. Small outputs travel with the invocations they trigger instead.

How a worker gets the DAG
-------------------------
* **Inline**: the invocation carries the subDAG its worker may run or delegate (below
  ``WorkerOptions.inline_dag_bytes``). Only a sender that holds that subDAG can fill it:
  the client (it holds the whole DAG) or a worker that was itself started inline, since
  the subDAG of anything it delegates lies within its own. The choice depends on the
  target alone (:meth:`RunSpec.inline`), never on which worker happens to send it.
* **By reference**: the worker holds nothing of the DAG at start. Before each task it
  fetches the task's stored parts (its record and its function's code,
  :meth:`RunSpec.task_parts`) that this invocation has not fetched yet, together with
  the task's inputs. Everything it delegates goes by reference too. The bytes fetched
  therefore follow the tasks a worker runs, never the size of the DAG. A driver serves a
  part the same warm sandbox already fetched during the run from that sandbox, with no
  transfer: the fetch is still logged, with 0 bytes.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping, Sequence
from typing import Any, Final

from faasplan.worker.effects import (
    Execute,
    Fetch,
    Invocation,
    Invoke,
    Join,
    Notify,
    Parallel,
    Payload,
    Spawn,
    Store,
    Track,
    WaitFor,
    ready_channel,
    sink_channel,
)
from faasplan.worker.placement import Opt
from faasplan.worker.spec import RunSpec
from faasplan.worker.taskinfo import SpecView, TaskInfo

Branch = Generator[Any, Any, Any]

# The optimizations as plain module constants: reading an enum member off its class costs
# several times as much, and the worker logic asks for them on every task.
_PRELOAD: Final = Opt.PRELOAD
_PREWARM: Final = Opt.PREWARM
_CLUSTER: Final = Opt.CLUSTER
_STREAM: Final = Opt.STREAM
_ASYNC_UPLOAD: Final = Opt.ASYNC_UPLOAD


class _Local:
    """State private to one worker invocation (a plain class: compiled, its initializer
    is compiled too)."""

    __slots__ = ("by_reference", "cache", "delayed", "parts", "pending", "prewarmed",
                 "roots", "spawned", "worker")

    def __init__(self, worker: str | None, roots: frozenset[str], cache: dict[str, Payload],
                 by_reference: bool = False) -> None:
        self.worker = worker
        self.roots = roots
        self.cache = cache
        self.pending: dict[str, Any] = {}
        self.spawned: list[Any] = []
        self.delayed: list[str] = []
        self.prewarmed: set[tuple[str | None, int]] = set()
        self.by_reference = by_reference
        self.parts: set[str] = set()


def execute_branch(spec: RunSpec, invocation: Invocation) -> Branch:
    """Run one worker from ``invocation`` to its end, yielding effect requests.

    Returns when every task the worker owns (planned worker) or reaches by continuation
    (flexible worker) is done and every concurrent upload it spawned has finished.
    """
    if not invocation.roots:  # Invocation.prewarm, read directly
        return
    local = _Local(invocation.worker, frozenset(invocation.roots), dict(invocation.carried),
                   by_reference=not invocation.inline_dag)
    view: SpecView = spec.view
    if invocation.worker is None:
        yield from _run_flexible(view, local, list(invocation.roots))
    else:
        yield from _run_planned(view, local, view.worker_tasks[invocation.worker])
    if local.spawned:
        yield Join(tuple(local.spawned))


def initial_invocations(spec: RunSpec) -> list[Invocation]:
    """The invocations the client sends to start a run: one per ready root entry."""
    invocations = []
    view: SpecView = spec.view
    for tid in spec.order:
        info: TaskInfo = view.tasks[tid]
        if not info.upstream and view.is_entry(tid):
            invocations.append(_invocation_for(view, info, {}))
    return invocations


def dag_parts_stored(spec: RunSpec) -> bool:
    """Whether some invocation of the run may go by reference: the client then stores
    the DAG's parts before the run (and otherwise need not).

    (Conservative: an entry not inline may always be continued instead of invoked.)
    """
    return any(spec.is_entry(t) and not spec.inline(t) for t in spec.order)


def dag_parts(spec: RunSpec) -> dict[str, int]:
    """Every distinct stored DAG part of the run and its size (what the client stores)."""
    if spec.part_sizes or not spec.order:
        return dict(spec.part_sizes)
    out: dict[str, int] = {}  # a spec from a manifest
    for tid in spec.order:
        for key, nbytes in spec.task_parts(tid):
            out.setdefault(key, nbytes)
    return out


def rides_behind_store(effect: Any) -> bool:
    """Whether ``effect``, asked for right after a :class:`Store`, goes to storage behind
    it, in the store's round trip: a :class:`Track`, a :class:`Notify`, or a
    :class:`Parallel` set of tracks. Every driver applies this one rule (compiled with
    the worker logic: the simulator asks it after nearly every store)."""
    kind = type(effect)
    if kind is Track or kind is Notify:
        return True
    return kind is Parallel and bool(effect.effects) and \
        all(type(e) is Track for e in effect.effects)


# -- the two kinds of worker ---------------------------------------------------------------
def _run_planned(spec: SpecView, local: _Local, tasks: tuple[str, ...]) -> Branch:
    for tid in tasks:
        if _PRELOAD in spec.tasks[tid].optimizations:
            yield from _preload(spec, local, tid)
    for tid in tasks:
        info: TaskInfo = spec.tasks[tid]
        out = yield from _run_task(spec, local, info)
        yield from _after_task(spec, local, info, out, local_deps=())


def _run_flexible(spec: SpecView, local: _Local, queue: list[str]) -> Branch:
    # Delayed fan-ins this worker owns wait until all its other work is done, then run in
    # topological order: their other inputs may come from that work, so waiting earlier
    # could deadlock.
    info: TaskInfo
    while queue or local.delayed:
        if queue:
            info = spec.tasks[queue.pop(0)]
        else:
            local.delayed.sort(key=spec.position.__getitem__)
            info = spec.tasks[local.delayed.pop(0)]
            # The fan-in's other inputs are stored.
            yield WaitFor(ready_channel(info.id), task=info.id)
        out = yield from _run_task(spec, local, info)
        local_deps = _planned_local(spec, info)
        more = yield from _after_task(spec, local, info, out, local_deps)
        queue[:0] = more


# -- one task -------------------------------------------------------------------------------
def _run_task(spec: SpecView, local: _Local, info: TaskInfo) -> Branch:
    """Gather inputs (cache, pending pre-loads, storage), then execute."""
    if _PREWARM in info.optimizations:
        yield from _prewarm(spec, local, info)
    wait = not (info.id in local.roots or local.worker is None)
    cache = local.cache
    pending = local.pending
    keys: tuple[str, ...] | list[str] = info.input_keys
    fetches: list[Fetch] = []
    joins: list[tuple[str, Any]] = []
    # Reads of inputs known to exist are the same effects in every run: made once.
    reads: tuple[Fetch, ...] | None = None if wait else spec.input_fetches.get(info.id)
    for i, key in enumerate(keys):
        if key in cache:
            continue
        if key in pending:
            joins.append((key, pending.pop(key)))
        elif reads is not None:
            fetches.append(reads[i])
        else:
            fetches.append(_input_fetch(spec, info.id, info.upstream[i], key, wait=wait))
    if info.literals:
        keys = list(keys)
        fetching = {f.key for f in fetches}
        for key, _size in info.literals:
            keys.append(key)
            if key not in cache and key not in fetching:
                fetching.add(key)
                fetches.append(Fetch(key, task=info.id))
    parts: list[Fetch] = []
    if local.by_reference:
        # The task's record and code, with its inputs (never the whole DAG).
        held = local.parts
        part_fetches: tuple[Fetch, ...] | None = spec.part_fetches.get(info.id)
        if part_fetches is None:  # a spec from a manifest: spec.task_parts, inlined
            part_fetches = tuple([Fetch(key, task=info.id) for key, _ in spec.dag_parts[info.id]])
        for part in part_fetches:
            if part.key not in held:
                held.add(part.key)
                parts.append(part)
    if len(fetches) + len(parts) == 1:
        if fetches:
            cache[fetches[0].key] = yield fetches[0]
        else:
            yield parts[0]
    elif fetches or parts:
        results: Sequence[Any] = yield Parallel((*parts, *fetches))
        _check_results(results, len(parts) + len(fetches))
        first = len(parts)
        for i, f in enumerate(fetches):
            cache[f.key] = results[first + i]
    if joins:
        results = yield Join(tuple([h for _, h in joins]), task=info.id)
        _check_results(results, len(joins))
        for i, (key, _) in enumerate(joins):
            cache[key] = results[i]
    out = yield Execute(info.id, {k: cache[k] for k in keys})
    cache[info.key] = out
    return out


def _check_results(results: Sequence[Any], expected: int) -> None:
    """A driver answers a parallel set or a join with one result per effect or branch."""
    if len(results) != expected:
        raise ValueError(f"the driver answered {expected} effects with {len(results)} "
                         f"results: {results!r}")


def _input_fetch(spec: SpecView, consumer: str, producer: str, key: str, *, wait: bool
                 ) -> Fetch:
    """Read ``key``, the output of ``producer``, for ``consumer``."""
    streamed = wait and _STREAM in spec.tasks[producer].optimizations
    return Fetch(key, consumer, wait, streamed)  # (positional arguments: cheaper)


def _after_task(spec: SpecView, local: _Local, info: TaskInfo, out: Payload,
                local_deps: tuple[str, ...]) -> Branch:
    """Upload if needed, notify dependents, delegate; return tasks to continue with here."""
    delayed = [d for d in info.downstream if spec.delayed_owner.get(d) == info.id] \
        if spec.delayed_owner else []
    if _needs_upload(spec, local, info, out, local_deps, delayed):
        publish = _publish(spec, local, info, out, upload=True)
    else:
        publish = _publish(spec, local, info, out, upload=False)
    if _ASYNC_UPLOAD in info.optimizations:
        local.spawned.append((yield Spawn(_delegate_after(spec, local, publish, local_deps))))
        ready: list[str] = []
    else:
        ready = yield from publish
    if local.worker is not None:
        return []
    continue_here = list(local_deps)
    rest = [d for d in ready if d not in continue_here]
    if _CLUSTER in info.optimizations:
        # Clustering keeps every ready dependent, fan-ins made ready here included: they
        # find this task's (large) output in the local cache instead of fetching it.
        continue_here += rest
        rest = []
    elif rest and not continue_here:
        continue_here.append(rest.pop(0))
    for d in rest:
        yield Invoke(_invocation_for(spec, spec.tasks[d], local.cache))
    local.delayed.extend(delayed)
    return continue_here


def _publish(spec: SpecView, local: _Local, info: TaskInfo, out: Payload, *, upload: bool
             ) -> Branch:
    """Store the output (if needed), then track dependents and start the ready ones.

    Returns the flexible dependents that became ready and that this worker may run or
    delegate; planned-worker entries made ready are invoked here.
    """
    if upload:
        yield Store(info.key, out, info.id, _STREAM in info.optimizations)
    if info.is_sink:
        yield Notify(sink_channel(info.id))
    ready: list[str] = []
    tracks: list[Track] = []
    tasks = spec.tasks
    entries: frozenset[str] = spec.entries
    delayed_owner: Mapping[str, str] = spec.delayed_owner
    # The usual tracks, made once per DagShape.
    made: tuple[Track | None, ...] | None = spec.fan_in_tracks.get(info.id)
    for i, d in enumerate(info.downstream):
        dinfo: TaskInfo = tasks[d]
        if dinfo.worker is not None and dinfo.worker == local.worker:
            continue  # runs later on this very worker
        owner = delayed_owner.get(d) if delayed_owner else None
        if d not in entries or owner == info.id:
            continue  # a planned worker already running waits for the stored key
        if len(dinfo.upstream) == 1:
            ready.append(d)
        else:
            track = made[i] if owner is None and made is not None else None
            if track is None:
                expected = len(dinfo.upstream) - (1 if owner is not None else 0)
                track = Track(d, info.id, expected)
            tracks.append(track)
    if tracks:
        results: Sequence[Any] = (yield Parallel(tuple(tracks))) if len(tracks) > 1 \
            else [(yield tracks[0])]
        _check_results(results, len(tracks))
        for i, track in enumerate(tracks):
            if not results[i]:
                continue
            if spec.delayed_owner.get(track.task) is not None:
                yield Notify(ready_channel(track.task))
            else:
                ready.append(track.task)
    flexible: list[str] = []
    for d in ready:
        dinfo = tasks[d]
        if dinfo.worker is None and local.worker is None:
            flexible.append(d)
        else:
            yield Invoke(_invocation_for(spec, dinfo, local.cache))
    return flexible


def _delegate_after(spec: SpecView, local: _Local, publish: Branch, keep: tuple[str, ...]
                    ) -> Branch:
    """Concurrent publishing: dependents it makes ready are delegated, not continued."""
    ready = yield from publish
    for d in ready:
        if d not in keep:
            yield Invoke(_invocation_for(spec, spec.tasks[d], local.cache))


def _needs_upload(spec: SpecView, local: _Local, info: TaskInfo, out: Payload,
                  local_deps: tuple[str, ...], delayed: list[str]) -> bool:
    if info.is_sink:
        return True
    small = out.nbytes <= spec.carry_bytes
    for d in info.downstream:
        dinfo: TaskInfo = spec.tasks[d]
        if d in local_deps or d in delayed:
            continue
        if dinfo.worker is not None and dinfo.worker == local.worker:
            continue
        single = len(dinfo.upstream) == 1
        if single and small and d in spec.entries:
            continue  # travels inside the invocation that starts it
        return True
    return False


def _planned_local(spec: SpecView, info: TaskInfo) -> tuple[str, ...]:
    """Flexible dependents certain to be ready that a flexible worker keeps for itself."""
    if info.worker is not None:
        return ()
    tasks = spec.tasks
    if _CLUSTER in info.optimizations:
        return tuple(d for d in info.downstream
                     if len(tasks[d].upstream) == 1 and tasks[d].worker is None)
    for d in info.downstream:  # without clustering, the first of them
        dinfo: TaskInfo = tasks[d]
        if len(dinfo.upstream) == 1 and dinfo.worker is None:
            return (d,)
    return ()


def _invocation_for(spec: SpecView, info: TaskInfo, cache: dict[str, Payload]) -> Invocation:
    carry = spec.carry_bytes
    carried = {}
    for key in info.input_keys:
        p = cache.get(key)
        if p is not None and p.nbytes <= carry:
            carried[key] = p
    worker = info.worker
    # Inline, the invocation carries everything the worker may run or delegate: the
    # subDAG below its root, or for a planned worker the subDAGs below all of its tasks;
    # every possible sender holds it (RunSpec.inline). Otherwise the worker fetches the
    # parts of each task it runs.
    # (spec.subdag_nbytes, spec.worker_dag_nbytes and spec.inline, read directly.)
    size = spec.subdag_sizes[info.id] if worker is None else spec.worker_dag_sizes[worker]
    inline = info.id in spec.inline_entries
    return Invocation(worker, info.memory_mb, (info.id,), inline, size, carried)


# -- optimization hooks -----------------------------------------------------------------
def _preload(spec: SpecView, local: _Local, tid: str) -> Branch:
    """Spawn one background fetch per input that another worker will produce."""
    info: TaskInfo = spec.tasks[tid]
    for up, key in zip(info.upstream, info.input_keys, strict=True):
        if spec.tasks[up].worker == local.worker or key in local.pending:
            continue
        if key in local.cache:
            continue
        fetch = _input_fetch(spec, tid, up, key, wait=True)
        local.pending[key] = yield Spawn(_single(fetch))


def _single(effect: Any) -> Branch:
    result = yield effect
    return result


def _prewarm(spec: SpecView, local: _Local, info: TaskInfo) -> Branch:
    """Invoke empty workers for the downstream workers this task will start.

    Never for work this worker continues with itself: the dependents a flexible worker
    keeps (:func:`_planned_local`) and the fan-ins whose delayed I/O it owns.
    """
    keep = set(_planned_local(spec, info))
    deps = [d for d in info.downstream
            if d not in keep and spec.delayed_owner.get(d) != info.id]
    for target, memory in _downstream_workers(spec, local, deps):
        if (target, memory) in local.prewarmed:
            continue
        local.prewarmed.add((target, memory))
        yield Invoke(Invocation(None, memory, ()))


def _downstream_workers(spec: SpecView, local: _Local, deps: Iterable[str]
                        ) -> list[tuple[str | None, int]]:
    out: list[tuple[str | None, int]] = []
    for d in deps:
        p: TaskInfo = spec.tasks[d]
        if p.worker is not None and p.worker == local.worker:
            continue
        if spec.is_entry(d):
            out.append((p.worker if p.worker is not None else d, p.memory_mb))
    return out
