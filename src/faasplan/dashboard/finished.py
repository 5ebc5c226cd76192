"""A finished run as a :class:`~faasplan.dashboard.model.RunModel`, and plan against actual.

A :class:`~faasplan.trace.Trace` from :func:`faasplan.simulate` or :func:`faasplan.run` is
folded exactly like a live run: from its decision log when it recorded one (the runtime
always does), else from events rebuilt from its tables (a worker's start-up, then per task
its inputs, execution and upload), so a finished run and a live one are drawn by the same
code and mean the same thing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from faasplan.dashboard.model import SEGMENT_COLUMNS, PredictedTask, Prediction, RunModel, TaskInfo
from faasplan.trace import Trace
from faasplan.worker.log import Event
from faasplan.workflow import Workflow


def as_trace(run_or_trace: Any) -> Trace:
    """The :class:`Trace` of a trace, a :class:`~faasplan.runtime.RunResult` or a
    :class:`~faasplan.planners.Plan` (its predicted trace).

    Raises
    ------
    TypeError
        ``run_or_trace`` is none of those (the message names its type).
    """
    if isinstance(run_or_trace, Trace):
        return run_or_trace
    for attr in ("trace", "predicted"):
        inner = getattr(run_or_trace, attr, None)
        if isinstance(inner, Trace):
            return inner
    raise TypeError(f"expected a Trace, a RunResult or a Plan with a predicted trace, got "
                    f"{type(run_or_trace).__name__}")


def model_from_trace(trace: Trace, workflow: Workflow | None = None, *, run_id: str = "",
                     planner: str = "", predicted_makespan_ms: float | None = None,
                     prediction: Prediction | None = None) -> RunModel:
    """The :class:`RunModel` of a finished run (closed: nothing more will arrive).

    Edges come from ``workflow`` when given, else from the inputs each execution read
    (in the decision log), else there are none. ``prediction`` (see
    :func:`prediction_from_trace`) is the plan's predicted run, for plan against actual.
    """
    tasks = _task_infos(trace, workflow)
    if predicted_makespan_ms is None and prediction is not None:
        predicted_makespan_ms = prediction.makespan_ms
    model = RunModel(run_id or trace.workflow_name or "trace", trace.workflow_name, planner,
                     tasks, 0.0, predicted_makespan_ms, prediction)
    model.apply_all(trace.log if trace.log else events_from_tables(trace))
    model.closed = True
    return model


def prediction_from_trace(predicted: Trace, workflow: Workflow | None = None,
                          source: str = "plan") -> Prediction:
    """The :class:`~faasplan.dashboard.model.Prediction` of a plan's predicted trace (for
    instance ``plan.predicted``, or :func:`faasplan.simulate` of the plan): per task its
    predicted start, execution and end, and the predicted Gantt bars."""
    rows: Any = predicted.tasks.drop_duplicates("task")
    tasks = {str(r.task): PredictedTask(str(r.worker), float(r.start_ms), float(r.exec_start_ms),
                                        float(r.exec_end_ms), float(r.end_ms))
             for r in rows.itertuples(index=False)}
    model = model_from_trace(predicted, workflow)
    segments: dict[str, list[Any]] = {k: [] for k in SEGMENT_COLUMNS}
    for seg in model.segments:
        segments["worker"].append(seg.worker)
        segments["phase"].append(seg.phase)
        segments["task"].append(seg.task or "")
        segments["start"].append(round(seg.start / 1000.0, 6))
        segments["end"].append(round(seg.end / 1000.0, 6))
    return Prediction(float(predicted.makespan_ms), tasks, segments, source)


def _task_infos(trace: Trace, workflow: Workflow | None) -> list[TaskInfo]:
    tasks = trace.tasks
    upstream: dict[str, tuple[str, ...]] = {}
    if workflow is not None:
        upstream = {t: tuple(workflow.graph.predecessors(t)) for t in workflow.topological_order}
    else:
        for ev in trace.log:
            if ev.kind == "execute" and ev.task is not None and ev.task not in upstream:
                keys = [k for k in ev.info.split(",") if k.startswith("out:")]
                upstream[ev.task] = tuple(k[4:] for k in keys)
    rows = zip(tasks["task"].astype(str), tasks["function"].astype(str),
               tasks["worker"].astype(str), tasks["memory_mb"].astype(int), strict=True)
    return [TaskInfo(task, fn, upstream.get(task, ()), worker, int(mem))
            for task, fn, worker, mem in rows]


def events_from_tables(trace: Trace) -> Iterator[Event]:
    """Decision-log events rebuilt from a trace's tables (for traces recorded without one).

    Per worker a ``start`` (its start-up) and an ``end``; per task a ``fetch`` (inputs,
    when it downloaded anything or waited), an ``execute`` and a ``store`` (when it
    uploaded), in time order.
    """
    events: list[Event] = []
    workers = trace.workers
    row: Any
    for row in workers.itertuples(index=False):
        start = float(row.start_ms)
        label = str(row.worker)
        events.append(Event(label, "start", None, None, int(row.memory_mb),
                            start - float(row.startup_ms), start, str(row.startup_state)))
        events.append(Event(label, "end", None, None, 0, float(row.end_ms), float(row.end_ms)))
    for row in trace.tasks.itertuples(index=False):
        w, task = str(row.worker), str(row.task)
        start, e0, e1, end = (float(row.start_ms), float(row.exec_start_ms),
                              float(row.exec_end_ms), float(row.end_ms))
        if e0 > start or int(row.download_bytes) > 0:
            events.append(Event(w, "fetch", task, None, int(row.download_bytes), start, e0))
        events.append(Event(w, "execute", task, None, int(row.output_bytes), e0, e1))
        if int(row.upload_bytes) > 0:
            events.append(Event(w, "store", task, f"out:{task}", int(row.upload_bytes), e1,
                                max(e1, end)))
    # Each worker emits in time order; an end comes after its last task's effects.
    order = {"start": 0, "fetch": 1, "execute": 2, "store": 3, "end": 4}
    events.sort(key=lambda ev: (ev.end if ev.kind != "start" else ev.start, order[ev.kind]))
    return iter(events)


def plan_vs_actual(predicted: Trace, actual: Trace) -> pd.DataFrame:
    """Per task, predicted and actual times side by side, with the error of the prediction.

    Returns
    -------
    pandas.DataFrame
        Columns ``task``, ``function``, ``worker``, ``predicted_start_ms``,
        ``actual_start_ms``, ``predicted_end_ms``, ``actual_end_ms``, ``predicted_exec_ms``,
        ``actual_exec_ms``, ``exec_error_pct`` (actual over predicted execution, minus one,
        in %) and ``end_error_ms`` (actual minus predicted end); tasks in the actual run's
        order, those the prediction lacks dropped.
    """
    cols = ["task", "worker", "start_ms", "end_ms", "exec_ms"]
    p = predicted.tasks[cols].drop_duplicates("task")
    a = actual.tasks[[*cols, "function"]].drop_duplicates("task")
    both = a.merge(p, on="task", how="inner", suffixes=("_actual", "_predicted"))
    out = pd.DataFrame({
        "task": both["task"].astype(str),
        "function": both["function"].astype(str).str.rsplit(".", n=1).str[-1],
        "worker": both["worker_actual"].astype(str),
        "predicted_start_ms": both["start_ms_predicted"].to_numpy(float),
        "actual_start_ms": both["start_ms_actual"].to_numpy(float),
        "predicted_end_ms": both["end_ms_predicted"].to_numpy(float),
        "actual_end_ms": both["end_ms_actual"].to_numpy(float),
        "predicted_exec_ms": both["exec_ms_predicted"].to_numpy(float),
        "actual_exec_ms": both["exec_ms_actual"].to_numpy(float),
    })
    pred = out["predicted_exec_ms"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.where(pred > 0, (out["actual_exec_ms"].to_numpy(float) / pred - 1.0) * 100.0,
                       np.nan)
    out["exec_error_pct"] = err
    out["end_error_ms"] = out["actual_end_ms"] - out["predicted_end_ms"]
    return out.reset_index(drop=True)
