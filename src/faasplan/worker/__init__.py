"""The worker logic, written once and driven by both the simulator and the runtime.

Pure: this package performs no I/O and imports neither simpy, redis nor asyncio.
"""

from faasplan.worker.branch import (
    dag_parts,
    dag_parts_stored,
    execute_branch,
    initial_invocations,
    rides_behind_store,
)
from faasplan.worker.effects import (
    DAG_PART_PREFIX,
    Effect,
    Execute,
    Fetch,
    Invocation,
    Invoke,
    Join,
    Notify,
    Parallel,
    Payload,
    Sleep,
    Spawn,
    Store,
    Track,
    WaitFor,
    is_dag_part,
    output_key,
    ready_channel,
    sink_channel,
)
from faasplan.worker.placement import Opt, Placement
from faasplan.worker.spec import DagShape, RunSpec, TaskInfo, WorkerOptions

__all__ = [
    "DAG_PART_PREFIX",
    "DagShape",
    "Effect",
    "Execute",
    "Fetch",
    "Invocation",
    "Invoke",
    "Join",
    "Notify",
    "Opt",
    "Parallel",
    "Payload",
    "Placement",
    "RunSpec",
    "Sleep",
    "Spawn",
    "Store",
    "TaskInfo",
    "Track",
    "WaitFor",
    "WorkerOptions",
    "dag_parts",
    "dag_parts_stored",
    "execute_branch",
    "initial_invocations",
    "is_dag_part",
    "output_key",
    "ready_channel",
    "rides_behind_store",
    "sink_channel",
]
