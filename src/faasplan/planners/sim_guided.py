"""Sim-guided planner: local search over plans, scored by simulating each candidate.

The search starts from the best of the other planners' plans (``wukong``, ``wukong-opt``,
``uniform``, ``uniform-opt``, ``heft``, ``non-uniform-opt``, run with the same context; the
plain ``uniform`` plan is there because under a cost budget it may be the only one
within budget) and then tries one move at a time, keeping a candidate when its predicted
makespan at the SLA is lower (or equal and cheaper). Moves focus on the critical path of
the current predicted trace:

* **memory** — raise a critical worker's memory one size, or lower an off-path one;
* **merge** — put a critical task (or its whole worker) on the worker of the upstream task
  that held it up, so its input needs no transfer;
* **split** — give a critical task a worker of its own, or make it flexible;
* **regroup** — spread the dependents of a fan-out on the critical path over half or
  twice as many workers (fewer workers fetch shared inputs fewer times; more workers
  run long work in parallel);
* **toggle** — switch one optimization on or off for a critical task (stream, async
  upload, pre-load, pre-warm, and for flexible tasks clustering and delayed I/O);
* **sweep** — switch one optimization on or off along the whole critical path or for every
  task, or move every off-path worker one memory size down (every critical one up).

Every candidate must pass :meth:`Plan.validate`; invalid ones are skipped unsimulated.
With ``cost_budget_usd`` a plan over budget only wins over another over-budget plan (by
being cheaper); by default the budget is the predicted cost of the fastest of ``wukong``,
``uniform`` and ``heft``, so the plan returned is no slower and no costlier than the best
of them. Every starting plan
and every candidate is scored by the same evaluation (Monte-Carlo replicates with common
random numbers), and a candidate replaces the current
plan only when it is better, so the plan returned is never dominated, on SLA makespan and
cost, by any baseline under that evaluation. The search stops after ``max_evaluations``
evaluations (by default derived from a budget of simulated tasks), so a plan is a pure
function of its inputs and seed; ``time_budget_s`` is only an outer safety cap, named in
the notes when it ends the search. Move choices come from
``numpy.random.default_rng(ctx.seed)``. A valid candidate that fails in simulation is a
bug and raises.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faasplan.planners.context import PlanningContext
from faasplan.planners.heft import plan_heft
from faasplan.planners.non_uniform import critical_tasks, plan_non_uniform_opt
from faasplan.planners.plan import OrderedPlacements, Plan, PlanError
from faasplan.planners.uniform import plan_uniform, plan_uniform_opt
from faasplan.planners.wukong import plan_wukong, plan_wukong_opt
from faasplan.worker import Opt, Placement

DEFAULT_TIME_BUDGET_S = 60.0
"""Outer wall-clock safety cap; reported in the notes when it ends the search."""
DEFAULT_TASK_SIMULATIONS = 15_000
"""Default budget in simulated tasks (replicates x tasks per evaluation, summed)."""
MIN_EVALUATIONS = 8
MAX_FUTILE_MOVES = 200
"""Consecutive moves yielding nothing new and valid after which the search gives up."""

START_SHARE = 0.3
"""Share of the time and simulation budgets the non-uniform starting plan may use."""

Placements = dict[str, Placement]
Move = Callable[["_State", np.random.Generator], Placements | None]

PLANNED_OPTS = (Opt.STREAM, Opt.ASYNC_UPLOAD, Opt.PRELOAD, Opt.PREWARM)
FLEXIBLE_OPTS = (Opt.STREAM, Opt.ASYNC_UPLOAD, Opt.PREWARM, Opt.CLUSTER, Opt.DELAYED_IO)
FLEXIBLE_ONLY = frozenset({Opt.CLUSTER, Opt.DELAYED_IO})


def pareto_front(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated ``(cost_usd, makespan_ms)`` points, cheapest first.

    A point is dominated when another is no costlier and no slower, and better in one.

    >>> pareto_front([(1.0, 10.0), (2.0, 5.0), (2.0, 6.0), (3.0, 5.0), (0.5, 20.0)])
    [(0.5, 20.0), (1.0, 10.0), (2.0, 5.0)]
    """
    front: list[tuple[float, float]] = []
    for cost, ms in sorted(set(points)):
        if not front or ms < front[-1][1]:
            front.append((cost, ms))
    return front


@dataclass
class _State:
    """The current plan with what moves need to know about it."""

    ctx: PlanningContext
    placements: Mapping[str, Placement]  # as simulated, with any worker orders
    trace: Any
    critical: list[str] = field(default_factory=list)
    workers: dict[str, list[str]] = field(default_factory=dict)
    next_id: int = 0
    # Set when the plan's workers run in orders of their own (``worker_orders``): when
    # each task starts in the current trace, which orders every candidate's workers.
    starts: dict[str, tuple[float, int]] | None = None

    def __post_init__(self) -> None:
        self.refresh(self.placements, self.trace)

    def refresh(self, placements: Mapping[str, Placement], trace: Any) -> None:
        wf = self.ctx.workflow
        orders = getattr(placements, "worker_orders", None)
        self.placements, self.trace = placements, trace
        self.critical = critical_tasks(wf, trace)
        self.workers = {}
        for tid in wf.topological_order:
            w = placements[tid].worker
            if w is not None:
                self.workers.setdefault(w, []).append(tid)
        if orders:
            index = {t: i for i, t in enumerate(wf.topological_order)}
            df = trace.tasks
            self.starts = {str(t): (float(at), index[str(t)])
                           for t, at in zip(df["task"], df["start_ms"], strict=True)}

    def ordered(self, candidate: Placements) -> Mapping[str, Placement]:
        """``candidate`` as is when the plan's workers run in topological order; otherwise
        with every planned worker's tasks in the order they start in the current trace
        (ties in topological order), so a moved task keeps its place in time."""
        starts = self.starts
        if starts is None:
            return candidate
        tasks: dict[str, list[str]] = {}
        for tid, p in candidate.items():
            if p.worker is not None:
                tasks.setdefault(p.worker, []).append(tid)
        return OrderedPlacements(candidate, {w: sorted(ts, key=starts.__getitem__)
                                             for w, ts in tasks.items()})

    def unit(self, tid: str) -> list[str]:
        """Tasks sharing ``tid``'s memory size: its planned worker, or itself if flexible."""
        w = self.placements[tid].worker
        return [tid] if w is None else self.workers[w]

    def new_worker(self) -> str:
        while f"s{self.next_id}" in self.workers:
            self.next_id += 1
        self.next_id += 1
        return f"s{self.next_id - 1}"


def _objective(trace: Any, cost_budget: float | None) -> tuple[int, float, float]:
    ms, cost = float(trace.makespan_ms), float(trace.cost_usd)
    if cost_budget is not None and cost > cost_budget:
        return (1, cost, ms)
    return (0, ms, cost)


def _better(a: tuple[int, float, float], b: tuple[int, float, float]) -> bool:
    """Whether objective ``a`` beats ``b`` (relative ties on the first value go to cost)."""
    if a[0] != b[0]:
        return a[0] < b[0]
    if a[1] < b[1] * (1.0 - 1e-9):
        return True
    return abs(a[1] - b[1]) <= 1e-9 * max(abs(b[1]), 1.0) and a[2] < b[2] * (1.0 - 1e-9)


# -- moves -----------------------------------------------------------------------------
def _with_memory(state: _State, tasks: Sequence[str], memory: int) -> Placements:
    out = dict(state.placements)
    for t in tasks:
        p = out[t]
        out[t] = Placement(p.worker, memory, p.optimizations)
    return out


def _step(sizes: tuple[int, ...], memory: int, up: bool) -> int | None:
    i = sizes.index(memory) if memory in sizes else 0
    j = i + 1 if up else i - 1
    return sizes[j] if 0 <= j < len(sizes) else None


def _move_memory(state: _State, rng: np.random.Generator) -> Placements | None:
    sizes = state.ctx.memory_sizes
    if rng.random() < 0.5:
        tid = state.critical[int(rng.integers(len(state.critical)))]
        up = True
    else:
        order = state.ctx.workflow.topological_order
        tid = order[int(rng.integers(len(order)))]
        up = tid in state.critical
    memory = _step(sizes, state.placements[tid].memory_mb, up)
    return None if memory is None else _with_memory(state, state.unit(tid), memory)


def _holder(state: _State, tid: str) -> str | None:
    """The upstream task that ended last before ``tid`` (the one holding it up)."""
    ups = state.ctx.workflow.upstream(tid)
    if not ups:
        return None
    idx = state.critical.index(tid) if tid in state.critical else -1
    if idx > 0 and state.critical[idx - 1] in ups:
        return state.critical[idx - 1]
    return ups[0]


def _move_merge(state: _State, rng: np.random.Generator) -> Placements | None:
    tid = state.critical[int(rng.integers(len(state.critical)))]
    parent = _holder(state, tid)
    if parent is None:
        return None
    pp, tp = state.placements[parent], state.placements[tid]
    out = dict(state.placements)
    target = pp.worker
    if target is None:
        # A flexible parent: the two become one planned worker, entered at the parent.
        target = state.new_worker()
        out[parent] = Placement(target, pp.memory_mb, pp.optimizations - FLEXIBLE_ONLY)
    elif target == tp.worker:
        return None
    moving = [tid] if tp.worker is None or rng.random() < 0.5 else state.workers[tp.worker]
    for t in moving:
        p = out[t]
        out[t] = Placement(target, pp.memory_mb, p.optimizations - FLEXIBLE_ONLY)
    return out


def _move_split(state: _State, rng: np.random.Generator) -> Placements | None:
    tid = state.critical[int(rng.integers(len(state.critical)))]
    p = state.placements[tid]
    out = dict(state.placements)
    if p.worker is None:
        if not state.ctx.workflow.upstream(tid):
            return None
        out[tid] = Placement(state.new_worker(), p.memory_mb, p.optimizations - FLEXIBLE_ONLY)
    elif len(state.workers[p.worker]) == 1:
        return None
    elif rng.random() < 0.5:
        out[tid] = Placement(state.new_worker(), p.memory_mb, p.optimizations)
    else:
        out[tid] = Placement(None, p.memory_mb, p.optimizations - {Opt.PRELOAD})
    return out


def _toggle(p: Placement, opt: Opt) -> Placement:
    return Placement(p.worker, p.memory_mb, p.optimizations ^ {opt})


def _move_toggle(state: _State, rng: np.random.Generator) -> Placements | None:
    tid = state.critical[int(rng.integers(len(state.critical)))]
    p = state.placements[tid]
    choices = PLANNED_OPTS if p.worker is not None else FLEXIBLE_OPTS
    out = dict(state.placements)
    out[tid] = _toggle(p, choices[int(rng.integers(len(choices)))])
    return out


def _move_sweep(state: _State, rng: np.random.Generator) -> Placements | None:
    out = dict(state.placements)
    on_path = set(state.critical)
    roll = rng.random()
    if roll < 0.5:
        # Every memory unit off the path one size down, or every unit on it one size up.
        up = roll < 0.25
        flexible = [[t] for t in state.ctx.workflow.topological_order
                    if out[t].worker is None]
        changed = False
        for unit in [*state.workers.values(), *flexible]:
            memory = _step(state.ctx.memory_sizes, out[unit[0]].memory_mb, up=up)
            if memory is None or any(t in on_path for t in unit) != up:
                continue
            changed = True
            for t in unit:
                out[t] = Placement(out[t].worker, memory, out[t].optimizations)
        return out if changed else None
    opt = PLANNED_OPTS[int(rng.integers(len(PLANNED_OPTS)))]
    switch_on = rng.random() < 0.7
    tasks = state.critical if rng.random() < 0.6 else state.ctx.workflow.topological_order
    for t in tasks:
        p = out[t]
        if opt is Opt.PRELOAD and p.worker is None:
            continue
        if p.has(opt) != switch_on:
            out[t] = _toggle(p, opt)
    return out


def _pieces(state: _State, parent: str) -> list[list[str]]:
    """The dependents of a fan-out, each with what follows it on its worker.

    A piece is a single-input dependent of ``parent`` (not on the parent's worker) plus
    the tasks of its worker reachable from it; a task reachable from two pieces stays
    with the first.
    """
    wf, place = state.ctx.workflow, state.placements
    home = place[parent].worker
    taken: set[str] = set()
    pieces = []
    for d in wf.downstream(parent):
        w = place[d].worker
        if len(wf.upstream(d)) != 1 or d in taken or (w is not None and w == home):
            continue
        piece = [d]
        taken.add(d)
        if w is not None:
            mine = set(state.workers[w])
            stack = [d]
            while stack:
                for c in wf.downstream(stack.pop()):
                    if c in mine and c not in taken:
                        taken.add(c)
                        piece.append(c)
                        stack.append(c)
        pieces.append(piece)
    return pieces


def _move_regroup(state: _State, rng: np.random.Generator) -> Placements | None:
    """Redistribute a critical fan-out's dependents over half or twice as many workers.

    Bins are filled longest piece first into the least loaded worker (LPT), so fewer
    workers share inputs (a large literal is fetched once per worker) and more workers
    spread long work.
    """
    wf = state.ctx.workflow
    parents = [u for t in state.critical for u in wf.upstream(t) if len(wf.downstream(u)) > 1]
    if not parents:
        return None
    pieces = _pieces(state, parents[int(rng.integers(len(parents)))])
    holders = {state.placements[p[0]].worker or p[0] for p in pieces}
    m = len(holders)
    k = max(1, m // 2) if rng.random() < 0.5 else min(len(pieces), 2 * m)
    if len(pieces) < 2 or k == m:
        return None
    memory = max(state.placements[p[0]].memory_mb for p in pieces)

    def load(piece: list[str]) -> float:
        return sum(state.ctx.exec_ms(t, memory) for t in piece)

    bins: list[tuple[float, int, list[str]]] = [(0.0, i, []) for i in range(k)]
    for piece in sorted(pieces, key=load, reverse=True):
        total, i, tasks = min(bins)
        tasks.extend(piece)
        bins[i] = (total + load(piece), i, tasks)
    out = dict(state.placements)
    for _, _, tasks in bins:
        worker = state.new_worker()
        for t in tasks:
            p = out[t]
            out[t] = Placement(worker, memory, p.optimizations - FLEXIBLE_ONLY)
    return out


MOVES: tuple[tuple[Move, float], ...] = (
    (_move_memory, 0.2), (_move_merge, 0.15), (_move_split, 0.1), (_move_toggle, 0.2),
    (_move_sweep, 0.2), (_move_regroup, 0.15))


# -- the search ------------------------------------------------------------------------
def _key(placements: Mapping[str, Placement]) -> int:
    return hash(frozenset(placements.items()))


START_PLANNERS: tuple[tuple[str, Callable[..., Plan]], ...] = (
    ("wukong", plan_wukong), ("wukong-opt", plan_wukong_opt), ("uniform", plan_uniform),
    ("uniform-opt", plan_uniform_opt), ("heft", plan_heft),
    ("non-uniform-opt", plan_non_uniform_opt))


#: The plans the default cost budget is anchored on: the fastest of them (at the SLA,
#: then the cheapest) sets the budget, so the plan returned is no slower and no costlier
#: than it under the search's evaluation.
REFERENCE_PLANNERS = ("wukong", "uniform", "heft")


def _starts(ctx: PlanningContext, started: float, budget_s: float, max_evaluations: int,
            notes: list[str]) -> list[tuple[str, Plan]]:
    """Plans of every starting planner, scored by the search's own evaluation.

    A starting plan whose simulation fails raises: planners must return plans that run.
    """
    plans: list[tuple[str, Plan]] = []
    # Starting plans are scored by the search's own evaluation, not the final one, so
    # that they and the search's candidates are compared at one precision.
    sub = dataclasses.replace(ctx, final_scoring=False)
    for name, fn in START_PLANNERS:
        options: dict[str, Any] = {}
        if name == "non-uniform-opt":
            options = {"time_budget_s": START_SHARE * budget_s,
                       "max_evaluations": max(2, int(START_SHARE * max_evaluations))}
        before = sub.evaluations
        try:
            plans.append((name, fn(sub, **options)))
        except RuntimeError as exc:
            raise RuntimeError(f"sim-guided: simulating the starting plan of {name} failed; "
                               f"a plan a planner returns must simulate "
                               f"({type(exc).__name__}: {exc})") from exc
        finally:
            ctx.evaluations += sub.evaluations - before
    return plans


def default_max_evaluations(ctx: PlanningContext) -> int:
    """Evaluations that fit :data:`DEFAULT_TASK_SIMULATIONS` for this workflow."""
    per_eval = len(ctx.workflow) * int(getattr(ctx.evaluate, "replicates", 1))
    return max(MIN_EVALUATIONS, DEFAULT_TASK_SIMULATIONS // max(per_eval, 1))


def plan_sim_guided(ctx: PlanningContext, *, time_budget_s: float = DEFAULT_TIME_BUDGET_S,
                    max_evaluations: int | None = None,
                    cost_budget_usd: float | None = None, pareto: bool = False) -> Plan:
    """Local search from the best of the other planners, scored by simulation.

    Parameters
    ----------
    ctx : PlanningContext
        Workflow, predictions, platform and simulator.
    time_budget_s : float
        Outer wall-clock safety cap of the whole call (default 60 s); when it ends the
        search the notes say so, and the plan then depends on the machine's speed.
    max_evaluations : int, optional
        Evaluations (each a set of Monte-Carlo replicates) of the whole call, starting
        plans included: the budget that normally ends the search, so that a plan is a
        pure function of its inputs and seed. Default: as many as fit
        :data:`DEFAULT_TASK_SIMULATIONS` simulated tasks, at least 8.
    cost_budget_usd : float, optional
        Predicted cost a plan may not exceed (when no plan meets it, the cheapest wins).
        By default the predicted cost of the fastest of :data:`REFERENCE_PLANNERS`: the
        search then returns a plan no slower and no costlier than the best of those
        baselines, instead of buying small makespan gains with many more workers.
        ``math.inf`` lifts the cap (the fastest plan found, whatever it costs).
    pareto : bool
        Add the cost/makespan Pareto front of every simulated candidate to the notes
        (see :func:`pareto_front`).
    """
    if max_evaluations is None:
        max_evaluations = default_max_evaluations(ctx)
    if time_budget_s <= 0 or max_evaluations < 1:
        raise ValueError(f"sim-guided: time_budget_s must be > 0 and max_evaluations >= 1, "
                         f"got {time_budget_s!r} and {max_evaluations!r}")
    if cost_budget_usd is not None and not cost_budget_usd > 0:
        raise ValueError(f"sim-guided: cost_budget_usd must be > 0, got {cost_budget_usd!r}")
    started = time.perf_counter()
    evals_at_start = ctx.evaluations
    wf = ctx.workflow
    points: list[tuple[float, float]] = []
    seen: set[int] = set()
    notes: list[str] = []
    starts = _starts(ctx, started, time_budget_s, max_evaluations, notes)
    if not starts:
        raise RuntimeError(f"sim-guided: no starting plan could be simulated: {notes}")
    if cost_budget_usd is None:
        refs = [(n, p) for n, p in starts if n in REFERENCE_PLANNERS] or starts
        ref_name, ref = min(refs, key=lambda item: _objective(item[1].predicted, None))
        cost_budget_usd = float(ref.predicted.cost_usd)
        notes.append(f"cost capped at that of the fastest of {', '.join(REFERENCE_PLANNERS)} "
                     f"({ref_name}, {cost_budget_usd:.6g} USD); cost_budget_usd=inf lifts "
                     f"the cap")
    best_name, best_plan = "", None
    for name, plan in starts:
        trace = plan.predicted
        points.append((float(trace.cost_usd), float(trace.makespan_ms)))
        seen.add(_key(plan.placements))
        if best_plan is None or _better(_objective(trace, cost_budget_usd),
                                        _objective(best_plan.predicted, cost_budget_usd)):
            best_name, best_plan = name, plan
    assert best_plan is not None
    state = _State(ctx, best_plan.placements, best_plan.predicted)
    score = _objective(state.trace, cost_budget_usd)
    rng = np.random.default_rng(ctx.seed)
    weights = np.array([w for _, w in MOVES])
    weights /= weights.sum()
    accepted = futile = invalid = 0
    while (ctx.evaluations - evals_at_start < max_evaluations
           and time.perf_counter() - started < time_budget_s and futile < MAX_FUTILE_MOVES):
        if not state.critical:
            break
        move = MOVES[int(rng.choice(len(MOVES), p=weights))][0]
        moved = move(state, rng)
        if moved is None or _key(moved) in seen:
            futile += 1
            continue
        seen.add(_key(moved))
        candidate = state.ordered(moved)
        try:
            Plan("sim-guided", candidate).validate(wf)
        except PlanError:
            invalid += 1
            futile += 1
            continue
        futile = 0
        try:
            trace = ctx.simulate(candidate)
        except RuntimeError as exc:
            # A candidate that passes Plan.validate must simulate: surface the bug.
            raise RuntimeError(f"sim-guided: a valid candidate plan failed in simulation "
                               f"({type(exc).__name__}: {exc})") from exc
        points.append((float(trace.cost_usd), float(trace.makespan_ms)))
        cand_score = _objective(trace, cost_budget_usd)
        if _better(cand_score, score):
            state.refresh(candidate, trace)
            score = cand_score
            accepted += 1
    searched = ctx.evaluations - evals_at_start
    notes.insert(0, f"started from {best_name}; {accepted} improving moves in {searched} "
                    f"evaluations ({invalid} invalid candidates skipped)")
    if time.perf_counter() - started >= time_budget_s:
        notes.append(f"the wall-clock safety cap of {time_budget_s:g} s ended the search "
                     "before its evaluation budget: the plan depends on the machine's speed")
    if score[0] == 1:
        notes.append(f"no plan found within the cost budget of {cost_budget_usd:.6g} USD; "
                     "the cheapest is returned")
    if pareto:
        front = ", ".join(f"({c:.6g}, {m:.1f})" for c, m in pareto_front(points))
        notes.append(f"pareto front (cost_usd, makespan_ms): [{front}]")
    return ctx.finish("sim-guided", state.placements, started, notes=tuple(notes),
                      predicted=state.trace)
