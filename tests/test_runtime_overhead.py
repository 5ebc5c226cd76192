"""The client's per-run overhead: inline subDAGs encoded once per function, pushed in
batches, and no wait for the supervisor's tick once the run is over.

The encoded bytes must not change: the simulator measures them and the conformance
harness compares the runtime's bytes with the simulator's.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import cloudpickle
import numpy as np
import pytest

import faasplan.runtime.client as client_module
from faasplan.runtime import LocalFaaS, RuntimeConfig, new_key, run
from faasplan.runtime.invoking import InlineCache, inline_blob
from faasplan.runtime.manifest import prepare_run, resolve_placements
from faasplan.worker import Placement, RunSpec, WorkerOptions, initial_invocations
from faasplan.workflow import TaskFunction, Workflow, task
from faasplan.workflow.codec import (
    CodeCache,
    decode,
    encode,
    encode_subdag,
    pickle_function,
)
from faasplan.workflow.errors import WorkflowError
from faasplan.workflow.local import run_local
from faasplan.workloads import REGISTRY, tree_reduction

pytest_plugins = ("conftest_redis",)

# Worker processes cannot import this test module: ship its task functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

BIG = np.arange(10_000, dtype=np.float64)  # 80 kB: moves out of a blob as a payload
"""A literal above the default threshold, given to several tasks."""


@task
def scale(x: Any, factor: np.ndarray) -> float:
    return float(np.sum(factor)) * float(np.sum(x))


@task
def pair(a: Any, b: Any, extra: tuple[int, ...] = ()) -> list[Any]:
    return [a, b, *extra]


def shared_literals() -> Workflow:
    """Tasks sharing a large literal and a small one, inside one subDAG."""
    small = (1, 2, 3)
    first = scale(1.0, BIG)
    second = scale(first, BIG)
    return Workflow(pair(pair(first, second, small), second, small), name="shared")


def two_closures() -> Workflow:
    """Two task functions with one qualified name and different code (closures)."""
    def make(k: int) -> TaskFunction:
        @task
        def plus(x: float) -> float:
            return x + k
        return plus

    one, two = make(1), make(2)
    return Workflow(pair(one(1.0), two(one(2.0))), name="closures")


def counting(calls: list[Callable[..., Any]]) -> Callable[[Callable[..., Any]], bytes]:
    def pickler(fn: Callable[..., Any]) -> bytes:
        calls.append(fn)
        return pickle_function(fn)
    return pickler


def flexible_spec(wf: Workflow) -> RunSpec:
    return prepare_run(wf, resolve_placements(wf, None), run_id="r", planner="flexible",
                       options=WorkerOptions(), lease_ms=3000,
                       stream_chunk_bytes=1 << 18).spec


WORKFLOWS: dict[str, Callable[[], Workflow]] = {
    **REGISTRY,
    "shared_literals": shared_literals,
    "two_closures": two_closures,
}


# -- the code cache ----------------------------------------------------------------------------
def test_the_inline_subdags_of_a_run_pickle_each_function_once() -> None:
    wf = tree_reduction(leaves=32, leaf_size=4)
    spec = flexible_spec(wf)
    calls: list[Callable[..., Any]] = []
    cache = InlineCache(pickler=counting(calls))
    invocations = [inv for inv in initial_invocations(spec) if inv.inline_dag]
    blobs = [inline_blob([wf], spec, inv, cache) for inv in invocations]
    assert len(blobs) == 32
    assert sorted(fn.__name__ for fn in calls) == ["add", "make_leaf"]
    assert len(cache.code) == 2
    # A second cache (another run) pickles again: nothing is shared between runs.
    again: list[Callable[..., Any]] = []
    other = InlineCache(pickler=counting(again))
    assert [inline_blob([wf], spec, inv, other) for inv in invocations] == blobs
    assert len(again) == 2


@pytest.mark.parametrize("name", list(WORKFLOWS))
def test_blobs_with_a_cache_are_the_bytes_without_one(name: str) -> None:
    wf = WORKFLOWS[name]()
    cache = CodeCache()
    assert encode(wf, code_cache=cache).blob == encode(wf).blob
    order = {t: i for i, t in enumerate(wf.topological_order)}
    for root in wf.topological_order:
        expected = encode(wf.subdag(root))
        fast = encode_subdag(wf, root, order_index=order, code_cache=cache)
        assert fast.blob == expected.blob, root
        assert fast.payloads == expected.payloads, root
        assert encode_subdag(wf, root).blob == expected.blob, root
        assert encode(wf.subdag(root), code_cache=cache).blob == expected.blob, root


def test_a_subdag_of_a_decoded_subdag_encodes_as_before() -> None:
    """A worker holds a decoded subDAG (external inputs, ids of its own) and sends
    subDAGs of it: the bytes must be those of ``encode(held.subdag(root))``."""
    wf = tree_reduction(leaves=8, leaf_size=2)
    held = decode(encode(wf.subdag(wf.topological_order[0])).blob)
    order = {t: i for i, t in enumerate(held.topological_order)}
    cache = CodeCache()
    for root in held.topological_order:
        assert encode_subdag(held, root, order_index=order, code_cache=cache).blob == \
            encode(held.subdag(root)).blob


def test_planned_workers_carry_the_same_bytes_with_a_cache() -> None:
    wf = tree_reduction(leaves=8, leaf_size=2)
    plan = {t: Placement("A" if i % 3 == 0 else None, 1024)
            for i, t in enumerate(wf.topological_order)}
    spec = RunSpec.build(wf, plan)
    cache = InlineCache()
    invocations = [inv for inv in initial_invocations(spec) if inv.inline_dag]
    assert any(inv.worker == "A" for inv in invocations)
    for inv in invocations:
        assert inline_blob([wf], spec, inv, cache) == inline_blob([wf], spec, inv)
        if inv.worker is None:
            assert inline_blob([wf], spec, inv) == encode(wf.subdag(inv.roots[0])).blob


def test_code_that_cannot_be_pickled_names_its_task_and_is_not_cached() -> None:
    def refuse(fn: Callable[..., Any]) -> bytes:
        raise TypeError("no")

    wf = tree_reduction(leaves=2, leaf_size=2)
    cache = CodeCache(pickler=refuse)
    with pytest.raises(WorkflowError, match="make_leaf-0"):
        encode(wf, code_cache=cache)
    assert len(cache) == 0


def test_unknown_subdag_root_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="nope"):
        encode_subdag(tree_reduction(leaves=2, leaf_size=2), "nope")


# -- real runs ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pool(redis_server: Any) -> Iterator[tuple[LocalFaaS, bytes]]:
    key = new_key()
    with LocalFaaS(redis_server.url, key, max_running=2, max_processes=2,
                   keep_alive_s=300) as faas:
        yield faas, key


def test_initial_invocations_are_pushed_in_growing_batches(
        redis_server: Any, pool: tuple[LocalFaaS, bytes],
        monkeypatch: pytest.MonkeyPatch) -> None:
    faas, key = pool
    sizes: list[int] = []
    original = client_module.enqueue_many

    async def recording(client: Any, keys: Any, pool_name: str, batch: list[Any],
                        **kw: Any) -> None:
        sizes.append(len(batch))
        await original(client, keys, pool_name, batch, **kw)

    monkeypatch.setattr(client_module, "enqueue_many", recording)
    wf = tree_reduction(leaves=64, leaf_size=4)
    result = run(wf, None, redis_server.url, hmac_key=key, invoker=faas, timeout_s=120)
    assert np.array_equal(result.result, run_local(wf))
    assert sizes == [client_module.FIRST_PUSH, 2 * client_module.FIRST_PUSH,
                     4 * client_module.FIRST_PUSH, 64 - 7 * client_module.FIRST_PUSH]
    assert sorted(result.trace.tasks["task"]) == sorted(wf.topological_order)
    assert list(redis_server.client().scan_iter(match=f"fp:{result.run_id}:*")) == []


@pytest.mark.parametrize("name", ["shared_literals", "two_closures", "tree_reduction"])
def test_runs_give_run_local_results(redis_server: Any, pool: tuple[LocalFaaS, bytes],
                                     name: str) -> None:
    faas, key = pool
    wf = WORKFLOWS[name]()
    result = run(wf, None, redis_server.url, hmac_key=key, invoker=faas, timeout_s=120)
    expected = run_local(wf)
    assert repr(result.result) == repr(expected)
    assert sorted(result.trace.tasks["task"]) == sorted(wf.topological_order)


def test_the_run_ends_without_waiting_for_the_supervisor_tick(
        redis_server: Any, pool: tuple[LocalFaaS, bytes]) -> None:
    """Once the sinks are done and every invocation has reported, run() returns: with a
    2 s supervisor period it would otherwise wait 2-4 s after the last report (the last
    invocation reports after the sink's announcement, and a tick is due only then)."""
    faas, key = pool
    wf = tree_reduction(leaves=64, leaf_size=4)
    config = RuntimeConfig(poll_s=2.0, drain_s=30.0)
    run(wf, None, redis_server.url, hmac_key=key, invoker=faas, timeout_s=120,
        config=config)  # warm
    gaps = []
    for _ in range(2):
        start = time.perf_counter()
        result = run(wf, None, redis_server.url, hmac_key=key, invoker=faas, timeout_s=120,
                     config=config)
        gaps.append((time.perf_counter() - start) * 1000.0 - result.makespan_ms)
        assert np.array_equal(result.result, run_local(wf))
        # Every invocation reported before the end: the trace has all of them.
        assert sorted(result.trace.tasks["task"]) == sorted(wf.topological_order)
        assert result.trace.invocations == 64
    assert min(gaps) < 1500.0, gaps
