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
  the platform's concurrency limit, the bound under which a run cannot deadlock;
* at most :func:`antichain_width` workers are opened (the most tasks that can ever run at
  once). Once that many exist, a task joins an existing worker: by appending it, or, when
  every worker that may reach it has already moved past it in topological order, by
  inserting it into such a worker's sequence at its place in that order (as
  insertion-based HEFT does; the later tasks of that worker shift when the task does not
  fit in an idle gap). Where continuation leaves tasks waiting for the few workers allowed
  to take them (a DAG with sinks in every layer), the workers instead run their tasks in
  the order HEFT starts them (the plan's ``worker_orders``), and at the bound any worker
  may take a later task: HEFT on ``width`` processors. The bound is dropped only when
  neither keeps the makespan (see :func:`plan_heft`).

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
  confirms it (:func:`plan_heft`). HEFT's times are SLA-level values, under which inputs
  from several workers arrive together; in a run a worker's own tasks usually end
  earlier than that while the latest of several inputs made elsewhere still comes late.
  Schedules made with ``risk`` therefore also bill an existing worker for that likely
  wait: from when it is free at typical (mean) execution times until the inputs made
  elsewhere are in at the SLA level. A gather of many uncertain branches then gets a
  worker started once its inputs exist instead of one that idles until the slowest
  branch is done.
* ``"finish"``: classic HEFT, the earliest finish; ties go to an existing worker.
"""

from __future__ import annotations

import bisect
import heapq
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow

from faasplan.planners.context import PlanningContext
from faasplan.planners.plan import OrderedPlacements, Plan
from faasplan.worker import Placement
from faasplan.workflow import Workflow


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
BOUND_HOPELESS = 0.10
"""The width bound is dropped without simulating it when HEFT's own estimate of the
bounded earliest-finish makespan is this much (relative) above the unbounded one's."""
EXHAUSTIVE_TASKS = 300
"""Up to this many tasks (where a simulation is cheap), ``"cost"`` simulates every
candidate schedule, one priced with the likely wait included, and keeps the cheapest."""


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
    # end; entries go stale as workers take more tasks (every change of a worker's free
    # time pushes the new one). Each sandbox is handed on once.
    idle: list[tuple[float, str]] = field(default_factory=list)
    handed_on: set[str] = field(default_factory=set)
    # Workers with a task after their first that is fed by another worker: they may wait
    # while holding a sandbox.
    waiting: set[str] = field(default_factory=set)
    # Per worker: its tasks' topological indices and ids, in that (its running) order; per
    # task: when its inputs are in on its worker, and its execution time.
    seq_index: dict[str, list[int]] = field(default_factory=dict)
    seq_tasks: dict[str, list[str]] = field(default_factory=dict)
    ready_at: dict[str, float] = field(default_factory=dict)
    exec_of: dict[str, float] = field(default_factory=dict)
    # The same timeline at typical (mean) execution times: when each worker is likely free
    # and each task likely done. A worker whose own tasks run faster than at the SLA level
    # waits longer for inputs made elsewhere.
    avail_lo: dict[str, float] = field(default_factory=dict)
    finish_lo: dict[str, float] = field(default_factory=dict)
    # Ordered workers (``heft_schedule(ordered=True)``): each runs its tasks in the order
    # they are placed, always appended; ``by_avail`` is every worker as (free time,
    # worker), sorted.
    ordered: bool = False
    by_avail: list[tuple[float, str]] = field(default_factory=list)

    def place(self, tid: str, index: int, worker: str, finish: float,
              parents: tuple[str, ...], ready: float, exec_ms: float,
              start_lo: float, exec_lo: float) -> None:
        """Append ``tid`` to ``worker`` (new or existing), or insert it in its sequence when
        the worker has tasks later in topological order; those then start no earlier than
        ``tid``'s finish. ``start_lo`` and ``exec_lo`` are its start and execution time at
        typical execution times. Ordered workers always append."""
        if worker in self.avail and any(self.worker_of[p] != worker for p in parents):
            self.waiting.add(worker)
        self.worker_of[tid] = worker
        self.finish[tid] = finish
        self.ready_at[tid] = ready
        self.exec_of[tid] = exec_ms
        self.finish_lo[tid] = start_lo + exec_lo
        indices = self.seq_index.setdefault(worker, [])
        tasks = self.seq_tasks.setdefault(worker, [])
        if self.ordered:
            k = len(tasks)
            old = self.avail.get(worker)
            if old is not None:
                del self.by_avail[bisect.bisect_left(self.by_avail, (old, worker))]
            bisect.insort(self.by_avail, (finish, worker))
        else:
            k = bisect.bisect_left(indices, index)
        indices.insert(k, index)
        tasks.insert(k, tid)
        if k + 1 < len(tasks):
            self._shift(tasks, k)
            self.avail_lo[worker] = max(self.avail_lo[worker], self.finish_lo[tid])
        else:
            self.avail[worker] = finish
            self.avail_lo[worker] = self.finish_lo[tid]
            self.last_index[worker] = index
        for p in parents:
            if self.worker_of[p] != worker:
                self.stored.add(p)
        for p in parents or ("",):
            self.holders.setdefault(p, {})[worker] = None
        heapq.heappush(self.idle, (self.avail[worker], worker))

    def _shift(self, tasks: list[str], k: int) -> None:
        """Re-time the tasks after position ``k`` of one worker's sequence."""
        free = self.finish[tasks[k]]
        for u in tasks[k + 1:]:
            end = max(free, self.ready_at[u]) + self.exec_of[u]
            if end <= self.finish[u]:
                break  # it fits in the gap: nothing later moves
            self.finish[u] = free = end
        last = tasks[-1]
        self.avail[self.worker_of[last]] = self.finish[last]

    def insertion_slot(self, worker: str, index: int) -> tuple[int, float, float]:
        """(position, previous task's finish or -inf when first, next task's start) of a
        task of topological ``index`` in ``worker``'s sequence."""
        indices = self.seq_index[worker]
        k = bisect.bisect_left(indices, index)
        tasks = self.seq_tasks[worker]
        after = tasks[k] if k < len(tasks) else None
        start = math.inf if after is None else self.finish[after] - self.exec_of[after]
        return k, (self.finish[tasks[k - 1]] if k > 0 else -math.inf), start

    def still_continues(self, wf: Workflow, worker: str, tid: str) -> bool:
        """Whether ``worker``'s first task may follow ``tid`` by continuation (a root after
        a root, or a task sharing a parent with ``tid`` or with another task there)."""
        first = self.seq_tasks[worker][0]
        ups = wf.upstream(first)
        if not ups:
            return not wf.upstream(tid)
        mine = {tid, *self.seq_tasks[worker]}
        return any(c != first and c in mine for u in ups for c in wf.downstream(u))

    def warm_donor(self, at: float, keep_alive_ms: float) -> str | None:
        """A worker idle at ``at`` (within keep-alive) whose sandbox is not handed on yet."""
        heap = self.idle
        while heap:
            free, w = heap[0]
            if w in self.handed_on or free != self.avail[w]:
                # Handed on, or stale: ``place`` pushed the worker's current free time.
                heapq.heappop(heap)
            else:
                return w if free <= at <= free + keep_alive_ms else None
        return None

    def candidates(self, parents: tuple[str, ...], index: int, *, behind: bool = False
                   ) -> list[str]:
        """Workers that may take the task by continuation, in a deterministic order.

        A worker holding an upstream task, a fan-out sibling, or (for a root) a root —
        and whose last task comes before ``index`` in topological order (with ``behind``:
        those whose last task comes after it instead, to insert the task into). Ordered
        workers append in any topological order: all of them, and none with ``behind``.
        """
        found: dict[str, None] = {}
        for p in parents:
            found[self.worker_of[p]] = None
        for p in parents or ("",):
            found.update(self.holders.get(p, {}))
        if self.ordered:
            return [] if behind else list(found)
        return [w for w in found if (self.last_index[w] > index) == behind]

    def around(self, at: float, exclude: list[str]) -> list[str]:
        """Ordered workers only: the worker that became free last at or before ``at`` (the
        shortest idle wait) and the first one free after it, leaving out ``exclude``."""
        line = self.by_avail
        k = bisect.bisect_right(line, (at, "\U0010ffff"))
        out = []
        for step, start in ((-1, k - 1), (1, k)):
            j = start
            while 0 <= j < len(line) and line[j][1] in exclude:
                j += step
            if 0 <= j < len(line):
                out.append(line[j][1])
        return out


@dataclass(slots=True)
class _Option:
    """One place for a task: ``worker`` (``None``: a new one), its finish, its price.

    ``donor`` is the worker whose warm sandbox a new worker would take over; ``ready``
    when the task's inputs are in on that worker.
    """

    worker: str | None
    finish: float
    billed: float
    donor: str | None = None
    start_up_ms: float = 0.0
    ready: float = 0.0
    # For a task inserted before a worker's later tasks: how much it delays them (``finish``
    # includes it, so choices see it).
    delay_ms: float = 0.0
    # When the task starts at typical execution times, and how much longer than at the
    # SLA level the worker is likely to wait for inputs made elsewhere.
    start_lo: float = 0.0
    risk_ms: float = 0.0

    def price(self, risk: bool) -> float:
        """Billed worker time (ms) of this option, with the likely extra wait if ``risk``."""
        return self.billed + self.risk_ms if risk else self.billed


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


def antichain_width(workflow: Workflow) -> int:
    """The DAG's width: the most tasks no two of which depend on each other, at least 1.

    No schedule runs more tasks at once. By Dilworth's theorem it equals the fewest chains
    (paths that may skip over tasks) covering every task, computed exactly as ``n`` minus a
    maximum flow: from the sink side through every edge, with vertex capacities that let a
    chain pass through a task already covered (``O(edges)`` memory; no transitive closure).

    >>> from faasplan.workloads import tree_reduction
    >>> antichain_width(tree_reduction(leaves=8))
    8
    """
    order = workflow.topological_order
    n = len(order)
    if n <= 1:
        return 1
    at = {t: i for i, t in enumerate(order)}
    # Vertices: task i entering (i) and leaving (n + i), source 2n, sink 2n + 1. One unit
    # from the sink to a task's exit ends its chain there; one unit from a task's entry to
    # the source starts a chain there; a unit along an edge joins the two chains.
    source, sink = 2 * n, 2 * n + 1
    rows: list[int] = []
    cols: list[int] = []
    caps: list[int] = []
    for t in order:
        i = at[t]
        rows += [sink, i, i]
        cols += [n + i, n + i, source]
        caps += [1, n, 1]
        for d in workflow.downstream(t):
            rows.append(n + i)
            cols.append(at[d])
            caps.append(n)
    graph = csr_matrix((np.asarray(caps, dtype=np.int32), (rows, cols)),
                       shape=(2 * n + 2, 2 * n + 2))
    merged = int(maximum_flow(graph, sink, source, method="dinic").flow_value)
    return max(1, n - merged)


def upward_ranks(ctx: PlanningContext, memory_mb: int,
                 comm: dict[str, float] | None = None) -> dict[str, float]:
    """HEFT upward rank of every task: its cost plus the costliest path to a sink
    (``comm``: :func:`edge_costs`, when known already)."""
    wf = ctx.workflow
    comm = comm if comm is not None else edge_costs(ctx, memory_mb)
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
    # Per worker, the order it runs its tasks in, when the schedule made one
    # (``heft_schedule(ordered=True)``); otherwise workers run in topological order.
    orders: dict[str, tuple[str, ...]] | None = None


def heft_schedule(ctx: PlanningContext, memory_mb: int, policy: str = "finish",
                  target_ms: float = 0.0, one_start_up: bool = False,
                  max_workers: int | None = None, risk: bool = False,
                  inputs: HeftInputs | None = None, ordered: bool = False) -> HeftSchedule:
    """One pass of list scheduling (see the module docstring).

    With ``policy="cost"`` a task takes the cheapest option whose finish plus the costliest
    path below it stays within the larger of ``target_ms`` and HEFT's projected makespan;
    with ``one_start_up`` also no later than its earliest finish plus a new worker's
    start-up (trading idle time for a new worker, but not filling slack otherwise).
    Workers that may wait for another worker's output while holding a sandbox stay below
    the platform's concurrency limit (above it a run could deadlock): at the limit, a task
    fed from elsewhere joins only a worker that already waits, or a new one.
    Once ``max_workers`` workers exist (``None``: no bound), a task joins one of them,
    appended or inserted at its place in topological order. With ``risk`` (``"cost"``
    only), joining an existing worker is priced by the wait it is likely to have: the
    worker free as early as its tasks typically end, inputs made elsewhere as late as the
    SLA level. ``inputs`` are :func:`heft_inputs` of ``ctx`` and ``memory_mb`` when known
    already (several passes on one workflow share them).

    With ``ordered``, each worker runs its tasks in the order they are placed (the
    schedule's ``orders``), which is the order of their planned starts, so a task is
    always appended. Until ``max_workers`` workers exist a task still joins only a worker
    that reaches it by continuation; after that, also the worker free last before its
    inputs are in (the shortest idle wait) or the first one free after that, whatever
    it holds: HEFT on ``max_workers`` processors. Every wait is then for a task placed
    earlier, so the orders cannot make workers wait for each other in a cycle.

    Raises
    ------
    ValueError
        ``policy`` is not one of :data:`POLICIES`, or ``max_workers`` is below 1.
    """
    if policy not in POLICIES:
        raise ValueError(f"heft: unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if max_workers is not None and max_workers < 1:
        raise ValueError(f"heft: max_workers must be >= 1, got {max_workers}")
    wf = ctx.workflow
    got = inputs if inputs is not None else heft_inputs(ctx, memory_mb)
    rank, comm, exec_of, index, prices = got.rank, got.comm, got.exec_ms, got.index, got.prices
    may_wait = got.concurrency_limit - 1
    cap = math.inf if max_workers is None else max_workers
    risk = risk and policy == "cost"
    # Without ``risk`` nothing prices the typical timeline: it is the SLA one.
    typical = got.typical(ctx) if risk else None
    missing = {t: len(wf.upstream(t)) for t in wf.topological_order}
    ready = [(-rank[t], index[t], t) for t in wf.roots]
    heapq.heapify(ready)
    line = _Timeline(ordered=ordered)
    # HEFT's projected makespan: the largest finish + costliest path below, so far.
    horizon = max(target_ms, prices.start_ms + max(rank.values(), default=0.0))
    billed = 0.0
    count = 0
    while ready:
        _, i, tid = heapq.heappop(ready)
        parents = wf.upstream(tid)
        exec_ms = exec_of[tid]
        new_waiters = len(line.waiting) < may_wait
        options = _options(line, parents, i, exec_ms, comm, prices, new_waiters=new_waiters,
                           risk=risk)
        # options[0] is the new worker: its start-up is what reusing a worker saves.
        delay = options[0].start_up_ms if one_start_up else math.inf
        if count >= cap:
            if ordered:
                joined = options[1:] + _anywhere(line, parents, exec_ms, comm, options,
                                                 new_waiters=new_waiters)
            else:
                joined = options[1:] + _insertions(wf, line, tid, i, exec_ms, comm,
                                                   options[0], new_waiters=new_waiters)
            options = joined or options
        tail = rank[tid] - exec_ms
        best = _choose(options, policy, horizon - tail, delay, risk)
        if best.worker is None:
            worker = f"h{count}"
            count += 1
            if best.donor is not None:
                line.handed_on.add(best.donor)
        else:
            worker = best.worker
        horizon = max(horizon, best.finish + tail)
        billed += best.billed
        line.place(tid, i, worker, best.finish - best.delay_ms, parents, best.ready, exec_ms,
                   best.start_lo, exec_ms if typical is None else typical[tid])
        for d in wf.downstream(tid):
            missing[d] -= 1
            if missing[d] == 0:
                heapq.heappush(ready, (-rank[d], index[d], d))
    orders = ({w: tuple(ts) for w, ts in line.seq_tasks.items()} if ordered else None)
    return HeftSchedule(line.worker_of, max(line.finish.values(), default=0.0), billed, count,
                        orders)


@dataclass
class HeftInputs:
    """What every pass of :func:`heft_schedule` on one workflow and memory size reads:
    upward ranks, edge costs and execution times (ms), topological indices, prices."""

    memory_mb: int
    rank: dict[str, float]
    comm: dict[str, float]
    exec_ms: dict[str, float]
    index: dict[str, int]
    prices: _Prices
    concurrency_limit: int
    _typical: dict[str, float] | None = None

    def typical(self, ctx: PlanningContext) -> dict[str, float]:
        """:func:`typical_exec_ms` of ``ctx`` at this memory size (computed once)."""
        if self._typical is None:
            self._typical = typical_exec_ms(ctx, self.memory_mb)
        return self._typical


def heft_inputs(ctx: PlanningContext, memory_mb: int) -> HeftInputs:
    """The :class:`HeftInputs` of ``ctx`` at ``memory_mb``."""
    platform = _cost_platform(ctx)
    order = ctx.workflow.topological_order
    comm = edge_costs(ctx, memory_mb)
    return HeftInputs(memory_mb, upward_ranks(ctx, memory_mb, comm), comm,
                      {t: ctx.exec_ms(t, memory_mb) for t in order},
                      {t: i for i, t in enumerate(order)}, _Prices.of(platform, memory_mb),
                      platform.concurrency_limit)


def typical_exec_ms(ctx: PlanningContext, memory_mb: int) -> dict[str, float]:
    """Every task's predicted mean execution time (ms) at ``memory_mb``, never above its
    SLA-level time (the same values when the SLA is ``"average"``)."""
    wf = ctx.workflow
    if ctx.sla == "average":
        return {t: ctx.exec_ms(t, memory_mb) for t in wf.topological_order}
    inputs = ctx.estimates.input_bytes
    out: dict[str, float] = {}
    for t in wf.topological_order:
        mean = float(ctx.predictor.execution_ms(wf.node(t).func.name, inputs[t], memory_mb,
                                                sla="average"))
        out[t] = min(mean, ctx.exec_ms(t, memory_mb))
    return out


def plan_heft(ctx: PlanningContext, *, memory_mb: int | None = None,
              policy: str = "cost", makespan_tolerance: float = MAKESPAN_TOLERANCE,
              max_workers: int | None = None) -> Plan:
    """HEFT list scheduling onto planned workers of ``memory_mb`` (default: the platform's),
    at most ``max_workers`` of them (never more than the DAG's :func:`antichain_width`).

    Without ``max_workers``, the bound is the width whenever it keeps the makespan: the
    earliest-finish schedule bounded to the width is kept only if its simulated SLA
    makespan is within ``1 + makespan_tolerance`` of the unbounded one's. A planned worker
    may only take tasks it reaches by continuation, so a bound can leave tasks waiting for
    the few workers allowed to take them; then the bounded schedule is made again with
    ordered workers (``heft_schedule(ordered=True)``: each runs its tasks in HEFT's start
    order and any may take a later task), and kept under the same test. When neither
    holds, the plan is unbounded and the notes say by how much each bound would have
    slowed it. A bound whose makespan by HEFT's own estimate is already more than
    :data:`BOUND_HOPELESS` above the unbounded one's is not simulated. The cost schedules
    are made under the bound and kind of worker kept. With ``max_workers``, the bound
    ``min(max_workers, width)`` always holds: by continuation, or with ordered workers
    when HEFT's estimate puts them more than ``makespan_tolerance`` ahead and the
    simulation confirms they are faster.

    ``policy`` chooses among the workers a task may join (see the module docstring).
    ``"cost"`` schedules by earliest finish, then again for cost, allowed to lengthen that
    schedule's makespan (HEFT's estimate) by ``makespan_tolerance``; then so, but with no
    task later than its earliest finish plus a new worker's start-up; then that without
    lengthening the makespan. A candidate is confirmed when its simulation is cheaper than
    the earliest-finish schedule's and at most ``1 + makespan_tolerance`` times its SLA
    makespan (HEFT's estimates are single values; the simulation sees the spread of
    execution times). Up to :data:`EXHAUSTIVE_TASKS` tasks, the first is also made with
    existing workers priced by their likely wait (``heft_schedule(risk=True)``), every
    candidate is simulated and the cheapest confirmed one is kept. On larger workflows
    the first confirmed one is kept, in that order. Without a confirmed candidate the
    earliest-finish schedule is kept. The notes give the workers, HEFT's makespan
    estimate, the worker time it expects to be billed, and which schedule was kept.

    Raises
    ------
    ValueError
        ``policy`` is not one of :data:`POLICIES`, the tolerance is negative, or
        ``max_workers`` is below 1.
    """
    if policy not in POLICIES:
        raise ValueError(f"heft: unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if makespan_tolerance < 0:
        raise ValueError(f"heft: makespan_tolerance must be >= 0, got {makespan_tolerance}")
    if max_workers is not None and max_workers < 1:
        raise ValueError(f"heft: max_workers must be >= 1, got {max_workers}")
    started = time.perf_counter()
    memory = memory_mb or ctx.platform.default_memory_mb
    width = antichain_width(ctx.workflow)
    inputs = heft_inputs(ctx, memory)
    fastest, cap, ordered, base, bound = _bounded_fastest(ctx, inputs, width, max_workers,
                                                          makespan_tolerance)
    chosen, why = fastest, ""
    if policy == "cost":
        chosen, why = _cheaper_schedule(ctx, inputs, fastest, makespan_tolerance, cap, base,
                                        ordered)
    notes = (f"{chosen.workers} workers of {memory} MB (policy {policy}; {bound}); HEFT's "
             f"own makespan estimate {chosen.makespan_ms:.1f} ms, billed worker time "
             f"{chosen.billed_ms / 1000:.1f} s{why}",)
    return ctx.finish("heft", _placements(ctx, chosen, memory), started, notes=notes)


def _bounded_fastest(ctx: PlanningContext, inputs: HeftInputs, width: int,
                     max_workers: int | None, tolerance: float
                     ) -> tuple[HeftSchedule, int | None, bool, Any, str]:
    """The earliest-finish schedule under the bound :func:`plan_heft` settles on: (schedule,
    bound or ``None``, whether its workers are ordered, its simulated trace if one was
    needed, a note on the bound)."""
    memory_mb = inputs.memory_mb
    if max_workers is not None:
        cap = min(max_workers, width)
        note = f"at most {cap}, the DAG's width is {width}"
        plain = heft_schedule(ctx, memory_mb, "finish", max_workers=cap, inputs=inputs)
        in_order = heft_schedule(ctx, memory_mb, "finish", max_workers=cap, inputs=inputs,
                                ordered=True)
        if in_order.makespan_ms >= plain.makespan_ms * (1.0 - tolerance):
            return plain, cap, False, None, note
        # HEFT expects ordered workers to be clearly faster: the simulation decides.
        base = ctx.simulate(_placements(ctx, plain, memory_mb))
        trial = ctx.simulate(_placements(ctx, in_order, memory_mb))
        if trial.makespan_ms < base.makespan_ms:
            return in_order, cap, True, trial, f"{note}; workers in HEFT's start order"
        return plain, cap, False, base, note
    free = heft_schedule(ctx, memory_mb, "finish", inputs=inputs)
    if free.workers <= width:
        return free, width, False, None, f"at most {width}, the DAG's width"
    base = None
    missed = []
    for ordered in (False, True):
        bounded = heft_schedule(ctx, memory_mb, "finish", max_workers=width, inputs=inputs,
                                ordered=ordered)
        kind = "ordered" if ordered else "by continuation"
        estimated = bounded.makespan_ms / free.makespan_ms if free.makespan_ms > 0 else 1.0
        if estimated > 1.0 + BOUND_HOPELESS:
            missed.append(f"{kind} estimated {estimated:.3f}x the makespan")
            continue
        # The bounded schedule is simulated last: if kept, its final score reuses these.
        base = base if base is not None else ctx.simulate(_placements(ctx, free, memory_mb))
        trial = ctx.simulate(_placements(ctx, bounded, memory_mb))
        slower = trial.makespan_ms / base.makespan_ms if base.makespan_ms > 0 else 1.0
        if slower <= 1.0 + tolerance:
            how = "; workers in HEFT's start order" if ordered else ""
            return bounded, width, ordered, trial, f"at most {width}, the DAG's width{how}"
        missed.append(f"{kind} simulated {slower:.3f}x the makespan")
    return (free, None, False, base,
            f"unbounded: at most {width} workers, the DAG's width, {', '.join(missed)}")


def _cheaper_schedule(ctx: PlanningContext, inputs: HeftInputs, fastest: HeftSchedule,
                      tolerance: float, cap: int | None, base: Any = None,
                      ordered: bool = False) -> tuple[HeftSchedule, str]:
    """The cost schedule that simulation confirms (see :func:`plan_heft`); ``base`` is
    ``fastest``'s simulated trace when it is known already; ``ordered`` as in
    :func:`heft_schedule`."""
    memory_mb = inputs.memory_mb
    small = len(ctx.workflow) <= EXHAUSTIVE_TASKS
    variants = [(False, share, one_start_up)
                for share, one_start_up in ((1.0, False), (1.0, True), (0.0, True))]
    if small:
        # Slack filling again, existing workers priced with their likely wait.
        variants.insert(0, (True, 1.0, False))
    tried: dict[Any, None] = {}
    best: tuple[float, HeftSchedule, str] | None = None
    for risk, share, one_start_up in variants:
        cheap = heft_schedule(ctx, memory_mb, "cost",
                              fastest.makespan_ms * (1.0 + share * tolerance), one_start_up,
                              max_workers=cap, risk=risk, inputs=inputs, ordered=ordered)
        key = (tuple(cheap.worker_of.items()), tuple((cheap.orders or {}).items()))
        if ((cheap.worker_of == fastest.worker_of and cheap.orders == fastest.orders)
                or key in tried):
            continue
        tried[key] = None
        base = base if base is not None else ctx.simulate(_placements(ctx, fastest, memory_mb))
        trial = ctx.simulate(_placements(ctx, cheap, memory_mb))
        slower = trial.makespan_ms / base.makespan_ms if base.makespan_ms > 0 else 1.0
        if trial.cost_usd <= base.cost_usd and slower <= 1.0 + tolerance:
            why = (f"; simulated {trial.cost_usd / base.cost_usd:.3f}x the cost and "
                   f"{slower:.3f}x the makespan of earliest finish")
            if not small:
                return cheap, why
            if best is None or trial.cost_usd < best[0]:
                best = (trial.cost_usd, cheap, why)
    if best is not None:
        return best[1], f"{best[2]} (the cheapest of {len(tried)})"
    if not tried:
        return fastest, ""
    return fastest, (f"; kept earliest finish: {len(tried)} cheaper schedules simulated more "
                     f"than {1.0 + tolerance:.3f}x its makespan")


def _placements(ctx: PlanningContext, schedule: HeftSchedule, memory_mb: int
                ) -> Mapping[str, Placement]:
    placements = {t: Placement(schedule.worker_of[t], memory_mb)
                  for t in ctx.workflow.topological_order}
    if schedule.orders:
        return OrderedPlacements(placements, schedule.orders)
    return placements


def _options(line: _Timeline, parents: tuple[str, ...], index: int, exec_ms: float,
             comm: dict[str, float], prices: _Prices, *, new_waiters: bool,
             risk: bool = False) -> list[_Option]:
    """A new worker first, then every existing worker the task may join.

    Without ``new_waiters``, a worker that does not wait yet is left out when the task
    would make it wait for an input produced elsewhere. With ``risk``, an existing
    worker's ``risk_ms`` is the wait it is likely to have beyond its wait at the SLA level:
    from when it is typically free (its own tasks at typical execution times) until the
    inputs made elsewhere are in at the SLA level.
    """
    finish_of, worker_of, stored = line.finish, line.worker_of, line.stored
    # Per input: its finish, transfer time (upload + download), worker, whether stored.
    inputs = [(finish_of[p], comm[p], worker_of[p], p in stored) for p in parents]
    remote = max((f + c for f, c, _, _ in inputs), default=0.0)
    download = max((c for _, c, _, _ in inputs), default=0.0) / 2.0
    invoked = remote - download + prices.invocation_ms
    donor = line.warm_donor(invoked, prices.keep_alive_ms)
    startup = prices.startup(donor is not None)
    start = remote + prices.invocation_ms + startup
    start_lo = start
    lows: list[float] = []
    if risk:
        lows = [line.finish_lo[p] for p in parents]
        remote_lo = max((lo + c for lo, (_, c, _, _) in zip(lows, inputs, strict=True)),
                        default=0.0)
        start_lo = remote_lo + prices.invocation_ms + startup
    uploads = sum(c for _, c, _, s in inputs if not s) / 2.0
    options = [_Option(None, start + exec_ms,
                       startup + prices.fee_ms + download + exec_ms + uploads, donor,
                       prices.invocation_ms + startup, start, start_lo=start_lo)]
    waiting = line.waiting
    avail = line.avail
    for w in line.candidates(parents, index):
        if (not new_waiters and w not in waiting
                and any(wp != w for _, _, wp, _ in inputs)):
            continue
        local = max((f if wp == w else f + c for f, c, wp, _ in inputs), default=0.0)
        free = avail[w]
        finish = (free if free > local else local) + exec_ms
        uploads = sum(c for _, c, wp, s in inputs if not s and wp != w) / 2.0
        option = _Option(w, finish, finish - free + uploads, ready=local)
        if risk:
            free_lo = line.avail_lo[w]
            mixed = max((lo if wp == w else f + c
                         for lo, (f, c, wp, _) in zip(lows, inputs, strict=True)), default=0.0)
            local_lo = max((lo if wp == w else lo + c
                            for lo, (_, c, wp, _) in zip(lows, inputs, strict=True)), default=0.0)
            option.start_lo = max(free_lo, local_lo)
            option.risk_ms = max(0.0, mixed - free_lo - max(0.0, local - free))
        else:
            option.start_lo = finish - exec_ms
        options.append(option)
    return options


def _insertions(wf: Workflow, line: _Timeline, tid: str, index: int, exec_ms: float,
                comm: dict[str, float], fresh: _Option, *, new_waiters: bool) -> list[_Option]:
    """Every worker that may reach the task by continuation but has tasks after it in
    topological order: the task inserted in its sequence, priced by the delay it causes.

    Inserted first, the task starts as ``fresh`` (a new worker) would, and the worker's
    old first task must still be reachable by continuation.
    """
    parents = wf.upstream(tid)
    options = []
    for w in line.candidates(parents, index, behind=True):
        if not new_waiters and _would_wait(line, parents, w):
            continue
        k, free, next_start = line.insertion_slot(w, index)
        if k == 0:
            if not line.still_continues(wf, w, tid):
                continue
            local, finish, start_lo = fresh.ready, fresh.finish, fresh.start_lo
        else:
            local = _local_ready(line, parents, comm, w)
            finish = max(free, local) + exec_ms
            before = line.finish_lo[line.seq_tasks[w][k - 1]]
            start_lo = max(before, _local_ready_lo(line, parents, comm, w))
        delay = max(0.0, finish - next_start)
        # Filling an idle gap adds nothing to the bill; a shift adds the delay.
        options.append(_Option(w, finish + delay, delay + _uploads(line, parents, comm, w),
                               ready=local, delay_ms=delay, start_lo=start_lo))
    return options


def _anywhere(line: _Timeline, parents: tuple[str, ...], exec_ms: float,
              comm: dict[str, float], options: list[_Option], *, new_waiters: bool
              ) -> list[_Option]:
    """Ordered workers at the bound: besides the workers ``options`` has already, the one
    free last before the task's inputs could be in anywhere, and the first free after it,
    each priced by its idle wait and the uploads it adds."""
    have = [o.worker for o in options if o.worker is not None]
    remote = max((line.finish[p] + comm[p] for p in parents), default=0.0)
    out = []
    for w in line.around(remote, have):
        if not new_waiters and _would_wait(line, parents, w):
            continue
        free = line.avail[w]
        local = _local_ready(line, parents, comm, w)
        finish = max(free, local) + exec_ms
        start_lo = max(line.avail_lo[w], _local_ready_lo(line, parents, comm, w))
        out.append(_Option(w, finish, finish - free + _uploads(line, parents, comm, w),
                           ready=local, start_lo=start_lo))
    return out


def _uploads(line: _Timeline, parents: tuple[str, ...], comm: dict[str, float],
             worker: str | None) -> float:
    """Uploads the task's placement adds: a producer uploads once, when its first consumer
    runs on another worker."""
    return sum(comm[p] / 2.0 for p in parents
               if p not in line.stored and line.worker_of[p] != worker)


def _local_ready(line: _Timeline, parents: tuple[str, ...], comm: dict[str, float],
                 worker: str) -> float:
    """When the task's inputs are in on ``worker``."""
    return max((line.finish[p] + (0.0 if line.worker_of[p] == worker else comm[p])
                for p in parents), default=0.0)


def _local_ready_lo(line: _Timeline, parents: tuple[str, ...], comm: dict[str, float],
                    worker: str) -> float:
    """When the task's inputs are in on ``worker`` at typical execution times."""
    return max((line.finish_lo[p] + (0.0 if line.worker_of[p] == worker else comm[p])
                for p in parents), default=0.0)


def _would_wait(line: _Timeline, parents: tuple[str, ...], worker: str) -> bool:
    """Whether the task would make ``worker``, not waiting yet, wait for another worker."""
    return worker not in line.waiting and any(line.worker_of[p] != worker for p in parents)


def _choose(options: list[_Option], policy: str, latest: float, delay_ms: float,
            risk: bool = False) -> _Option:
    """The option ``policy`` prefers; ``latest`` is the finish that keeps the horizon, and
    ``"cost"`` finishes at most ``delay_ms`` after the earliest finish, pricing the likely
    extra wait of existing workers if ``risk``.

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
    return min(allowed, key=lambda o: (o.price(risk), o.finish, o.worker is None))
