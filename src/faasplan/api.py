"""Top-level entry points that wire the pure core to the simulator.

:func:`plan` runs a registered planner with the simulator (predicted models at the SLA) as
its ``evaluate`` function; :func:`training_history` simulates past runs to fit predictors on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

import pandas as pd

from faasplan.planners import Plan, run_planner
from faasplan.planners.context import Evaluate
from faasplan.predictors import MetricsRecord, Predictor, fit, parse_sla
from faasplan.simulator import Platform, PredictedBehaviour, TaskBehaviour, simulate
from faasplan.worker import Placement
from faasplan.workflow import IOHint, Workflow


def io_hints(workflow: Workflow) -> dict[str, IOHint]:
    """Function name -> declared io hint, for the predictors."""
    hints = {}
    for tid in workflow:
        func = workflow.node(tid).func
        if func.io is not None:
            hints[func.name] = func.io
    return hints


def has_history(predictor: Predictor) -> bool:
    """Whether ``predictor`` rests on at least one metrics record."""
    return bool(predictor.functions)


def make_evaluator(workflow: Workflow, predictor: Predictor, platform: Platform, sla: str,
                   seed: int = 0) -> Evaluate:
    """``evaluate(placements) -> Trace``: one simulation with SLA-level predicted models.

    Cold starts are fixed at their SLA level too (no random draw), so that a search never
    prefers a plan for a lucky draw.
    """
    behaviour = PredictedBehaviour(workflow, predictor, sla)
    platform = sla_platform(platform, sla)

    def evaluate(placements: Mapping[str, Placement]) -> Any:
        return simulate(workflow, placements, platform, seed=seed, behaviour=behaviour)

    return evaluate


def sla_platform(platform: Platform, sla: str) -> Platform:
    """``platform`` with its lognormal cold start replaced by its value at ``sla``."""
    q = parse_sla(sla)
    sigma = platform.cold_start_sigma
    factor = math.exp(sigma * sigma / 2) if q is None else math.exp(sigma * NormalDist().inv_cdf(q))
    return platform.replace(cold_start_ms=platform.cold_start_ms * factor, cold_start_sigma=0.0)


def plan(workflow: Workflow, planner: str = "wukong", predictor: Predictor | None = None,
         platform: Platform | None = None, sla: str = "p95", seed: int = 0,
         **options: Any) -> Plan:
    """Plan ``workflow`` with the registered ``planner``.

    Parameters
    ----------
    predictor : Predictor, optional
        Fitted on past metrics (:func:`faasplan.predictors.fit`). Without one, predictions
        come from the tasks' io hints and documented defaults, and the plan says so.
    platform : Platform, optional
        The FaaS platform model (default ``Platform()``).
    sla : str
        ``"average"`` or a percentile such as ``"p95"``: the level of every prediction.
    options
        Planner options, e.g. ``memory_mb=2048`` or ``time_budget_s=1.0`` for sim-guided.

    Examples
    --------
    >>> import faasplan
    >>> wf = faasplan.workloads.tree_reduction(leaves=8)
    >>> p = faasplan.plan(wf, planner="uniform")
    >>> p.validate(wf)
    >>> p.predicted_makespan_ms > 0
    True
    """
    predictor = predictor if predictor is not None else Predictor.empty(io_hints(workflow))
    platform = platform if platform is not None else Platform()
    evaluate = make_evaluator(workflow, predictor, platform, sla, seed)
    return run_planner(planner, workflow, predictor, platform, sla=sla, seed=seed,
                       evaluate=evaluate, history=has_history(predictor), **options)


def training_history(workflow: Workflow, platform: Platform, truth: TaskBehaviour, runs: int,
                     *, memory_sizes: tuple[int, ...] | None = None, seed: int = 0
                     ) -> list[MetricsRecord]:
    """Metrics of ``runs`` simulated past runs of ``workflow`` under the ground truth.

    Runs alternate between all-flexible workers and one planned worker per task (so every
    output crosses storage and transfers get sampled), cycling through ``memory_sizes``
    (default: four of the platform's sizes) so that memory exponents can be fitted.
    """
    sizes = memory_sizes or _spread(platform.memory_sizes_mb, 4)
    records: list[MetricsRecord] = []
    for i in range(runs):
        memory = sizes[i % len(sizes)]
        if i % 2 == 0:
            placements = {t: Placement(None, memory) for t in workflow}
        else:
            placements = {t: Placement(f"w-{t}", memory) for t in workflow}
        trace = simulate(workflow, placements, platform, seed=seed * 7919 + i, behaviour=truth)
        records.extend(trace.metrics(run_id=f"train-{i}", planner="history"))
    return records


def fit_history(workflow: Workflow, records: list[MetricsRecord] | pd.DataFrame) -> Predictor:
    """Predictors fitted on ``records`` with the workflow's io hints as priors."""
    hints = io_hints(workflow)
    return fit(records, hints=hints) if len(records) else Predictor.empty(hints)


def _spread(sizes: tuple[int, ...], k: int) -> tuple[int, ...]:
    ordered = sorted(sizes)
    if len(ordered) <= k:
        return tuple(ordered)
    idx = [round(i * (len(ordered) - 1) / (k - 1)) for i in range(k)]
    return tuple(ordered[i] for i in idx)
