"""faasplan: simulate, plan and run serverless DAG workflows.

The public API in one place:

* the workflow language: :func:`task`, :class:`Workflow`, :mod:`io` hints,
  :func:`load_wfformat` for WfCommons traces, :mod:`workloads` (examples);
* :func:`run_local` / :func:`profile`: run a workflow in this process;
* :func:`plan`: plan with a registered planner -> :class:`Plan`;
* :func:`simulate` / :func:`simulate_many` on a :class:`Platform` -> :class:`Trace`;
* :func:`run`: execute a plan on Redis with FaaS-style workers (loaded on first use).
"""

from typing import TYPE_CHECKING, Any

from faasplan import workloads
from faasplan.api import plan
from faasplan.local import TaskFailedError, payload_nbytes, profile, run_local
from faasplan.planners import Plan, PlanError, planner_names
from faasplan.simulator import Platform, Trace, simulate, simulate_many
from faasplan.worker import Opt, Placement
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

if TYPE_CHECKING:
    from faasplan.runtime import RunResult, run

__version__ = "0.1.0"

__all__ = [
    "IOHint",
    "Opt",
    "Placement",
    "Plan",
    "PlanError",
    "Platform",
    "RunResult",
    "SizedBlob",
    "TaskFailedError",
    "TaskNode",
    "TaskProfile",
    "Trace",
    "Workflow",
    "WorkflowError",
    "WorkflowFormatError",
    "__version__",
    "io",
    "load_wfformat",
    "payload_nbytes",
    "plan",
    "planner_names",
    "profile",
    "run",
    "run_local",
    "simulate",
    "simulate_many",
    "task",
    "workloads",
]


def __getattr__(name: str) -> Any:
    # The runtime pulls in redis.asyncio; load it only when a run is asked for.
    if name in ("run", "RunResult"):
        from faasplan import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'faasplan' has no attribute {name!r}")
