"""The :class:`Plan` a planner returns, and the rules a plan must follow."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from faasplan.worker import Opt, Placement, RunSpec
from faasplan.workflow import Workflow


class PlanError(ValueError):
    """A plan breaks a rule of the runtime; the message names the worker and task."""


@dataclass(frozen=True)
class Plan:
    """Immutable: where each task runs, plus the trace predicted for it.

    ``placements`` maps every task id to a :class:`~faasplan.worker.Placement`;
    ``predicted`` is the :class:`~faasplan.simulator.Trace` of simulating the plan with
    the predictors' models at the plan's ``sla``; ``notes`` say what the plan rests on
    (e.g. that no metrics history existed).
    """

    planner: str
    placements: Mapping[str, Placement]
    sla: str = "p95"
    predicted: Any = field(default=None, compare=False, repr=False)
    notes: tuple[str, ...] = ()
    planning_ms: float = field(default=0.0, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "placements", MappingProxyType(dict(self.placements)))

    def placement(self, task_id: str) -> Placement:
        """Placement of ``task_id``; ``KeyError`` naming it if the plan has none."""
        try:
            return self.placements[task_id]
        except KeyError:
            raise KeyError(f"plan {self.planner!r} has no placement for task {task_id!r}"
                           ) from None

    @property
    def workers(self) -> dict[str, tuple[str, ...]]:
        """Planned worker id -> its task ids (flexible tasks are not listed)."""
        out: dict[str, list[str]] = {}
        for tid, p in self.placements.items():
            if p.worker is not None:
                out.setdefault(p.worker, []).append(tid)
        return {w: tuple(ts) for w, ts in out.items()}

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
        each task of a planned worker is reachable by continuation — it has an upstream
        task on that worker, shares a parent with one of the worker's tasks (a fan-out
        group), or is a root on a worker that holds roots; optimizations that only
        flexible workers have (cluster, delayed I/O) only on flexible tasks; at most one
        delayed-I/O upstream per fan-in.
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
        self._check_continuation(workflow)
        try:
            RunSpec.build(workflow, self.placements)
        except ValueError as exc:
            raise PlanError(str(exc)) from None

    def _check_continuation(self, workflow: Workflow) -> None:
        for worker, tasks in self.workers.items():
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
        return cls(str(data.get("planner", "custom")), placements, str(data.get("sla", "p95")),
                   notes=tuple(data.get("notes", ())),
                   planning_ms=float(data.get("planning_ms", 0.0)))

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
