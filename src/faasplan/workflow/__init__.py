"""The workflow language: ``@task``, nested arguments, I/O hints and the :class:`Workflow` DAG."""

from faasplan.workflow import io
from faasplan.workflow.errors import WorkflowError, WorkflowFormatError
from faasplan.workflow.graph import Workflow
from faasplan.workflow.io import IOHint
from faasplan.workflow.nested import iter_leaves, map_leaves
from faasplan.workflow.task import SizedBlob, TaskFunction, TaskNode, TaskProfile, task
from faasplan.workflow.wfformat import load_wfformat, trace_edge_bytes

__all__ = [
    "IOHint",
    "SizedBlob",
    "TaskFunction",
    "TaskNode",
    "TaskProfile",
    "Workflow",
    "WorkflowError",
    "WorkflowFormatError",
    "io",
    "iter_leaves",
    "load_wfformat",
    "map_leaves",
    "task",
    "trace_edge_bytes",
]
