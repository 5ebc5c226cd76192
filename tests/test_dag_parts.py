"""Large DAGs by reference: a worker fetches the stored parts of the tasks it runs, never the
whole DAG, and a warm sandbox keeps what it fetched for the run.

Every driver is checked: the in-memory reference, the simulator and the Redis runtime.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import cloudpickle
import numpy as np
import pytest

from faasplan import Platform, Workflow, task, workloads
from faasplan.conformance import check
from faasplan.conformance.cases import random_case
from faasplan.runtime import LocalFaaS, PayloadAuthError, RuntimeConfig, new_key, run
from faasplan.runtime.manifest import prepare_run
from faasplan.simulator import Simulation, Simulator
from faasplan.trace.decisions import dag_bytes
from faasplan.worker import (
    Fetch,
    Parallel,
    Payload,
    Placement,
    RunSpec,
    WorkerOptions,
    is_dag_part,
)
from faasplan.worker.inmemory import run_in_memory
from faasplan.worker.log import Event
from faasplan.workflow.codec import (
    WorkflowError,
    check_part,
    encode,
    encode_parts,
    load_function_part,
    load_task_part,
)

pytest_plugins = ("conftest_redis",)

# Worker processes cannot import this test module: ship its task functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

BY_REF = WorkerOptions(inline_dag_bytes=0)


@task
def inc(x: int) -> int:
    return x + 1


@task
def double(x: int) -> int:
    return 2 * x


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def corrupt_key(url: str, key: str) -> int:
    """Flip the last byte of the stored value ``key``."""
    import redis

    client = redis.Redis.from_url(url)
    data = bytearray(client.get(key) or b"")
    data[-1] ^= 0xFF
    client.set(key, bytes(data))
    return 0


def layered(tasks: int, width: int = 50, seed: int = 0) -> Workflow:
    """Layers of ``width`` tasks, each reading 1-3 tasks of the layer above."""
    return workloads.layered(tasks, width, seed, stages=3, exec_ms=50.0, max_output_log2=16,
                             name=f"layered_{tasks}")


def fan_out_chains(width: int = 4, depth: int = 3) -> Workflow:
    """One root, ``width`` chains of ``depth`` tasks below it (no fan-in: no race)."""
    root = inc(0, task_id="root")
    sinks = []
    for i in range(width):
        node = root
        for j in range(depth):
            node = (inc if j % 2 else double)(node, task_id=f"c{i}-{j}")
        sinks.append(node)
    return Workflow(sinks, name="fan-out-chains")


def part_fetches(log: list[Event]) -> list[Event]:
    return [ev for ev in log if ev.kind == "fetch" and ev.key is not None
            and is_dag_part(ev.key)]


def assert_fetches_follow_tasks(log: list[Event], spec: RunSpec) -> None:
    """Each worker fetched only parts of the tasks it executed, each at most once per
    invocation, so its DAG bytes are bounded by the parts of its own tasks."""
    executed: dict[str, set[str]] = {}
    for ev in log:
        if ev.kind == "execute" and ev.task is not None:
            executed.setdefault(ev.worker, set()).add(ev.task)
    fetched: dict[str, list[Event]] = {}
    for ev in part_fetches(log):
        fetched.setdefault(ev.worker, []).append(ev)
        assert ev.task in executed.get(ev.worker, set()), (ev, "fetched for a task it never ran")
        assert ev.task is not None and ev.key in dict(spec.task_parts(ev.task)), \
            (ev, "not a part of its task")
    for worker, events in fetched.items():
        keys = [ev.key for ev in events]
        assert len(keys) == len(set(keys)), f"{worker} fetched a part twice"
        own = {part for t in executed[worker] for part in spec.task_parts(t)}
        assert sum(ev.nbytes for ev in events) <= sum(n for _, n in own)


# -- the codec ------------------------------------------------------------------------------
def test_parts_decode_to_the_tasks_and_are_addressed_by_their_content() -> None:
    wf = fan_out_chains()
    parts = encode_parts(wf)
    assert set(parts.tasks) == set(wf.tasks)
    # Two functions, each stored once, whatever the number of tasks using it.
    functions = {f for _, f in parts.tasks.values()}
    assert len(functions) == 2
    for tid, (record_key, function_key) in parts.tasks.items():
        check_part(record_key, parts.blobs[record_key])
        record = load_task_part(record_key, parts.blobs[record_key])
        node = record.node(tid, load_function_part(function_key, parts.blobs[function_key]))
        original = wf.tasks[tid]
        assert node.func.name == original.func.name
        assert [u.task_id for u in node.upstream] == list(wf.upstream(tid))
        assert node.func.fn(*[1] * len(node.args)) == original.func.fn(*[1] * len(node.args))
    assert encode_parts(wf).blobs == parts.blobs  # deterministic: the same keys every time


def test_a_part_stored_under_the_wrong_key_is_refused() -> None:
    parts = encode_parts(fan_out_chains())
    (a, _), (b, _) = parts.tasks["c0-0"], parts.tasks["c1-1"]
    with pytest.raises(WorkflowError, match="do not hash to its key"):
        load_task_part(a, parts.blobs[b])
    with pytest.raises(WorkflowError, match="do not hash to its key"):
        check_part("dag-x-0", b"")


def test_the_spec_names_the_parts_both_drivers_use() -> None:
    wf = fan_out_chains()
    prepared = prepare_run(wf, {t: Placement(None, 1024) for t in wf.tasks}, run_id="r",
                           planner="p", options=BY_REF, lease_ms=1000,
                           stream_chunk_bytes=1024)
    sim_spec = Simulator(wf, options=BY_REF).spec(None)
    assert dict(prepared.spec.dag_parts) == dict(sim_spec.dag_parts)
    assert prepared.parts is not None
    for tid in wf.tasks:
        for key, nbytes in prepared.spec.task_parts(tid):
            assert len(prepared.parts.blobs[key]) == nbytes


# -- the worker logic (in-memory reference) ---------------------------------------------------
@pytest.mark.parametrize("seed", range(25))
def test_by_reference_workers_fetch_only_the_parts_of_the_tasks_they_run(seed: int) -> None:
    wf, placements = random_case(seed)
    for options in (BY_REF, WorkerOptions()):
        spec = RunSpec.build(wf, placements, options, dag_parts=encode_parts(wf).task_parts())
        run = run_in_memory(spec, lambda e: Payload(100))
        assert_fetches_follow_tasks(run.events, spec)
        for _, effect in run.log:
            inner = effect.effects if isinstance(effect, Parallel) else (effect,)
            for e in inner:
                assert not (isinstance(e, Fetch) and e.key == "dag")


def test_an_inline_worker_fetches_no_part_and_a_by_reference_one_fetches_its_own() -> None:
    wf = fan_out_chains()
    flexible = {t: Placement(None, 1024) for t in wf.tasks}
    inline = run_in_memory(RunSpec.build(wf, flexible), lambda e: Payload(8))
    assert part_fetches(inline.events) == []
    spec = RunSpec.build(wf, flexible, BY_REF)
    by_ref = run_in_memory(spec, lambda e: Payload(8))
    # Every task's record is fetched exactly once, by the worker that runs it.
    records = [ev.key for ev in part_fetches(by_ref.events) if ev.key and "-t-" in ev.key]
    assert sorted(records) == sorted(spec.task_parts(t)[0][0] for t in wf.tasks)


# -- the simulator -----------------------------------------------------------------------------
def test_simulated_dag_bytes_follow_the_tasks_not_the_dag() -> None:
    wf = layered(3000)
    encoded = encode(wf).nbytes
    sim = Simulator(wf, log=True)
    trace = sim.run(None, seed=0)
    spec = sim.spec(None)
    log = list(trace.log)
    by_ref = sum(ev.kind == "invoke" and ev.info == "ref" for ev in log)
    assert by_ref > 500  # most workers are started by reference
    requested, transferred = dag_bytes(log, spec)
    assert transferred <= requested
    assert transferred <= 2 * encoded  # the whole DAG per worker would be by_ref * encoded
    assert_fetches_follow_tasks(log, spec)


def test_a_warm_sandbox_keeps_the_parts_it_fetched() -> None:
    # One sandbox at a time: the second root's worker reuses the first one's sandbox.
    a, b = inc(1, task_id="a"), inc(2, task_id="b")
    wf = Workflow([a, b])
    platform = Platform().replace(concurrency_limit=1)
    trace = Simulator(wf, platform, options=BY_REF, log=True).run(None)
    fetches = {(ev.worker, ev.key): ev.nbytes for ev in part_fetches(list(trace.log))}
    spec = Simulator(wf, platform, options=BY_REF).spec(None)
    (ra, na), (fa, nf) = spec.task_parts("a")
    (rb, nb), (fb, _) = spec.task_parts("b")
    assert fa == fb  # one function, one stored part
    starts = {ev.worker: ev.info for ev in trace.log if ev.kind == "start"}
    first, second = ("flex-a", "flex-b") if starts["flex-a"] == "cold" else ("flex-b", "flex-a")
    assert starts[second] == "warm"
    assert fetches[(first, fa)] == nf  # the cold sandbox downloads the code ...
    assert fetches[(second, fb)] == 0  # ... the warm one already holds it
    assert fetches[("flex-a", ra)] == na and fetches[("flex-b", rb)] == nb


# -- the Redis runtime ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pool(redis_server: Any) -> Iterator[tuple[LocalFaaS, bytes]]:
    key = new_key()
    with LocalFaaS(redis_server.url, key, max_running=2, keep_alive_s=300) as faas:
        yield faas, key


CONFIG = RuntimeConfig(lease_ms=1000, drain_s=3.0)


@pytest.mark.redis
def test_the_runtime_fetches_the_parts_the_simulator_fetches(
        redis_server: Any, pool: tuple[LocalFaaS, bytes]) -> None:
    faas, key = pool
    wf = fan_out_chains(width=5, depth=3)
    plan = {t: Placement(None, 1024) for t in wf.tasks}
    result = run(wf, plan, redis_server.url, hmac_key=key, invoker=faas, options=BY_REF,
                 timeout_s=60, config=CONFIG)
    assert result.result == [6] * 5  # double(inc(double(inc(0))))
    prepared = prepare_run(wf, plan, run_id="x", planner="p", options=BY_REF, lease_ms=1000,
                           stream_chunk_bytes=1024)
    spec = prepared.spec
    real = list(result.trace.log)
    assert_fetches_follow_tasks(real, spec)
    sim = Simulation.create(spec, Platform(), _Sizes(), np.random.default_rng(0),
                            log=True).run()
    reference = run_in_memory(spec, lambda e: Payload(8))
    real_requested, real_transferred = dag_bytes(real, spec)
    sim_requested, sim_transferred = dag_bytes(sim.log or (), spec)
    assert real_requested == sim_requested == dag_bytes(reference.events, spec)[0]
    keys = sorted((ev.worker, ev.key) for ev in part_fetches(real))
    assert keys == sorted((ev.worker, ev.key) for ev in part_fetches(list(sim.log or ())))
    assert real_transferred <= real_requested and sim_transferred <= sim_requested
    # No task downloads anything near the whole DAG: its own parts only.
    whole = encode(wf).nbytes
    tasks = result.trace.tasks.set_index("task")
    assert (tasks["download_bytes"] < whole).all()


class _Sizes:
    """Task behaviour for the simulator: small outputs, 1 ms executions."""

    def exec_ms(self, task_id: str, memory_mb: int, input_bytes: int,
                rng: np.random.Generator) -> float:
        return 1.0

    def output_bytes(self, task_id: str, input_bytes: int, rng: np.random.Generator) -> int:
        return 8


@pytest.mark.redis
def test_a_warm_worker_process_keeps_the_parts_of_the_run(
        redis_server: Any) -> None:
    # One process serves every invocation in turn: the function code moves once per run.
    key = new_key()
    wf = fan_out_chains(width=6, depth=1)
    plan = {t: Placement(None, 1024) for t in wf.tasks}
    with LocalFaaS(redis_server.url, key, max_running=1, max_processes=1,
                   keep_alive_s=300) as faas:
        result = run(wf, plan, redis_server.url, hmac_key=key, invoker=faas, options=BY_REF,
                     timeout_s=60, config=CONFIG)
    spec = prepare_run(wf, plan, run_id="x", planner="p", options=BY_REF, lease_ms=1000,
                       stream_chunk_bytes=1024).spec
    fetches = part_fetches(list(result.trace.log))
    double_code = spec.task_parts("c0-0")[1][0]
    moved = [ev.nbytes for ev in fetches if ev.key == double_code]
    assert len(moved) == 6 and sum(n > 0 for n in moved) == 1
    requested, transferred = dag_bytes(list(result.trace.log), spec)
    assert transferred < requested


@pytest.mark.redis
def test_a_tampered_dag_part_is_refused(redis_server: Any,
                                        pool: tuple[LocalFaaS, bytes]) -> None:
    faas, key = pool
    rid = "tamper-dag-part"

    def build(target: str) -> Workflow:
        first = corrupt_key(redis_server.url, target, task_id="first")
        return Workflow(inc(double(first, task_id="mid"), task_id="last"))

    # The last task's record does not depend on the first task's arguments.
    last_part = encode_parts(build("")).tasks["last"][0]
    wf = build(f"fp:{rid}:d:{last_part}")
    assert encode_parts(wf).tasks["last"][0] == last_part
    with pytest.raises(PayloadAuthError, match=rf"{rid}/[0-9a-f]+/{last_part}"):
        run(wf, {t: Placement(None, 1024) for t in wf.tasks}, redis_server.url, hmac_key=key,
            invoker=faas, options=BY_REF, timeout_s=60, config=CONFIG, run_id=rid)


def test_parts_of_tasks_never_executed_are_not_fetched() -> None:
    # A planned worker by reference prefetches nothing: parts come with each task.
    wf = fan_out_chains(width=2, depth=2)
    place = {t: Placement("A" if t.startswith("c0") or t == "root" else "B", 1024)
             for t in wf.tasks}
    spec = RunSpec.build(wf, place, BY_REF, dag_parts=encode_parts(wf).task_parts())
    run = run_in_memory(spec, lambda e: Payload(8))
    assert_fetches_follow_tasks(run.events, spec)
    by_worker = {ev.worker for ev in part_fetches(run.events)}
    assert by_worker == {"A", "B"}


def mixed_senders() -> tuple[Workflow, dict[str, Placement]]:
    """A planned fan-in entry ``d`` whose inputs come from a worker started inline (A) and
    from one started by reference (B: fan-out siblings, not self-contained)."""
    s = inc(0, task_id="s")
    f1, f2, g = inc(s, task_id="f1"), double(s, task_id="f2"), double(s, task_id="g")
    wf = Workflow([add(f1, g, task_id="d"), f2], name="mixed-senders")
    place = {"s": Placement("A", 1024), "g": Placement("A", 1024),
             "f1": Placement("B", 1024), "f2": Placement("B", 1024),
             "d": Placement("C", 1024)}
    return wf, place


def test_inline_or_by_reference_depends_on_the_target_not_on_its_sender() -> None:
    wf, place = mixed_senders()
    spec = RunSpec.build(wf, place)
    assert spec.inline("s") and not spec.inline("f1")
    # Either A or B may record d's last input and invoke C: both send it by reference.
    assert not spec.inline("d")
    run = run_in_memory(spec, lambda e: Payload(8))
    invoked = {ev.key: ev.info for ev in run.events if ev.kind == "invoke"}
    assert invoked == {"A": "inline", "B": "ref", "C": "ref"}


@pytest.mark.redis
def test_mixed_senders_conform_across_the_three_drivers(redis_server: Any) -> None:
    wf, place = mixed_senders()
    report = check(wf, place, redis=redis_server.url, timeout_s=60)
    assert report.ok, str(report)
