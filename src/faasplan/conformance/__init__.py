"""One plan through every driver, and their decisions compared field by field.

:func:`check` runs a workflow under a plan three times, from one
:class:`~faasplan.worker.RunSpec` (the runtime's, with its measured encoded sizes):

1. the in-memory reference (:func:`~faasplan.worker.inmemory.run_in_memory`), which
   executes the task functions for real, one effect at a time;
2. the SimPy simulator, with each task's real output size and measured execution time;
3. the Redis runtime on the local FaaS emulator, against a private embedded
   ``redis-server`` (or the URL given).

Each driver's decision log (:mod:`faasplan.worker.log`) gives a decision table
(:func:`faasplan.trace.decisions`); the tables must agree on every field except those
:data:`faasplan.trace.TIMING_DEPENDENT` names for the tasks
:func:`faasplan.trace.raced_tasks` says are raced. The three drivers must also execute the
same tasks, each once.

>>> from faasplan import task, Workflow
>>> @task
... def inc(x):
...     return x + 1
>>> report = check(Workflow(inc(inc(1))))          # doctest: +SKIP
>>> report.ok                                       # doctest: +SKIP
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from faasplan.platform import Platform
from faasplan.runtime.execution import TaskFailure, call_task
from faasplan.runtime.manifest import prepare_run, resolve_placements
from faasplan.trace import DECISION_COLUMNS, TIMING_DEPENDENT, decisions, raced_tasks
from faasplan.worker import Execute, Payload, RunSpec, WorkerOptions
from faasplan.worker.inmemory import run_in_memory
from faasplan.workflow import Workflow
from faasplan.workflow.codec import LiteralRef, decode, load_literal
from faasplan.workflow.local import payload_nbytes

DRIVERS = ("inmemory", "simulator", "runtime")
"""The drivers :func:`check` compares, in the order it runs them."""

COMPARED = tuple(c for c in DECISION_COLUMNS if c != "task")


@dataclass(frozen=True)
class Mismatch:
    """One decision field of one task on which the drivers disagree."""

    field: str
    task: str
    values: Mapping[str, Any]

    def __str__(self) -> str:
        shown = ", ".join(f"{d}={v!r}" for d, v in self.values.items())
        return f"task {self.task!r}, {self.field}: {shown}"


@dataclass(frozen=True)
class Report:
    """What :func:`check` found: ``ok`` when no decision differs beyond timing."""

    mismatches: tuple[Mismatch, ...]
    tables: Mapping[str, pd.DataFrame] = field(repr=False)
    excused: int = 0
    raced: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        """No unexplained mismatch."""
        return not self.mismatches

    def __str__(self) -> str:
        head = (f"conformance: {'ok' if self.ok else 'FAILED'}, {len(self.mismatches)} "
                f"mismatch(es), {self.excused} timing-dependent difference(s) excused, "
                f"{len(self.raced)} raced task(s)")
        return "\n".join([head, *(f"  {m}" for m in self.mismatches[:50])])


class _Replay:
    """Task behaviour of the simulator: the sizes and times the real tasks had."""

    def __init__(self, output: Mapping[str, int], exec_ms: Mapping[str, float]) -> None:
        self._output = output
        self._exec = exec_ms

    def exec_ms(self, task_id: str, memory_mb: int, input_bytes: int,
                rng: np.random.Generator) -> float:
        return self._exec.get(task_id, 1.0)

    def output_bytes(self, task_id: str, input_bytes: int, rng: np.random.Generator) -> int:
        return self._output[task_id]


def check(workflow: Workflow, plan: Any = None, *, redis: str | None = None, seed: int = 0,
          options: WorkerOptions | None = None, platform: Platform | None = None,
          timeout_s: float = 120.0) -> Report:
    """Run ``plan`` through the three drivers and compare their decisions.

    Parameters
    ----------
    workflow : Workflow
        Tasks are executed for real (in-memory reference and runtime).
    plan : None, mapping task id -> Placement, or object with ``.placements``
        As for :func:`faasplan.run`.
    redis : str, optional
        Redis URL for the runtime; ``None`` starts a private embedded server.
    seed : int
        Seed of the simulated run and of the runtime's client.
    options : WorkerOptions, optional
        Thresholds of the worker logic, the same for every driver.
    platform : Platform, optional
        The simulator's platform.
    timeout_s : float
        Bound on the real run.
    """
    from faasplan.runtime import run
    from faasplan.simulator import Simulation

    opts = options or WorkerOptions()
    placements = resolve_placements(workflow, plan)
    prepared = prepare_run(workflow, placements, run_id="conformance", planner="conformance",
                           options=opts, lease_ms=3000, stream_chunk_bytes=256 * 1024)
    spec = prepared.spec
    tables: dict[str, pd.DataFrame] = {}

    # 1. the in-memory reference, executing the task functions
    # Literals as the runtime's workers see them: the manifest's sizes, the loaded values.
    sizes = prepared.manifest.literal_sizes
    preload = {lit: Payload(sizes.get(lit, len(data)),
                            load_literal(LiteralRef(lit, sizes.get(lit, len(data))), data))
               for lit, data in prepared.encoded.payloads.items()}
    outputs: dict[str, int] = {}
    decoded = decode(prepared.encoded.blob)  # what a worker holds: literals by reference

    def execute(e: Execute) -> Payload:
        outcome = call_task(e.task, decoded.tasks[e.task], e.inputs)
        if isinstance(outcome, TaskFailure):
            raise RuntimeError(f"task {e.task!r} raised {outcome.exc_type}: {outcome.message}")
        value = outcome[0]
        outputs[e.task] = payload_nbytes(value)
        return Payload(outputs[e.task], value)

    reference = run_in_memory(spec, execute, preload)
    tables["inmemory"] = decisions(reference.events)

    # 3. the runtime (run before the simulator, which replays its execution times)
    result = run(workflow, placements, redis, seed=seed, options=opts, timeout_s=timeout_s)
    tables["runtime"] = result.trace.decisions
    measured = dict(zip(result.trace.tasks["task"], result.trace.tasks["exec_ms"], strict=True))

    # 2. the simulator, on the same spec, with the real sizes and measured times
    sim = Simulation.create(spec, platform or Platform(), _Replay(outputs, measured),
                            np.random.default_rng(seed), log=True).run()
    tables["simulator"] = decisions(sim.log or ())
    return compare_decisions({d: tables[d] for d in DRIVERS}, spec)


def compare_decisions(tables: Mapping[str, pd.DataFrame], spec: RunSpec) -> Report:
    """Compare decision tables (driver name -> :func:`faasplan.trace.decisions`).

    Differences in :data:`~faasplan.trace.TIMING_DEPENDENT` fields of the tasks
    :func:`~faasplan.trace.raced_tasks` names are counted as excused; a task executed by
    some drivers and not others is a mismatch of field ``executed``.
    """
    raced, fetch_raced = raced_tasks(spec)
    excusable = {"startup": None, "worker": raced, "subdag": raced, "fetched": fetch_raced}
    names = list(tables)
    indexed = {d: t.set_index("task") for d, t in tables.items()}
    mismatches: list[Mismatch] = []
    excused = 0
    all_tasks = sorted(set().union(*(set(t.index) for t in indexed.values())))
    for tid in all_tasks:
        present = {d: tid in indexed[d].index for d in names}
        if not all(present.values()):
            mismatches.append(Mismatch("executed", tid, present))
            continue
        for col in COMPARED:
            values = {d: indexed[d].at[tid, col] for d in names}
            if len(set(values.values())) == 1:
                continue
            if col in excusable:
                scope = excusable[col]
                if scope is None or tid in scope:
                    excused += 1
                    continue
            mismatches.append(Mismatch(col, tid, values))
    for tid in spec.order:
        if tid not in all_tasks:
            mismatches.append(Mismatch("executed", tid, dict.fromkeys(names, False)))
    return Report(tuple(mismatches), dict(tables), excused, raced)


__all__ = ["COMPARED", "DRIVERS", "TIMING_DEPENDENT", "Mismatch", "Report", "check",
           "compare_decisions"]
