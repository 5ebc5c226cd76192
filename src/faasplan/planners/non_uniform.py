"""Non-uniform planner: uniform workers, memory lowered where it does not cost time.

Start from the uniform worker assignment with the largest memory size everywhere, then
lower the memory of workers off the critical path of the predicted trace, one size at a
time, keeping a change only if the predicted makespan at the SLA does not grow.

Trying one worker at a time would take one simulation per worker and size, so workers are
tried in groups: all candidates at once first, and a group whose change makes the makespan
grow is split in two halves that are tried separately (a bisection that isolates the
workers that matter). A time budget and a cap on simulations bound the search; when either
runs out the best plan found so far is kept.

The result is never predicted slower than the ``uniform`` plan: that plan is simulated too
and returned instead (with a note) if it is predicted faster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from faasplan.planners.context import PlanningContext
from faasplan.planners.plan import Plan
from faasplan.planners.uniform import assign_workers, optimize_preload_prewarm
from faasplan.worker import Placement
from faasplan.workflow import Workflow

DEFAULT_MAX_EVALUATIONS = 48
"""Simulations the downgrade search may run (besides the start plan and the baseline)."""

SECONDS_PER_TASK = 1.5e-3
"""Default time budget per task of the workflow (at least :data:`MIN_BUDGET_S`)."""

MIN_BUDGET_S = 0.5

Build = Callable[[Mapping[str, int]], dict[str, Placement]]


def default_budget_s(n_tasks: int) -> float:
    """Default planning time budget for a workflow of ``n_tasks`` tasks."""
    return max(MIN_BUDGET_S, SECONDS_PER_TASK * n_tasks)


def critical_tasks(workflow: Workflow, trace: Any) -> list[str]:
    """Tasks on the critical path of a (predicted) trace, from a root to the last task.

    Walks back from the task that ends last; at each step, among the task's upstream
    tasks (by when their output became available) and the task run just before it on
    the same worker (by when that worker was done with it), the latest is the one that
    held it up.
    """
    df = trace.tasks
    tasks = [str(t) for t in df["task"]]
    end = dict(zip(tasks, (float(x) for x in df["end_ms"]), strict=True))
    if not end:
        return []
    ready = dict(zip(tasks, (float(x) for x in df["completion_ms"]), strict=True))
    before: dict[str, str] = {}
    ordered = df.sort_values(["worker", "start_ms"], kind="stable")
    last: dict[Any, str] = {}
    for tid, worker in zip(ordered["task"], ordered["worker"], strict=True):
        prev = last.get(worker)
        if prev is not None:
            before[str(tid)] = prev
        last[worker] = str(tid)
    cur = max(end, key=end.__getitem__)
    path = [cur]
    seen = {cur}
    while True:
        held: dict[str, float] = {u: ready[u] for u in workflow.upstream(cur)
                                  if u in ready and u not in seen}
        prev = before.get(cur)
        if prev is not None and prev not in seen:
            held[prev] = max(held.get(prev, 0.0), end[prev])
        if not held:
            break
        cur = max(held, key=held.__getitem__)
        seen.add(cur)
        path.append(cur)
    return path[::-1]


@dataclass
class _Search:
    """State of one downgrade search: budget accounting and the best plan so far."""

    ctx: PlanningContext
    build: Build
    started: float
    budget_s: float
    max_evaluations: int
    memory_of: dict[str, int]
    trace: Any
    reference_ms: float
    evaluations: int = 0
    spent_s: float = 0.0
    exhausted: bool = field(default=False)

    def can_evaluate(self) -> bool:
        mean = self.spent_s / (self.evaluations + 1)
        elapsed = time.perf_counter() - self.started
        ok = self.evaluations < self.max_evaluations and elapsed + mean <= self.budget_s
        self.exhausted = self.exhausted or not ok
        return ok

    def try_lower(self, workers: list[str], sizes: tuple[int, ...]) -> bool:
        """Lower ``workers`` one size; keep the change if the makespan does not grow."""
        trial = dict(self.memory_of)
        for w in workers:
            trial[w] = sizes[sizes.index(trial[w]) - 1]
        t0 = time.perf_counter()
        trace = self.ctx.simulate(self.build(trial))
        self.spent_s += time.perf_counter() - t0
        self.evaluations += 1
        if float(trace.makespan_ms) <= self.reference_ms * (1.0 + 1e-9) + 1e-9:
            self.memory_of, self.trace = trial, trace
            return True
        return False


def downgrade(ctx: PlanningContext, worker_of: Mapping[str, str], build: Build, *,
              started: float, budget_s: float, max_evaluations: int
              ) -> tuple[dict[str, int], Any, int, bool]:
    """Lower off-critical-path workers' memory while the predicted makespan holds.

    Returns ``(memory per worker, predicted trace, simulations run, budget ran out)``.
    """
    sizes = ctx.memory_sizes
    workers = list(dict.fromkeys(worker_of[t] for t in ctx.workflow.topological_order))
    memory_of = dict.fromkeys(workers, sizes[-1])
    t0 = time.perf_counter()
    trace = ctx.simulate(build(memory_of))
    # The first simulation seeds the running mean that decides whether another fits.
    search = _Search(ctx, build, started, budget_s, max_evaluations, memory_of, trace,
                     float(trace.makespan_ms), spent_s=time.perf_counter() - t0)
    stuck: set[str] = set()
    while True:
        on_path = {worker_of[t] for t in critical_tasks(ctx.workflow, search.trace)}
        movable = [w for w in workers if w not in on_path and w not in stuck
                   and search.memory_of[w] != sizes[0]]
        if not movable:
            break
        lowered = _bisect(search, movable, sizes, stuck)
        if not lowered or search.exhausted:
            break
    return search.memory_of, search.trace, search.evaluations, search.exhausted


def _bisect(search: _Search, group: list[str], sizes: tuple[int, ...], stuck: set[str]) -> bool:
    """Try ``group``, then its halves on failure; singletons that fail get ``stuck``."""
    lowered = False
    queue = [group]
    while queue:
        g = queue.pop(0)
        if not search.can_evaluate():
            return lowered
        if search.try_lower(g, sizes):
            lowered = True
        elif len(g) == 1:
            stuck.add(g[0])
        else:
            half = len(g) // 2
            queue[:0] = [g[:half], g[half:]]
    return lowered


def _plan(ctx: PlanningContext, name: str, *, optimized: bool, time_budget_s: float | None,
          max_evaluations: int) -> Plan:
    if (time_budget_s is not None and time_budget_s <= 0) or max_evaluations < 0:
        raise ValueError(f"{name}: time_budget_s must be > 0 and max_evaluations >= 0, got "
                         f"{time_budget_s!r} and {max_evaluations!r}")
    started = time.perf_counter()
    wf = ctx.workflow
    budget = default_budget_s(len(wf)) if time_budget_s is None else time_budget_s
    # The uniform counterpart (default memory, same optimizations) is simulated first:
    # it is the fallback that guarantees the result is never predicted slower.
    default = ctx.platform.default_memory_mb
    base_workers = assign_workers(ctx, default)
    base_memory = dict.fromkeys(base_workers.values(), default)
    base = (optimize_preload_prewarm(ctx, base_workers, base_memory) if optimized
            else {t: Placement(w, default) for t, w in base_workers.items()})
    base_trace = ctx.simulate(base)

    best = ctx.memory_sizes[-1]
    worker_of = assign_workers(ctx, best)

    def build(memory_of: Mapping[str, int]) -> dict[str, Placement]:
        if optimized:
            return optimize_preload_prewarm(ctx, worker_of, memory_of)
        return {t: Placement(w, memory_of[w]) for t, w in worker_of.items()}

    memory_of, trace, runs, exhausted = downgrade(
        ctx, worker_of, build, started=started, budget_s=budget,
        max_evaluations=max_evaluations)
    lowered = sum(1 for m in memory_of.values() if m != best)
    notes = [f"{lowered} of {len(memory_of)} workers below {best} MB after {runs} "
             "simulations of lowered memory"]
    if exhausted:
        notes.append("search stopped by its time or simulation budget")
    placements = build(memory_of)
    if float(base_trace.makespan_ms) < float(trace.makespan_ms):
        notes.append(f"the uniform plan at {default} MB was predicted faster "
                     f"({float(base_trace.makespan_ms):.1f} ms < "
                     f"{float(trace.makespan_ms):.1f} ms) and is used instead")
        placements, trace = base, base_trace
    return ctx.finish(name, placements, started, notes=tuple(notes), predicted=trace)


def plan_non_uniform(ctx: PlanningContext, *, time_budget_s: float | None = None,
                     max_evaluations: int = DEFAULT_MAX_EVALUATIONS) -> Plan:
    """Uniform workers at the largest memory, lowered off the critical path.

    Parameters
    ----------
    ctx : PlanningContext
        Workflow, predictions, platform and simulator.
    time_budget_s : float, optional
        Planning time budget (default: 1.5 ms per task, at least 0.5 s).
    max_evaluations : int
        Cap on simulations of lowered-memory candidates.
    """
    return _plan(ctx, "non-uniform", optimized=False, time_budget_s=time_budget_s,
                 max_evaluations=max_evaluations)


def plan_non_uniform_opt(ctx: PlanningContext, *, time_budget_s: float | None = None,
                         max_evaluations: int = DEFAULT_MAX_EVALUATIONS) -> Plan:
    """:func:`plan_non_uniform` with pre-load and pre-warm, searched with them switched on."""
    return _plan(ctx, "non-uniform-opt", optimized=True, time_budget_s=time_budget_s,
                 max_evaluations=max_evaluations)
