"""No valid plan deadlocks: one admission rule for the simulator and the local emulator.

An invocation holds its slot (a simulated concurrency slot, an emulator process) from
admission to its end, waiting included. ``RunSpec.check_concurrency`` refuses, up front,
plans whose waiting workers could fill every slot; every other valid plan finishes.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import faasplan
from faasplan import Placement, Workflow, task
from faasplan.conformance.cases import random_case
from faasplan.planners import Plan
from faasplan.platform import Platform
from faasplan.runtime import RuntimeConfig
from faasplan.simulator import simulate
from faasplan.worker import RunSpec

pytest_plugins = ("conftest_redis",)


@task
def make(i: int) -> int:
    return i


@task
def combine(a: int, b: int) -> int:
    return a + b


def waiting_plan(n: int) -> tuple[Workflow, dict[str, Placement]]:
    """``n`` planned workers, each waiting for a value another worker produces.

    Worker ``w{i}`` runs ``make(i)`` (its entry, a root) and then ``combine`` of it with
    the output of the flexible ``make(100 + i)``: each holds a slot while it waits.
    """
    sinks, place = [], {}
    for i in range(n):
        own, other = make(i), make(100 + i)
        sinks.append(combine(own, other))
        place[id(own)] = place[id(sinks[-1])] = f"w{i}"
    wf = Workflow(sinks, name=f"waiting-{n}")
    ids = {id(node): tid for tid, node in wf.tasks.items()}
    placements = {tid: Placement(None, 1024) for tid in wf.tasks}
    for obj, worker in place.items():
        placements[ids[obj]] = Placement(worker, 1024)
    return wf, placements


def test_waiting_workers_are_counted() -> None:
    wf, placements = waiting_plan(4)
    spec = RunSpec.build(wf, placements)
    assert spec.waiting_workers == 4
    flexible = RunSpec.build(wf, {t: Placement(None, 1024) for t in wf.tasks})
    assert flexible.waiting_workers == 0


def test_simulator_refuses_a_limit_the_plan_could_deadlock_under() -> None:
    wf, placements = waiting_plan(4)
    with pytest.raises(ValueError, match=r"4 workers that can wait .* concurrency_limit is 4"):
        simulate(wf, placements, Platform(concurrency_limit=4))
    trace = simulate(wf, placements, Platform(concurrency_limit=5))
    assert len(trace.tasks) == len(wf)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), limit=st.integers(1, 6))
def test_simulated_valid_plans_finish_or_are_refused(seed: int, limit: int) -> None:
    wf, placements = random_case(seed, max_tasks=12)
    Plan("random", placements).validate(wf)
    waiting = RunSpec.build(wf, placements).waiting_workers
    platform = Platform(concurrency_limit=limit)
    if limit <= waiting:
        with pytest.raises(ValueError, match="could deadlock"):
            simulate(wf, placements, platform, seed=seed)
    else:
        trace = simulate(wf, placements, platform, seed=seed)  # never SimulationStuckError
        assert set(trace.tasks["task"]) == set(wf.tasks)


@pytest.mark.redis
def test_emulator_refuses_then_runs_the_waiting_plan(redis_server) -> None:
    wf, placements = waiting_plan(3)
    with pytest.raises(ValueError, match="max_processes of the local emulator is 3"):
        faasplan.run(wf, placements, redis_server.url,
                     config=RuntimeConfig(max_processes=3, max_running=1))
    result = faasplan.run(wf, placements, redis_server.url, timeout_s=60,
                          config=RuntimeConfig(max_processes=4, max_running=1))
    assert sorted(result.result) == [100, 102, 104]


@pytest.mark.redis
@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), limit=st.integers(1, 4))
def test_emulated_valid_plans_finish_or_are_refused(redis_server, seed: int, limit: int) -> None:
    wf, placements = random_case(seed)
    waiting = RunSpec.build(wf, placements).waiting_workers
    cfg = RuntimeConfig(max_processes=limit, max_running=1)
    if limit <= waiting:
        with pytest.raises(ValueError, match="could deadlock"):
            faasplan.run(wf, placements, redis_server.url, config=cfg)
        return
    result = faasplan.run(wf, placements, redis_server.url, config=cfg, timeout_s=60)
    assert set(result.trace.tasks["task"]) == set(wf.tasks)
