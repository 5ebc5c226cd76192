"""Planners by name, and one entry point that runs any of them.

:data:`PLANNERS` holds faasplan's own planners. SAGA's schedulers (the ``saga`` extra) are
registered in :data:`EXTRA_PLANNERS` as ``saga:NAME`` when ``anrg-saga`` is installed;
:func:`get_planner` and :func:`run_planner` find both, and without the extra a ``saga:``
name raises :class:`~faasplan.planners.saga.SagaMissing` naming the ``pip install``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from faasplan.planners.context import Evaluate, PlanningContext, PlatformLike, PredictorLike
from faasplan.planners.heft import MAKESPAN_TOLERANCE, plan_heft
from faasplan.planners.non_uniform import (
    DEFAULT_MAX_EVALUATIONS,
    plan_non_uniform,
    plan_non_uniform_opt,
)
from faasplan.planners.plan import Plan
from faasplan.planners.saga import DEFAULT_TIME_BUDGET_S as SAGA_TIME_BUDGET_S
from faasplan.planners.saga import SCHEDULERS, plan_saga, require_saga, saga_installed
from faasplan.planners.sim_guided import DEFAULT_TIME_BUDGET_S, plan_sim_guided
from faasplan.planners.uniform import plan_uniform, plan_uniform_opt
from faasplan.planners.wukong import LARGE_OUTPUT_BYTES, plan_wukong, plan_wukong_opt
from faasplan.workflow import Workflow


@dataclass(frozen=True)
class PlannerOption:
    """One keyword option a planner accepts: its type, default and meaning."""

    type: Any
    default: Any
    help: str

    @property
    def type_name(self) -> str:
        """``"float"``, ``"int | None"``, ``"'cost' | 'finish'"``, ..."""
        if get_origin(self.type) is Literal:
            return " | ".join(repr(a) for a in get_args(self.type))
        return getattr(self.type, "__name__", None) or str(self.type).replace("typing.", "")

    def describe(self, name: str) -> str:
        """``name (float, default 60.0): help``."""
        return f"{name} ({self.type_name}, default {self.default!r}): {self.help}"


class PlannerOptionsError(ValueError):
    """Options a planner does not accept; ``key`` is the option at fault."""

    def __init__(self, planner: str, key: str, message: str, accepted: str) -> None:
        self.planner, self.key, self.message, self.accepted = planner, key, message, accepted
        super().__init__(f"{planner}: option {key!r}: {message}; accepted options: {accepted}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.planner, self.key, self.message, self.accepted))


_MEMORY = {"memory_mb": PlannerOption(int | None, None,
                                      "memory of every worker in MB (default: the platform's)")}
_HEFT = {**_MEMORY,
         "policy": PlannerOption(Literal["cost", "finish"], "cost",
                                 "cost: billed idle time and start-ups priced, within HEFT's "
                                 "makespan; finish: classic earliest finish"),
         "makespan_tolerance": PlannerOption(float, MAKESPAN_TOLERANCE,
                                             "policy cost: how much longer than the earliest "
                                             "finish schedule a cheaper one may be"),
         "max_workers": PlannerOption(int | None, None,
                                      "most planned workers (default: the DAG's width, kept "
                                      "where it costs no makespan)")}
_SAGA = {**_MEMORY,
         "nodes": PlannerOption(int | None, None,
                                "compute nodes SAGA schedules on (default: the DAG's width)"),
         "time_budget_s": PlannerOption(float, SAGA_TIME_BUDGET_S,
                                        "seconds SAGA may take before planning fails"),
         }
_BUDGETED = {
    "time_budget_s": PlannerOption(float | None, None,
                                   "planning time budget in s (default: 1.5 ms per task, "
                                   "at least 0.5 s)"),
    "max_evaluations": PlannerOption(int, DEFAULT_MAX_EVALUATIONS,
                                     "cap on simulations of lowered-memory candidates"),
}


@dataclass(frozen=True)
class PlannerEntry:
    """A registered planner: its function, a one-line description and its options."""

    name: str
    fn: Callable[..., Plan]
    description: str
    options: Mapping[str, PlannerOption] = field(default_factory=dict)

    def describe_options(self) -> str:
        """The accepted options, one ``name (type, default): help`` each, or ``none``."""
        return "; ".join(o.describe(k) for k, o in self.options.items()) or "none"

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` checked against :attr:`options` (unknown names and wrong types).

        Raises
        ------
        PlannerOptionsError
            Naming the first bad option and listing the accepted ones.
        """
        fields: dict[str, Any] = {k: (o.type, Field(default=o.default))
                                  for k, o in self.options.items()}
        model: type[BaseModel] = create_model(
            f"Options_{self.name.replace('-', '_')}",
            __config__=ConfigDict(extra="forbid", strict=True), **fields)
        try:
            model.model_validate(dict(options))
        except ValidationError as exc:
            err = exc.errors()[0]
            key = str(err["loc"][0]) if err["loc"] else "(options)"
            msg = ("unknown option" if err["type"] == "extra_forbidden"
                   else f"{err['msg'].lower()}, got {err.get('input')!r}")
            raise PlannerOptionsError(self.name, key, msg, self.describe_options()) from None
        return dict(options)


PLANNERS: Mapping[str, PlannerEntry] = MappingProxyType({e.name: e for e in (
    PlannerEntry("wukong", plan_wukong, "flexible workers, one memory size", _MEMORY),
    PlannerEntry("wukong-opt", plan_wukong_opt, "wukong + task clustering and delayed I/O", {
        **_MEMORY,
        "large_output_bytes": PlannerOption(float, LARGE_OUTPUT_BYTES,
                                            "outputs from this size on are candidates for "
                                            "clustering and delayed I/O"),
        "max_evaluations": PlannerOption(int, 8, "cap on simulations of candidate plans"),
    }),
    PlannerEntry("uniform", plan_uniform, "planned worker ids by locality, one memory size",
                 _MEMORY),
    PlannerEntry("uniform-opt", plan_uniform_opt, "uniform + pre-load and pre-warm", _MEMORY),
    PlannerEntry("non-uniform", plan_non_uniform,
                 "uniform workers, memory downgraded off the critical path", _BUDGETED),
    PlannerEntry("non-uniform-opt", plan_non_uniform_opt,
                 "non-uniform + pre-load and pre-warm", _BUDGETED),
    PlannerEntry("heft", plan_heft, "HEFT list scheduling on workers created on demand",
                 _HEFT),
    PlannerEntry("sim-guided", plan_sim_guided,
                 "search of placements, memory and optimizations scored by simulation", {
                     "time_budget_s": PlannerOption(float, DEFAULT_TIME_BUDGET_S,
                                                    "wall-clock safety cap of the search in s"),
                     "max_evaluations": PlannerOption(int | None, None,
                                                      "evaluations of the whole search, the "
                                                      "budget that normally ends it"),
                     "cost_budget_usd": PlannerOption(float | None, None,
                                                      "predicted cost a plan may not exceed"),
                     "pareto": PlannerOption(bool, False,
                                             "add the cost/makespan Pareto front to the notes"),
                 }),
)})


SAGA_PREFIX = "saga:"


def _saga_entries() -> dict[str, PlannerEntry]:
    return {f"{SAGA_PREFIX}{short}": PlannerEntry(
        f"{SAGA_PREFIX}{short}", partial(plan_saga, scheduler=short),
        f"SAGA's {cls} on the DAG's width in nodes, nodes cut into planned workers", _SAGA)
        for short, cls in SCHEDULERS.items()}


EXTRA_PLANNERS: Mapping[str, PlannerEntry] = MappingProxyType(
    _saga_entries() if saga_installed() else {})
"""Planners of installed extras (``saga:NAME`` with the ``saga`` extra)."""


def planner_names(extras: bool = False) -> tuple[str, ...]:
    """Registered planner names, in registry order; ``extras`` adds those of installed
    extras (:data:`EXTRA_PLANNERS`)."""
    return tuple(PLANNERS) + (tuple(EXTRA_PLANNERS) if extras else ())


def get_planner(name: str) -> PlannerEntry:
    """The planner registered as ``name`` (built-in or from an installed extra).

    Raises
    ------
    SagaMissing
        ``name`` is a ``saga:`` planner and the ``saga`` extra is not installed.
    KeyError
        No such planner; the message lists the valid names.
    """
    entry = PLANNERS.get(name) or EXTRA_PLANNERS.get(name)
    if entry is not None:
        return entry
    if name.startswith(SAGA_PREFIX) and name.removeprefix(SAGA_PREFIX) in SCHEDULERS:
        require_saga(name)
    raise KeyError(f"unknown planner {name!r}; choose one of "
                   f"{', '.join(planner_names(extras=True))}"
                   + ("" if EXTRA_PLANNERS else " (and saga:NAME with the saga extra)"))


def planner_unavailable(name: str) -> str | None:
    """Why ``name`` cannot be planned with (unknown, or its extra is missing), else ``None``."""
    try:
        get_planner(name)
    except (KeyError, ImportError) as exc:  # ImportError: saga:NAME without the extra
        return str(exc.args[0]) if exc.args else str(exc)
    return None


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
