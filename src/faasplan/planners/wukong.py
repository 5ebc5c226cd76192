"""WUKONG: flexible workers that follow the DAG, one memory size for all.

``wukong-opt`` adds WUKONG's two data-locality optimizations: task clustering on fan-outs
whose output is large (the dependents run where the data is) and delayed I/O on fan-ins
(the upstream with the largest output keeps it and runs the fan-in itself).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from faasplan.planners.context import PlanningContext
from faasplan.planners.plan import Plan
from faasplan.worker import Opt, Placement

LARGE_OUTPUT_BYTES = 5 * 1024 * 1024
"""Outputs at least this large trigger clustering / delayed I/O (WUKONG used 5 MB)."""


def plan_wukong(ctx: PlanningContext, *, memory_mb: int | None = None) -> Plan:
    """Every task on a flexible worker with ``memory_mb`` (default: the platform's)."""
    started = time.perf_counter()
    memory = memory_mb or ctx.platform.default_memory_mb
    placements = {t: Placement(None, memory) for t in ctx.workflow.topological_order}
    return ctx.finish("wukong", placements, started)


def plan_wukong_opt(ctx: PlanningContext, *, memory_mb: int | None = None,
                    large_output_bytes: float = LARGE_OUTPUT_BYTES,
                    max_evaluations: int = 8) -> Plan:
    """WUKONG plus clustering and delayed I/O for outputs above ``large_output_bytes``.

    Clustering runs a whole fan-out on one worker: it saves transfers but serializes the
    branches. Each candidate optimization is therefore kept only if the simulated plan
    (predicted models) is better with it: faster, or as fast and cheaper. All candidates
    are tried at once, then, if that does not help, one at a time, largest output first,
    within ``max_evaluations``. The choice is checked against plain wukong once more at
    the final scoring's precision (more replicates), and dropped if it does not beat it.
    An optimization that changes nothing is never kept, so a wukong-opt plan that differs
    from wukong's also differs in its predicted figures.
    """
    started = time.perf_counter()
    wf = ctx.workflow
    memory = memory_mb or ctx.platform.default_memory_mb
    candidates = _wukong_candidates(ctx, large_output_bytes)
    chosen: dict[str, frozenset[Opt]] = {}

    def placements(extra: dict[str, frozenset[Opt]]) -> dict[str, Placement]:
        return {t: Placement(None, memory, extra.get(t, frozenset()))
                for t in wf.topological_order}

    best = ctx.simulate(placements(chosen))
    notes: tuple[str, ...] = ()
    if candidates:
        everything = {t: frozenset(o) for t, o in candidates}
        trial = ctx.simulate(placements(everything))
        if _improves(trial, best):
            chosen, best = everything, trial
        else:
            for t, opts in candidates[:max(0, max_evaluations - 2)]:
                attempt = {**chosen, t: frozenset(opts)}
                trial = ctx.simulate(placements(attempt))
                if _improves(trial, best):
                    chosen, best = attempt, trial
        final = getattr(ctx.evaluate, "final", None) if ctx.final_scoring else None
        if chosen and final is not None:
            # The search compares plans with few replicates: a gain within their noise
            # must not return a plan that plain wukong dominates once scored for real.
            mine, baseline = final(placements(chosen)), final(placements({}))
            chosen, best = (chosen, mine) if _improves(mine, baseline) else ({}, baseline)
            # Both are final scores already: finish() must not score them again.
            ctx = dataclasses.replace(ctx, final_scoring=False)
        dropped = len(candidates) - len(chosen)
        if dropped:
            notes = (f"{dropped} of {len(candidates)} clustering/delayed-I/O candidates "
                     "left out: the simulated plan was neither faster nor cheaper with them",)
    return ctx.finish("wukong-opt", placements(chosen), started, notes=notes, predicted=best)


def _improves(trial: Any, best: Any) -> bool:
    """Whether the simulated ``trial`` is faster than ``best``, or as fast and cheaper."""
    if trial.makespan_ms != best.makespan_ms:
        return bool(trial.makespan_ms < best.makespan_ms)
    return bool(trial.cost_usd < best.cost_usd)


def _wukong_candidates(ctx: PlanningContext, large_output_bytes: float
                       ) -> list[tuple[str, set[Opt]]]:
    """Tasks with a large output and the optimizations WUKONG would give them."""
    wf, out = ctx.workflow, ctx.estimates.output_bytes
    opts: dict[str, set[Opt]] = {}
    for t in wf.topological_order:
        if len(wf.downstream(t)) > 1 and out[t] >= large_output_bytes:
            opts.setdefault(t, set()).add(Opt.CLUSTER)
    owner: dict[str, str] = {}
    # Largest outputs first: each keeps its data if none of its fan-ins has an owner yet.
    for t in sorted(wf.topological_order, key=lambda x: -out[x]):
        if out[t] < large_output_bytes:
            break
        fan_ins = [d for d in wf.downstream(t) if len(wf.upstream(d)) > 1]
        if fan_ins and not any(d in owner for d in fan_ins):
            for d in fan_ins:
                owner[d] = t
            opts.setdefault(t, set()).add(Opt.DELAYED_IO)
    return sorted(opts.items(), key=lambda item: -out[item[0]])
