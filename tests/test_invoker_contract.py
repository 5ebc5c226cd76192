"""Both invokers, the local emulator and the Dask invoker, keep the :class:`Invoker` contract.

Structurally (the members the client uses) and in behaviour, on tiny runs against a real
redis-server and a real ``distributed.LocalCluster`` of one process with two threads:
invoke, sandbox identity, memory, concurrency limit, cold/warm signal, failure and retry.
"""

from __future__ import annotations

import inspect
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from distributed import Client, LocalCluster

from faasplan.runtime import DaskInvoker, LocalFaaS, RuntimeConfig, Signer, new_key, run
from faasplan.runtime.invoker import Invoker
from faasplan.worker import Placement
from faasplan.workflow import Workflow, task

pytest_plugins = ("conftest_redis",)

# Dask worker processes cannot import this test module: ship its task functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

CONFIG = RuntimeConfig(lease_ms=2000, drain_s=30.0)
LIMIT = 2  # sandboxes at once: the emulator's max_processes, the cluster's threads


@task
def inc(x: int) -> int:
    return x + 1


@task
def crash_once(x: int, marker: str) -> int:
    """Kill the sandbox's process the first time it runs (the marker file remembers)."""
    if not os.path.exists(marker):
        Path(marker).write_text("crashed")
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 10


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=1, threads_per_worker=LIMIT, processes=True,
                      dashboard_address=None) as local:
        yield local


Make = Callable[[str, bytes], Any]


@pytest.fixture(params=["local", "dask"])
def make(request: pytest.FixtureRequest) -> Make:
    """A factory of one implementation: ``make(redis_url, key)`` -> unstarted invoker."""
    if request.param == "local":
        return lambda url, key: LocalFaaS(url, key, max_running=LIMIT, max_processes=LIMIT)
    cluster = request.getfixturevalue("cluster")
    return lambda url, key: DaskInvoker(cluster, url, key)


def sandbox_pids(invoker: Any, cluster: LocalCluster | None) -> set[int] | None:
    """Process ids the sandboxes may have (Dask: the cluster's workers), else ``None``."""
    if isinstance(invoker, DaskInvoker):
        assert cluster is not None
        with Client(cluster) as client:
            return set(client.run(os.getpid).values())
    return None


def chain(n: int) -> Workflow:
    node = inc(0, task_id="t0")
    for i in range(1, n):
        node = inc(node, task_id=f"t{i}")
    return Workflow(node)


# -- structure -------------------------------------------------------------------------------
def test_both_implementations_have_the_members_of_the_contract(redis_server: Any,
                                                               make: Make) -> None:
    invoker = make(redis_server.url, new_key())
    assert isinstance(invoker, Invoker)
    for name in ("start", "serve", "close", "__enter__", "__exit__"):
        ours = inspect.signature(getattr(type(invoker), name))
        contract = inspect.signature(getattr(Invoker, name))
        assert list(ours.parameters) == list(contract.parameters), name
    assert isinstance(type(invoker).stats, property)


def test_an_object_missing_a_member_is_no_invoker() -> None:
    class NoServe:
        pool, max_processes, keep_alive_s = "p", 1, 1.0

        def start(self) -> NoServe:
            return self

        def close(self, timeout_s: float = 10.0) -> None:
            return None

    assert not isinstance(NoServe(), Invoker)


# -- behaviour -------------------------------------------------------------------------------
def test_invoke_identity_memory_and_cold_warm(redis_server: Any, make: Make,
                                             request: pytest.FixtureRequest) -> None:
    key = new_key()
    # Two planned workers of different memory sizes, then a flexible tail of three tasks.
    wf = chain(6)
    plan = {"t0": Placement("small", 512), "t1": Placement("small", 512),
            "t2": Placement("big", 2048), **{f"t{i}": Placement(None, 1024) for i in (3, 4, 5)}}
    with make(redis_server.url, key) as invoker:
        assert invoker.pool == Signer(key).pool  # the pool is the key's
        assert invoker.max_processes == LIMIT  # final once started
        before = invoker.stats
        result = run(wf, plan, redis_server.url, hmac_key=key, invoker=invoker, config=CONFIG,
                     timeout_s=120.0)

        def started() -> int:
            after = invoker.stats
            return ((after.cold_starts + after.warm_starts)
                    - (before.cold_starts + before.warm_starts))

        # The client is done once the last worker has written its end; the sandbox tells
        # its invoker a moment later (Dask: when the task's result reaches the client).
        deadline = time.monotonic() + 10.0
        while started() < result.trace.invocations and time.monotonic() < deadline:
            time.sleep(0.02)
        seen, after = started(), invoker.stats
    assert result.result == 6
    # invoke: every invocation of the run was delivered once to a sandbox (no retries).
    assert result.retries == 0
    assert seen == result.trace.invocations
    workers = result.trace.workers.sort_values("start_ms")
    # memory: each invocation ran on a sandbox of its queue's size.
    assert set(workers["memory_mb"]) == {512, 1024, 2048}
    # sandbox identity: separate processes, not the client, recorded in the trace.
    pids = set(workers["container"])
    assert os.getpid() not in pids
    allowed = sandbox_pids(invoker, request.getfixturevalue("cluster")
                           if isinstance(invoker, DaskInvoker) else None)
    if allowed is not None:
        assert pids <= allowed
    # cold/warm: a sandbox's first invocation of the run is cold, and the trace agrees
    # with the invoker's own count.
    assert result.trace.cold_starts == after.cold_starts - before.cold_starts >= 1
    for _, per_sandbox in workers.groupby("container"):
        assert per_sandbox["startup_state"].iloc[0] == "cold"


def test_the_concurrency_limit_refuses_a_plan_that_could_deadlock(redis_server: Any,
                                                                   make: Make) -> None:
    key = new_key()
    wf = chain(4)
    # Dealt round-robin to two planned workers: each waits for the other while holding a
    # sandbox, so two sandboxes cannot also run the producers.
    plan = {f"t{i}": Placement(f"w{i % 2}", 1024) for i in range(4)}
    with make(redis_server.url, key) as invoker, \
            pytest.raises(ValueError, match=rf"max_processes is {LIMIT}"):
        run(wf, plan, redis_server.url, hmac_key=key, invoker=invoker, config=CONFIG)


def test_a_sandbox_that_dies_is_retried(redis_server: Any, make: Make, tmp_path: Path) -> None:
    key = new_key()
    wf = Workflow(inc(crash_once(inc(1), str(tmp_path / "marker"))))
    with make(redis_server.url, key) as invoker:
        result = run(wf, None, redis_server.url, hmac_key=key, invoker=invoker, config=CONFIG,
                     timeout_s=120.0)
    assert result.result == 21
    assert result.retries == 1
