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

Choosing among those workers (``policy``):

* ``"cost"`` (default): every option is priced by the worker time it adds to the bill —
  for an existing worker, the time from its last task's end to this task's end, idle wait
  for inputs included; for a new worker, its cold start, downloads, execution and the
  per-request fee in worker-time at the platform's prices — plus the uploads a producer
  must make because a consumer runs elsewhere. The cheapest option is taken among those
  that do not lengthen HEFT's projected makespan (a task's finish plus the costliest path
  below it, against the largest such bound so far, never below the earliest finish's).
  So a worker is reused only while its idle wait costs less than a new worker's start-up
  or the critical path needs it, and tasks off the critical path fill the slack of
  workers already paid for instead of opening new ones.
* ``"finish"``: classic HEFT, the earliest finish; ties go to an existing worker.
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

    price_per_gb_s: float
    price_per_request: float


def _cost_platform(ctx: PlanningContext) -> CostPlatform:
    platform = ctx.platform
    if not isinstance(platform, CostPlatform):
        raise TypeError(f"heft needs a platform with storage_latency_ms, "
                        f"worker_bandwidth_mb_s(), invocation_ms(), cold_start_median_ms() and "
                        f"prices (a faasplan.Platform); got {type(platform).__name__}")
    return platform


POLICIES = ("cost", "finish")
"""Values of ``plan_heft(policy=...)``: price-aware choice, or classic earliest finish."""


@dataclass
class _Timeline:
    """Workers built so far: when each is free and where tasks finished."""

    avail: dict[str, float] = field(default_factory=dict)
    last_index: dict[str, int] = field(default_factory=dict)
    worker_of: dict[str, str] = field(default_factory=dict)
    finish: dict[str, float] = field(default_factory=dict)
    # Per parent task ("" for roots): the workers holding one of its children, in the
    # order they got one.
    holders: dict[str, dict[str, None]] = field(default_factory=dict)
    # Tasks whose output some consumer already reads from storage.
    stored: set[str] = field(default_factory=set)

    def place(self, tid: str, index: int, worker: str, finish: float,
              parents: tuple[str, ...]) -> None:
        self.worker_of[tid] = worker
        self.finish[tid] = finish
        self.avail[worker] = finish
        self.last_index[worker] = index
        for p in parents:
            if self.worker_of[p] != worker:
                self.stored.add(p)
        for p in parents or ("",):
            self.holders.setdefault(p, {})[worker] = None

    def candidates(self, parents: tuple[str, ...], index: int) -> list[str]:
        """Workers that may take the task by continuation, in a deterministic order.

        A worker holding an upstream task, a fan-out sibling, or (for a root) a root —
        and whose last task comes before ``index`` in topological order.
        """
        found: dict[str, None] = {}
        for p in parents:
            found[self.worker_of[p]] = None
        for p in parents or ("",):
            found.update(self.holders.get(p, {}))
        return [w for w in found if self.last_index[w] < index]


@dataclass(frozen=True)
class _Option:
    """One place for a task: ``worker`` (``None``: a new one), its finish, its price."""

    worker: str | None
    finish: float
    billed: float


@dataclass(frozen=True)
class _Prices:
    """A new worker's start-up, and its billed part in worker-time (ms)."""

    start_ms: float
    billed_start_ms: float

    @classmethod
    def of(cls, platform: CostPlatform, memory_mb: int) -> _Prices:
        cold = platform.cold_start_median_ms(memory_mb)
        per_ms = platform.price_per_gb_s * (memory_mb / 1024.0) / 1000.0
        fee_ms = platform.price_per_request / per_ms if per_ms > 0 else 0.0
        return cls(platform.invocation_ms(0) + cold, cold + fee_ms)


def upward_ranks(ctx: PlanningContext, memory_mb: int) -> dict[str, float]:
    """HEFT upward rank of every task: its cost plus the costliest path to a sink."""
    wf = ctx.workflow
    comm = edge_costs(ctx, memory_mb)
    rank: dict[str, float] = {}
    for tid in reversed(wf.topological_order):
        below = max((rank[d] for d in wf.downstream(tid)), default=None)
        tail = 0.0 if below is None else comm[tid] + below
        rank[tid] = ctx.exec_ms(tid, memory_mb) + tail
    return rank


def edge_costs(ctx: PlanningContext, memory_mb: int) -> dict[str, float]:
    """Per producer: upload + download time (ms) of its predicted output between two workers
    of ``memory_mb``."""
    platform = _cost_platform(ctx)
    bytes_per_ms = platform.worker_bandwidth_mb_s(memory_mb) * 1e3
    latency = platform.storage_latency_ms
    out = ctx.estimates.output_bytes
    return {t: 2.0 * (latency + out[t] / bytes_per_ms) for t in ctx.workflow.topological_order}


def plan_heft(ctx: PlanningContext, *, memory_mb: int | None = None,
              policy: str = "cost") -> Plan:
    """HEFT list scheduling onto planned workers of ``memory_mb`` (default: the platform's).

    ``policy`` chooses among the workers a task may join (see the module docstring):
    ``"cost"`` (default) or ``"finish"``. Returns a plan whose notes give the number of
    workers, the worker time HEFT expects to be billed and its own makespan estimate; the
    plan's predicted trace comes from the simulator as for every planner.

    Raises
    ------
    ValueError
        ``policy`` is not one of :data:`POLICIES`.
    """
    if policy not in POLICIES:
        raise ValueError(f"heft: unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    started = time.perf_counter()
    wf = ctx.workflow
    memory = memory_mb or ctx.platform.default_memory_mb
    rank = upward_ranks(ctx, memory)
    comm = edge_costs(ctx, memory)
    prices = _Prices.of(_cost_platform(ctx), memory)
    index = {t: i for i, t in enumerate(wf.topological_order)}
    waiting = {t: len(wf.upstream(t)) for t in wf.topological_order}
    ready = [(-rank[t], index[t], t) for t in wf.roots]
    heapq.heapify(ready)
    line = _Timeline()
    # HEFT's projected makespan: the largest finish + costliest path below, so far.
    horizon = prices.start_ms + max(rank.values(), default=0.0)
    billed = 0.0
    count = 0
    while ready:
        _, i, tid = heapq.heappop(ready)
        exec_ms = ctx.exec_ms(tid, memory)
        options = _options(line, wf.upstream(tid), i, exec_ms, comm, prices)
        tail = rank[tid] - exec_ms
        best = _choose(options, policy, horizon - tail)
        if best.worker is None:
            worker = f"h{count}"
            count += 1
        else:
            worker = best.worker
        horizon = max(horizon, best.finish + tail)
        billed += best.billed
        line.place(tid, i, worker, best.finish, wf.upstream(tid))
        for d in wf.downstream(tid):
            waiting[d] -= 1
            if waiting[d] == 0:
                heapq.heappush(ready, (-rank[d], index[d], d))
    placements = {t: Placement(line.worker_of[t], memory) for t in wf.topological_order}
    estimate = max(line.finish.values(), default=0.0)
    notes = (f"{count} workers of {memory} MB (policy {policy}); HEFT's own makespan estimate "
             f"{estimate:.1f} ms, billed worker time {billed / 1000:.1f} s",)
    return ctx.finish("heft", placements, started, notes=notes)


def _options(line: _Timeline, parents: tuple[str, ...], index: int, exec_ms: float,
             comm: dict[str, float], prices: _Prices) -> list[_Option]:
    """A new worker first, then every existing worker the task may join."""
    def uploads(worker: str | None) -> float:
        # A producer uploads once, when its first consumer runs on another worker.
        return sum(comm[p] / 2.0 for p in parents
                   if p not in line.stored and line.worker_of[p] != worker)

    remote = max((line.finish[p] + comm[p] for p in parents), default=0.0)
    download = max((comm[p] / 2.0 for p in parents), default=0.0)
    options = [_Option(None, remote + prices.start_ms + exec_ms,
                       prices.billed_start_ms + download + exec_ms + uploads(None))]
    for w in line.candidates(parents, index):
        local = max((line.finish[p] + (0.0 if line.worker_of[p] == w else comm[p])
                     for p in parents), default=0.0)
        free = line.avail[w]
        finish = max(free, local) + exec_ms
        options.append(_Option(w, finish, finish - free + uploads(w)))
    return options


def _choose(options: list[_Option], policy: str, latest: float) -> _Option:
    """The option ``policy`` prefers; ``latest`` is the finish that keeps the horizon.

    Ties (of finish, then of price) go to an existing worker, and among those to the first.
    """
    def key_finish(o: _Option) -> tuple[float, bool]:
        return (o.finish, o.worker is None)

    fastest = min(options, key=key_finish)
    if policy == "finish":
        return fastest
    limit = max(latest, fastest.finish)
    slack = 1e-9 * max(1.0, abs(limit))
    allowed = [o for o in options if o.finish <= limit + slack]
    return min(allowed, key=lambda o: (o.billed, o.finish, o.worker is None))
