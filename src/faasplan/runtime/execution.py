"""Running one task function on its inputs, inside a worker's executor thread."""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from typing import Any

import cloudpickle
import numpy as np

from faasplan.worker import Payload, output_key
from faasplan.workflow import SizedBlob, TaskNode, map_leaves
from faasplan.workflow.codec import LiteralRef
from faasplan.workflow.local import payload_nbytes


class TaskFailure(Exception):
    """A task function raised (or its output could not be pickled) inside this worker."""

    def __init__(self, task: str, function: str, exc_type: str, message: str, tb: str) -> None:
        super().__init__(f"task {task!r} raised {exc_type}: {message}")
        self.task = task
        self.function = function
        self.exc_type = exc_type
        self.message = message
        self.tb = tb


def call_task(task: str, node: TaskNode, inputs: Mapping[str, Payload]
              ) -> tuple[Any, bytes, float, float] | TaskFailure:
    """Run ``node`` on its fetched inputs (in an executor thread); pickle its output.

    Returns ``(value, pickled value, exec ms, pickling ms)``, or the :class:`TaskFailure`
    to raise, also for ``BaseException`` (``sys.exit``, ``KeyboardInterrupt``). Pickling
    is timed apart: it belongs to the output's upload.
    """
    def resolve(leaf: Any) -> Any:
        if isinstance(leaf, LiteralRef):
            return inputs[leaf.id].value
        return inputs[output_key(leaf.task_id)].value

    args, kwargs = map_leaves((node.args, node.kwargs), resolve, (TaskNode, LiteralRef))
    start = time.perf_counter()
    try:
        value = node.func.fn(*args, **kwargs)
        end = time.perf_counter()
        data = cloudpickle.dumps(value, protocol=5)
    except BaseException as exc:
        # A task ending the interpreter (sys.exit) or interrupted is still the task's
        # failure, reported with its traceback; it must not take the worker down with it.
        return TaskFailure(task, node.func.name, type(exc).__name__, str(exc),
                           traceback.format_exc())
    return value, data, (end - start) * 1000.0, (time.perf_counter() - end) * 1000.0


def value_nbytes(value: Any, pickled_nbytes: int) -> int:
    """Size of an output as :func:`~faasplan.workflow.local.payload_nbytes` counts it.

    Pickled sizes are reused, never recomputed.
    """
    if isinstance(value, np.ndarray | np.generic) and value.dtype != object:
        return int(value.nbytes)
    if isinstance(value, bytes | bytearray | memoryview | str | SizedBlob):
        return payload_nbytes(value)
    return pickled_nbytes
