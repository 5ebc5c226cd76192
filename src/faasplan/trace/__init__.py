"""What a run leaves behind, whichever driver ran it: the decision log and the Trace.

* :class:`~faasplan.worker.log.Event` — one effect of one worker (the decision log every
  driver emits through :func:`~faasplan.worker.log.logged`);
* :func:`decisions` — per task, what the worker logic decided, from that log alone;
* :class:`Trace` — tables, totals, metrics and Gantt of a run, simulated or real.

Neither the simulator nor the runtime owns this package: both import it.
"""

from faasplan.trace.decisions import DECISION_COLUMNS, TIMING_DEPENDENT, decisions, raced_tasks
from faasplan.trace.table import TASK_COLUMNS, WORKER_COLUMNS, Trace, TraceRecords
from faasplan.worker.log import Event

__all__ = [
    "DECISION_COLUMNS",
    "TASK_COLUMNS",
    "TIMING_DEPENDENT",
    "WORKER_COLUMNS",
    "Event",
    "Trace",
    "TraceRecords",
    "decisions",
    "raced_tasks",
]
