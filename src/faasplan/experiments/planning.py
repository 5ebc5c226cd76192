"""Top-level entry points that wire the pure core to the simulator.

:func:`plan` runs a registered planner with the simulator (predicted models at the SLA) as
its ``evaluate`` function; :func:`training_history` simulates past runs to fit predictors on.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import pandas as pd

from faasplan.planners import Plan, run_planner
from faasplan.planners.context import Evaluate
from faasplan.predictors import MetricsRecord, Predictor, fit, parse_sla
from faasplan.simulator import (
    Platform,
    PredictedBehaviour,
    SampledModels,
    Simulator,
    TaskBehaviour,
    Trace,
    simulate,
)
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


#: Task simulations per candidate evaluation during a search, and for a plan's final score:
#: the replicate counts adapt to the workflow's size within the bounds below.
MC_SEARCH_TASK_BUDGET = 1_000
MC_FINAL_TASK_BUDGET = 20_000
MC_SEARCH_REPLICATES = (4, 16)
MC_FINAL_REPLICATES = (8, 64)
#: A plan's final score adds replicates in batches of ``MC_FINAL_BATCH`` until the SLA
#: quantile is known to within ``MC_QUANTILE_TOLERANCE`` (relative half-width of its 95 %
#: confidence interval) or the replicate bound for the workflow's size is reached.
MC_FINAL_BATCH = 8
MC_QUANTILE_TOLERANCE = 0.03

EvaluatorMode = Literal["montecarlo", "per-task-sla"]
EVALUATOR_MODES: tuple[str, ...] = ("montecarlo", "per-task-sla")


def mc_replicates(n_tasks: int, budget: int, bounds: tuple[int, int]) -> int:
    """Replicates for a workflow of ``n_tasks``: ``budget / n_tasks`` within ``bounds``.

    >>> mc_replicates(58, 1_000, (4, 16)), mc_replicates(1738, 1_000, (4, 16))
    (16, 4)
    """
    low, high = bounds
    return int(min(max(budget // max(n_tasks, 1), low), high))


class MonteCarloEvaluator:
    """``evaluate(placements) -> Trace``: Monte-Carlo replicates of sampled behaviour.

    Each replicate draws every task's execution time from the predictor's distribution
    (task level, then function level; see :mod:`faasplan.predictors.hierarchy`, within-run
    spread), scales each function's tasks by one factor drawn for that function and every
    task by one whole-run speed factor, both from the history's effects, and
    simulates the plan, cold starts sampled from the platform's distribution. The draws are
    common random numbers: every candidate of one planning call meets the same draws. The
    returned trace is the replicate closest to the SLA quantile of the makespans, with
    ``makespan_ms`` set to that quantile (the mean for ``"average"``), ``cost_usd`` the mean
    over the replicates and ``replicate_makespans_ms`` all of them. :meth:`final` scores a
    chosen plan with more replicates.
    """

    def __init__(self, workflow: Workflow, predictor: Predictor, platform: Platform, sla: str,
                 seed: int = 0, replicates: int | None = None,
                 final_replicates: int | None = None) -> None:
        parse_sla(sla)
        n = len(workflow)
        self.sla = sla
        self.seed = int(seed)
        self.replicates = replicates or mc_replicates(n, MC_SEARCH_TASK_BUDGET,
                                                      MC_SEARCH_REPLICATES)
        self.final_replicates = max(self.replicates, final_replicates or mc_replicates(
            n, MC_FINAL_TASK_BUDGET, MC_FINAL_REPLICATES))
        self.models = SampledModels(workflow, predictor)
        draws = self.models.uniforms(self.seed, self.final_replicates)
        run_draws = self.models.run_uniforms(self.seed, self.final_replicates)
        function_draws = self.models.function_uniforms(self.seed, self.final_replicates)
        self._behaviours = [self.models.replicate(row, float(u), fu)
                            for row, u, fu in zip(draws, run_draws, function_draws,
                                                  strict=True)]
        self.simulator = Simulator(workflow, platform, self._behaviours[0])
        self.simulations = 0
        # The replicates of the last few placements scored, newest last: a plan chosen
        # among them reuses them in its final score.
        self._recent: list[tuple[Any, tuple[Trace, ...]]] = []

    def __call__(self, placements: Mapping[str, Placement]) -> Any:
        return self._score(placements, self.replicates)

    def final(self, placements: Mapping[str, Placement]) -> Any:
        """The score of a chosen plan: replicates in batches of :data:`MC_FINAL_BATCH`
        until :func:`quantile_settled` or :attr:`final_replicates` (a pure function of the
        plan, the predictor and the seed: the stopping rule reads makespans, not clocks)."""
        traces: list[Trace] = []
        key = _key(placements)
        for seen, scored in reversed(self._recent):
            if seen == key:
                traces = list(scored)  # the search's replicates are the first ones: reuse them
                break
        while len(traces) < self.final_replicates:
            k = min(MC_FINAL_BATCH, self.final_replicates - len(traces))
            batch = self._behaviours[len(traces):len(traces) + k]
            traces += self.simulator.run_each(placements, self.seed, batch, first=len(traces))
            self.simulations += k
            if quantile_settled([t.makespan_ms for t in traces], self.sla):
                break
        return monte_carlo_summary(traces, self.sla)

    def _score(self, placements: Mapping[str, Placement], k: int) -> Any:
        traces = self.simulator.run_each(placements, self.seed, self._behaviours[:k])
        self.simulations += k
        self._recent = [*self._recent[-(RECENT_SCORES - 1):], (_key(placements), tuple(traces))]
        return monte_carlo_summary(traces, self.sla)


RECENT_SCORES = 4
"""How many recently scored placements a Monte-Carlo evaluator keeps replicates of."""


def _key(placements: Mapping[str, Placement]) -> tuple[dict[str, Placement], dict[str, Any]]:
    """What makes two placements the same run: the placements and any worker orders."""
    return dict(placements), dict(getattr(placements, "worker_orders", None) or {})


def quantile_settled(makespans: Sequence[float], sla: str,
                     tolerance: float | None = None) -> bool:
    """Whether the SLA quantile of ``makespans`` is known to within ``tolerance`` (default
    :data:`MC_QUANTILE_TOLERANCE`).

    The half-width of the 95 % confidence interval of a sample quantile is
    ``1.96 sqrt(q (1 - q) / K) / f(x_q)``; with log makespans taken as normal of standard
    deviation ``s``, ``f(x_q) = phi(z_q) / s`` in log space, so the relative half-width is
    about ``1.96 s sqrt(q (1 - q) / K) / phi(z_q)`` (for the mean: ``1.96 s / sqrt(K)``).
    Needs :data:`MC_FINAL_BATCH` replicates.

    >>> quantile_settled([1000.0] * 8, "p95"), quantile_settled([900.0, 1100.0] * 4, "p95")
    (True, False)
    """
    values = np.log(np.maximum(np.asarray(makespans, dtype=float), 1e-9))
    k = len(values)
    if k < MC_FINAL_BATCH:
        return False
    s = float(np.std(values, ddof=1))
    q = parse_sla(sla)
    if q is None:
        half = 1.96 * s / math.sqrt(k)
    else:
        q = min(max(q, 0.01), 0.99)
        half = 1.96 * s * math.sqrt(q * (1 - q) / k) / NormalDist().pdf(NormalDist().inv_cdf(q))
    return half <= (MC_QUANTILE_TOLERANCE if tolerance is None else tolerance)


def monte_carlo_summary(traces: list[Trace], sla: str) -> Trace:
    """One trace standing for replicates: the SLA quantile of their makespans (see
    :class:`MonteCarloEvaluator`)."""
    makespans = np.asarray([t.makespan_ms for t in traces], dtype=float)
    q = parse_sla(sla)
    target = float(makespans.mean()) if q is None else float(np.quantile(makespans, q))
    pick = int(np.argmin(np.abs(makespans - target)))
    cost = float(np.mean([t.cost_usd for t in traces]))
    return dataclasses.replace(traces[pick], makespan_ms=target, cost_usd=cost,
                               replicate_makespans_ms=tuple(makespans.tolist()))


def make_evaluator(workflow: Workflow, predictor: Predictor, platform: Platform, sla: str,
                   seed: int = 0, *, mode: EvaluatorMode = "montecarlo",
                   replicates: int | None = None) -> Evaluate:
    """The planners' ``evaluate(placements) -> Trace``.

    ``mode="montecarlo"`` (default): a :class:`MonteCarloEvaluator`, whose predicted
    makespan at SLA ``pNN`` is the NN-th percentile over sampled replicates.
    ``mode="per-task-sla"``: one deterministic simulation with every task's execution time
    and output size at the SLA level, and cold starts fixed at their SLA level (per-task
    levels stack along paths, so this over-states a percentile makespan; kept as an option).
    """
    if mode == "montecarlo":
        return MonteCarloEvaluator(workflow, predictor, platform, sla, seed, replicates)
    if mode != "per-task-sla":
        raise ValueError(f"unknown evaluator mode {mode!r}; use one of {list(EVALUATOR_MODES)}")
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
    Their random streams are disjoint from the ground truth's (:func:`training_seed`).
    """
    sizes = memory_sizes or _spread(platform.memory_sizes_mb, 4)
    records: list[MetricsRecord] = []
    for i in range(runs):
        memory = sizes[i % len(sizes)]
        if i % 2 == 0:
            placements = {t: Placement(None, memory) for t in workflow}
        else:
            placements = {t: Placement(f"w-{t}", memory) for t in workflow}
        trace = simulate(workflow, placements, platform, seed=training_seed(seed, i),
                         behaviour=truth)
        records.extend(trace.metrics(run_id=f"train-{i}", planner="history"))
    return records


def training_seed(seed: int, run: int) -> int:
    """Seed of simulated training run ``run``: drawn from ``SeedSequence([seed, 1, run])``,
    so training runs never share random streams with the ground-truth replicates that
    score plans (children of ``SeedSequence(seed)``)."""
    return int(np.random.SeedSequence([int(seed), 1, int(run)]).generate_state(1)[0])


def fit_history(workflow: Workflow, records: list[MetricsRecord] | pd.DataFrame,
                platform: Platform | None = None) -> Predictor:
    """Predictors fitted on ``records`` with the workflow's io hints as priors, with the
    hierarchical execution-time models under ``platform``'s memory rule."""
    hints = io_hints(workflow)
    platform = platform if platform is not None else Platform()
    return fit(records, hints=hints, platform=platform) if len(records) else \
        Predictor.empty(hints)


def _spread(sizes: tuple[int, ...], k: int) -> tuple[int, ...]:
    ordered = sorted(sizes)
    if len(ordered) <= k:
        return tuple(ordered)
    idx = [round(i * (len(ordered) - 1) / (k - 1)) for i in range(k)]
    return tuple(ordered[i] for i in idx)
