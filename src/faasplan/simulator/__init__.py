"""Discrete-event simulation of serverless DAG runs: SimPy driving the real worker logic.

Every simulated worker runs :func:`faasplan.worker.execute_branch`, the same logic as the
runtime; small models, passed in through constructors, time its effects:

* :class:`Platform` — the numbers (AWS Lambda + Redis-like defaults);
* :class:`FairShareNetwork` — bandwidth shared max-min fairly by concurrent transfers;
* :class:`Storage` — keys, dependency sets and channels with round-trip latency;
* :class:`FaaSModel` — invocation delay, concurrency limit, warm pools, billing;
* :class:`TaskBehaviour` — execution time and output size: :class:`GroundTruth` (the
  simulated world) or :class:`PredictedBehaviour` (a predictor at an SLA level).

>>> from faasplan import task, Workflow, TaskProfile
>>> @task
... def inc(x):
...     return x + 1
>>> wf = Workflow(inc(inc(1, profile=TaskProfile(200.0, 8)), profile=TaskProfile(100.0, 8)))
>>> trace = simulate(wf, seed=1)
>>> trace.makespan_ms > 300.0, len(trace.tasks)
(True, 2)
"""

from faasplan.platform import Platform
from faasplan.simulator.api import Simulator, replicate_rngs, simulate, simulate_many
from faasplan.simulator.behaviour import (
    DEFAULT_EXEC_MS,
    DEFAULT_EXEC_MS_PER_MIB,
    DEFAULT_OUTPUT_BYTES,
    GroundTruth,
    PredictedBehaviour,
    SampledBehaviour,
    SampledModels,
    TaskBehaviour,
)
from faasplan.simulator.driver import Simulation
from faasplan.simulator.errors import SimulationError, SimulationStuckError
from faasplan.simulator.faas import FaaSModel, Sandbox
from faasplan.simulator.network import Endpoint, FairShareNetwork
from faasplan.simulator.storage import Storage, TransferRecord
from faasplan.trace.table import TASK_COLUMNS, WORKER_COLUMNS, Trace

__all__ = [
    "DEFAULT_EXEC_MS",
    "DEFAULT_EXEC_MS_PER_MIB",
    "DEFAULT_OUTPUT_BYTES",
    "TASK_COLUMNS",
    "WORKER_COLUMNS",
    "Endpoint",
    "FaaSModel",
    "FairShareNetwork",
    "GroundTruth",
    "Platform",
    "PredictedBehaviour",
    "SampledBehaviour",
    "SampledModels",
    "Sandbox",
    "Simulation",
    "SimulationError",
    "SimulationStuckError",
    "Simulator",
    "Storage",
    "TaskBehaviour",
    "Trace",
    "TransferRecord",
    "replicate_rngs",
    "simulate",
    "simulate_many",
]
