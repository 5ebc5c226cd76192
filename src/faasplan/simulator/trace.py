"""Tables of a simulated run, built from the simulation's own records when first read.

The :class:`~faasplan.trace.Trace` they fill, and the meaning of its columns, live in
:mod:`faasplan.trace`, shared with the runtime.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from faasplan.simulator.driver import RunResult, WorkerRun
from faasplan.simulator.storage import TransferRecord
from faasplan.trace.table import TASK_COLUMNS, WORKER_COLUMNS, Trace, Transfers
from faasplan.worker import output_key
from faasplan.worker.log import Event
from faasplan.workflow.gcpause import gc_paused

__all__ = ["TASK_COLUMNS", "WORKER_COLUMNS", "Trace", "build_trace"]


class SimulatedRecords:
    """The records of one simulated run, turned into a trace's tables on demand."""

    __slots__ = ("result",)

    def __init__(self, result: RunResult) -> None:
        self.result = result

    def task_frame(self) -> pd.DataFrame:
        """The ``tasks`` table."""
        with gc_paused():
            return _task_frame(self.result)

    def worker_frame(self) -> pd.DataFrame:
        """The ``workers`` table."""
        return _worker_frame(self.result)

    def transfer_map(self) -> Transfers:
        """Per task, its downloads (time from data ready) and uploads (time from issue)."""
        run = self.result
        return {tid: (tuple((r.nbytes, r.end - r.ready, r.streamed)
                            for _, r in run.downloads.get(tid, ())),
                      tuple((r.nbytes, r.end - r.issued, r.streamed)
                            for r in run.uploads.get(tid, ())))
                for tid in run.spec.order}


def build_trace(result: RunResult, *, workflow_hash: str = "", workflow_name: str = "",
                seed: int = 0, replicate_makespans_ms: tuple[float, ...] = (),
                log: Sequence[Event] = ()) -> Trace:
    """A :class:`Trace` of one run: totals now, tables when first read."""
    cost = sum(_worker_cost(result, w) for w in result.workers)
    return Trace(
        makespan_ms=result.makespan_ms, cost_usd=cost, cold_starts=result.cold_starts,
        storage_bytes=result.storage_bytes, invocations=len(result.workers),
        client_bytes=result.client_bytes, workflow_hash=workflow_hash,
        workflow_name=workflow_name, seed=seed, replicate_makespans_ms=replicate_makespans_ms,
        records=SimulatedRecords(result), log=tuple(log))


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
