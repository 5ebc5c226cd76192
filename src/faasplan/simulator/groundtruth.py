"""The simulated real world (:class:`GroundTruth`): measured profiles, scaled by memory,
with noise.

Compiled with the simulator's core (see :mod:`faasplan._native`): the simulator asks it
twice per task. :mod:`faasplan.simulator.behaviour` holds the other task models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

import numpy as np
from mypy_extensions import mypyc_attr

from faasplan.platform import Platform
from faasplan.workflow import IOHint, TaskProfile, Workflow

DEFAULT_EXEC_MS: Final = 100.0
"""Execution time at the reference memory of a task with no profile, before input costs."""

DEFAULT_EXEC_MS_PER_MIB: Final = 5.0
"""Extra execution time per MiB of input of a task with no profile."""

DEFAULT_OUTPUT_BYTES: Final = 64 * 1024
"""Output size of a task with neither a profile nor an ``io`` hint."""

_MIB: Final = 1024.0 * 1024.0


# Open to subclasses written in Python, like the storage model.
@mypyc_attr(allow_interpreted_subclasses=True)
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
        Overrides the nodes' profiles (e.g. from :func:`faasplan.workflow.local.profile`).
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
        prof = self._profile.get(task_id)
        if prof is not None:
            base = prof.exec_ms
        else:
            self._lookup(task_id)  # an unknown task: the error that names it
            base = DEFAULT_EXEC_MS + DEFAULT_EXEC_MS_PER_MIB * input_bytes / _MIB
        factor = self._factor.get(memory_mb)
        if factor is None:
            factor = self._factor[memory_mb] = self.platform.exec_factor(memory_mb)
        ms = base * factor
        if self.noise > 0:
            ms *= math.exp(self.noise * rng.standard_normal())
        return ms

    def output_bytes(self, task_id: str, input_bytes: int, rng: np.random.Generator) -> int:
        """Profile size, else the ``io`` hint applied to ``input_bytes``, else the default."""
        prof = self._profile.get(task_id)
        if prof is not None:
            return prof.output_bytes
        self._lookup(task_id)  # an unknown task: the error that names it
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
