"""The Dask invoker against a real ``distributed.LocalCluster`` and a real redis-server.

The cluster has 2 worker processes of 2 threads (4 sandboxes at once). Every run must give
``run_local``'s result, on the Dask workers (their process ids are in the trace), with the
emulator's trace columns; a task's error reaches the client with its traceback; a killed
Dask worker is retried; the key never travels in a task's arguments.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

import faasplan
from faasplan.cli import main
from faasplan.runtime import (
    DaskInvoker,
    FaaSStats,
    RemoteTaskError,
    RuntimeConfig,
    new_key,
    run,
)
from faasplan.runtime.security import STRICT_ENV, SecurityWarning
from faasplan.trace import TASK_COLUMNS, WORKER_COLUMNS
from faasplan.worker import Placement
from faasplan.workflow import Workflow, task
from faasplan.workflow.local import run_local
from faasplan.workloads import REGISTRY

pytest_plugins = ("conftest_redis",)

# Dask worker processes cannot import this test module: ship its task functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

# Drain until every invocation has reported (it ends as soon as they have): a loaded
# machine must not cut the trace short.
CONFIG = RuntimeConfig(lease_ms=2000, drain_s=30.0)


@task
def inc(x: int) -> int:
    return x + 1


@task
def boom(x: int) -> int:
    if x > 1:
        raise ValueError(f"bad input {x}")
    return x


@task
def crash_once(x: int, marker: str) -> int:
    """Kill the Dask worker process the first time it runs (the marker file remembers)."""
    if not os.path.exists(marker):
        Path(marker).write_text("crashed")
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 10


class _TaskSpecs(SchedulerPlugin):
    """Keeps the pickled specs of the faasplan tasks the scheduler receives."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.specs: list[bytes] = []

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        ts = self.scheduler.tasks.get(key)
        if ts is not None and str(key).startswith("faasplan-invocation") and start == "released":
            self.specs.append(pickle.dumps(ts.run_spec))


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                      dashboard_address=None) as local:
        yield local


@pytest.fixture(scope="module")
def specs(cluster: LocalCluster) -> _TaskSpecs:
    scheduler = cluster.scheduler
    assert scheduler is not None
    plugin = _TaskSpecs(scheduler)
    scheduler.add_plugin(plugin, name="faasplan-test-specs")
    return plugin


@pytest.fixture(scope="module")
def dask_pool(redis_server: Any, cluster: LocalCluster) -> Iterator[tuple[DaskInvoker, bytes]]:
    key = new_key()
    with DaskInvoker(cluster, redis_server.url, key) as invoker:
        yield invoker, key


@pytest.fixture
def go(redis_server: Any, dask_pool: tuple[DaskInvoker, bytes]) -> Callable[..., Any]:
    invoker, key = dask_pool

    def call(wf: Workflow, plan: Any = None, **kw: Any) -> Any:
        kw.setdefault("timeout_s", 120.0)
        kw.setdefault("config", CONFIG)
        return run(wf, plan, redis_server.url, hmac_key=key, invoker=invoker, **kw)

    return call


def dask_pids(cluster: LocalCluster) -> set[int]:
    with Client(cluster) as client:
        return set(client.run(os.getpid).values())


def settled(invoker: DaskInvoker) -> FaaSStats:
    """The invoker's counters once its Dask tasks have all returned.

    A run ends when its invocations have reported through Redis; each Dask task returns
    (and is counted) just after.
    """
    deadline = time.monotonic() + 30.0
    while invoker.stats.processes and time.monotonic() < deadline:
        time.sleep(0.01)
    return invoker.stats


def same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


# -- results ---------------------------------------------------------------------------------
def test_empty_cluster_address_is_refused() -> None:
    with pytest.raises(ValueError, match="empty scheduler address"):
        DaskInvoker("", "redis://127.0.0.1:1/0", new_key())
    with pytest.raises(TypeError, match="got int"):
        DaskInvoker(8786, "redis://127.0.0.1:1/0", new_key())


def test_unreachable_scheduler_says_where(redis_server: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    invoker = DaskInvoker(f"tcp://127.0.0.1:{port}", redis_server.url, new_key(),
                          connect_timeout_s=1.0)
    with pytest.raises(RuntimeError, match=rf"could not start on tcp://127.0.0.1:{port}: "):
        invoker.start()


@pytest.mark.parametrize("workload", sorted(REGISTRY))
def test_workloads_match_run_local_on_dask(go: Callable[..., Any], cluster: LocalCluster,
                                           workload: str) -> None:
    wf = REGISTRY[workload]()
    result = go(wf)
    assert same(result.result, run_local(wf))
    assert sorted(result.trace.tasks["task"]) == sorted(wf.topological_order)
    # The emulator's trace, column for column, served by the Dask worker processes.
    assert list(result.trace.tasks.columns) == list(TASK_COLUMNS)
    assert list(result.trace.workers.columns) == list(WORKER_COLUMNS)
    assert set(result.trace.workers["container"]) <= dask_pids(cluster)


@pytest.mark.parametrize(("workload", "planner"), [("image_pipeline", "non-uniform-opt"),
                                                    ("wordcount", "heft")])
def test_planned_plan_runs_on_dask(go: Callable[..., Any], cluster: LocalCluster,
                                   dask_pool: tuple[DaskInvoker, bytes], workload: str,
                                   planner: str) -> None:
    wf = REGISTRY[workload]()
    plan = faasplan.plan(wf, planner=planner)
    planned = {p.worker for p in plan.placements.values() if p.worker is not None}
    assert planned, "the planner should have planned workers"
    before = settled(dask_pool[0])
    result = go(wf, plan)
    assert same(result.result, run_local(wf))
    workers = result.trace.tasks.set_index("task")["worker"]
    for tid, placement in plan.placements.items():
        if placement.worker is not None:
            assert workers[tid] == placement.worker
    after = settled(dask_pool[0])
    started = (after.cold_starts + after.warm_starts) - (before.cold_starts + before.warm_starts)
    assert started == result.trace.invocations
    assert set(result.trace.workers["container"]) <= dask_pids(cluster)


def test_first_invocation_of_a_run_per_process_is_cold(go: Callable[..., Any]) -> None:
    wf = REGISTRY["tree_reduction"](leaves=16, leaf_size=4)
    for _ in range(2):  # a second run starts cold again in every process: a new run
        result = go(wf)
        workers = result.trace.workers.sort_values("start_ms")
        for _, per_pid in workers.groupby("container"):
            states = list(per_pid["startup_state"])
            assert states[0] == "cold" and set(states[1:]) <= {"warm"}
        assert result.trace.cold_starts == workers["container"].nunique()


def test_no_keep_alive_makes_every_start_cold(redis_server: Any, cluster: LocalCluster) -> None:
    key = new_key()
    wf = REGISTRY["tree_reduction"](leaves=8, leaf_size=4)
    with DaskInvoker(cluster, redis_server.url, key, keep_alive_s=0.0) as invoker:
        result = run(wf, None, redis_server.url, hmac_key=key, invoker=invoker,
                     config=CONFIG, timeout_s=120.0)
    assert same(result.result, run_local(wf))
    assert set(result.trace.workers["startup_state"]) == {"cold"}
    assert invoker.stats.warm_starts == 0
    # At least one Dask task per invocation (a retry on a loaded machine adds one).
    assert invoker.stats.cold_starts >= result.trace.invocations == 8


def test_invocations_spread_over_both_workers(go: Callable[..., Any], cluster: LocalCluster,
                                              dask_pool: tuple[DaskInvoker, bytes]) -> None:
    wf = REGISTRY["tree_reduction"](leaves=64, leaf_size=4)
    result = go(wf)
    assert same(result.result, run_local(wf))
    assert result.trace.workers["container"].nunique() == 2
    assert cluster.scheduler is not None
    assert dask_pool[0].workers_used == set(cluster.scheduler.workers)
    assert dask_pool[0].max_processes == 4  # 2 processes x 2 threads


# -- failures --------------------------------------------------------------------------------
def test_task_traceback_reaches_the_client(go: Callable[..., Any], redis_server: Any) -> None:
    wf = Workflow(inc(boom(inc(1)), task_id="after"))
    with pytest.raises(RemoteTaskError, match=r"task 'boom-0' .*ValueError: bad input 2") as err:
        go(wf, run_id="dask-boom")
    assert re.search(r"line \d+, in boom\nValueError: bad input 2", err.value.remote_traceback)
    assert list(redis_server.client().scan_iter(match="fp:dask-boom:*")) == []


def test_plan_that_could_take_every_thread_is_refused(go: Callable[..., Any]) -> None:
    # A chain dealt round-robin to four planned workers: each waits for the previous one
    # while holding a thread, and 4 threads cannot hold them and the producers too.
    node = inc(0, task_id="t0")
    for i in range(1, 8):
        node = inc(node, task_id=f"t{i}")
    wf = Workflow(node)
    plan = {f"t{i}": Placement(f"w{i % 4}", 1024) for i in range(8)}
    with pytest.raises(ValueError, match=r"the emulator's max_processes is 4"):
        go(wf, plan)


def test_killed_dask_worker_is_retried(go: Callable[..., Any], tmp_path: Path) -> None:
    wf = Workflow(inc(crash_once(inc(1), str(tmp_path / "marker"))))
    result = go(wf)
    assert result.result == run_local(wf) == 21  # the marker exists now: no crash locally
    assert result.retries == 1


# -- secrets ---------------------------------------------------------------------------------
def test_key_and_password_never_in_task_arguments(go: Callable[..., Any], redis_server: Any,
                                                  dask_pool: tuple[DaskInvoker, bytes],
                                                  specs: _TaskSpecs) -> None:
    specs.specs.clear()
    wf = REGISTRY["wordcount"]()
    go(wf)
    key = dask_pool[1]
    assert specs.specs, "the scheduler plugin saw no faasplan task"
    for spec in specs.specs:
        for secret in (key, key.hex().encode(), redis_server.password.encode()):
            assert secret not in spec


def test_cleartext_remote_scheduler_is_warned_or_refused(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    with pytest.warns(SecurityWarning, match="without TLS"):
        DaskInvoker("tcp://10.1.2.3:8786", "redis://127.0.0.1:1/0", new_key())
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(ValueError, match=r"tcp://10.1.2.3:8786 is reached without TLS"):
        DaskInvoker("tcp://10.1.2.3:8786", "redis://127.0.0.1:1/0", new_key())


# -- command line ----------------------------------------------------------------------------
def test_cli_run_on_dask(capsys: pytest.CaptureFixture[str], cluster: LocalCluster) -> None:
    code = main(["run", "faasplan.workloads:gemm", "--planner", "wukong",
                 "--dask", cluster.scheduler_address, "--json", "--no-files"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert np.allclose(data["result"], run_local(REGISTRY["gemm"]()))
    assert data["tasks"] == len(REGISTRY["gemm"]())


def test_cli_run_with_invoker_dask(capsys: pytest.CaptureFixture[str], cluster: LocalCluster,
                                   specs: _TaskSpecs) -> None:
    # The acceptance command: --invoker dask with the cluster's address.
    specs.specs.clear()
    code = main(["run", "faasplan.workloads:gemm", "--invoker", "dask",
                 "--dask", cluster.scheduler_address, "--json", "--no-files"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert np.allclose(data["result"], run_local(REGISTRY["gemm"]()))
    assert specs.specs, "no invocation reached the Dask scheduler"


def test_cli_invoker_dask_without_an_address_exits_2(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    assert main(["run", "faasplan.workloads:gemm", "--invoker", "dask"]) == 2
    assert "--invoker dask needs the cluster's scheduler: add --dask ADDRESS" in \
        capsys.readouterr().err
