"""faasplan: simulate, plan and run serverless DAG workflows.

The public API in one place:

* the workflow language: :func:`task`, :class:`Workflow`, :mod:`io` hints,
  :func:`load_wfformat` for WfCommons traces, :mod:`workloads` (examples);
* :func:`run_local` / :func:`profile`: run a workflow in this process;
* :func:`plan`: plan with a registered planner -> :class:`Plan`;
* :func:`simulate` / :func:`simulate_many` on a :class:`Platform` -> :class:`Trace`;
* :func:`run`: execute a plan on Redis with FaaS-style workers.

Only the workflow language is imported eagerly: a worker process that imports
``faasplan`` must start fast, so the simulator, planners, predictors and runtime (and
pandas/SciPy behind them) load on first use.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from faasplan._native import install as _install_native
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

# FAASPLAN_PURE_PYTHON=1: the compiled core's Python sources (faasplan._native). The
# workflow package above imports none of that core, so this is early enough.
_install_native()

if TYPE_CHECKING:
    from faasplan import data, workloads
    from faasplan.experiments.planning import plan
    from faasplan.planners import Plan, PlanError, planner_names
    from faasplan.platform import Platform
    from faasplan.runtime import RunResult, run
    from faasplan.simulator import Trace, simulate, simulate_many
    from faasplan.worker import Opt, Placement
    from faasplan.workflow.local import TaskFailedError, payload_nbytes, profile, run_local

__version__ = "0.1.0"

_LAZY = {
    "workloads": ("faasplan.workloads", None),
    "data": ("faasplan.data", None),
    "plan": ("faasplan.experiments.planning", "plan"),
    "TaskFailedError": ("faasplan.workflow.local", "TaskFailedError"),
    "payload_nbytes": ("faasplan.workflow.local", "payload_nbytes"),
    "profile": ("faasplan.workflow.local", "profile"),
    "run_local": ("faasplan.workflow.local", "run_local"),
    "Plan": ("faasplan.planners", "Plan"),
    "PlanError": ("faasplan.planners", "PlanError"),
    "planner_names": ("faasplan.planners", "planner_names"),
    "RunResult": ("faasplan.runtime", "RunResult"),
    "run": ("faasplan.runtime", "run"),
    "Platform": ("faasplan.platform", "Platform"),
    "Trace": ("faasplan.simulator", "Trace"),
    "simulate": ("faasplan.simulator", "simulate"),
    "simulate_many": ("faasplan.simulator", "simulate_many"),
    "Opt": ("faasplan.worker", "Opt"),
    "Placement": ("faasplan.worker", "Placement"),
}

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
    "data",
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
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'faasplan' has no attribute {name!r}") from None
    module = import_module(module_name)
    return module if attr is None else getattr(module, attr)


def __dir__() -> list[str]:
    return __all__
