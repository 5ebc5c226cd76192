"""How long a task runs and how much it outputs, in a simulated run.

:class:`GroundTruth` plays the real world (profiles scaled by memory, with noise);
:class:`PredictedBehaviour` plays a planner's beliefs (a predictor at an SLA level, no
noise). Any object with the two methods of :class:`TaskBehaviour` can stand in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from faasplan.simulator.groundtruth import (  # noqa: F401  (re-exported here)
    DEFAULT_EXEC_MS,
    DEFAULT_EXEC_MS_PER_MIB,
    DEFAULT_OUTPUT_BYTES,
    GroundTruth,
)
from faasplan.workflow import IOHint, Workflow


@runtime_checkable
class TaskBehaviour(Protocol):
    """Execution time and output size of each task (the simulator's task model)."""

    def exec_ms(self, task_id: str, memory_mb: int, input_bytes: int,
                rng: np.random.Generator) -> float:
        """Execution time of ``task_id`` on a worker with ``memory_mb`` (ms)."""
        ...

    def output_bytes(self, task_id: str, input_bytes: int, rng: np.random.Generator) -> int:
        """Size of the output of ``task_id`` given ``input_bytes`` of input."""
        ...


class Predictor(Protocol):
    """What :class:`PredictedBehaviour` needs from a :mod:`faasplan.predictors` predictor."""

    def execution_ms(self, function: str, input_bytes: int, memory_mb: int, sla: Any
                     ) -> float:
        """Predicted execution time at the SLA level."""
        ...

    def output_bytes(self, function: str, input_bytes: int, sla: Any, *,
                     hint: IOHint | None = None) -> float:
        """Predicted output size at the SLA level."""
        ...


class PredictedBehaviour:
    """Tasks behave exactly as a predictor says at ``sla`` (deterministic, no noise).

    Planners simulate candidate plans with it. Predictions are memoized per (function,
    input bytes, memory), so repeated simulations of one workflow are cheap.

    Parameters
    ----------
    workflow : Workflow
        Gives each task's function name and ``io`` hint.
    predictor : Predictor
        Any object with ``execution_ms(function, input_bytes, memory_mb, sla)`` and
        ``output_bytes(function, input_bytes, sla, hint=...)``.
    sla : str or float
        Passed through to the predictor (e.g. ``"average"`` or a percentile).
    """

    def __init__(self, workflow: Workflow, predictor: Predictor, sla: Any) -> None:
        self.predictor = predictor
        self.sla = sla
        self._function = {tid: node.func.name for tid, node in workflow.tasks.items()}
        self._hint = {tid: node.func.io for tid, node in workflow.tasks.items()}
        self._exec: dict[tuple[str, int, int], float] = {}
        self._out: dict[tuple[str, int], int] = {}

    def exec_ms(self, task_id: str, memory_mb: int, input_bytes: int,
                rng: np.random.Generator) -> float:
        """The predictor's execution time for the task's function."""
        fn = self._name(task_id)
        key = (fn, input_bytes, memory_mb)
        ms = self._exec.get(key)
        if ms is None:
            ms = float(self.predictor.execution_ms(fn, input_bytes, memory_mb, self.sla))
            if not (math.isfinite(ms) and ms >= 0):
                raise ValueError(f"predictor gave execution time {ms!r} ms for {fn} "
                                 f"(input {input_bytes} B, {memory_mb} MB, sla {self.sla!r})")
            self._exec[key] = ms
        return ms

    def output_bytes(self, task_id: str, input_bytes: int, rng: np.random.Generator) -> int:
        """The predictor's output size for the task's function (rounded, >= 0)."""
        fn = self._name(task_id)
        key = (fn, input_bytes)
        out = self._out.get(key)
        if out is None:
            raw = float(self.predictor.output_bytes(fn, input_bytes, self.sla,
                                                    hint=self._hint[task_id]))
            if not math.isfinite(raw):
                raise ValueError(f"predictor gave output size {raw!r} for {fn} "
                                 f"(input {input_bytes} B, sla {self.sla!r})")
            out = self._out[key] = max(0, round(raw))
        return out

    def _name(self, task_id: str) -> str:
        try:
            return self._function[task_id]
        except KeyError:
            raise KeyError(f"PredictedBehaviour knows no task {task_id!r}; build it with the "
                           f"workflow being simulated") from None


class Distributions(Protocol):
    """What :class:`SampledBehaviour` needs from a :mod:`faasplan.predictors` predictor."""

    def exec_distribution(self, function: str, input_bytes: float, memory_mb: float,
                          workflow_hash: str | None = None, task_id: str | None = None
                          ) -> Any:
        """An object with ``draw_within(u) -> ms`` for ``u`` uniform in [0, 1]: the
        task's time before its run's shared factors multiply it."""
        ...

    def function_effect(self, function: str) -> Any:
        """The factor shared by a function's tasks in one run: an object with
        ``quantile(u)``."""
        ...

    def task_output_bytes(self, workflow_hash: str, task_id: str) -> float | None:
        """The recorded median output of a task seen before, else None."""
        ...

    @property
    def run_effects(self) -> Any:
        """Whole-run speed factors: an object with ``quantile(u)``."""
        ...

    def output_bytes(self, function: str, input_bytes: float, sla: Any = ..., *,
                     hint: IOHint | None = None) -> float:
        """Predicted output size at the SLA level."""
        ...


class SampledModels:
    """A predictor's distributions for one workflow, looked up once and shared.

    One instance serves every Monte-Carlo replicate and every candidate plan of a planning
    call (:meth:`replicate` gives the behaviour of one replicate).
    """

    def __init__(self, workflow: Workflow, predictor: Distributions) -> None:
        self.workflow = workflow
        self.predictor = predictor
        self.order = tuple(workflow.topological_order)
        self.index = {tid: i for i, tid in enumerate(self.order)}
        self._hash = workflow.structure_hash
        self._function = {tid: node.func.name for tid, node in workflow.tasks.items()}
        self._hint = {tid: node.func.io for tid, node in workflow.tasks.items()}
        self.functions = tuple(sorted({node.func.name for node in workflow.tasks.values()}))
        self._dist: dict[tuple[str, int, int], Any] = {}
        self._out: dict[tuple[str, int], int] = {}

    def distribution(self, task_id: str, memory_mb: int, input_bytes: int) -> Any:
        """The execution-time distribution of a task (memoized)."""
        key = (task_id, memory_mb, input_bytes)
        dist = self._dist.get(key)
        if dist is None:
            dist = self.predictor.exec_distribution(self._function[task_id], input_bytes,
                                                    memory_mb, self._hash, task_id)
            self._dist[key] = dist
        return dist

    def function(self, task_id: str) -> str:
        """The function name of ``task_id``."""
        return self._function[task_id]

    def output_bytes(self, task_id: str, input_bytes: int) -> int:
        """The task's recorded median output if seen before, else the function's median."""
        key = (task_id, input_bytes)
        out = self._out.get(key)
        if out is None:
            own = self.predictor.task_output_bytes(self._hash, task_id)
            raw = own if own is not None else self.predictor.output_bytes(
                self._function[task_id], input_bytes, "p50", hint=self._hint[task_id])
            if not math.isfinite(raw):
                raise ValueError(f"predictor gave output size {raw!r} for task {task_id!r}")
            out = self._out[key] = max(0, round(raw))
        return out

    def uniforms(self, seed: int, replicates: int) -> np.ndarray:
        """``replicates x tasks`` uniform draws, the same for every plan (common random
        numbers): replicate ``r`` of task ``t`` always reads the same number."""
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
        return rng.random((int(replicates), len(self.order)))

    def run_uniforms(self, seed: int, replicates: int) -> np.ndarray:
        """One uniform draw per replicate for its whole-run speed factor (common to all
        plans, like :meth:`uniforms`)."""
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x2C4]))
        return rng.random(int(replicates))

    def function_uniforms(self, seed: int, replicates: int) -> np.ndarray:
        """``replicates x functions`` uniform draws (columns in :attr:`functions` order)
        for the factors a function's tasks share within one run."""
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xF7]))
        return rng.random((int(replicates), len(self.functions)))

    def run_factor(self, u: float) -> float:
        """The whole-run speed factor at uniform draw ``u`` (1 without run effects)."""
        return float(self.predictor.run_effects.quantile(min(max(u, 0.0), 1.0)))

    def function_factors(self, us: np.ndarray | None) -> dict[str, float]:
        """Each function's shared factor at its uniform draw (all 1 for ``None``)."""
        if us is None:
            return {}
        if len(us) != len(self.functions):
            raise ValueError(f"need one draw per function ({len(self.functions)}), "
                             f"got {len(us)}")
        return {fn: float(self.predictor.function_effect(fn).quantile(
            min(max(float(u), 0.0), 1.0))) for fn, u in zip(self.functions, us, strict=True)}

    def replicate(self, row: np.ndarray, run_u: float = 0.5,
                  function_us: np.ndarray | None = None) -> SampledBehaviour:
        """The behaviour of one replicate whose task draws are ``row``, whose whole-run
        draw is ``run_u`` and whose per-function draws are ``function_us``."""
        return SampledBehaviour(self, row, self.run_factor(run_u),
                                self.function_factors(function_us))


class SampledBehaviour:
    """Tasks behave as one Monte-Carlo draw from a predictor's distributions.

    Each task's execution time is its within-run distribution's inverse CDF at the task's
    own uniform draw, so a task keeps its draw whatever the plan or the order of events
    (common random numbers across candidate plans), times the factor its function shares
    in this replicate (``function_factors``) and the replicate's whole-run factor
    ``run_factor``. Output sizes are the predicted medians.
    """

    def __init__(self, models: SampledModels, row: np.ndarray, run_factor: float = 1.0,
                 function_factors: Mapping[str, float] | None = None) -> None:
        if len(row) != len(models.order):
            raise ValueError(f"SampledBehaviour needs one draw per task ({len(models.order)}),"
                             f" got {len(row)}")
        self.models = models
        self.row = row
        self.run_factor = float(run_factor)
        self.function_factors = dict(function_factors or {})

    def exec_ms(self, task_id: str, memory_mb: int, input_bytes: int,
                rng: np.random.Generator) -> float:
        """The task's draw from its predicted distribution (``rng`` is not used)."""
        dist = self.models.distribution(task_id, memory_mb, input_bytes)
        shared = self.run_factor * self.function_factors.get(self.models.function(task_id), 1.0)
        ms = float(dist.draw_within(float(self.row[self.models.index[task_id]]))) * shared
        if not (math.isfinite(ms) and ms >= 0):
            raise ValueError(f"predictor gave execution time {ms!r} ms for task {task_id!r} "
                             f"(input {input_bytes} B, {memory_mb} MB)")
        return ms

    def output_bytes(self, task_id: str, input_bytes: int, rng: np.random.Generator) -> int:
        """The predicted median output size."""
        return self.models.output_bytes(task_id, input_bytes)
