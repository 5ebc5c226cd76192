"""Run a plan for real: an asyncio driver on Redis, FaaS-style worker processes, a client.

The worker processes run the same :func:`faasplan.worker.execute_branch` as the simulator;
:mod:`faasplan.runtime.driver` only performs its effects on Redis. Entry points:

* :func:`run` — execute a workflow under a plan and return a :class:`RunResult`
  (result, measured :class:`~faasplan.simulator.Trace`, metrics records);
* :class:`LocalFaaS` — the local FaaS emulator (per-memory pools of worker processes);
* :class:`DaskInvoker` — the same invoker with an existing Dask cluster as its sandboxes
  (needs the ``dask`` extra);
* :func:`worker_main` — ``faasplan worker --redis URL``: a worker joining a pool;
* :class:`EmbeddedRedis` — the private ``redis-server`` used when no URL is given.

Names are imported lazily so that a worker process does not load the client's
dependencies (pandas, the simulator).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faasplan.runtime.client import Progress, RunResult, RuntimeConfig, run, run_async
    from faasplan.runtime.dask_invoker import DaskInvoker
    from faasplan.runtime.embedded import EmbeddedRedis
    from faasplan.runtime.errors import (
        InsecureRedisError,
        MissingRequirementsError,
        PayloadAuthError,
        RedisServerNotFoundError,
        RemoteTaskError,
        RunError,
        RunStateLostError,
        RunTimeoutError,
        WorkerFailedError,
        WorkerLostError,
    )
    from faasplan.runtime.faas import FaaSStats, LocalFaaS
    from faasplan.runtime.keys import pool_queue
    from faasplan.runtime.security import KEY_ENV, Signer, check_redis_url, new_key
    from faasplan.runtime.workerproc import worker_main

_LAZY = {
    "run": "client", "run_async": "client", "RunResult": "client", "Progress": "client",
    "RuntimeConfig": "client",
    "DaskInvoker": "dask_invoker",
    "EmbeddedRedis": "embedded",
    "LocalFaaS": "faas", "FaaSStats": "faas",
    "worker_main": "workerproc",
    "pool_queue": "keys",
    "KEY_ENV": "security", "Signer": "security", "check_redis_url": "security",
    "new_key": "security",
    "RunError": "errors", "RemoteTaskError": "errors", "PayloadAuthError": "errors",
    "WorkerLostError": "errors", "RunTimeoutError": "errors",
    "MissingRequirementsError": "errors", "RunStateLostError": "errors",
    "WorkerFailedError": "errors", "RedisServerNotFoundError": "errors",
    "InsecureRedisError": "errors",
}

__all__ = [
    "KEY_ENV",
    "DaskInvoker",
    "EmbeddedRedis",
    "FaaSStats",
    "InsecureRedisError",
    "LocalFaaS",
    "MissingRequirementsError",
    "PayloadAuthError",
    "Progress",
    "RedisServerNotFoundError",
    "RemoteTaskError",
    "RunError",
    "RunResult",
    "RunStateLostError",
    "RunTimeoutError",
    "RuntimeConfig",
    "Signer",
    "WorkerFailedError",
    "WorkerLostError",
    "check_redis_url",
    "new_key",
    "pool_queue",
    "run",
    "run_async",
    "worker_main",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'faasplan.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"faasplan.runtime.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
