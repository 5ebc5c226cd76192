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
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from faasplan.simulator.driver import gc_paused
from faasplan.simulator.storage import TransferRecord
from faasplan.worker import output_key

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from faasplan.predictors.metrics import MetricsRecord
    from faasplan.simulator.driver import RunResult, WorkerRun

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

    The tables are built from the run's records when first read (planners scoring many
    candidate plans often need only the totals); pickling builds them first.
    """

    makespan_ms: float
    cost_usd: float
    cold_starts: int
    storage_bytes: int
    invocations: int
    client_bytes: int = 0
    workflow_hash: str = ""
    workflow_name: str = ""
    seed: int = 0
    replicate_makespans_ms: tuple[float, ...] = ()
    records: RunResult | None = field(default=None, repr=False, compare=False)

    @cached_property
    def tasks(self) -> pd.DataFrame:
        """One row per task, columns ``TASK_COLUMNS``, in topological order."""
        with gc_paused():
            return _task_frame(self._source())

    @cached_property
    def workers(self) -> pd.DataFrame:
        """One row per invocation, columns ``WORKER_COLUMNS``, in invocation order."""
        return _worker_frame(self._source())

    @cached_property
    def transfers(self) -> dict[str, tuple[tuple[TransferTuple, ...], tuple[TransferTuple, ...]]]:
        """Per task, its downloads and uploads as ``(nbytes, ms, streamed)``.

        A download's time excludes waiting for its key to be stored; an upload's
        includes its round trip.
        """
        run = self._source()
        return {tid: (tuple((r.nbytes, r.end - r.ready, r.streamed)
                            for _, r in run.downloads.get(tid, ())),
                      tuple((r.nbytes, r.end - r.issued, r.streamed)
                            for r in run.uploads.get(tid, ())))
                for tid in run.spec.order}

    @classmethod
    def from_tables(cls, tasks: pd.DataFrame, workers: pd.DataFrame,
                    transfers: Mapping[str, tuple[tuple[TransferTuple, ...],
                                                  tuple[TransferTuple, ...]]] | None = None,
                    **totals: Any) -> Trace:
        """A trace of tables measured elsewhere (the runtime), with the same meaning.

        ``totals`` are the other fields (``makespan_ms``, ``cost_usd``, ...).

        Raises
        ------
        ValueError
            A table lacks some of ``TASK_COLUMNS`` / ``WORKER_COLUMNS``.
        """
        for name, frame, needed in (("tasks", tasks, TASK_COLUMNS),
                                    ("workers", workers, WORKER_COLUMNS)):
            missing = [c for c in needed if c not in frame.columns]
            if missing:
                raise ValueError(f"Trace.from_tables: the {name} table lacks columns {missing}")
        trace = cls(**totals)
        # Fill the cached tables as unpickling does; there are no records to build them.
        trace.__dict__.update(tasks=tasks, workers=workers, transfers=dict(transfers or {}))
        return trace

    def _source(self) -> RunResult:
        if self.records is None:
            raise RuntimeError("this trace holds no run records to build its tables from")
        return self.records

    def __getstate__(self) -> dict[str, Any]:
        # The run records reference the simulation's environment: ship the tables instead.
        for name in ("tasks", "workers", "transfers"):
            getattr(self, name)
        state = dict(self.__dict__)
        state["records"] = None
        return state

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

    def gantt(self, ax: Axes | None = None, title: str | None = None) -> Figure:
        """Plot one lane per worker: start-up, then per task inputs, execution, upload.

        The chart of :func:`faasplan.report.plot_gantt`. Without ``ax`` it returns a new
        :class:`~faasplan.report.plots.ReportFigure`, which a Jupyter notebook displays as
        the chart (not as ``<Figure ...>``) without ``%matplotlib inline``; with ``ax`` it
        draws there and returns that axes' figure.
        """
        # Imported here: plotting is optional for a simulation, and matplotlib is slow to load.
        from faasplan.report.plots import plot_gantt

        return plot_gantt(self, ax, title)


def build_trace(result: RunResult, *, workflow_hash: str = "", workflow_name: str = "",
                seed: int = 0, replicate_makespans_ms: tuple[float, ...] = ()) -> Trace:
    """A :class:`Trace` of one run: totals now, tables when first read."""
    cost = sum(_worker_cost(result, w) for w in result.workers)
    return Trace(
        makespan_ms=result.makespan_ms, cost_usd=cost, cold_starts=result.cold_starts,
        storage_bytes=result.storage_bytes, invocations=len(result.workers),
        client_bytes=result.client_bytes, workflow_hash=workflow_hash,
        workflow_name=workflow_name, seed=seed, replicate_makespans_ms=replicate_makespans_ms,
        records=result)


def _worker_cost(result: RunResult, w: WorkerRun) -> float:
    return result.faas.cost_usd(w.memory_mb, w.end_ms - w.boot_ms)


def _task_frame(result: RunResult) -> pd.DataFrame:
    spec = result.spec
    stored_at = result.stored_at
    runs = [result.tasks[t] for t in spec.order]
    infos = [spec.tasks[t] for t in spec.order]
    no_transfers: list[tuple[str, TransferRecord]] = []
    derived: list[tuple[float, ...]] = []
    for rec, info in zip(runs, infos, strict=True):
        tid = info.id
        downs = result.downloads.get(tid, no_transfers)
        ups = result.uploads.get(tid, [])
        fetched = {key for key, _ in downs} if downs else ()
        earliest = 0.0
        for up in info.upstream:
            key = output_key(up)
            avail = stored_at.get(key, math.nan) if key in fetched else \
                result.tasks[up].exec_end_ms
            if avail > earliest:
                earliest = avail
        for key, _ in info.literals:
            earliest = max(earliest, stored_at.get(key, 0.0))
        down_bytes = down_ms = up_bytes = up_ms = 0.0
        for _, r in downs:
            down_bytes += r.nbytes
            down_ms += r.end - r.ready
        for r in ups:
            up_bytes += r.nbytes
            up_ms += r.end - r.issued
        completion = stored_at.get(output_key(tid), rec.exec_end_ms) if ups else rec.exec_end_ms
        ready = max(rec.start_ms, earliest)
        derived.append((down_bytes, up_bytes, max(0.0, rec.exec_start_ms - ready), up_ms,
                        down_ms, earliest, completion))
    columns = list(zip(*derived, strict=True)) if derived else [()] * 7
    down_bytes_c, up_bytes_c, download_c, upload_c, total_down_c, earliest_c, completion_c = \
        columns
    return pd.DataFrame({
        "task": list(spec.order),
        "function": [i.function for i in infos],
        "worker": [r.worker.label for r in runs],
        "memory_mb": [r.worker.memory_mb for r in runs],
        "start_ms": [r.start_ms for r in runs],
        "exec_start_ms": [r.exec_start_ms for r in runs],
        "exec_end_ms": [r.exec_end_ms for r in runs],
        "end_ms": [max(r.end_ms, r.exec_end_ms) for r in runs],
        "input_bytes": [r.input_bytes for r in runs],
        "output_bytes": [r.output_bytes for r in runs],
        "download_bytes": np.asarray(down_bytes_c, dtype=np.int64),
        "upload_bytes": np.asarray(up_bytes_c, dtype=np.int64),
        "startup_state": [r.startup_state for r in runs],
        "startup_ms": [r.startup_ms for r in runs],
        "download_ms": np.asarray(download_c, dtype=float),
        "exec_ms": [r.exec_end_ms - r.exec_start_ms for r in runs],
        "upload_ms": np.asarray(upload_c, dtype=float),
        "total_download_ms": np.asarray(total_down_c, dtype=float),
        "earliest_start_ms": np.asarray(earliest_c, dtype=float),
        "completion_ms": np.asarray(completion_c, dtype=float),
    }, columns=list(TASK_COLUMNS))


def _worker_frame(result: RunResult) -> pd.DataFrame:
    ws = result.workers
    return pd.DataFrame({
        "worker": [w.label for w in ws],
        "memory_mb": [w.memory_mb for w in ws],
        "invoked_ms": [w.invoked_ms for w in ws],
        "start_ms": [w.start_ms for w in ws],
        "end_ms": [w.end_ms for w in ws],
        "startup_state": [w.state for w in ws],
        "startup_ms": [w.startup_ms for w in ws],
        "queued_ms": [w.queued_ms for w in ws],
        "container": [w.container for w in ws],
        "tasks": [w.tasks for w in ws],
        "prewarm": [w.invocation.prewarm for w in ws],
        "cost_usd": [_worker_cost(result, w) for w in ws],
    }, columns=list(WORKER_COLUMNS))
