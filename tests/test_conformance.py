"""One worker logic, proven: every plan through the in-memory reference, the SimPy simulator
and the Redis runtime, with their decisions compared field by field."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import faasplan
from faasplan import Opt, Placement, Workflow, task, workloads
from faasplan.conformance import COMPARED, DRIVERS, Report, check, compare_decisions
from faasplan.conformance.cases import FLEXIBLE_OPTS, PLANNED_OPTS, random_case
from faasplan.planners import Plan
from faasplan.runtime.manifest import prepare_run
from faasplan.simulator import Simulator
from faasplan.trace import TIMING_DEPENDENT, decisions, raced_tasks
from faasplan.worker import WorkerOptions

pytest_plugins = ("conftest_redis",)
pytestmark = pytest.mark.redis


def _explain(report: Report) -> str:
    return str(report)


@pytest.mark.parametrize("name", ["wordcount", "gemm", "tree_reduction", "image_pipeline",
                                  "montage_like"])
@pytest.mark.parametrize("planner", [None, "wukong-opt", "uniform-opt", "non-uniform-opt",
                                     "heft"])
def test_builtin_workloads_conform(redis_server, name: str, planner: str | None) -> None:
    wf = getattr(workloads, name)()
    plan = None if planner is None else faasplan.plan(wf, planner)
    report = check(wf, plan, redis=redis_server.url, timeout_s=120)
    assert report.ok, _explain(report)
    assert set(report.tables) == set(DRIVERS)
    executed = {d: set(t["task"]) for d, t in report.tables.items()}
    assert all(e == set(wf.tasks) for e in executed.values())


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1))
def test_random_plans_on_random_dags_conform(redis_server, seed: int) -> None:
    wf, placements = random_case(seed)
    Plan("random", placements).validate(wf)
    report = check(wf, placements, redis=redis_server.url, timeout_s=60)
    assert report.ok, f"seed {seed}: {_explain(report)}"


def test_every_optimization_and_both_kinds_of_worker_are_exercised() -> None:
    # The random cases the harness runs cover what the worker logic can be asked to do.
    seen_flex: set[Opt] = set()
    seen_planned: set[Opt] = set()
    mixed = 0
    for seed in range(60):
        _, placements = random_case(seed)
        kinds = {p.worker is None for p in placements.values()}
        mixed += len(kinds) == 2
        for p in placements.values():
            (seen_flex if p.worker is None else seen_planned).update(p.optimizations)
    assert seen_flex == set(FLEXIBLE_OPTS)
    assert seen_planned == set(PLANNED_OPTS)
    assert mixed >= 20


def test_streamed_and_carried_outputs_conform(redis_server) -> None:
    @task
    def big(n: int) -> bytes:
        return b"x" * n

    @task
    def join(*parts: bytes) -> int:
        return sum(len(p) for p in parts)

    a, b = big(600_000), big(10)
    wf = Workflow(join(a, b), name="stream-carry")
    ids = {t: wf.tasks[t] for t in wf.tasks}
    streamed = next(t for t, n in ids.items() if n is a)
    place = {t: Placement(None, 1024) for t in wf.tasks}
    place[streamed] = Placement("producer", 1024, frozenset({Opt.STREAM}))
    report = check(wf, place, redis=redis_server.url)
    assert report.ok, _explain(report)
    for table in report.tables.values():
        row = table.set_index("task").loc[streamed]
        assert row["output"] == "streamed"


# -- pure logic of the comparison ---------------------------------------------------------------
def _spec(wf: Workflow, placements: dict[str, Placement]):
    return prepare_run(wf, placements, run_id="t", planner="t", options=WorkerOptions(),
                       lease_ms=3000, stream_chunk_bytes=1 << 18).spec


def test_a_driver_that_decides_differently_fails_the_harness() -> None:
    wf = workloads.wordcount()
    placements = {t: Placement(None, 1024) for t in wf.tasks}
    trace = Simulator(wf, log=True).run(placements, seed=3)
    good = trace.decisions
    # A driver that uploads an output the worker logic keeps local (or the reverse).
    bad = good.copy()
    row = bad.index[0]
    bad.loc[row, "output"] = "local" if bad.loc[row, "output"] != "local" else "stored"
    report = compare_decisions({"inmemory": good, "simulator": good, "runtime": bad},
                               _spec(wf, placements))
    assert not report.ok
    (m,) = report.mismatches
    assert m.field == "output" and m.task == good.loc[row, "task"]
    assert m.values["runtime"] != m.values["simulator"]

    # A driver that skips a task.
    report = compare_decisions({"inmemory": good, "simulator": good, "runtime": good.iloc[1:]},
                               _spec(wf, placements))
    assert [m.field for m in report.mismatches] == ["executed"]


def test_only_named_timing_fields_of_raced_tasks_are_excused() -> None:
    wf = workloads.wordcount()
    placements = {t: Placement(None, 1024) for t in wf.tasks}
    spec = _spec(wf, placements)
    raced, fetch_raced = raced_tasks(spec)
    (fan_in,) = [t for t in wf.tasks if len(wf.upstream(t)) > 1]
    assert raced == {fan_in} and fan_in in fetch_raced
    assert set(TIMING_DEPENDENT) <= set(COMPARED)
    good = Simulator(wf, log=True).run(placements, seed=3).decisions
    other = good.copy()
    i = other.index[other["task"] == fan_in][0]
    other.loc[i, "worker"] = "flex-somewhere-else"
    other.loc[i, "fetched"] = ""
    report = compare_decisions({"a": good, "b": other}, spec)
    assert report.ok and report.excused == 2
    # The same difference on a task that is not raced is a mismatch.
    j = other.index[other["task"] != fan_in][0]
    other.loc[j, "worker"] = "flex-somewhere-else"
    assert not compare_decisions({"a": good, "b": other}, spec).ok


def test_decisions_come_from_the_log_alone() -> None:
    wf = workloads.tree_reduction()
    trace = Simulator(wf, log=True).run(None, seed=1)
    table = decisions(trace.log)
    pd.testing.assert_frame_equal(table, trace.decisions)
    assert set(table["task"]) == set(wf.tasks)
    assert set(table["output"]) <= {"stored", "streamed", "carried", "local"}
    with pytest.raises(ValueError, match="executed twice"):
        decisions([*trace.log, *[e for e in trace.log if e.kind == "execute"][:1]])
    with pytest.raises(ValueError, match="no decision log"):
        _ = Simulator(wf).run(None, seed=1).decisions
