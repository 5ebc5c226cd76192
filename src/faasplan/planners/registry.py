"""Planners by name, and one entry point that runs any of them."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from faasplan.planners.context import Evaluate, PlanningContext, PlatformLike, PredictorLike
from faasplan.planners.heft import plan_heft
from faasplan.planners.non_uniform import plan_non_uniform, plan_non_uniform_opt
from faasplan.planners.plan import Plan
from faasplan.planners.sim_guided import plan_sim_guided
from faasplan.planners.uniform import plan_uniform, plan_uniform_opt
from faasplan.planners.wukong import plan_wukong, plan_wukong_opt
from faasplan.workflow import Workflow


@dataclass(frozen=True)
class PlannerEntry:
    """A registered planner: its function and a one-line description."""

    name: str
    fn: Callable[..., Plan]
    description: str


PLANNERS: Mapping[str, PlannerEntry] = MappingProxyType({e.name: e for e in (
    PlannerEntry("wukong", plan_wukong, "flexible workers, one memory size"),
    PlannerEntry("wukong-opt", plan_wukong_opt, "wukong + task clustering and delayed I/O"),
    PlannerEntry("uniform", plan_uniform, "planned worker ids by locality, one memory size"),
    PlannerEntry("uniform-opt", plan_uniform_opt, "uniform + pre-load and pre-warm"),
    PlannerEntry("non-uniform", plan_non_uniform,
                 "uniform workers, memory downgraded off the critical path"),
    PlannerEntry("non-uniform-opt", plan_non_uniform_opt,
                 "non-uniform + pre-load and pre-warm"),
    PlannerEntry("heft", plan_heft, "HEFT list scheduling on workers created on demand"),
    PlannerEntry("sim-guided", plan_sim_guided,
                 "search of placements, memory and optimizations scored by simulation"),
)})


def planner_names() -> tuple[str, ...]:
    """Registered planner names, in registry order."""
    return tuple(PLANNERS)


def get_planner(name: str) -> PlannerEntry:
    """The planner registered as ``name``; ``KeyError`` listing valid names otherwise."""
    try:
        return PLANNERS[name]
    except KeyError:
        raise KeyError(f"unknown planner {name!r}; choose one of {', '.join(PLANNERS)}"
                       ) from None


def run_planner(name: str, workflow: Workflow, predictor: PredictorLike, platform: PlatformLike,
                *, sla: str, seed: int, evaluate: Evaluate, history: bool = True,
                **options: Any) -> Plan:
    """Run planner ``name`` and check its plan; the workflow is never modified."""
    entry = get_planner(name)
    ctx = PlanningContext(workflow, predictor, platform, sla, seed, evaluate, history)
    started = time.perf_counter()
    plan = entry.fn(ctx, **options)
    plan.validate(workflow)
    return Plan(plan.planner, plan.placements, plan.sla, plan.predicted, plan.notes,
                planning_ms=(time.perf_counter() - started) * 1000.0)
