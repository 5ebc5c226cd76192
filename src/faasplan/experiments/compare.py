"""Compare planners on a scenario: plan with each, score each plan by Monte-Carlo simulation.

Plans are made with predictors (fitted on a metrics history) at the scenario's SLA and then
scored against the *ground truth*: replicates of the simulation with the workflow's real
behaviour and seeded noise. The result holds one row per run and a summary per planner.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from faasplan.experiments.planning import fit_history, has_history, make_evaluator, training_history
from faasplan.planners import Plan, planner_names, run_planner
from faasplan.planners.registry import planner_unavailable
from faasplan.predictors import Predictor, load_history, records_to_frame, single_type
from faasplan.scenarios import LoadedScenario, ScenarioError, build_workflow
from faasplan.simulator import GroundTruth, Platform, TaskBehaviour, Trace, simulate_many
from faasplan.workflow import Workflow

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as planners and replicates complete."""


@dataclass(frozen=True)
class Setup:
    """Everything a comparison needs, built once from a scenario."""

    name: str
    workflow: Workflow
    platform: Platform
    truth: TaskBehaviour
    predictor: Predictor
    planners: tuple[str, ...]
    sla: str
    replicates: int
    seed: int
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    history_records: int = 0
    planning_platform: Platform | None = None
    """The platform planners believe. With a metrics history of measured runs, ``platform``
    calibrated on its transfer and start-up records
    (:func:`faasplan.predictors.calibrate.calibrate`)
    when it has them; with runs simulated on the scenario's platform, that platform.
    ``platform`` itself stays the ground truth plans are scored on."""

    @property
    def believed_platform(self) -> Platform:
        """:attr:`planning_platform`, or the true platform when none was calibrated."""
        return self.planning_platform if self.planning_platform is not None else self.platform


@dataclass(frozen=True)
class Comparison:
    """Outcome of :func:`compare`: per-run rows, per-planner summary, plans, sample traces."""

    setup: Setup
    runs: pd.DataFrame
    summary: pd.DataFrame
    plans: dict[str, Plan]
    traces: dict[str, Trace]

    def to_records(self) -> list[dict[str, Any]]:
        """The summary as JSON-ready dicts, one per planner."""
        return [{str(k): _plain(v) for k, v in row.items()} for row in
                self.summary.to_dict(orient="records")]


def build_platform(loaded: LoadedScenario) -> Platform:
    """``Platform()`` with the scenario's ``[platform]`` overrides (``file`` loads a TOML)."""
    overrides = dict(loaded.scenario.platform)
    base = Platform()
    if "file" in overrides:
        path = loaded.path(str(overrides.pop("file")))
        try:
            base = Platform.from_toml(path)
        except (OSError, ValueError) as exc:
            raise ScenarioError(loaded.source, "platform.file", str(exc)) from None
    try:
        return base.replace(**overrides)
    except (TypeError, ValueError) as exc:
        bad = next((k for k in overrides if k in str(exc)), "")
        raise ScenarioError(loaded.source, f"platform.{bad}" if bad else "platform", str(exc),
                            "see faasplan.Platform for the parameters and their units") from None


def prepare(loaded: LoadedScenario, *, planners: Sequence[str] | None = None,
            replicates: int | None = None, seed: int | None = None, sla: str | None = None,
            history: str | Sequence[str] | None = None) -> Setup:
    """Build the workflow, platform, ground truth and predictors a scenario describes.

    Keyword arguments override the scenario's settings (CLI flags). ``history`` is one or
    more metrics stores (``.parquet``) or WfFormat traces of past runs, of one workflow type.
    """
    sc = loaded.scenario
    wf = build_workflow(loaded)
    platform = build_platform(loaded)
    profiles = None
    if sc.workflow.profile and not sc.workflow.wfformat:
        from faasplan.workflow.local import profile

        profiles = profile(wf, repeat=sc.workflow.profile_repeat)
    truth = GroundTruth(wf, platform, profiles=profiles, noise=sc.history.noise)
    run_seed = sc.scenario.seed if seed is None else seed
    history_paths = history_files(loaded, history)
    if history_paths:
        source = "--history" if history is not None else f"{loaded.source}: history"
        frame = single_type(load_history(history_paths), source)
        # Measured runs: plan on the platform they show, not on the declared one.
        believed = planning_platform(frame, platform)
    else:
        sizes = tuple(sc.history.memory_sizes) if sc.history.memory_sizes else None
        recs = training_history(wf, platform, truth, sc.history.training_runs,
                                memory_sizes=sizes, seed=run_seed)
        frame = records_to_frame(recs)
        # Runs simulated on the scenario's own platform: that platform is known.
        believed = platform
    predictor = fit_history(wf, frame, believed) if len(frame) else Predictor.empty()
    n_records = len(frame)
    names = tuple(planners or sc.planning.planners or planner_names())
    for i, name in enumerate(names):
        problem = planner_unavailable(name)
        if problem is not None:
            raise ScenarioError(loaded.source, f"planning.planners[{i}]",
                                f"planner {name!r} is not available", problem)
    reps = sc.scenario.replicates if replicates is None else replicates
    if reps < 1:
        raise ScenarioError(loaded.source, "scenario.replicates", f"must be >= 1, got {reps}")
    return Setup(sc.scenario.name, wf, platform, truth, predictor, names,
                 sla or sc.planning.sla, reps, run_seed, dict(sc.planning.options), n_records,
                 believed)


def history_files(loaded: LoadedScenario, history: str | Sequence[str] | None
                  ) -> list[str]:
    """The history files to fit on: ``history`` (CLI, relative to the working directory)
    when given, else the scenario's ``[history] metrics`` and ``traces`` (relative to the
    scenario file)."""
    if history is not None:
        return [history] if isinstance(history, str) else [str(h) for h in history]
    section = loaded.scenario.history
    named = ([section.metrics] if section.metrics else []) + list(
        getattr(section, "traces", None) or [])
    return [str(loaded.path(p)) for p in named]


def planning_platform(history: pd.DataFrame, platform: Platform) -> Platform:
    """``platform`` calibrated on the history's transfer and start-up records.

    The fitted start-up times, storage latency and worker bandwidth (and execution speed
    against memory) replace the given values; a history without such records (e.g.
    WfFormat traces) leaves ``platform`` as it is.
    """
    if not len(history):
        return platform
    has_transfers = bool(history["downloads"].map(len).sum() + history["uploads"].map(len).sum())
    has_starts = bool((history["startup"] != "none").any())
    if not (has_transfers or has_starts):
        return platform
    from faasplan.predictors.calibrate import calibrate

    calibrated, _ = calibrate(history, platform)
    return calibrated


def plan_with(setup: Setup, planner: str, **extra: Any) -> Plan:
    """Plan the setup's workflow with ``planner`` and the setup's predictors."""
    believed = setup.believed_platform
    evaluate = make_evaluator(setup.workflow, setup.predictor, believed, setup.sla,
                              setup.seed)
    options = {**setup.options.get(planner, {}), **extra}
    return run_planner(planner, setup.workflow, setup.predictor, believed, sla=setup.sla,
                       seed=setup.seed, evaluate=evaluate,
                       history=has_history(setup.predictor), **options)


def compare(setup: Setup, progress: Progress | None = None) -> Comparison:
    """Plan with every planner of ``setup`` and score each plan on the ground truth."""
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    plans: dict[str, Plan] = {}
    traces: dict[str, Trace] = {}
    total = len(setup.planners)
    for i, name in enumerate(setup.planners):
        started = time.perf_counter()
        plan = plan_with(setup, name)
        planning_ms = (time.perf_counter() - started) * 1000.0
        runs = simulate_many(setup.workflow, plan, setup.platform, seed=setup.seed,
                             replicates=setup.replicates, behaviour=setup.truth)
        plans[name], traces[name] = plan, runs[0]
        for r, trace in enumerate(runs):
            rows.append({"planner": name, "replicate": r, "makespan_ms": trace.makespan_ms,
                         "cost_usd": trace.cost_usd, "cold_starts": trace.cold_starts,
                         "storage_bytes": trace.storage_bytes})
        summary.append(_summarise(name, runs, plan, planning_ms))
        if progress is not None:
            progress("planners", i + 1, total)
    return Comparison(setup, pd.DataFrame(rows), pd.DataFrame(summary), plans, traces)


def _summarise(name: str, runs: list[Trace], plan: Plan, planning_ms: float) -> dict[str, Any]:
    makespans = np.array([t.makespan_ms for t in runs])
    return {
        "planner": name,
        "makespan_p50_ms": float(np.percentile(makespans, 50)),
        "makespan_p95_ms": float(np.percentile(makespans, 95)),
        "makespan_p99_ms": float(np.percentile(makespans, 99)),
        "makespan_mean_ms": float(makespans.mean()),
        "predicted_makespan_ms": plan.predicted_makespan_ms,
        **{f"predicted_{k}_ms": v for k, v in plan.predicted_quantiles.items()},
        "predicted_cost_usd": plan.predicted_cost_usd,
        "cost_usd": float(np.mean([t.cost_usd for t in runs])),
        "cold_starts": float(np.mean([t.cold_starts for t in runs])),
        "storage_bytes": float(np.mean([t.storage_bytes for t in runs])),
        "workers": len(runs[0].workers),
        "planning_ms": planning_ms,
        "replicates": len(runs),
        "notes": "; ".join(plan.notes),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value
