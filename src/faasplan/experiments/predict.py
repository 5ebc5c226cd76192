"""Predict a workflow run from the history alone: per-task times, critical path, makespan.

The target workflow contributes its structure and its workflow inputs only. Its recorded
runtimes and output sizes (the profiles of an imported trace) are what is being predicted
and are never read: input sizes are propagated from the workflow inputs with the
predicted output sizes of upstream tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from faasplan.workflow import SizedBlob, Workflow, iter_leaves

#: Monte-Carlo draws of the critical path.
DEFAULT_PATH_REPLICATES = 1_000
QUANTILES = (("p10", 0.1), ("p50", 0.5), ("p90", 0.9))


@dataclass(frozen=True)
class Prediction:
    """What :func:`predict_workflow` returns (see :meth:`to_dict` for the JSON form)."""

    tasks: pd.DataFrame
    critical_path_ms: dict[str, float]
    makespan_ms: dict[str, float]
    planner: str
    replicates: int
    path_draws: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """``{"tasks": [...], "critical_path_ms": {...}, "makespan_ms": {...}, ...}``."""
        rows = [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()}
                for r in self.tasks.to_dict(orient="records")]
        return {"tasks": rows, "critical_path_ms": self.critical_path_ms,
                "makespan_ms": self.makespan_ms, "planner": self.planner,
                "replicates": self.replicates}


def propagate_input_bytes(workflow: Workflow, predictor: Any) -> dict[str, float]:
    """Input bytes of every task: its workflow inputs plus its upstreams' predicted outputs
    (a task seen before: its recorded median output; else its function's median)."""
    wf_hash = workflow.structure_hash
    inputs: dict[str, float] = {}
    outputs: dict[str, float] = {}
    for tid in workflow.topological_order:
        node = workflow.node(tid)
        literal = sum(b.nbytes for b in iter_leaves((node.args, node.kwargs), SizedBlob))
        nbytes = float(literal + sum(outputs[u] for u in workflow.upstream(tid)))
        inputs[tid] = nbytes
        own = predictor.task_output_bytes(wf_hash, tid)
        outputs[tid] = max(0.0, float(own if own is not None else predictor.output_bytes(
            node.func.name, nbytes, "p50", hint=node.func.io)))
    return inputs


def critical_path_draws(workflow: Workflow, predictor: Any, memory_mb: float,
                        replicates: int, rng: np.random.Generator,
                        input_bytes: dict[str, float] | None = None
                        ) -> tuple[np.ndarray, pd.DataFrame]:
    """Monte-Carlo draws of the longest path of execution times alone (no transfers, no
    start-ups). In each replicate a task's time is its within-run draw at ``memory_mb``,
    times one factor drawn per function and one whole-run speed factor, as in the
    planners' Monte-Carlo evaluator (:class:`faasplan.simulator.SampledBehaviour`).
    Returns the draws and the per-task table."""
    inputs = input_bytes if input_bytes is not None else propagate_input_bytes(workflow,
                                                                               predictor)
    wf_hash = workflow.structure_hash
    run = _draw(predictor.run_effects, rng.random(replicates))
    shared: dict[str, np.ndarray] = {}
    finish: dict[str, np.ndarray] = {}
    rows = []
    for tid in workflow.topological_order:
        fn = workflow.node(tid).func.name
        if fn not in shared:
            shared[fn] = run * _draw(predictor.function_effect(fn), rng.random(replicates))
        dist = predictor.exec_distribution(fn, inputs[tid], memory_mb, wf_hash, tid)
        draws = dist.median_ms * _draw(dist.within_residuals, rng.random(replicates))
        ready = np.zeros(replicates)
        for up in workflow.upstream(tid):
            ready = np.maximum(ready, finish[up])
        finish[tid] = ready + draws * shared[fn]
        rows.append({"task": tid, "function": fn, "exec_ms_p50": dist.quantile(0.5),
                     "exec_ms_p90": dist.quantile(0.9), "samples": int(dist.samples),
                     "source": dist.source})
    sinks = [t for t in workflow.topological_order if not workflow.downstream(t)]
    path = np.max(np.vstack([finish[t] for t in sinks]), axis=0)
    return path, pd.DataFrame(rows)


def _draw(dist: Any, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws of an empirical distribution (linear between order statistics)."""
    values = np.asarray(dist.values, dtype=float)
    if len(values) == 1:
        return np.full(len(u), values[0])
    return np.interp(u * (len(values) - 1), np.arange(len(values)), values)


def predict_workflow(workflow: Workflow, history: pd.DataFrame, *, platform: Any = None,
                     planner: str = "heft", sla: str = "p95", seed: int = 0,
                     path_replicates: int = DEFAULT_PATH_REPLICATES,
                     memory_mb: float | None = None) -> Prediction:
    """Predict ``workflow`` from ``history`` (a metrics frame) alone.

    ``critical_path_ms`` is the Monte-Carlo distribution of the longest path of execution
    times at ``memory_mb`` (default: the platform's reference memory, the memory recorded
    runtimes are mapped to); ``makespan_ms`` is the distribution over the Monte-Carlo
    replicates of ``planner``'s plan on ``platform``.
    """
    from faasplan.experiments.planning import MonteCarloEvaluator, fit_history
    from faasplan.planners import run_planner
    from faasplan.simulator import Platform

    platform = platform if platform is not None else Platform()
    predictor = fit_history(workflow, history, platform)
    memory = float(memory_mb if memory_mb is not None else platform.reference_memory_mb)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xC417]))
    draws, tasks = critical_path_draws(workflow, predictor, memory, path_replicates, rng)
    critical = {name: float(np.quantile(draws, q)) for name, q in QUANTILES}
    evaluate = MonteCarloEvaluator(workflow, predictor, platform, sla, seed)
    plan = run_planner(planner, workflow, predictor, platform, sla=sla, seed=seed,
                       evaluate=evaluate, history=bool(len(history)))
    reps = np.asarray(plan.predicted.replicate_makespans_ms, dtype=float)
    makespan = {name: float(np.quantile(reps, q)) for name, q in QUANTILES}
    return Prediction(tasks, critical, makespan, planner, len(reps), draws)


def predict_target(target: str, history: list[str], *, planner: str = "heft",
                   sla: str = "p95", seed: int = 0) -> Prediction:
    """:func:`predict_workflow` for a CLI target (scenario, trace or ``module:function``)
    and history files (Parquet metrics and WfFormat traces, one workflow type).

    Raises
    ------
    faasplan.predictors.MetricsError
        The history mixes workflow types, or shares no function with the target.
    """
    from faasplan.experiments.compare import build_platform
    from faasplan.predictors import MetricsError, load_history, single_type
    from faasplan.scenarios import build_workflow, load_target

    loaded = load_target(target)
    workflow = build_workflow(loaded)
    frame = single_type(load_history(history), "--history")
    known = set(frame["function"].astype(str))
    functions = {workflow.node(t).func.name for t in workflow}
    if not known & functions:
        raise MetricsError(f"--history: its runs share no function with {target} "
                           f"(history: {', '.join(sorted(known)[:5])}; target: "
                           f"{', '.join(sorted(functions)[:5])}); give past runs of this "
                           "workflow type")
    return predict_workflow(workflow, frame, platform=build_platform(loaded), planner=planner,
                            sla=sla, seed=seed)
