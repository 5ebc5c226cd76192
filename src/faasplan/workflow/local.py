"""Run a workflow in this process: real results for tests and notebooks, profiles for the simulator.

:func:`run_local` executes every task in topological order, replacing the task nodes nested
in its arguments by their upstream results. :func:`profile` does the same while timing each
task and measuring its output with :func:`payload_nbytes`; the simulator takes those
profiles as ground truth.

Tasks share result objects in one process (the distributed runtime gives each consumer its
own copy), so task functions must not mutate their inputs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from typing import Any

import cloudpickle
import numpy as np

from faasplan.workflow import SizedBlob, TaskNode, TaskProfile, Workflow, map_leaves


class TaskFailedError(RuntimeError):
    """A task raised while running; the original exception is chained as ``__cause__``.

    Parameters
    ----------
    task_id : str
        Id of the failing task in its workflow.
    function : str
        Qualified name of the task function.
    reason : str
        Short description of the original error, repeated in the message.
    """

    def __init__(self, task_id: str, function: str, reason: str = "") -> None:
        self.task_id = task_id
        self.function = function
        self.reason = reason
        message = f"task {task_id!r} ({function}) failed"
        super().__init__(f"{message}: {reason}" if reason else message)

    def __reduce__(self) -> tuple[type[TaskFailedError], tuple[str, str, str]]:
        # The default reduce would call __init__ with the formatted message only.
        return type(self), (self.task_id, self.function, self.reason)


def payload_nbytes(value: Any) -> int:
    """Size in bytes of a task output as it would travel through storage.

    numpy arrays and scalars count their buffer (``nbytes``), ``bytes``-like values their
    length, ``str`` its UTF-8 length, :class:`~faasplan.SizedBlob` its declared size;
    anything else (and object arrays, whose buffer holds only pointers) its cloudpickle
    size with protocol 5.

    >>> import numpy as np
    >>> payload_nbytes(np.zeros(10)), payload_nbytes(b"abc"), payload_nbytes("héllo")
    (80, 3, 6)
    """
    if isinstance(value, np.ndarray | np.generic) and value.dtype != object:
        return int(value.nbytes)
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, memoryview):
        return value.nbytes
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, SizedBlob):
        return value.nbytes
    return len(cloudpickle.dumps(value, protocol=5))


def run_local(wf: Workflow, *, inputs: Mapping[str, Any] | None = None) -> Any:
    """Execute ``wf`` in this process and return its result.

    Parameters
    ----------
    wf : Workflow
        The workflow to run.
    inputs : mapping of task id to value, optional
        Values of the workflow's ``external_inputs`` (needed only for a
        :meth:`~faasplan.Workflow.subdag`).

    Returns
    -------
    Any
        The sink's result, or a list of results in ``wf.sinks`` order when there are
        several sinks.

    Raises
    ------
    TaskFailedError
        A task raised; the original exception is its ``__cause__``.

    >>> from faasplan import task, Workflow
    >>> @task
    ... def add(a, b):
    ...     return a + b
    >>> run_local(Workflow(add(add(1, 2), 3)))
    6
    """
    results, _ = _execute(wf, inputs)
    return _sink_results(wf, results)


def profile(wf: Workflow, repeat: int = 1, *, inputs: Mapping[str, Any] | None = None
            ) -> dict[str, TaskProfile]:
    """Run ``wf`` in this process and measure every task.

    Parameters
    ----------
    wf : Workflow
        The workflow to profile.
    repeat : int
        Number of runs; each task's time and size are the median over the runs.
    inputs : mapping of task id to value, optional
        As for :func:`run_local`.

    Returns
    -------
    dict of str to TaskProfile
        Per task id (in topological order): wall-clock execution time in ms
        (``time.perf_counter``) and output size (:func:`payload_nbytes`).
    """
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"profile: repeat must be an integer >= 1, got {repeat!r}")
    times: dict[str, list[float]] = {tid: [] for tid in wf.topological_order}
    sizes: dict[str, list[int]] = {tid: [] for tid in wf.topological_order}
    for _ in range(repeat):
        results, elapsed = _execute(wf, inputs)
        for tid in wf.topological_order:
            times[tid].append(elapsed[tid])
            sizes[tid].append(payload_nbytes(results[tid]))
    # median_low keeps sizes integral and equal to an observed value
    return {tid: TaskProfile(exec_ms=statistics.median(times[tid]),
                             output_bytes=statistics.median_low(sizes[tid]))
            for tid in wf.topological_order}


def _execute(wf: Workflow, inputs: Mapping[str, Any] | None
             ) -> tuple[dict[str, Any], dict[str, float]]:
    """Run every task once; return results and execution times (ms) by task id."""
    results = _external_values(wf, inputs)
    elapsed: dict[str, float] = {}

    def resolve(node: TaskNode) -> Any:
        return results[wf.id_of(node)]

    for tid in wf.topological_order:
        node = wf.tasks[tid]
        args = map_leaves(node.args, resolve, match=TaskNode)
        kwargs = map_leaves(node.kwargs, resolve, match=TaskNode)
        start = time.perf_counter()
        try:
            value = node.func.fn(*args, **kwargs)
        except Exception as exc:
            raise TaskFailedError(tid, node.func.name, f"{type(exc).__name__}: {exc}") from exc
        elapsed[tid] = (time.perf_counter() - start) * 1000.0
        results[tid] = value
    return results, elapsed


def _external_values(wf: Workflow, inputs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check ``inputs`` against the workflow's external inputs and copy them."""
    given = dict(inputs or {})
    unknown = sorted(set(given) - wf.external_inputs)
    if unknown:
        raise ValueError(
            f"inputs {unknown} are not external inputs of workflow {wf.name!r} "
            f"(expected only ids among {sorted(wf.external_inputs)})")
    missing = sorted(wf.external_inputs - set(given))
    if missing:
        raise ValueError(
            f"workflow {wf.name!r} needs the outputs of tasks outside it: {missing}; "
            f"pass them as run_local(wf, inputs={{task_id: value}})")
    return given


def _sink_results(wf: Workflow, results: Mapping[str, Any]) -> Any:
    if len(wf.sinks) == 1:
        return results[wf.sinks[0]]
    return [results[s] for s in wf.sinks]
