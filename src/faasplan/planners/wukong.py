"""WUKONG: flexible workers that follow the DAG, one memory size for all.

``wukong-opt`` adds WUKONG's two data-locality optimizations: task clustering on fan-outs
whose output is large (the dependents run where the data is) and delayed I/O on fan-ins
(the upstream with the largest output keeps it and runs the fan-in itself).
"""

from __future__ import annotations

import time

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
                    large_output_bytes: float = LARGE_OUTPUT_BYTES) -> Plan:
    """WUKONG plus clustering and delayed I/O for outputs above ``large_output_bytes``."""
    started = time.perf_counter()
    wf, out = ctx.workflow, ctx.estimates.output_bytes
    memory = memory_mb or ctx.platform.default_memory_mb
    opts: dict[str, set[Opt]] = {t: set() for t in wf.topological_order}
    for t in wf.topological_order:
        if len(wf.downstream(t)) > 1 and out[t] >= large_output_bytes:
            opts[t].add(Opt.CLUSTER)
    owner: dict[str, str] = {}
    # Largest outputs first: each keeps its data if none of its fan-ins has an owner yet.
    for t in sorted(wf.topological_order, key=lambda x: -out[x]):
        if out[t] < large_output_bytes:
            break
        fan_ins = [d for d in wf.downstream(t) if len(wf.upstream(d)) > 1]
        if fan_ins and not any(d in owner for d in fan_ins):
            for d in fan_ins:
                owner[d] = t
            opts[t].add(Opt.DELAYED_IO)
    placements = {t: Placement(None, memory, frozenset(o)) for t, o in opts.items()}
    return ctx.finish("wukong-opt", placements, started)
