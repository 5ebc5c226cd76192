"""HEFT (Heterogeneous Earliest Finish Time) adapted to FaaS workers.

Classic HEFT ranks tasks by *upward rank* — a task's cost plus the costliest path to a
sink, counting communication — and gives each task, highest rank first, to the processor
where it finishes earliest. Here:

* a task's cost is its predicted execution time at the plan's memory size, and the cost of
  an edge is the time to upload the producer's predicted output and download it again
  (storage latency + bytes / the platform's worker bandwidth at that memory), paid only
  when producer and consumer run on different workers;
* processors are planned workers created on demand: a new worker is started by an
  invocation (invocation latency + a start-up) once its first task's inputs are stored;
  the start-up is warm when a worker idle at that time (within keep-alive) can hand its
  sandbox on — each sandbox once — and cold otherwise. Reusing a worker appends the task
  to its timeline. A planned worker runs its tasks in the workflow's topological order,
  so a task is only appended after the worker's last task in that order;
* a task may only join a worker that can reach it by continuation (see
  :meth:`~faasplan.planners.Plan.validate`): a worker holding one of its upstream tasks, a
  worker holding a task that shares a parent with it (fan-out siblings), or, for a root, a
  worker holding roots. Otherwise it gets a new worker;
* workers that may wait for another worker's output while holding a sandbox stay below
  the platform's concurrency limit, the bound under which a run cannot deadlock.

Choosing among those workers (``policy``):

* ``"cost"`` (default): every option is priced by the worker time it adds to the bill —
  for an existing worker, the time from its last task's end to this task's end, idle wait
  for inputs included; for a new worker, its start-up, downloads, execution and the
  per-request fee in worker-time at the platform's prices — plus the uploads a producer
  must make because a consumer runs elsewhere. The cheapest option is taken among those
  that do not lengthen HEFT's projected makespan (a task's finish plus the costliest path
  below it, against the largest such bound so far, never below the earliest finish's).
  So a worker is reused only while its idle wait costs less than a new worker's start-up
  or the critical path needs it, and tasks off the critical path fill the slack of
  workers already paid for instead of opening new ones. The schedule is made within a
  small tolerance of the earliest-finish schedule's makespan and kept only if simulation
  confirms it (:func:`plan_heft`).
* ``"finish"``: classic HEFT, the earliest finish; ties go to an existing worker.
"""

from __future__ import annotations

import heapq
import math
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

    warm_start_ms: float
    keep_alive_s: float
    concurrency_limit: int
    price_per_gb_s: float
    price_per_request: float


def _cost_platform(ctx: PlanningContext) -> CostPlatform:
    platform = ctx.platform
    if not isinstance(platform, CostPlatform):
        raise TypeError(f"heft needs a platform with storage_latency_ms, "
                        f"worker_bandwidth_mb_s(), invocation_ms(), cold and warm starts, "
                        f"keep_alive_s, concurrency_limit and prices (a faasplan.Platform); "
                        f"got {type(platform).__name__}")
    return platform


POLICIES = ("cost", "finish")
"""Values of ``plan_heft(policy=...)``: price-aware choice, or classic earliest finish."""
MAKESPAN_TOLERANCE = 0.015
"""How much longer than the earliest-finish schedule (HEFT's estimate) ``"cost"`` may be."""


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
    # (free time, worker) of workers whose sandbox a new worker may find warm once they
    # end; entries go stale as workers take more tasks. Each sandbox is handed on once.
    idle: list[tuple[float, str]] = field(default_factory=list)
    handed_on: set[str] = field(default_factory=set)
    # Workers with a task after their first that is fed by another worker: they may wait
    # while holding a sandbox.
    waiting: set[str] = field(default_factory=set)

    def place(self, tid: str, index: int, worker: str, finish: float,
              parents: tuple[str, ...]) -> None:
        if worker in self.avail and any(self.worker_of[p] != worker for p in parents):
            self.waiting.add(worker)
        self.worker_of[tid] = worker
        self.finish[tid] = finish
        self.avail[worker] = finish
        self.last_index[worker] = index
        for p in parents:
            if self.worker_of[p] != worker:
                self.stored.add(p)
        for p in parents or ("",):
            self.holders.setdefault(p, {})[worker] = None
        heapq.heappush(self.idle, (finish, worker))

    def warm_donor(self, at: float, keep_alive_ms: float) -> str | None:
        """A worker idle at ``at`` (within keep-alive) whose sandbox is not handed on yet."""
        heap = self.idle
        while heap:
            free, w = heap[0]
            if w in self.handed_on:
                heapq.heappop(heap)
            elif free != self.avail[w]:
                heapq.heapreplace(heap, (self.avail[w], w))  # refresh a stale entry
            else:
                return w if free <= at <= free + keep_alive_ms else None
        return None

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
    """One place for a task: ``worker`` (``None``: a new one), its finish, its price.

    ``donor`` is the worker whose warm sandbox a new worker would take over.
    """

    worker: str | None
    finish: float
    billed: float
    donor: str | None = None
    start_up_ms: float = 0.0


@dataclass(frozen=True)
class _Prices:
    """A new worker's start-up (ms), cold or warm, and what of it is billed: the start
    itself plus the per-request fee, in worker-time at the plan's memory."""

    invocation_ms: float
    cold_ms: float
    warm_ms: float
    fee_ms: float
    keep_alive_ms: float

    @classmethod
    def of(cls, platform: CostPlatform, memory_mb: int) -> _Prices:
        per_ms = platform.price_per_gb_s * (memory_mb / 1024.0) / 1000.0
        fee_ms = platform.price_per_request / per_ms if per_ms > 0 else 0.0
        return cls(platform.invocation_ms(0), platform.cold_start_median_ms(memory_mb),
                   platform.warm_start_ms, fee_ms, platform.keep_alive_s * 1000.0)

    @property
    def start_ms(self) -> float:
        """Invocation to first task of a new worker on a cold sandbox."""
        return self.invocation_ms + self.cold_ms

    def startup(self, warm: bool) -> float:
        return self.warm_ms if warm else self.cold_ms


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


@dataclass(frozen=True)
class HeftSchedule:
    """HEFT's own view of a schedule: where each task runs, its makespan and billed worker
    time (ms, at the SLA's predictions), and how many planned workers it opens."""

    worker_of: dict[str, str]
    makespan_ms: float
    billed_ms: float
    workers: int


def heft_schedule(ctx: PlanningContext, memory_mb: int, policy: str = "finish",
                  target_ms: float = 0.0, one_start_up: bool = False) -> HeftSchedule:
    """One pass of list scheduling (see the module docstring).

    With ``policy="cost"`` a task takes the cheapest option whose finish plus the costliest
    path below it stays within the larger of ``target_ms`` and HEFT's projected makespan;
    with ``one_start_up`` also no later than its earliest finish plus a new worker's
    start-up (trading idle time for a new worker, but not filling slack otherwise).
    Workers that may wait for another worker's output while holding a sandbox stay below
    the platform's concurrency limit (above it a run could deadlock): at the limit, a task
    fed from elsewhere joins only a worker that already waits, or a new one.

    Raises
    ------
    ValueError
        ``policy`` is not one of :data:`POLICIES`.
    """
    if policy not in POLICIES:
        raise ValueError(f"heft: unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    wf = ctx.workflow
    platform = _cost_platform(ctx)
    rank = upward_ranks(ctx, memory_mb)
    comm = edge_costs(ctx, memory_mb)
    prices = _Prices.of(platform, memory_mb)
    may_wait = platform.concurrency_limit - 1
    index = {t: i for i, t in enumerate(wf.topological_order)}
    missing = {t: len(wf.upstream(t)) for t in wf.topological_order}
    ready = [(-rank[t], index[t], t) for t in wf.roots]
    heapq.heapify(ready)
    line = _Timeline()
    # HEFT's projected makespan: the largest finish + costliest path below, so far.
    horizon = max(target_ms, prices.start_ms + max(rank.values(), default=0.0))
    billed = 0.0
    count = 0
    while ready:
        _, i, tid = heapq.heappop(ready)
        parents = wf.upstream(tid)
        exec_ms = ctx.exec_ms(tid, memory_mb)
        options = _options(line, parents, i, exec_ms, comm, prices,
                           new_waiters=len(line.waiting) < may_wait)
        tail = rank[tid] - exec_ms
        # options[0] is the new worker: its start-up is what reusing a worker saves.
        delay = options[0].start_up_ms if one_start_up else math.inf
        best = _choose(options, policy, horizon - tail, delay)
        if best.worker is None:
            worker = f"h{count}"
            count += 1
            if best.donor is not None:
                line.handed_on.add(best.donor)
        else:
            worker = best.worker
        horizon = max(horizon, best.finish + tail)
        billed += best.billed
        line.place(tid, i, worker, best.finish, parents)
        for d in wf.downstream(tid):
            missing[d] -= 1
            if missing[d] == 0:
                heapq.heappush(ready, (-rank[d], index[d], d))
    return HeftSchedule(line.worker_of, max(line.finish.values(), default=0.0), billed, count)


def plan_heft(ctx: PlanningContext, *, memory_mb: int | None = None,
              policy: str = "cost", makespan_tolerance: float = MAKESPAN_TOLERANCE) -> Plan:
    """HEFT list scheduling onto planned workers of ``memory_mb`` (default: the platform's).

    ``policy`` chooses among the workers a task may join (see the module docstring).
    ``"cost"`` schedules by earliest finish, then again for cost, allowed to lengthen that
    schedule's makespan (HEFT's estimate) by ``makespan_tolerance``; then so, but with no
    task later than its earliest finish plus a new worker's start-up; then that without
    lengthening the makespan. The first of those whose simulation is cheaper than the
    earliest-finish schedule's and at most ``1 + makespan_tolerance`` times its SLA
    makespan is kept, else the earliest-finish schedule (HEFT's estimates are single
    values; the simulation sees the spread of execution times). The notes give the
    workers, HEFT's makespan estimate, the worker time it expects to be billed, and which
    schedule was kept.

    Raises
    ------
    ValueError
        ``policy`` is not one of :data:`POLICIES`, or the tolerance is negative.
    """
    if policy not in POLICIES:
        raise ValueError(f"heft: unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if makespan_tolerance < 0:
        raise ValueError(f"heft: makespan_tolerance must be >= 0, got {makespan_tolerance}")
    started = time.perf_counter()
    memory = memory_mb or ctx.platform.default_memory_mb
    fastest = heft_schedule(ctx, memory, "finish")
    chosen, why = fastest, ""
    if policy == "cost":
        chosen, why = _cheaper_schedule(ctx, memory, fastest, makespan_tolerance)
    notes = (f"{chosen.workers} workers of {memory} MB (policy {policy}); HEFT's own makespan "
             f"estimate {chosen.makespan_ms:.1f} ms, billed worker time "
             f"{chosen.billed_ms / 1000:.1f} s{why}",)
    return ctx.finish("heft", _placements(ctx, chosen, memory), started, notes=notes)


def _cheaper_schedule(ctx: PlanningContext, memory_mb: int, fastest: HeftSchedule,
                      tolerance: float) -> tuple[HeftSchedule, str]:
    """The first cost schedule that simulation confirms (see :func:`plan_heft`)."""
    base = None
    tried: dict[tuple[tuple[str, str], ...], None] = {}
    for share, one_start_up in ((1.0, False), (1.0, True), (0.0, True)):
        cheap = heft_schedule(ctx, memory_mb, "cost",
                              fastest.makespan_ms * (1.0 + share * tolerance), one_start_up)
        key = tuple(cheap.worker_of.items())
        if cheap.worker_of == fastest.worker_of or key in tried:
            continue
        tried[key] = None
        base = base if base is not None else ctx.simulate(_placements(ctx, fastest, memory_mb))
        trial = ctx.simulate(_placements(ctx, cheap, memory_mb))
        slower = trial.makespan_ms / base.makespan_ms if base.makespan_ms > 0 else 1.0
        if trial.cost_usd <= base.cost_usd and slower <= 1.0 + tolerance:
            return cheap, (f"; simulated {trial.cost_usd / base.cost_usd:.3f}x the cost and "
                           f"{slower:.3f}x the makespan of earliest finish")
    if base is None:
        return fastest, ""
    return fastest, (f"; kept earliest finish: {len(tried)} cheaper schedules simulated more "
                     f"than {1.0 + tolerance:.3f}x its makespan")


def _placements(ctx: PlanningContext, schedule: HeftSchedule, memory_mb: int
                ) -> dict[str, Placement]:
    return {t: Placement(schedule.worker_of[t], memory_mb)
            for t in ctx.workflow.topological_order}


def _options(line: _Timeline, parents: tuple[str, ...], index: int, exec_ms: float,
             comm: dict[str, float], prices: _Prices, *, new_waiters: bool) -> list[_Option]:
    """A new worker first, then every existing worker the task may join.

    Without ``new_waiters``, a worker that does not wait yet is left out when the task
    would make it wait for an input produced elsewhere.
    """
    def uploads(worker: str | None) -> float:
        # A producer uploads once, when its first consumer runs on another worker.
        return sum(comm[p] / 2.0 for p in parents
                   if p not in line.stored and line.worker_of[p] != worker)

    remote = max((line.finish[p] + comm[p] for p in parents), default=0.0)
    download = max((comm[p] / 2.0 for p in parents), default=0.0)
    invoked = remote - download + prices.invocation_ms
    donor = line.warm_donor(invoked, prices.keep_alive_ms)
    startup = prices.startup(donor is not None)
    options = [_Option(None, remote + prices.invocation_ms + startup + exec_ms,
                       startup + prices.fee_ms + download + exec_ms + uploads(None), donor,
                       prices.invocation_ms + startup)]
    for w in line.candidates(parents, index):
        if not new_waiters and w not in line.waiting and any(
                line.worker_of[p] != w for p in parents):
            continue
        local = max((line.finish[p] + (0.0 if line.worker_of[p] == w else comm[p])
                     for p in parents), default=0.0)
        free = line.avail[w]
        finish = max(free, local) + exec_ms
        options.append(_Option(w, finish, finish - free + uploads(w)))
    return options


def _choose(options: list[_Option], policy: str, latest: float, delay_ms: float) -> _Option:
    """The option ``policy`` prefers; ``latest`` is the finish that keeps the horizon, and
    ``"cost"`` finishes at most ``delay_ms`` after the earliest finish.

    Ties (of finish, then of price) go to an existing worker, and among those to the first.
    """
    def key_finish(o: _Option) -> tuple[float, bool]:
        return (o.finish, o.worker is None)

    fastest = min(options, key=key_finish)
    if policy == "finish":
        return fastest
    limit = max(min(latest, fastest.finish + delay_ms), fastest.finish)
    slack = 1e-9 * max(1.0, abs(limit))
    allowed = [o for o in options if o.finish <= limit + slack]
    return min(allowed, key=lambda o: (o.billed, o.finish, o.worker is None))
