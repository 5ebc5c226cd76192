"""The result of a run: per-task and per-worker tables, totals, metrics and a Gantt chart.

Times are ms from the run's start. The per-task columns are those a planner needs
(the predecessor system's ``PlanningTaskInfo``):

=====================  ===========================================================
``start_ms``           the worker began gathering the task's inputs
``exec_start_ms``      the function started; ``exec_end_ms`` it returned
``end_ms``             the worker was done with the task (upload, tracking, delegation)
``input_bytes``        total size of the inputs given to the function
``output_bytes``       size of its output
``download_bytes``     bytes the task fetched (inputs from storage, literals)
``upload_bytes``       bytes of its output stored (0 if no other worker needed it)
``startup_state``      ``cold``/``warm`` for the first task of an invocation, else ``none``
``startup_ms``         that start time (0 for ``none``)
``download_ms``        download time on the task's path: from when it could start (worker
                       free and inputs available) to the function's start
``exec_ms``            execution time
``upload_ms``          time of its uploads (one round trip plus the transfer)
``total_download_ms``  summed time of all its downloads, pre-loaded ones included
``earliest_start_ms``  when all its inputs were available (stored, or produced locally)
``completion_ms``      when its output was available to others (stored, else produced)
=====================  ===========================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from faasplan.worker import output_key

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from faasplan.predictors.metrics import MetricsRecord
    from faasplan.simulator.driver import RunResult

TASK_COLUMNS: tuple[str, ...] = (
    "task", "function", "worker", "memory_mb", "start_ms", "exec_start_ms", "exec_end_ms",
    "end_ms", "input_bytes", "output_bytes", "download_bytes", "upload_bytes",
    "startup_state", "startup_ms", "download_ms", "exec_ms", "upload_ms",
    "total_download_ms", "earliest_start_ms", "completion_ms",
)
WORKER_COLUMNS: tuple[str, ...] = (
    "worker", "memory_mb", "invoked_ms", "start_ms", "end_ms", "startup_state", "startup_ms",
    "queued_ms", "container", "tasks", "prewarm", "cost_usd",
)

# (nbytes, ms, streamed) of one transfer
TransferTuple = tuple[int, float, bool]


@dataclass(frozen=True, eq=False)
class Trace:
    """A simulated run (see the module docstring for the ``tasks`` columns).

    ``workers`` has one row per invocation (``WORKER_COLUMNS``); its ``cost_usd`` bills
    the sandbox from the start of its start-up to the end of its last effect, plus the
    request fee. ``storage_bytes`` counts the task outputs workers stored (the client's
    literals and DAG are in ``client_bytes``). ``replicate_makespans_ms`` holds the
    makespan of every Monte-Carlo replicate, this run first.
    """

    makespan_ms: float
    tasks: pd.DataFrame
    workers: pd.DataFrame
    cost_usd: float
    cold_starts: int
    storage_bytes: int
    invocations: int
    client_bytes: int = 0
    workflow_hash: str = ""
    workflow_name: str = ""
    seed: int = 0
    replicate_makespans_ms: tuple[float, ...] = ()
    transfers: Mapping[str, tuple[tuple[TransferTuple, ...], tuple[TransferTuple, ...]]] = \
        field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return (f"Trace({self.workflow_name!r}, makespan_ms={self.makespan_ms:.1f}, "
                f"tasks={len(self.tasks)}, invocations={self.invocations}, "
                f"cold_starts={self.cold_starts}, cost_usd={self.cost_usd:.6g})")

    def summary(self) -> dict[str, Any]:
        """Totals as a flat dict (with makespan percentiles over the replicates)."""
        reps = np.asarray(self.replicate_makespans_ms or (self.makespan_ms,), dtype=float)
        out: dict[str, Any] = {
            "workflow": self.workflow_name,
            "tasks": len(self.tasks),
            "makespan_ms": self.makespan_ms,
            "cost_usd": self.cost_usd,
            "invocations": self.invocations,
            "cold_starts": self.cold_starts,
            "storage_bytes": self.storage_bytes,
            "client_bytes": self.client_bytes,
            "replicates": int(reps.size),
        }
        for q in (50, 90, 95, 99):
            out[f"makespan_p{q}_ms"] = float(np.percentile(reps, q))
        return out

    def metrics(self, run_id: str = "sim", planner: str = "") -> list[MetricsRecord]:
        """One :class:`~faasplan.predictors.metrics.MetricsRecord` per task execution.

        ``planner`` is recorded as given (``"unknown"`` when empty, since records need
        a non-empty name).
        """
        from faasplan.predictors.metrics import MetricsRecord, Transfer

        t = self.tasks
        out = []
        for task, fn, mem, inb, outb, ms, state, sms in zip(
                t["task"].tolist(), t["function"].tolist(), t["memory_mb"].tolist(),
                t["input_bytes"].tolist(), t["output_bytes"].tolist(), t["exec_ms"].tolist(),
                t["startup_state"].tolist(), t["startup_ms"].tolist(), strict=True):
            downs, ups = self.transfers.get(task, ((), ()))
            out.append(MetricsRecord(
                self.workflow_hash or "unknown", run_id, planner or "unknown", task, fn,
                int(mem), int(inb), int(outb), float(ms),
                tuple(Transfer(int(n), float(d), bool(s)) for n, d, s in downs),
                tuple(Transfer(int(n), float(d), bool(s)) for n, d, s in ups),
                state, float(sms)))
        return out

    def gantt(self, ax: Axes | None = None) -> Figure:
        """Plot one lane per worker: start-up, then per task download, execution, upload.

        Returns the figure (a new one unless ``ax`` is given).
        """
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch

        if ax is None:
            fig, ax = plt.subplots(figsize=(10, max(2.0, 0.3 * len(self.workers) + 1)))
        else:
            fig = ax.figure  # type: ignore[assignment]
        workers = self.workers.sort_values(["start_ms", "worker"], kind="stable")
        lanes = {w: i for i, w in enumerate(workers["worker"].tolist())}
        boot = workers["start_ms"] - workers["startup_ms"]
        ax.barh([lanes[w] for w in workers["worker"]], workers["startup_ms"], left=boot,
                color="#bbbbbb", height=0.8)
        t = self.tasks
        y = [lanes[w] for w in t["worker"]]
        phases = (("start_ms", "exec_start_ms", "#9ecae1"),
                  ("exec_start_ms", "exec_end_ms", "#3182bd"),
                  ("exec_end_ms", "end_ms", "#fdae6b"))
        for a, b, color in phases:
            ax.barh(y, t[b] - t[a], left=t[a], color=color, height=0.6)
        ax.set_yticks(range(len(lanes)), list(lanes))
        ax.invert_yaxis()
        ax.set_xlabel("time (ms)")
        ax.axvline(self.makespan_ms, color="black", linewidth=0.8)
        ax.set_title(f"{self.workflow_name}: makespan {self.makespan_ms:.0f} ms")
        ax.legend(handles=[Patch(color=c, label=lbl) for c, lbl in (
            ("#bbbbbb", "start-up"), ("#9ecae1", "inputs"), ("#3182bd", "execution"),
            ("#fdae6b", "upload / delegation"))], loc="lower right", fontsize="small")
        return fig  # type: ignore[return-value]


def build_trace(result: RunResult, *, workflow_hash: str = "", workflow_name: str = "",
                seed: int = 0, replicate_makespans_ms: tuple[float, ...] = ()) -> Trace:
    """Turn the raw records of one run into a :class:`Trace` (DataFrames built once)."""
    spec = result.spec
    stored_at = result.stored_at
    cols: dict[str, list[Any]] = {c: [] for c in TASK_COLUMNS}
    transfers: dict[str, tuple[tuple[TransferTuple, ...], tuple[TransferTuple, ...]]] = {}
    for tid in spec.order:
        rec = result.tasks[tid]
        info = spec.tasks[tid]
        downs = result.downloads.get(tid, [])
        ups = result.uploads.get(tid, [])
        fetched = {key for key, _ in downs}
        earliest = 0.0
        for up in info.upstream:
            key = output_key(up)
            if key in fetched:
                avail = stored_at.get(key, math.nan)
            else:
                avail = result.tasks[up].exec_end_ms
            earliest = max(earliest, avail)
        for key, _ in info.literals:
            earliest = max(earliest, stored_at.get(key, 0.0))
        okey = output_key(tid)
        completion = stored_at[okey] if ups and okey in stored_at else rec.exec_end_ms
        ready = max(rec.start_ms, earliest)
        row = (tid, info.function, rec.worker.label, rec.worker.memory_mb, rec.start_ms,
               rec.exec_start_ms, rec.exec_end_ms, max(rec.end_ms, rec.exec_end_ms),
               rec.input_bytes, rec.output_bytes, sum(r.nbytes for _, r in downs),
               sum(r.nbytes for r in ups), rec.startup_state, rec.startup_ms,
               max(0.0, rec.exec_start_ms - ready), rec.exec_end_ms - rec.exec_start_ms,
               sum(r.end - r.issued for r in ups), sum(r.ms for _, r in downs), earliest,
               completion)
        for c, v in zip(TASK_COLUMNS, row, strict=True):
            cols[c].append(v)
        transfers[tid] = (tuple((r.nbytes, r.ms, r.streamed) for _, r in downs),
                          tuple((r.nbytes, r.end - r.issued, r.streamed) for r in ups))
    tasks = pd.DataFrame(cols, columns=list(TASK_COLUMNS))

    faas = result.faas
    wcols: dict[str, list[Any]] = {c: [] for c in WORKER_COLUMNS}
    for w in result.workers:
        cost = faas.cost_usd(w.memory_mb, w.end_ms - w.boot_ms) if w.end_ms == w.end_ms else 0.0
        row_w = (w.label, w.memory_mb, w.invoked_ms, w.start_ms, w.end_ms, w.state,
                 w.startup_ms, w.queued_ms, w.container, w.tasks, w.invocation.prewarm, cost)
        for c, v in zip(WORKER_COLUMNS, row_w, strict=True):
            wcols[c].append(v)
    workers = pd.DataFrame(wcols, columns=list(WORKER_COLUMNS))
    return Trace(
        makespan_ms=result.makespan_ms, tasks=tasks, workers=workers,
        cost_usd=float(workers["cost_usd"].sum()), cold_starts=result.cold_starts,
        storage_bytes=result.storage_bytes, invocations=len(result.workers),
        client_bytes=result.client_bytes, workflow_hash=workflow_hash,
        workflow_name=workflow_name, seed=seed, replicate_makespans_ms=replicate_makespans_ms,
        transfers=transfers)
