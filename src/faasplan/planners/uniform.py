"""Uniform planner: planned worker ids by locality heuristics, one memory size for all.

Worker assignment, in topological order:

* a root starts a new worker;
* a task whose only upstream has only it as dependent (1 -> 1) stays on that worker;
* a fan-out's single-input dependents are grouped: tasks at or below the group's median
  predicted execution time are *short*; up to 3 shorts with the largest outputs stay on
  the origin worker; each remaining long task takes up to 2 shorts to a new worker; the
  remaining shorts go in groups of 3; longs left over go alone;
* a fan-in goes to the worker holding most of its input bytes.

``uniform-opt`` adds pre-load (fetch remote inputs as soon as they exist) and pre-warm
(warm the containers of the downstream workers this task starts).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

from faasplan.planners.context import PlanningContext
from faasplan.planners.plan import Plan
from faasplan.worker import Opt, Placement

STAY_ON_ORIGIN = 3
SHORTS_PER_LONG = 2
SHORTS_PER_WORKER = 3


def assign_workers(ctx: PlanningContext, memory_mb: int) -> dict[str, str]:
    """Task id -> worker id by the heuristics of this module's docstring."""
    wf = ctx.workflow
    out = ctx.estimates.output_bytes
    worker_of: dict[str, str] = {}
    count = 0

    def new_worker() -> str:
        nonlocal count
        count += 1
        return f"w{count - 1}"

    for tid in wf.topological_order:
        if tid in worker_of:
            continue
        ups = wf.upstream(tid)
        if not ups:
            worker_of[tid] = new_worker()
        elif len(ups) > 1:
            held: dict[str, float] = {}
            for u in ups:
                held[worker_of[u]] = held.get(worker_of[u], 0.0) + out[u]
            worker_of[tid] = max(held, key=lambda w: held[w])
        elif len(wf.downstream(ups[0])) == 1:
            worker_of[tid] = worker_of[ups[0]]
        else:
            origin = ups[0]
            group = [d for d in wf.downstream(origin)
                     if len(wf.upstream(d)) == 1 and d not in worker_of]
            _assign_fan_out(ctx, memory_mb, worker_of[origin], group, worker_of, new_worker)
    return worker_of


def _assign_fan_out(ctx: PlanningContext, memory_mb: int, origin_worker: str, group: list[str],
                    worker_of: dict[str, str], new_worker: Callable[[], str]) -> None:
    out = ctx.estimates.output_bytes
    times = {t: ctx.exec_ms(t, memory_mb) for t in group}
    median = statistics.median(times.values())
    shorts = sorted((t for t in group if times[t] <= median), key=lambda t: -out[t])
    longs = sorted((t for t in group if times[t] > median), key=lambda t: -times[t])
    for t in shorts[:STAY_ON_ORIGIN]:
        worker_of[t] = origin_worker
    shorts = shorts[STAY_ON_ORIGIN:]
    for t in longs:
        w = new_worker()
        worker_of[t] = w
        for s in shorts[:SHORTS_PER_LONG]:
            worker_of[s] = w
        shorts = shorts[SHORTS_PER_LONG:]
    for i in range(0, len(shorts), SHORTS_PER_WORKER):
        w = new_worker()
        for s in shorts[i:i + SHORTS_PER_WORKER]:
            worker_of[s] = w


def optimize_preload_prewarm(ctx: PlanningContext, worker_of: Mapping[str, str],
                             memory_of: Mapping[str, int]) -> dict[str, Placement]:
    """Placements with pre-load on tasks with remote inputs and pre-warm on their starters."""
    wf = ctx.workflow
    first: dict[str, str] = {}
    for tid in wf.topological_order:
        first.setdefault(worker_of[tid], tid)
    placements = {}
    for tid in wf.topological_order:
        w = worker_of[tid]
        opts: set[Opt] = set()
        if first[w] != tid and any(worker_of[u] != w for u in wf.upstream(tid)):
            opts.add(Opt.PRELOAD)
        if any(worker_of[d] != w and first[worker_of[d]] == d for d in wf.downstream(tid)):
            opts.add(Opt.PREWARM)
        placements[tid] = Placement(w, memory_of[w], frozenset(opts))
    return placements


def plan_uniform(ctx: PlanningContext, *, memory_mb: int | None = None) -> Plan:
    """Uniform plan: heuristic worker ids, ``memory_mb`` (default: the platform's) for all."""
    started = time.perf_counter()
    memory = memory_mb or ctx.platform.default_memory_mb
    worker_of = assign_workers(ctx, memory)
    placements = {t: Placement(w, memory) for t, w in worker_of.items()}
    return ctx.finish("uniform", placements, started)


def plan_uniform_opt(ctx: PlanningContext, *, memory_mb: int | None = None) -> Plan:
    """Uniform plan with pre-load and pre-warm."""
    started = time.perf_counter()
    memory = memory_mb or ctx.platform.default_memory_mb
    worker_of = assign_workers(ctx, memory)
    placements = optimize_preload_prewarm(ctx, worker_of, dict.fromkeys(worker_of.values(), memory))
    return ctx.finish("uniform-opt", placements, started)
