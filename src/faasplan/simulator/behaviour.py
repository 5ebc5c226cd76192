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

from faasplan.simulator.platform import Platform
from faasplan.workflow import IOHint, TaskProfile, Workflow

DEFAULT_EXEC_MS = 100.0
"""Execution time at the reference memory of a task with no profile, before input costs."""

DEFAULT_EXEC_MS_PER_MIB = 5.0
"""Extra execution time per MiB of input of a task with no profile."""

DEFAULT_OUTPUT_BYTES = 64 * 1024
"""Output size of a task with neither a profile nor an ``io`` hint."""

_MIB = 1024.0 * 1024.0


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


class GroundTruth:
    """The simulated real world: measured profiles, scaled by memory, with noise.

    For each task, in order of preference:

    1. a :class:`~faasplan.TaskProfile` from ``profiles`` or the node's own ``profile``
       (imported traces carry one): ``exec_ms`` holds at the platform's
       ``reference_memory_mb`` and scales with :meth:`Platform.exec_factor`;
       ``output_bytes`` is the output size;
    2. without a profile, the execution time is ``DEFAULT_EXEC_MS`` (100 ms) plus
       ``DEFAULT_EXEC_MS_PER_MIB`` (5 ms) per MiB of input, scaled the same way, and the
       output size follows the function's ``io`` hint applied to the input bytes;
    3. with no hint either, the output is ``DEFAULT_OUTPUT_BYTES`` (64 KiB).

    Execution times get lognormal noise with median 1 and log-space standard deviation
    ``noise`` (0: exact). Output sizes are deterministic.

    Parameters
    ----------
    workflow : Workflow
        The tasks.
    platform : Platform
        The memory -> speed rule.
    profiles : mapping of task id to TaskProfile, optional
        Overrides the nodes' profiles (e.g. from :func:`faasplan.local.profile`).
    noise : float
        Spread of execution times (>= 0).
    """

    def __init__(self, workflow: Workflow, platform: Platform,
                 profiles: Mapping[str, TaskProfile] | None = None, noise: float = 0.1) -> None:
        if not (isinstance(noise, int | float) and math.isfinite(noise) and noise >= 0):
            raise ValueError(f"GroundTruth: noise must be a finite number >= 0, got {noise!r}")
        given = dict(profiles or {})
        unknown = sorted(set(given) - set(workflow.tasks))
        if unknown:
            raise KeyError(f"GroundTruth: profiles for tasks not in workflow "
                           f"{workflow.name!r}: {unknown[:5]}")
        self.platform = platform
        self.noise = float(noise)
        self._profile: dict[str, TaskProfile | None] = {}
        self._hint: dict[str, IOHint | None] = {}
        for tid, node in workflow.tasks.items():
            self._profile[tid] = given.get(tid, node.profile)
            self._hint[tid] = node.func.io
        self._factor: dict[int, float] = {}

    def exec_ms(self, task_id: str, memory_mb: int, input_bytes: int,
                rng: np.random.Generator) -> float:
        """Profile (or default) time, times the memory factor, times noise."""
        prof = self._lookup(task_id)
        base = prof.exec_ms if prof is not None else \
            DEFAULT_EXEC_MS + DEFAULT_EXEC_MS_PER_MIB * input_bytes / _MIB
        factor = self._factor.get(memory_mb)
        if factor is None:
            factor = self._factor[memory_mb] = self.platform.exec_factor(memory_mb)
        ms = base * factor
        if self.noise > 0:
            ms *= math.exp(self.noise * rng.standard_normal())
        return ms

    def output_bytes(self, task_id: str, input_bytes: int, rng: np.random.Generator) -> int:
        """Profile size, else the ``io`` hint applied to ``input_bytes``, else the default."""
        prof = self._lookup(task_id)
        if prof is not None:
            return prof.output_bytes
        hint = self._hint[task_id]
        if hint is not None:
            return max(0, round(hint.output_bytes(input_bytes)))
        return DEFAULT_OUTPUT_BYTES

    def _lookup(self, task_id: str) -> TaskProfile | None:
        try:
            return self._profile[task_id]
        except KeyError:
            raise KeyError(f"GroundTruth knows no task {task_id!r}; build it with the "
                           f"workflow being simulated") from None


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
