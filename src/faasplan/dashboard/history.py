"""The history view's data: the workflow types of a metrics history, and planner comparisons.

:class:`HistoryStore` reads Parquet metrics stores and WfFormat traces with
:func:`faasplan.predictors.load_history`, groups the runs into workflow types with
:func:`faasplan.predictors.workflow_types`, and knows a workflow definition per structure
hash (a trace is its own; a metrics store has the catalog beside it,
:func:`faasplan.experiments.history.recall_workflows`). :func:`compare_type` plans and
scores chosen planners on one type with :func:`faasplan.experiments.compare.compare`, as
``faasplan compare --history`` does, and returns plain JSON for the pages and the API.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from faasplan.workflow import Workflow

DEFAULT_REPLICATES = 20
MAX_REPLICATES = 1000
MAX_GANTT_BARS = 20_000
"""Above this many bars a comparison's Gantt keeps the longest ones only."""

Progress = Callable[[str, int, int], None]


class HistoryError(ValueError):
    """A request the history cannot answer: unknown type, bad planner or SLA (HTTP 4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class WorkflowType:
    """Runs of one workflow type (same set of functions) and the definitions known for it."""

    id: str
    name: str
    runs: tuple[dict[str, Any], ...]
    records: int
    hashes: tuple[str, ...]
    """Structure hashes with a known definition, largest workflow first."""

    def to_json(self) -> dict[str, Any]:
        """The type's entry of ``GET /api/history``."""
        return {"id": self.id, "name": self.name, "records": self.records,
                "runs": list(self.runs), "comparable": bool(self.hashes),
                "workflows": list(self.hashes)}


def type_id(name: str) -> str:
    """A short id for a type name, safe in a URL (the name's own hash when it has one)."""
    tail = name.rsplit("#", 1)[-1]
    if len(tail) == 8 and all(c in "0123456789abcdef" for c in tail):
        return tail
    return hashlib.sha256(name.encode()).hexdigest()[:8]


class HistoryStore:
    """The workflow types of the metrics files ``paths`` (read once, when made).

    Raises
    ------
    FileNotFoundError, faasplan.predictors.MetricsError, faasplan.workflow.WorkflowError
        A file is missing or invalid (the message names it).
    """

    def __init__(self, paths: Sequence[str]) -> None:
        from faasplan.predictors import load_history, workflow_types

        self.paths = tuple(str(p) for p in paths)
        self.frame = load_history(list(self.paths)) if self.paths else _empty_history()
        self.workflows = _known_workflows(self.paths)
        self.types: dict[str, WorkflowType] = {}
        self._rows: dict[str, pd.DataFrame] = {}
        for name, rows in workflow_types(self.frame).items():
            wt = _workflow_type(name, rows, self.workflows)
            self.types[wt.id] = wt
            self._rows[wt.id] = rows

    def to_json(self) -> dict[str, Any]:
        """``GET /api/history``."""
        return {"files": list(self.paths), "types": [t.to_json() for t in self.types.values()]}

    def get(self, key: str) -> WorkflowType:
        """The type of id or name ``key``; :class:`HistoryError` (404) naming the known ones."""
        wt = self.types.get(key) or next((t for t in self.types.values() if t.name == key),
                                         None)
        if wt is None:
            known = ", ".join(self.types) or "none"
            raise HistoryError(f"unknown workflow type {key!r}; known: {known}", 404)
        return wt

    def rows(self, key: str) -> pd.DataFrame:
        """The metrics records of type ``key``."""
        return self._rows[self.get(key).id]


def _empty_history() -> pd.DataFrame:
    from faasplan.predictors import records_to_frame

    return records_to_frame([])


def _known_workflows(paths: Sequence[str]) -> dict[str, Workflow]:
    from faasplan.experiments.history import recall_workflows
    from faasplan.predictors.wfrecords import TRACE_SUFFIXES
    from faasplan.workflow import load_wfformat

    known: dict[str, Workflow] = {}
    for path in paths:
        if str(path).lower().endswith(TRACE_SUFFIXES):
            wf = load_wfformat(path)
            known[wf.structure_hash] = wf
        else:
            known.update(recall_workflows(path))
    return known


def _workflow_type(name: str, rows: pd.DataFrame, known: dict[str, Workflow]) -> WorkflowType:
    runs = []
    for (h, run_id), sub in rows.groupby(["workflow_hash", "run_id"], sort=False):
        runs.append({"run_id": str(run_id), "workflow_hash": str(h), "tasks": len(sub),
                     "planner": str(sub["planner"].iloc[0]),
                     "workflow": known[str(h)].name if str(h) in known else None})
    hashes = sorted({str(h) for h in rows["workflow_hash"] if str(h) in known},
                    key=lambda h: (-len(known[h]), h))
    return WorkflowType(type_id(name), name, tuple(runs), len(rows), tuple(hashes))


# -- a comparison -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompareRequest:
    """What ``POST /api/history/{type}/compare`` asks for, checked."""

    planners: tuple[str, ...]
    sla: str = "p95"
    replicates: int = DEFAULT_REPLICATES
    seed: int = 0
    workflow: str | None = None
    """Structure hash of the workflow to plan (default: the type's largest known)."""

    @classmethod
    def parse(cls, body: Any) -> CompareRequest:
        """Check a request body; :class:`HistoryError` (400) names the bad field and value."""
        from faasplan.planners import planner_names

        if not isinstance(body, dict):
            raise HistoryError(f"the body must be a JSON object, got {type(body).__name__}")
        unknown = sorted(set(body) - {"planners", "sla", "replicates", "seed", "workflow"})
        if unknown:
            raise HistoryError(f"unknown field(s) {unknown}; allowed: planners, sla, "
                               "replicates, seed, workflow")
        planners = body.get("planners", ["wukong", "uniform", "heft"])
        if (not isinstance(planners, list) or not planners
                or not all(isinstance(p, str) for p in planners)):
            raise HistoryError(f"planners must be a non-empty list of names, got {planners!r}")
        bad = [p for p in planners if p not in planner_names()]
        if bad:
            raise HistoryError(f"unknown planner(s) {bad}; choose from "
                               f"{', '.join(planner_names())}")
        sla, seed, workflow = _plan_fields(body)
        replicates = body.get("replicates", DEFAULT_REPLICATES)
        if not isinstance(replicates, int) or isinstance(replicates, bool) or not (
                1 <= replicates <= MAX_REPLICATES):
            raise HistoryError(f"replicates must be an integer in 1..{MAX_REPLICATES}, got "
                               f"{replicates!r}")
        return cls(tuple(dict.fromkeys(planners)), sla, replicates, seed, workflow)


def _plan_fields(body: Mapping[str, Any]) -> tuple[str, int, str | None]:
    """The ``sla``, ``seed`` and ``workflow`` fields of a compare or run request, checked."""
    from faasplan.scenarios.schema import SLA_PATTERN

    sla = body.get("sla", "p95")
    if not isinstance(sla, str) or not SLA_PATTERN.match(sla):
        raise HistoryError(f"sla must be 'average' or a percentile like 'p95', got {sla!r}")
    seed = body.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise HistoryError(f"seed must be an integer >= 0, got {seed!r}")
    workflow = body.get("workflow")
    if workflow is not None and not isinstance(workflow, str):
        raise HistoryError(f"workflow must be a structure hash, got {workflow!r}")
    return sla, seed, workflow


def compare_type(store: HistoryStore, key: str, request: CompareRequest,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Plan and score ``request.planners`` on workflow type ``key`` (see the module docs).

    The predictors are fitted on every record of the type, on the platform the records
    show (:func:`faasplan.experiments.compare.planning_platform`); plans are scored on
    replicates whose tasks behave as the history did
    (:class:`faasplan.experiments.history.HistoryBehaviour`).

    Returns
    -------
    dict
        ``summary`` (one row per planner, with ``sla_makespan_ms``), ``pareto`` (planners
        on the cost/makespan front), ``cdf`` (per planner, its sorted replicate
        makespans), ``best`` (the best planner at the SLA with its plan's Gantt, DAG and
        plan-vs-actual table) and what was compared.
    """
    wf, rows, meta = resolve(store, key, request)
    return compare_rows(wf, rows, request, meta, progress)


def resolve(store: HistoryStore, key: str, request: CompareRequest
            ) -> tuple[Workflow, pd.DataFrame, dict[str, Any]]:
    """The workflow to plan, the records to fit on and what to say about them.

    Raises
    ------
    HistoryError
        Unknown type (404), a type without a known definition (422), or a ``workflow``
        that is not one of the type's definitions (400).
    """
    wt = store.get(key)
    if not wt.hashes:
        raise HistoryError(f"workflow type {wt.name!r} has no known definition: give its "
                           "WfFormat trace, or a metrics store written with a workflow "
                           "catalog (faasplan simulate/run --metrics-out)", 422)
    chosen = request.workflow or wt.hashes[0]
    if chosen not in wt.hashes:
        raise HistoryError(f"workflow {chosen!r} is not a known definition of type "
                           f"{wt.name!r}; known: {', '.join(wt.hashes)}")
    wf = store.workflows[chosen]
    return wf, store.rows(wt.id), {"type": wt.id, "type_name": wt.name, "workflow": wf.name,
                                   "workflow_hash": chosen}


def compare_rows(wf: Workflow, rows: pd.DataFrame, request: CompareRequest,
                 meta: dict[str, Any] | None = None, progress: Progress | None = None
                 ) -> dict[str, Any]:
    """:func:`compare_type` once the workflow and its records are known (what a job runs)."""
    from faasplan.experiments.compare import Setup, compare, planning_platform
    from faasplan.experiments.history import HistoryBehaviour
    from faasplan.experiments.planning import fit_history
    from faasplan.platform import Platform

    started = time.perf_counter()
    if progress is not None:
        progress("fitting", 0, len(request.planners))
    believed = planning_platform(rows, Platform())
    predictor = fit_history(wf, rows, believed)
    setup = Setup(f"{wf.name} ({wf.structure_hash})", wf, Platform(),
                  HistoryBehaviour(wf, predictor), predictor, request.planners, request.sla,
                  request.replicates, request.seed, {}, len(rows), believed)
    result = compare(setup, progress)
    out = comparison_json(result, request.sla)
    out.update(meta or {})
    out.update({"tasks": len(wf), "records": len(rows),
                "elapsed_s": round(time.perf_counter() - started, 3)})
    return out


def comparison_json(result: Any, sla: str) -> dict[str, Any]:
    """A :class:`~faasplan.experiments.compare.Comparison` as the history page draws it."""
    from faasplan.dashboard.finished import model_from_trace, plan_vs_actual
    from faasplan.predictors import parse_sla
    from faasplan.report.html import best_planner
    from faasplan.report.pareto import pareto_front

    q = parse_sla(sla)
    summary = result.summary.copy()
    cdf: dict[str, list[float]] = {}
    at_sla = []
    for name in summary["planner"]:
        spans = np.sort(result.runs.loc[result.runs["planner"] == name, "makespan_ms"]
                        .to_numpy(float))
        cdf[str(name)] = spans.tolist()
        at_sla.append(float(spans.mean() if q is None else np.quantile(spans, q)))
    summary["sla_makespan_ms"] = at_sla
    column = "makespan_mean_ms" if q is None else f"makespan_{sla}_ms"
    if column not in summary.columns:
        summary[column] = at_sla
    best = best_planner(summary, sla)
    front = pareto_front(list(zip(summary["cost_usd"].astype(float), at_sla, strict=True)))
    plan, trace = result.plans[best], result.traces[best]
    model = model_from_trace(trace, result.setup.workflow, planner=best,
                             predicted_makespan_ms=plan.predicted_makespan_ms)
    detail = model.detail()
    predicted = (model_from_trace(plan.predicted, result.setup.workflow).detail()["workers"]
                 if plan.predicted is not None else [])
    pva = (plan_vs_actual(plan.predicted, trace) if plan.predicted is not None
           else pd.DataFrame())
    return {
        "sla": sla, "replicates": int(result.setup.replicates),
        "summary": [{str(k): _plain(v) for k, v in row.items()}
                    for row in summary.to_dict(orient="records")],
        "pareto": [str(summary["planner"].iloc[i]) for i in front],
        "cdf": cdf,
        "best": {"planner": best, "makespan_ms": float(trace.makespan_ms),
                 "predicted_makespan_ms": _plain(plan.predicted_makespan_ms),
                 "workers": _longest(detail["workers"]), "tasks": detail["tasks"],
                 "predicted_workers": _longest(predicted),
                 "plan_vs_actual": [{str(k): _plain(v) for k, v in r.items()}
                                    for r in pva.to_dict(orient="records")]},
    }


def _longest(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Workers with their timelines, cut to :data:`MAX_GANTT_BARS` bars (longest kept)."""
    bars = sum(len(w["timeline"]) for w in workers)
    if bars <= MAX_GANTT_BARS:
        return workers
    lengths = sorted((b["end"] - b["start"] for w in workers for b in w["timeline"]),
                     reverse=True)
    cut = lengths[MAX_GANTT_BARS - 1]
    return [{**w, "timeline": [b for b in w["timeline"] if b["end"] - b["start"] >= cut]}
            for w in workers]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value



# -- a real run of a planned type -----------------------------------------------------------------
MAX_TIME_SCALE = 1000.0
DEFAULT_RUN_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class RunRequest:
    """What ``POST /api/history/{type}/run`` asks for, checked.

    ``time_scale`` applies to synthetic tasks only (a type known from WfFormat traces):
    each sleeps its predicted execution time times ``time_scale``.
    """

    planner: str
    sla: str = "p95"
    seed: int = 0
    workflow: str | None = None
    time_scale: float = 1.0
    timeout_s: float = DEFAULT_RUN_TIMEOUT_S

    @classmethod
    def parse(cls, body: Any) -> RunRequest:
        """Check a request body; :class:`HistoryError` (400) names the bad field and value."""
        from faasplan.planners import planner_names

        if not isinstance(body, dict):
            raise HistoryError(f"the body must be a JSON object, got {type(body).__name__}")
        allowed = ("planner", "sla", "seed", "workflow", "time_scale", "timeout_s")
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise HistoryError(f"unknown field(s) {unknown}; allowed: {', '.join(allowed)}")
        planner = body.get("planner")
        if not isinstance(planner, str) or planner not in planner_names():
            raise HistoryError(f"planner must be one of {', '.join(planner_names())}, got "
                               f"{planner!r}")
        sla, seed, workflow = _plan_fields(body)
        scale = body.get("time_scale", 1.0)
        if (not isinstance(scale, int | float) or isinstance(scale, bool)
                or not 0 < scale <= MAX_TIME_SCALE):
            raise HistoryError(f"time_scale must be a number in (0, {MAX_TIME_SCALE:g}], got "
                               f"{scale!r}")
        timeout = body.get("timeout_s", DEFAULT_RUN_TIMEOUT_S)
        if (not isinstance(timeout, int | float) or isinstance(timeout, bool)
                or not 0 < timeout <= 24 * 3600):
            raise HistoryError(f"timeout_s must be a number of seconds in (0, 86400], got "
                               f"{timeout!r}")
        return cls(planner, sla, seed, workflow, float(scale), float(timeout))

    def as_compare(self) -> CompareRequest:
        """The same planner, SLA, seed and workflow as a comparison request (to resolve)."""
        return CompareRequest((self.planner,), self.sla, 1, self.seed, self.workflow)


def is_synthetic(wf: Workflow) -> bool:
    """Whether every task of ``wf`` is a stand-in of a WfFormat trace task
    (:func:`faasplan.workflow.wfformat.synthetic_task`): the trace has no code to run."""
    from faasplan.workflow.wfformat import synthetic_task

    return len(wf) > 0 and all(n.func.fn is synthetic_task for n in wf.tasks.values())


def run_support(store: HistoryStore, key: str) -> tuple[str | None, str]:
    """How type ``key`` can be run for real: ``("code", why)``, ``("synthetic", why)``, or
    ``(None, why not)``; ``why`` is a sentence for the page."""
    wt = store.get(key)
    if not wt.hashes:
        return None, (f"workflow type {wt.name!r} cannot be run: its code is not known (give "
                      "its WfFormat trace, or a metrics store written with a workflow "
                      "catalog by faasplan simulate/run --metrics-out)")
    wf = store.workflows[wt.hashes[0]]
    if is_synthetic(wf):
        return "synthetic", ("the type comes from a WfFormat trace, which records no code: "
                             "each task runs as a synthetic task that sleeps its predicted "
                             "execution time (times the time scale) and returns an output of "
                             "its recorded size")
    return "code", "runs the workflow's own task functions, from the metrics store's catalog"


class FixedBehaviour:
    """Tasks take exactly the given execution times and output sizes (a plan's prediction
    replayed by the simulator)."""

    def __init__(self, exec_ms: dict[str, float], output_bytes: dict[str, int]) -> None:
        self._exec = exec_ms
        self._out = output_bytes

    def exec_ms(self, task_id: str, memory_mb: int, input_bytes: int,
                rng: np.random.Generator) -> float:
        """The given execution time of ``task_id``."""
        return self._exec[task_id]

    def output_bytes(self, task_id: str, input_bytes: int, rng: np.random.Generator) -> int:
        """The given output size of ``task_id``."""
        return self._out[task_id]


def sleeping_copy(wf: Workflow, exec_ms: dict[str, float]) -> Workflow:
    """A synthetic workflow (:func:`is_synthetic`) whose tasks sleep ``exec_ms[task]`` when
    run, with the same task ids, functions and edges (so a plan of ``wf`` applies)."""
    from faasplan.workflow.task import TaskNode, TaskProfile

    new: dict[int, TaskNode] = {}

    def swap(value: Any) -> Any:
        if isinstance(value, TaskNode):
            return new[id(value)]
        if isinstance(value, tuple):
            return tuple(swap(v) for v in value)
        if isinstance(value, list):
            return [swap(v) for v in value]
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        return value

    for tid in wf.topological_order:
        node = wf.tasks[tid]
        ms = float(exec_ms[tid])
        kwargs = {**swap(node.kwargs), "runtime_ms": ms, "sleep": True}
        old = node.profile
        profile = TaskProfile(exec_ms=ms, output_bytes=old.output_bytes if old is not None
                              else int(kwargs.get("output_bytes", 0)))
        new[id(node)] = TaskNode(node.func, swap(node.args), kwargs, tid, profile)
    return Workflow([new[id(wf.tasks[s])] for s in wf.sinks], name=wf.name, detect=False)


def plan_run(wf: Workflow, rows: pd.DataFrame, request: RunRequest,
             progress: Progress | None = None) -> tuple[Workflow, Any, Any]:
    """Plan ``wf`` for a real run as the history view compares it.

    The predictors are fitted on ``rows`` as in :func:`compare_rows`. Returns the workflow
    to run (``wf`` itself, or for a synthetic one :func:`sleeping_copy` sleeping the plan's
    predicted execution times times ``request.time_scale``), the plan, and the
    :class:`~faasplan.dashboard.model.Prediction` of the run: the plan's predicted trace,
    or for a time scale other than 1 the simulator's run of the plan with the scaled times.
    """
    from faasplan.dashboard.finished import prediction_from_trace
    from faasplan.experiments.compare import Setup, plan_with, planning_platform
    from faasplan.experiments.history import HistoryBehaviour
    from faasplan.experiments.planning import fit_history
    from faasplan.platform import Platform
    from faasplan.simulator import simulate

    if progress is not None:
        progress("fitting", 0, 3)
    believed = planning_platform(rows, Platform())
    predictor = fit_history(wf, rows, believed)
    setup = Setup(f"{wf.name} ({wf.structure_hash})", wf, Platform(),
                  HistoryBehaviour(wf, predictor), predictor, (request.planner,), request.sla,
                  1, request.seed, {}, len(rows), believed)
    if progress is not None:
        progress("planning", 1, 3)
    plan = plan_with(setup, request.planner)
    predicted = plan.predicted
    if predicted is None:
        predicted = simulate(wf, plan, believed, seed=request.seed,
                             behaviour=HistoryBehaviour(wf, predictor))
    if not is_synthetic(wf):
        return wf, plan, prediction_from_trace(predicted, wf)
    rows_p = predicted.tasks.drop_duplicates("task").set_index("task")
    scale = request.time_scale
    exec_ms = {t: float(rows_p.loc[t, "exec_ms"]) * scale for t in wf.topological_order}
    to_run = sleeping_copy(wf, exec_ms)
    if scale == 1.0:
        return to_run, plan, prediction_from_trace(predicted, wf)
    out = {t: int(rows_p.loc[t, "output_bytes"]) for t in wf.topological_order}
    scaled = simulate(to_run, plan, believed, seed=request.seed,
                      behaviour=FixedBehaviour(exec_ms, out))
    return to_run, plan, prediction_from_trace(scaled, wf,
                                               source=f"simulated at time scale {scale:g}")
