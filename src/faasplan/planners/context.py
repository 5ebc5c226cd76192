"""What every planner works from: the workflow, predictions, the platform and a simulator.

Planners are pure: they reach the simulator only through ``evaluate(placements) -> Trace``,
a function the caller supplies (see :func:`faasplan.plan`), which simulates a candidate
with the predictors' models at the SLA level.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from faasplan.planners.plan import Plan
from faasplan.worker import Placement
from faasplan.workflow import SizedBlob, Workflow, iter_leaves


class PredictorLike(Protocol):
    """The part of :class:`faasplan.predictors.Predictor` planners use."""

    def execution_ms(self, function: str, input_bytes: float, memory_mb: int,
                     sla: str = ...) -> float: ...

    def output_bytes(self, function: str, input_bytes: float, sla: str = ...,
                     hint: Any = ...) -> float: ...


class PlatformLike(Protocol):
    """The part of :class:`faasplan.Platform` planners use."""

    @property
    def memory_sizes_mb(self) -> tuple[int, ...]: ...

    @property
    def default_memory_mb(self) -> int: ...


Evaluate = Callable[[Mapping[str, Placement]], Any]


@dataclass(frozen=True)
class Estimates:
    """Predicted bytes per task, propagated through the DAG in topological order."""

    input_bytes: Mapping[str, float]
    output_bytes: Mapping[str, float]


@dataclass
class PlanningContext:
    """Inputs of one planning call, with predictions computed once and shared.

    ``evaluate`` simulates placements with predicted models; ``history`` says whether
    the predictor rests on metrics (else plans rest on io hints and defaults).
    ``final_scoring=False`` keeps :meth:`finish` on the search's own evaluation (a planner
    running other planners as starting points compares them at one precision).
    """

    workflow: Workflow
    predictor: PredictorLike
    platform: PlatformLike
    sla: str
    seed: int
    evaluate: Evaluate
    history: bool = True
    _exec_cache: dict[tuple[str, int], float] = field(default_factory=dict, repr=False)
    evaluations: int = 0
    final_scoring: bool = True

    @cached_property
    def memory_sizes(self) -> tuple[int, ...]:
        """The platform's memory sizes, ascending."""
        return tuple(sorted(self.platform.memory_sizes_mb))

    @cached_property
    def estimates(self) -> Estimates:
        """Predicted input and output bytes of every task at the SLA."""
        wf, pred = self.workflow, self.predictor
        inputs: dict[str, float] = {}
        outputs: dict[str, float] = {}
        for tid in wf.topological_order:
            node = wf.node(tid)
            literal = sum(b.nbytes for b in iter_leaves((node.args, node.kwargs), SizedBlob))
            nbytes = literal + sum(outputs.get(u, 0.0) for u in wf.upstream(tid))
            inputs[tid] = float(nbytes)
            outputs[tid] = max(0.0, float(pred.output_bytes(node.func.name, nbytes, sla=self.sla,
                                                            hint=node.func.io)))
        return Estimates(inputs, outputs)

    def exec_ms(self, task_id: str, memory_mb: int) -> float:
        """Predicted execution time of ``task_id`` at ``memory_mb`` (memoized)."""
        key = (task_id, memory_mb)
        cached = self._exec_cache.get(key)
        if cached is None:
            cached = float(self.predictor.execution_ms(
                self.workflow.node(task_id).func.name, self.estimates.input_bytes[task_id],
                memory_mb, sla=self.sla))
            self._exec_cache[key] = cached
        return cached

    def simulate(self, placements: Mapping[str, Placement]) -> Any:
        """Predicted trace of ``placements`` (counts evaluations)."""
        self.evaluations += 1
        return self.evaluate(placements)

    def finish(self, planner: str, placements: Mapping[str, Placement], started: float,
               notes: tuple[str, ...] = (), predicted: Any = None) -> Plan:
        """Build the :class:`Plan`, simulating it unless ``predicted`` is given.

        An ``evaluate`` with a ``final(placements)`` method (the Monte-Carlo evaluator)
        scores the chosen plan with it instead, with more replicates than the search used.
        """
        final = getattr(self.evaluate, "final", None) if self.final_scoring else None
        if final is not None:
            predicted = final(placements)
        elif predicted is None:
            predicted = self.simulate(placements)
        if not self.history:
            notes = ("no metrics history: predictions come from io hints and defaults",
                     *notes)
        return Plan(planner, placements, self.sla, predicted, notes,
                    planning_ms=(time.perf_counter() - started) * 1000.0)
