"""The :class:`Plan` a planner returns, and the rules a plan must follow."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from faasplan.worker import Opt, Placement, RunSpec
from faasplan.workflow import Workflow


class PlanError(ValueError):
    """A plan breaks a rule of the runtime; the message names the worker and task."""


class OrderedPlacements(Mapping[str, Placement]):
    """Read-only task id -> :class:`~faasplan.worker.Placement`, with per-worker task orders.

    ``worker_orders`` maps a planned worker id to the order in which it runs its tasks.
    The orders travel with the placements, so that whoever builds the worker logic's
    :class:`~faasplan.worker.RunSpec` from a plan's placements runs each such worker in
    its plan's order; a worker without an entry runs its tasks in topological order.
    Nothing is checked here: :meth:`Plan.validate` checks the orders against a workflow.

    >>> p = OrderedPlacements({"a": Placement("w", 1024), "b": Placement("w", 1024)},
    ...                       {"w": ("b", "a")})
    >>> dict(p.worker_orders), len(p)
    ({'w': ('b', 'a')}, 2)
    """

    __slots__ = ("_data", "worker_orders")

    def __init__(self, placements: Mapping[str, Placement],
                 worker_orders: Mapping[str, Sequence[str]] | None = None) -> None:
        self._data = dict(placements)
        self.worker_orders: Mapping[str, tuple[str, ...]] = {
            str(w): tuple(ts) for w, ts in (worker_orders or {}).items()}

    def __getitem__(self, task_id: str) -> Placement:
        return self._data[task_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"OrderedPlacements({self._data!r}, {dict(self.worker_orders)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (OrderedPlacements, (self._data, dict(self.worker_orders)))


@dataclass(frozen=True)
class Plan:
    """Immutable: where each task runs, plus the trace predicted for it.

    ``placements`` maps every task id to a :class:`~faasplan.worker.Placement`;
    ``predicted`` is the :class:`~faasplan.simulator.Trace` of simulating the plan with
    the predictors' models at the plan's ``sla``; ``notes`` say what the plan rests on
    (e.g. that no metrics history existed). ``worker_orders`` optionally gives, per
    planned worker, the order in which it runs its tasks (any order consistent with the
    dependencies; :meth:`validate` checks it); a worker without one runs its tasks in the
    workflow's topological order. Placements given as :class:`OrderedPlacements` bring
    their orders when ``worker_orders`` is not given, and :attr:`placements` is always an
    :class:`OrderedPlacements` carrying the plan's orders.
    """

    planner: str
    placements: Mapping[str, Placement]
    sla: str = "p95"
    predicted: Any = field(default=None, compare=False, repr=False)
    notes: tuple[str, ...] = ()
    planning_ms: float = field(default=0.0, compare=False)
    worker_orders: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        orders = self.worker_orders or getattr(self.placements, "worker_orders", None) or {}
        placements = OrderedPlacements(self.placements, orders)
        object.__setattr__(self, "placements", placements)
        object.__setattr__(self, "worker_orders", placements.worker_orders)

    def placement(self, task_id: str) -> Placement:
        """Placement of ``task_id``; ``KeyError`` naming it if the plan has none."""
        try:
            return self.placements[task_id]
        except KeyError:
            raise KeyError(f"plan {self.planner!r} has no placement for task {task_id!r}"
                           ) from None

    @property
    def workers(self) -> dict[str, tuple[str, ...]]:
        """Planned worker id -> its task ids (flexible tasks are not listed), in the
        worker's order when the plan gives one."""
        return {w: self.worker_orders.get(w, ts) for w, ts in self._placed_workers().items()}

    @property
    def predicted_makespan_ms(self) -> float:
        """Makespan of the predicted trace (``nan`` when the plan was not simulated)."""
        return float(self.predicted.makespan_ms) if self.predicted is not None else float("nan")

    @property
    def predicted_quantiles(self) -> dict[str, float]:
        """Predicted makespan ``{"p50", "p95", "p99"}`` (ms) over the Monte-Carlo replicates
        of the predicted trace (all equal for a single deterministic simulation; empty when
        the plan was not simulated)."""
        if self.predicted is None:
            return {}
        reps = getattr(self.predicted, "replicate_makespans_ms", ()) or (
            self.predicted.makespan_ms,)
        values = np.quantile(np.asarray(reps, dtype=float), [0.5, 0.95, 0.99])
        return {"p50": float(values[0]), "p95": float(values[1]), "p99": float(values[2])}

    @property
    def predicted_cost_usd(self) -> float:
        """Cost of the predicted trace (``nan`` when the plan was not simulated)."""
        return float(self.predicted.cost_usd) if self.predicted is not None else float("nan")

    def with_predicted(self, trace: Any) -> Plan:
        """A copy carrying ``trace`` as its prediction."""
        return replace(self, predicted=trace)

    def validate(self, workflow: Workflow) -> None:
        """Raise :class:`PlanError` if the runtime could not execute this plan.

        Rules: every task placed and no unknown task; one memory size per worker id;
        each task of a planned worker without an order of its own is reachable by
        continuation — it has an upstream task on that worker, shares a parent with one of
        the worker's tasks (a fan-out group), or is a root on a worker that holds roots;
        optimizations that only flexible workers have (cluster, delayed I/O) only on
        flexible tasks; at most one delayed-I/O upstream per fan-in.

        A worker's order (``worker_orders``) lists each of the worker's tasks exactly once
        and runs no task before an upstream task of the same worker; the worker then runs
        its tasks in that sequence, waiting for inputs made elsewhere, so the continuation
        rule does not apply to it. Orders must not make workers wait for each other in a
        cycle: worker A waiting for B's task b before it runs a, while B reaches b only
        after a task that needs a's output, would never finish. Every planned worker's
        sequence (its order, else topological order) and every dependency must together
        form an acyclic graph; the message of a refused plan names the cycle.
        """
        unknown = [t for t in self.placements if t not in workflow]
        if unknown:
            raise PlanError(f"plan {self.planner!r} places unknown task ids {unknown[:5]} "
                            f"(not in workflow {workflow.name!r})")
        missing = [t for t in workflow.topological_order if t not in self.placements]
        if missing:
            raise PlanError(f"plan {self.planner!r} has no placement for tasks {missing[:5]}")
        memory: dict[str, tuple[int, str]] = {}
        for tid in workflow.topological_order:
            p = self.placements[tid]
            if p.worker is None:
                continue
            for opt in (Opt.CLUSTER, Opt.DELAYED_IO):
                if p.has(opt):
                    raise PlanError(f"task {tid!r} on worker {p.worker!r}: {opt.value} applies "
                                    "to flexible workers only (worker=None)")
            seen = memory.setdefault(p.worker, (p.memory_mb, tid))
            if seen[0] != p.memory_mb:
                raise PlanError(
                    f"worker {p.worker!r} has two memory sizes: {seen[0]} MB (task {seen[1]!r}) "
                    f"and {p.memory_mb} MB (task {tid!r}); a worker has one memory size")
        self._check_orders(workflow)
        self._check_continuation(workflow)
        self._check_waits(workflow)
        try:
            RunSpec.build(workflow, self.placements)
        except ValueError as exc:
            raise PlanError(str(exc)) from None

    def _check_orders(self, workflow: Workflow) -> None:
        """Each order lists its worker's tasks once each, upstream tasks first."""
        workers = self._placed_workers()
        for worker, order in self.worker_orders.items():
            if worker not in workers:
                raise PlanError(f"plan {self.planner!r} gives an order for worker {worker!r}, "
                                "which runs no task of the plan")
            mine = set(workers[worker])
            position: dict[str, int] = {}
            for i, tid in enumerate(order):
                if tid not in mine:
                    where = self.placements[tid].worker if tid in self.placements else None
                    raise PlanError(
                        f"worker {worker!r}: its order lists task {tid!r}, which is "
                        + (f"placed on {where!r}" if where else "not one of its tasks"))
                if tid in position:
                    raise PlanError(f"worker {worker!r}: its order lists task {tid!r} twice")
                position[tid] = i
            absent = [t for t in workers[worker] if t not in position]
            if absent:
                raise PlanError(f"worker {worker!r}: its order misses task {absent[0]!r} "
                                f"({len(absent)} of its tasks unlisted); list each task once")
            for tid in order:
                for up in workflow.upstream(tid):
                    if position.get(up, -1) > position[tid]:
                        raise PlanError(
                            f"worker {worker!r}: its order runs task {tid!r} before its "
                            f"upstream task {up!r} on the same worker; an order must follow "
                            "the dependencies")

    def _placed_workers(self) -> dict[str, tuple[str, ...]]:
        """Planned worker id -> its task ids in the order of ``placements``."""
        out: dict[str, list[str]] = {}
        for tid, p in self.placements.items():
            if p.worker is not None:
                out.setdefault(p.worker, []).append(tid)
        return {w: tuple(ts) for w, ts in out.items()}

    def _check_waits(self, workflow: Workflow) -> None:
        """Refuse orders under which workers would wait for each other in a cycle."""
        if not self.worker_orders:
            return  # topological sequences follow one global order: no cycle
        index = {t: i for i, t in enumerate(workflow.topological_order)}
        graph: nx.DiGraph[str] = nx.DiGraph(workflow.graph.edges)
        graph.add_nodes_from(workflow.topological_order)
        for worker, tasks in self._placed_workers().items():
            order = self.worker_orders.get(worker) or sorted(tasks, key=index.__getitem__)
            nx.add_path(graph, order, worker=worker)
        if nx.is_directed_acyclic_graph(graph):
            return  # a linear-time check; finding the cycle to name it is far slower
        cycle = nx.find_cycle(graph)
        steps = []
        for u, v in cycle:
            runs_on = graph.edges[u, v].get("worker")
            if runs_on is not None and not workflow.graph.has_edge(u, v):
                steps.append(f"worker {runs_on!r} runs {u!r} before {v!r}")
            else:
                steps.append(f"{v!r} ({self._where(v)}) needs the output of {u!r} "
                             f"({self._where(u)})")
        raise PlanError(
            f"plan {self.planner!r}: its worker orders make workers wait for each other in a "
            f"cycle, so the run would never finish: {'; '.join(steps)}. Reorder one of these "
            "workers or split it")

    def _where(self, task_id: str) -> str:
        worker = self.placements[task_id].worker
        return f"worker {worker!r}" if worker is not None else "flexible"

    def _check_continuation(self, workflow: Workflow) -> None:
        for worker, tasks in self._placed_workers().items():
            if worker in self.worker_orders:
                continue  # an ordered worker reaches its next task by its sequence
            mine = set(tasks)
            children_here: dict[str, int] = {}
            for t in tasks:
                for p in workflow.upstream(t):
                    children_here[p] = children_here.get(p, 0) + 1
            has_root = any(not workflow.upstream(t) for t in tasks)
            ordered = [t for t in workflow.topological_order if t in mine]
            for tid in ordered[1:]:
                ups = workflow.upstream(tid)
                if any(u in mine for u in ups):
                    continue
                siblings = any(children_here[u] >= 2 for u in ups)
                if siblings or (not ups and has_root):
                    continue
                raise PlanError(
                    f"worker {worker!r}: task {tid!r} cannot be reached by continuation: it has "
                    f"no upstream task on {worker!r} and shares no parent with the worker's "
                    "other tasks; place it on another worker or make it flexible")

    # -- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the predicted trace is summarised, not stored)."""
        return {
            "planner": self.planner,
            "sla": self.sla,
            "notes": list(self.notes),
            "planning_ms": self.planning_ms,
            "predicted_makespan_ms": self.predicted_makespan_ms,
            "predicted_quantiles_ms": self.predicted_quantiles,
            "predicted_cost_usd": self.predicted_cost_usd,
            "placements": {t: {"worker": p.worker, "memory_mb": p.memory_mb,
                               "optimizations": sorted(o.value for o in p.optimizations)}
                           for t, p in self.placements.items()},
            **({"worker_orders": {w: list(ts) for w, ts in self.worker_orders.items()}}
               if self.worker_orders else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<plan>") -> Plan:
        """Rebuild a plan from :meth:`to_dict` output; errors name ``source`` and the key."""
        try:
            placements = {
                t: Placement(p["worker"], int(p["memory_mb"]),
                             frozenset(Opt(o) for o in p.get("optimizations", ())))
                for t, p in data["placements"].items()}
        except KeyError as exc:
            raise PlanError(f"{source}: missing key {exc} in a placement") from None
        except ValueError as exc:
            raise PlanError(f"{source}: {exc}") from None
        orders = data.get("worker_orders", {})
        if not isinstance(orders, Mapping) or not all(
                isinstance(ts, list) and all(isinstance(t, str) for t in ts)
                for ts in orders.values()):
            raise PlanError(f"{source}: 'worker_orders' must map each worker id to a list of "
                            f"task ids, got {orders!r:.80}")
        return cls(str(data.get("planner", "custom")), placements, str(data.get("sla", "p95")),
                   notes=tuple(data.get("notes", ())),
                   planning_ms=float(data.get("planning_ms", 0.0)),
                   worker_orders={str(w): tuple(ts) for w, ts in orders.items()})

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the plan as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Plan:
        """Read a plan written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise PlanError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(data, source=str(path))
