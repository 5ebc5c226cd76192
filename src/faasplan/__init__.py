"""faasplan: simulate, plan and run serverless DAG workflows.

The public API in one place: the workflow language (:func:`task`, :class:`Workflow`,
:mod:`io` hints), trace import (:func:`load_wfformat`), in-process execution
(:func:`run_local`).
"""

from faasplan.workflow import (
    IOHint,
    SizedBlob,
    TaskNode,
    TaskProfile,
    Workflow,
    WorkflowError,
    WorkflowFormatError,
    io,
    load_wfformat,
    task,
)
from faasplan.local import TaskFailedError, payload_nbytes, profile, run_local

__version__ = "0.1.0"

__all__ = [
    "IOHint",
    "SizedBlob",
    "TaskFailedError",
    "TaskNode",
    "TaskProfile",
    "Workflow",
    "WorkflowError",
    "WorkflowFormatError",
    "__version__",
    "io",
    "load_wfformat",
    "payload_nbytes",
    "profile",
    "run_local",
    "task",
]
