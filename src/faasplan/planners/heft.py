"""HEFT (Heterogeneous Earliest Finish Time) adapted to FaaS workers.

Classic HEFT ranks tasks by *upward rank* — a task's cost plus the costliest path to a
sink, counting communication — and gives each task, highest rank first, to the processor
where it finishes earliest. Here:

* a task's cost is its predicted execution time at the plan's memory size, and the cost of
  an edge is the time to upload the producer's predicted output and download it again
  (storage latency + bytes / the platform's worker bandwidth at that memory), paid only
  when producer and consumer run on different workers;
* processors are planned workers created on demand: a new worker is started by an
  invocation (invocation latency + a cold start) once its first task's inputs are stored;
  reusing a worker appends the task to its timeline. A planned worker runs its tasks in
  the workflow's topological order, so a task is only appended after the worker's last
  task in that order;
* a task may only join a worker that can reach it by continuation (see
  :meth:`~faasplan.planners.Plan.validate`): a worker holding one of its upstream tasks, a
  worker holding a task that shares a parent with it (fan-out siblings), or, for a root, a
  worker holding roots. Otherwise it gets a new worker.

Ties of finish time go to an existing worker (one cold start and one invocation fewer).
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from faasplan.planners.context import PlanningContext
from faasplan.planners.plan import Plan
from faasplan.worker import Placement


@runtime_checkable
class CostPlatform(Protocol):
    """What HEFT reads from the platform besides memory sizes (:class:`faasplan.Platform`)."""

    storage_latency_ms: float

    def worker_bandwidth_mb_s(self, memory_mb: float) -> float: ...

    def invocation_ms(self, nbytes: int) -> float: ...

    def cold_start_median_ms(self, memory_mb: float) -> float: ...


def _cost_platform(ctx: PlanningContext) -> CostPlatform:
    platform = ctx.platform
    if not isinstance(platform, CostPlatform):
        raise TypeError(f"heft needs a platform with storage_latency_ms, "
                        f"worker_bandwidth_mb_s(), invocation_ms() and cold_start_median_ms() "
                        f"(a faasplan.Platform); got {type(platform).__name__}")
    return platform


MAX_STALE_PEEKS = 16
"""Sibling workers a task inspects in one parent's queue before giving up on that parent."""


@dataclass
class _Timeline:
    """Workers built so far: when each is free and where tasks finished."""

    avail: dict[str, float] = field(default_factory=dict)
    last_index: dict[str, int] = field(default_factory=dict)
    worker_of: dict[str, str] = field(default_factory=dict)
    finish: dict[str, float] = field(default_factory=dict)
    # Per parent task (and "" for roots): heap of (free time, worker) of workers holding
    # one of its children; entries go stale as workers take more tasks.
    holders: dict[str, list[tuple[float, str]]] = field(default_factory=dict)

    def place(self, tid: str, index: int, worker: str, finish: float,
              parents: tuple[str, ...]) -> None:
        self.worker_of[tid] = worker
        self.finish[tid] = finish
        self.avail[worker] = finish
        self.last_index[worker] = index
        for p in parents or ("",):
            heapq.heappush(self.holders.setdefault(p, []), (finish, worker))

    def earliest_holder(self, parent: str, index: int) -> str | None:
        """Least busy worker holding a child of ``parent`` that may still append ``index``."""
        heap = self.holders.get(parent)
        if not heap:
            return None
        aside: list[tuple[float, str]] = []
        found = None
        for _ in range(MAX_STALE_PEEKS):
            if not heap:
                break
            free, w = heapq.heappop(heap)
            if free != self.avail[w]:
                heapq.heappush(heap, (self.avail[w], w))  # refresh a stale entry
                continue
            aside.append((free, w))
            if self.last_index[w] < index:
                found = w
                break
        for entry in aside:
            heapq.heappush(heap, entry)
        return found


def upward_ranks(ctx: PlanningContext, memory_mb: int) -> dict[str, float]:
    """HEFT upward rank of every task: its cost plus the costliest path to a sink."""
    wf = ctx.workflow
    comm = _edge_costs(ctx, memory_mb)
    rank: dict[str, float] = {}
    for tid in reversed(wf.topological_order):
        below = max((rank[d] for d in wf.downstream(tid)), default=None)
        tail = 0.0 if below is None else comm[tid] + below
        rank[tid] = ctx.exec_ms(tid, memory_mb) + tail
    return rank


def _edge_costs(ctx: PlanningContext, memory_mb: int) -> dict[str, float]:
    """Per producer: upload + download time of its predicted output between two workers."""
    platform = _cost_platform(ctx)
    bytes_per_ms = platform.worker_bandwidth_mb_s(memory_mb) * 1e3
    latency = platform.storage_latency_ms
    out = ctx.estimates.output_bytes
    return {t: 2.0 * (latency + out[t] / bytes_per_ms) for t in ctx.workflow.topological_order}


def plan_heft(ctx: PlanningContext, *, memory_mb: int | None = None) -> Plan:
    """HEFT list scheduling onto planned workers of ``memory_mb`` (default: the platform's).

    Returns a plan whose notes give the number of workers and HEFT's own makespan
    estimate; the plan's predicted trace comes from the simulator as for every planner.
    """
    started = time.perf_counter()
    wf = ctx.workflow
    memory = memory_mb or ctx.platform.default_memory_mb
    rank = upward_ranks(ctx, memory)
    comm = _edge_costs(ctx, memory)
    platform = _cost_platform(ctx)
    start_new = platform.invocation_ms(0) + platform.cold_start_median_ms(memory)
    index = {t: i for i, t in enumerate(wf.topological_order)}
    waiting = {t: len(wf.upstream(t)) for t in wf.topological_order}
    ready = [(-rank[t], index[t], t) for t in wf.roots]
    heapq.heapify(ready)
    line = _Timeline()
    count = 0
    while ready:
        _, i, tid = heapq.heappop(ready)
        parents = wf.upstream(tid)
        remote = max((line.finish[p] + comm[p] for p in parents), default=0.0)
        best_finish = remote + start_new + ctx.exec_ms(tid, memory)
        best_worker: str | None = None
        for w in _candidates(line, parents, i):
            local = max((line.finish[p] + (0.0 if line.worker_of[p] == w else comm[p])
                         for p in parents), default=0.0)
            finish = max(line.avail[w], local) + ctx.exec_ms(tid, memory)
            if finish <= best_finish:
                best_finish, best_worker = finish, w
        if best_worker is None:
            best_worker = f"h{count}"
            count += 1
        line.place(tid, i, best_worker, best_finish, parents)
        for d in wf.downstream(tid):
            waiting[d] -= 1
            if waiting[d] == 0:
                heapq.heappush(ready, (-rank[d], index[d], d))
    placements = {t: Placement(line.worker_of[t], memory) for t in wf.topological_order}
    estimate = max(line.finish.values(), default=0.0)
    notes = (f"{count} workers of {memory} MB; HEFT's own makespan estimate {estimate:.1f} ms",)
    return ctx.finish("heft", placements, started, notes=notes)


def _candidates(line: _Timeline, parents: tuple[str, ...], index: int) -> list[str]:
    """Workers that may take the task by continuation, in a deterministic order."""
    found: dict[str, None] = {}
    for p in parents:
        w = line.worker_of[p]
        if line.last_index[w] < index:
            found[w] = None
    for p in parents or ("",):
        w2 = line.earliest_holder(p, index)
        if w2 is not None:
            found[w2] = None
    return list(found)
