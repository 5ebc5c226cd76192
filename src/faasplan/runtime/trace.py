"""Turn the rows workers report into a :class:`~faasplan.trace.Trace`, as the simulator does.

Times are ms from the client's first action (storing the DAG); columns and their meaning
are those of :mod:`faasplan.trace`, measured instead of modelled. The makespan ends when
the last sink's result is announced, as in the simulator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from faasplan.platform import Platform
from faasplan.trace import TASK_COLUMNS, WORKER_COLUMNS, Trace
from faasplan.worker import RunSpec
from faasplan.worker.log import Event


def build_real_trace(spec: RunSpec, rows: Mapping[str, Mapping[str, Any]],
                     invocations: Iterable[Mapping[str, Any]], t0: float, *,
                     workflow_hash: str, workflow_name: str, seed: int, client_bytes: int,
                     platform: Platform | None = None, log: Sequence[Event] = ()) -> Trace:
    """The trace of a real run.

    Parameters
    ----------
    spec : RunSpec
        The run's spec (task order, upstream ids).
    rows : mapping task id -> row
        What the workers reported per executed task (absolute wall-clock ms).
    invocations : iterable of dict
        One row per finished invocation.
    t0 : float
        Wall-clock ms of the run's start.
    platform : Platform, optional
        Prices for ``cost_usd`` (default: the default platform).
    log : sequence of Event
        The run's decision log (times from the run's start).
    """
    price = platform or Platform()
    cols: dict[str, list[Any]] = {c: [] for c in TASK_COLUMNS}
    transfers: dict[str, tuple[tuple[tuple[int, float, bool], ...],
                               tuple[tuple[int, float, bool], ...]]] = {}
    completion: dict[str, float] = {}
    for tid in spec.order:
        row = rows.get(tid)
        if row is None:
            continue
        downs = tuple((int(n), float(ms), bool(s)) for n, ms, s in row["downloads"])
        ups = tuple((int(n), float(ms), bool(s)) for n, ms, s in row["uploads"])
        start, xs, xe = row["start"] - t0, row["exec_start"] - t0, row["exec_end"] - t0
        end = row["end"] - t0
        completion[tid] = end if ups else xe
        earliest = 0.0
        for up in spec.tasks[tid].upstream:
            urow = rows.get(up)
            if urow is None:
                continue
            local = urow["worker"] == row["worker"]
            earliest = max(earliest, (urow["exec_end"] - t0) if local else completion[up])
        ready = max(start, earliest)
        values = (tid, row["function"], row["worker"], int(row["memory_mb"]), start, xs, xe,
                  max(end, xe), int(row["input_bytes"]), int(row["output_bytes"]),
                  sum(d[0] for d in downs), sum(u[0] for u in ups), row["startup"],
                  float(row["startup_ms"]), max(0.0, xs - ready), float(row["exec_ms"]),
                  sum(u[1] for u in ups), sum(d[1] for d in downs), earliest, completion[tid])
        for c, v in zip(TASK_COLUMNS, values, strict=True):
            cols[c].append(v)
        transfers[tid] = (downs, ups)
    tasks = pd.DataFrame(cols, columns=list(TASK_COLUMNS))

    wcols: dict[str, list[Any]] = {c: [] for c in WORKER_COLUMNS}
    cold = 0
    for inv in sorted(invocations, key=lambda r: r["begin"]):
        cold += inv["startup_state"] == "cold"
        begin, end = inv["begin"] - t0, inv["end"] - t0
        cost = price.cost_usd(inv["memory_mb"], end - begin + inv["startup_ms"])
        values_w = (inv["worker"], int(inv["memory_mb"]), inv["enqueued"] - t0, begin, end,
                    inv["startup_state"], float(inv["startup_ms"]),
                    max(0.0, inv["received"] - inv["enqueued"]), int(inv["pid"]),
                    int(inv["tasks"]), bool(inv.get("prewarm", False)), cost)
        for c, v in zip(WORKER_COLUMNS, values_w, strict=True):
            wcols[c].append(v)
    workers = pd.DataFrame(wcols, columns=list(WORKER_COLUMNS))
    sinks = [t for t in spec.order if spec.tasks[t].is_sink and t in completion]
    # As in the simulator: from the client's first action to the last sink's result
    # announced (the notification that follows its upload), when the log has it.
    announced = {ev.key[5:]: ev.end for ev in log
                 if ev.kind == "notify" and ev.key is not None and ev.key.startswith("sink:")}
    makespan = max((announced.get(t, completion[t]) for t in sinks), default=0.0)
    totals = {"makespan_ms": makespan, "cost_usd": float(workers["cost_usd"].sum()),
              "cold_starts": cold, "storage_bytes": int(tasks["upload_bytes"].sum()),
              "invocations": len(workers), "client_bytes": client_bytes,
              "workflow_hash": workflow_hash, "workflow_name": workflow_name, "seed": seed,
              "log": tuple(log)}
    return Trace.from_tables(tasks, workers, transfers, **totals)
