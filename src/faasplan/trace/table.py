"""The result of a run, simulated or real: per-task and per-worker tables, totals, metrics,
the decision log and a Gantt chart.

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from faasplan.worker.log import Event

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from faasplan.predictors.metrics import MetricsRecord
    from faasplan.workflow import Workflow

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
Transfers = Mapping[str, tuple[tuple[TransferTuple, ...], tuple[TransferTuple, ...]]]


class TraceRecords(Protocol):
    """What a driver hands a :class:`Trace` to build its tables from, when first read."""

    def task_frame(self) -> pd.DataFrame:
        """The ``tasks`` table."""

    def worker_frame(self) -> pd.DataFrame:
        """The ``workers`` table."""

    def transfer_map(self) -> Transfers:
        """Per task, its downloads and uploads."""


@dataclass(frozen=True, eq=False)
class Trace:
    """A run (see the module docstring for the ``tasks`` columns).

    ``workers`` has one row per invocation (``WORKER_COLUMNS``); its ``cost_usd`` bills
    the sandbox from the start of its start-up to the end of its last effect, plus the
    request fee. ``storage_bytes`` counts the task outputs workers stored (the client's
    literals and DAG are in ``client_bytes``). ``replicate_makespans_ms`` holds the
    makespan of every Monte-Carlo replicate, this run first.

    The tables are built from the run's records when first read (planners scoring many
    candidate plans often need only the totals); pickling builds them first. ``log`` is the
    run's decision log (:mod:`faasplan.worker.log`) when the driver recorded one, and
    :attr:`decisions` the per-task decisions derived from it.
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
    records: TraceRecords | None = field(default=None, repr=False, compare=False)
    log: Sequence[Event] = field(default=(), repr=False, compare=False)

    @cached_property
    def tasks(self) -> pd.DataFrame:
        """One row per task, columns ``TASK_COLUMNS``, in topological order."""
        return self._source().task_frame()

    @cached_property
    def workers(self) -> pd.DataFrame:
        """One row per invocation, columns ``WORKER_COLUMNS``, in invocation order."""
        return self._source().worker_frame()

    @cached_property
    def transfers(self) -> dict[str, tuple[tuple[TransferTuple, ...], tuple[TransferTuple, ...]]]:
        """Per task, its downloads and uploads as ``(nbytes, ms, streamed)``.

        A download's time excludes waiting for its key to be stored; an upload's
        includes its round trip.
        """
        return dict(self._source().transfer_map())

    @classmethod
    def from_tables(cls, tasks: pd.DataFrame, workers: pd.DataFrame,
                    transfers: Transfers | None = None, **totals: Any) -> Trace:
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

    @cached_property
    def decisions(self) -> pd.DataFrame:
        """Per executed task, what the worker logic decided (:func:`faasplan.trace.decisions`).

        Raises
        ------
        ValueError
            The run recorded no decision log.
        """
        from faasplan.trace.decisions import decisions

        if not self.log:
            raise ValueError("this trace has no decision log; simulate with log=True (the "
                             "runtime always records one)")
        return decisions(self.log)

    def _source(self) -> TraceRecords:
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

    def to_wfformat(self, workflow: Workflow, **options: Any) -> dict[str, Any]:
        """This run as a WfFormat 1.5 document (:func:`faasplan.trace.wfformat.trace_to_wfformat`).

        ``workflow`` is the workflow that ran; ``options`` are those of that function.
        """
        from faasplan.trace.wfformat import trace_to_wfformat

        return trace_to_wfformat(self, workflow, **options)

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


