"""SAGA's list schedulers (``anrg-saga``, the ``saga`` extra) as faasplan planners.

SAGA (Scheduling Algorithms Gathered) schedules a task graph on a network of compute nodes.
Each scheduler becomes the planner ``saga:NAME`` (``saga:HEFT``, ``saga:CPoP``, ...):

* the task graph comes from the predictions: a task costs its predicted execution time (ms)
  at the plan's memory, and an edge carries the time to upload and download the producer's
  predicted output between two workers (as in faasplan's own ``heft``), so that with node
  and link speeds of 1 SAGA's times are milliseconds;
* the network has ``nodes`` identical nodes (default: the DAG's width, its largest number
  of tasks at one depth), every pair linked; SAGA knows no start-up of a node;
* SAGA's schedule becomes planned workers: one per SAGA node in use, running that node's
  tasks in SAGA's start-time order (the plan's ``worker_orders``; a planned worker runs
  its tasks in its plan's order, :mod:`faasplan.worker`). Every such order follows the
  dependencies and, since SAGA's start times respect them on every node, the orders never
  make workers wait for each other in a cycle (:meth:`~faasplan.planners.Plan.validate`
  checks both).

SAGA's schedulers are pure Python and slow on large graphs, so each runs in a child
process that is stopped at ``time_budget_s``; :class:`SagaBudgetExceeded` says so.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from faasplan.planners.context import PlanningContext
from faasplan.planners.heft import edge_costs
from faasplan.planners.plan import OrderedPlacements, Plan
from faasplan.worker import Placement
from faasplan.workflow import Workflow

INSTALL_HINT = "pip install 'faasplan[saga]'"
DEFAULT_TIME_BUDGET_S = 120.0

#: Planner name (after ``saga:``) -> SAGA scheduler class, for every scheduler of
#: ``anrg-saga`` 2.0 that can be built without arguments (``Hybrid`` combines others).
SCHEDULERS: Mapping[str, str] = {
    "BIL": "BILScheduler",
    "BruteForce": "BruteForceScheduler",
    "CPoP": "CpopScheduler",
    "DPS": "DPSScheduler",
    "Duplex": "DuplexScheduler",
    "ETF": "ETFScheduler",
    "FastestNode": "FastestNodeScheduler",
    "FCP": "FCPScheduler",
    "FLB": "FLBScheduler",
    "GDL": "GDLScheduler",
    "HbMCT": "HbmctScheduler",
    "HEFT": "HeftScheduler",
    "MaxMin": "MaxMinScheduler",
    "MCT": "MCTScheduler",
    "MET": "METScheduler",
    "MinMin": "MinMinScheduler",
    "MSBC": "MsbcScheduler",
    "MST": "MSTScheduler",
    "OLB": "OLBScheduler",
    "SMT": "SMTScheduler",
    "Sufferage": "SufferageScheduler",
    "WBA": "WBAScheduler",
}

#: Speed of a node's link to itself: a transfer of the largest edge (ms) takes ~1e-6 ms.
LOCAL_SPEED = 1e12

#: Tasks SAGA adds to give a graph one source and one sink; they are not faasplan's.
_SAGA_ADDED = frozenset({"__super_source__", "__super_sink__"})


class SagaMissing(ImportError):
    """The ``saga`` extra is not installed; the message names the ``pip install``."""


class SagaBudgetExceeded(RuntimeError):
    """A SAGA scheduler did not finish within its time budget."""


def saga_installed() -> bool:
    """Whether ``anrg-saga`` is installed (read from package metadata, nothing imported)."""
    try:
        metadata.version("anrg-saga")
    except metadata.PackageNotFoundError:
        return False
    return True


def require_saga(planner: str) -> None:
    """Raise :class:`SagaMissing` naming the ``pip install`` if the extra is absent."""
    if not saga_installed():
        raise SagaMissing(f"planner {planner!r} needs SAGA's schedulers (the 'saga' extra, "
                          f"package anrg-saga): run {INSTALL_HINT}")


@dataclass(frozen=True)
class SagaInstance:
    """A SAGA problem in plain data: tasks with costs, edges with sizes, node count."""

    tasks: tuple[tuple[str, float], ...]
    edges: tuple[tuple[str, str, float], ...]
    nodes: int


def dag_width(workflow: Workflow) -> int:
    """Largest number of tasks at one depth (longest path from a root), at least 1.

    >>> from faasplan.workloads import tree_reduction
    >>> dag_width(tree_reduction(leaves=8))
    8
    """
    depth: dict[str, int] = {}
    for tid in workflow.topological_order:
        depth[tid] = 1 + max((depth[u] for u in workflow.upstream(tid)), default=-1)
    return max(Counter(depth.values()).values(), default=1)


def saga_instance(ctx: PlanningContext, memory_mb: int, nodes: int | None = None
                  ) -> SagaInstance:
    """The task graph and network size SAGA schedules for ``ctx`` at ``memory_mb``."""
    wf = ctx.workflow
    comm = edge_costs(ctx, memory_mb)
    tasks = tuple((t, ctx.exec_ms(t, memory_mb)) for t in wf.topological_order)
    edges = tuple((u, t, comm[u]) for t in wf.topological_order for u in wf.upstream(t))
    count = nodes if nodes is not None else dag_width(wf)
    if count < 1:
        raise ValueError(f"saga: nodes must be >= 1, got {count}")
    return SagaInstance(tasks, edges, count)


def run_saga(scheduler: str, instance: SagaInstance, seed: int = 0
             ) -> dict[str, list[tuple[str, float, float]]]:
    """Run SAGA scheduler class ``scheduler`` on ``instance`` in this process.

    Returns node -> ``(task, start, end)`` in SAGA's order, without the tasks SAGA adds.
    """
    saga = importlib.import_module("saga")
    schedulers = importlib.import_module("saga.schedulers")
    random.seed(seed)  # WBA draws from the random module
    previous = logging.root.manager.disable
    # SAGA warns on the root logger for every graph with several sources or sinks.
    logging.disable(logging.WARNING)
    try:
        graph = saga.TaskGraph.create(tasks=list(instance.tasks),
                                      dependencies=list(instance.edges))
    finally:
        logging.disable(previous)
    names = [f"n{i}" for i in range(instance.nodes)]
    links = [(a, b, 1.0) for i, a in enumerate(names) for b in names[i + 1:]]
    # Data on its own node moves for free; a finite speed, because SAGA's SMT scheduler
    # turns speeds into exact rationals (infinity has none).
    links += [(n, n, LOCAL_SPEED) for n in names]
    network = saga.Network.create(nodes=[(n, 1.0) for n in names], edges=links)
    schedule = getattr(schedulers, scheduler)().schedule(network, graph)
    out: dict[str, list[tuple[str, float, float]]] = {}
    for node, items in schedule.mapping.items():
        kept = [(s.name, float(s.start), float(s.end)) for s in items if s.name not in _SAGA_ADDED]
        if kept:
            out[node] = sorted(kept, key=lambda x: (x[1], x[2]))
    return out


def _child(conn: Any, scheduler: str, instance: SagaInstance, seed: int) -> None:
    try:
        conn.send(("ok", run_saga(scheduler, instance, seed)))
    except BaseException as exc:  # reported to the parent, which re-raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def run_saga_budgeted(scheduler: str, instance: SagaInstance, budget_s: float, seed: int = 0,
                      label: str = "saga") -> dict[str, list[tuple[str, float, float]]]:
    """:func:`run_saga` in a child process stopped after ``budget_s`` seconds.

    Raises
    ------
    SagaBudgetExceeded
        The scheduler had not finished within ``budget_s``.
    RuntimeError
        The scheduler failed; the message carries SAGA's error.
    """
    if budget_s <= 0:
        raise ValueError(f"{label}: time_budget_s must be > 0, got {budget_s}")
    methods = multiprocessing.get_all_start_methods()
    ctx: Any = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, scheduler, instance, seed), daemon=True)
    proc.start()
    send.close()
    try:
        if not receive.poll(budget_s):
            raise SagaBudgetExceeded(
                f"{label}: SAGA's scheduler gave no schedule within time_budget_s={budget_s:g} "
                f"s for {len(instance.tasks)} tasks on {instance.nodes} nodes; raise "
                "time_budget_s, lower nodes, or use faasplan's heft")
        status, payload = receive.recv()
    except EOFError:
        raise RuntimeError(f"{label}: SAGA's scheduler process ended without a result "
                           f"(exit code {proc.exitcode})") from None
    finally:
        receive.close()
        if proc.is_alive():
            proc.terminate()
        proc.join()
    if status != "ok":
        raise RuntimeError(f"{label}: SAGA's scheduler failed: {payload}")
    result: dict[str, list[tuple[str, float, float]]] = payload
    return result


def schedule_to_placements(workflow: Workflow,
                           mapping: Mapping[str, Sequence[tuple[str, Any, Any]]],
                           memory_mb: int) -> OrderedPlacements:
    """One planned worker per SAGA node of a schedule (node -> ``(task, start, end)``).

    Each worker runs its node's tasks in SAGA's order: by start, then end (a task of no
    duration starts when its predecessor on the node ends), then topological order.
    Worker ids are numbered by their first task in topological order, so that schedules
    that differ only in the names of SAGA's identical nodes give the same plan.

    Raises
    ------
    ValueError
        The schedule misses a task of the workflow, places one twice, or places a task
        the workflow does not have.

    >>> from faasplan.workloads import tree_reduction
    >>> wf = tree_reduction(leaves=2)
    >>> a, b, root = wf.topological_order
    >>> p = schedule_to_placements(wf, {"n0": [(b, 0, 1), (a, 1, 2), (root, 2, 3)]}, 1024)
    >>> p.worker_orders["s0"] == (b, a, root)
    True
    """
    index = {t: i for i, t in enumerate(workflow.topological_order)}
    orders: list[list[str]] = []
    seen: set[str] = set()
    for node in sorted(mapping):
        items = sorted(mapping[node],
                       key=lambda x: (float(x[1]), float(x[2]), index.get(x[0], -1)))
        names = [item[0] for item in items]
        twice = seen.intersection(names) or {t for t, c in Counter(names).items() if c > 1}
        if twice:
            raise ValueError(f"SAGA schedule places task {sorted(twice)[0]!r} twice")
        unknown = [t for t in names if t not in index]
        if unknown:
            raise ValueError(f"SAGA schedule places task {unknown[0]!r}, not in workflow "
                             f"{workflow.name!r}")
        seen.update(names)
        if names:
            orders.append(names)
    missing = [t for t in workflow.topological_order if t not in seen]
    if missing:
        raise ValueError(f"SAGA's schedule leaves {len(missing)} tasks unscheduled, e.g. "
                         f"{missing[:3]}")
    orders.sort(key=lambda order: min(index[t] for t in order))
    worker_orders = {f"s{k}": tuple(order) for k, order in enumerate(orders)}
    placements = {t: Placement(w, memory_mb) for w, order in worker_orders.items()
                  for t in order}
    return OrderedPlacements({t: placements[t] for t in workflow.topological_order},
                             worker_orders)


def plan_saga(ctx: PlanningContext, *, scheduler: str, memory_mb: int | None = None,
              nodes: int | None = None, time_budget_s: float = DEFAULT_TIME_BUDGET_S) -> Plan:
    """Plan with SAGA's scheduler ``scheduler`` (a key of :data:`SCHEDULERS`).

    Raises
    ------
    SagaMissing
        The ``saga`` extra is not installed.
    SagaBudgetExceeded
        SAGA gave no schedule within ``time_budget_s``.
    RuntimeError
        SAGA failed, or its schedule leaves tasks out or places one twice.
    """
    started = time.perf_counter()
    name = f"saga:{scheduler}"
    require_saga(name)
    if scheduler not in SCHEDULERS:
        raise KeyError(f"unknown SAGA scheduler {scheduler!r}; choose one of "
                       f"{', '.join(SCHEDULERS)}")
    memory = memory_mb or ctx.platform.default_memory_mb
    instance = saga_instance(ctx, memory, nodes)
    cls = SCHEDULERS[scheduler]
    if not hasattr(importlib.import_module("saga.schedulers"), cls):
        raise SagaMissing(f"{name}: the installed anrg-saga has no {cls}; run "
                          f"{INSTALL_HINT} for the supported version")
    saga_started = time.perf_counter()
    mapping = run_saga_budgeted(cls, instance, time_budget_s, ctx.seed, label=name)
    saga_s = time.perf_counter() - saga_started
    try:
        placements = schedule_to_placements(ctx.workflow, mapping, memory)
    except ValueError as exc:
        raise RuntimeError(f"{name}: {exc}") from None
    span = max((end for items in mapping.values() for _, _, end in items), default=0.0)
    notes = (f"{len(placements.worker_orders)} workers of {memory} MB, one per SAGA node in "
             f"use ({instance.nodes} offered), each running its node's tasks in SAGA's "
             f"order; SAGA's own makespan estimate {span:.1f} ms; SAGA scheduled in "
             f"{saga_s:.2f} s",)
    return ctx.finish(name, placements, started, notes=notes)
