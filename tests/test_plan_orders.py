"""A planned worker runs its tasks in its plan's own order (``Plan.worker_orders``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faasplan.planners import Plan, PlanError
from faasplan.planners.plan import OrderedPlacements
from faasplan.simulator import Platform
from faasplan.simulator.behaviour import GroundTruth
from faasplan.simulator.driver import Simulation
from faasplan.worker import Payload, Placement, RunSpec
from faasplan.worker.inmemory import DeadlockError, run_in_memory
from faasplan.workflow import Workflow, io, task


@task(io=io.constant(100))
def op(*xs):
    return len(xs)


def two_chains() -> Workflow:
    """a1 -> b1 and b2 -> a2: A = {a1, a2} and B = {b1, b2} run unrelated tasks each."""
    a1, b2 = op(task_id="a1"), op(task_id="b2")
    return Workflow([op(a1, task_id="b1"), op(b2, task_id="a2")], name="two-chains",
                    detect=False)


def diamond(*, tail: bool = False) -> Workflow:
    """a -> b, c -> d; with ``tail`` also a -> e."""
    a = op(task_id="a")
    sinks = [op(op(a, task_id="b"), op(a, task_id="c"), task_id="d")]
    if tail:
        sinks.append(op(a, task_id="e"))
    return Workflow(sinks, name="diamond", detect=False)


def on(**workers: str) -> dict[str, Placement]:
    """Placements from ``task=worker`` pairs, 1024 MB each."""
    return {t: Placement(w, 1024) for t, w in workers.items()}


def against_topological(wf: Workflow) -> tuple[str, str]:
    """b and c of the diamond, the one later in topological order first."""
    order = wf.topological_order
    later, earlier = sorted(["b", "c"], key=order.index, reverse=True)
    return later, earlier


# -- the order is part of the plan ---------------------------------------------------------
def test_a_plan_without_orders_runs_topological_order():
    wf = diamond()
    plan = Plan("manual", on(a="w", b="w", c="w", d="w"))
    assert plan.worker_orders == {}
    plan.validate(wf)
    assert RunSpec.build(wf, plan.placements).worker_tasks["w"] == wf.topological_order


def test_a_valid_non_topological_order_is_what_the_worker_runs():
    wf = diamond()
    later, earlier = against_topological(wf)
    order = ("a", later, earlier, "d")
    plan = Plan("manual", on(a="w", b="w", c="w", d="w"), worker_orders={"w": order})
    plan.validate(wf)
    assert plan.workers == {"w": order}
    spec = RunSpec.build(wf, plan.placements)
    assert spec.worker_tasks["w"] == order and spec.entry("w") == "a"
    result = run_in_memory(spec, lambda e: Payload(10))
    assert result.executed == list(order)


def test_placements_bring_their_orders_into_a_rebuilt_plan():
    wf = diamond()
    later, earlier = against_topological(wf)
    order = ("a", later, earlier, "d")
    first = Plan("manual", OrderedPlacements(on(a="w", b="w", c="w", d="w"), {"w": order}))
    assert first.worker_orders == {"w": order}
    # As the planner registry does: a new Plan from an old one's placements.
    again = Plan(first.planner, first.placements, first.sla, first.predicted, first.notes)
    assert again.worker_orders == {"w": order} and again == first
    assert again != Plan("manual", on(a="w", b="w", c="w", d="w"))
    again.validate(wf)


def test_the_simulator_runs_a_spec_in_its_order():
    wf = diamond()
    later, earlier = against_topological(wf)
    order = ("a", later, earlier, "d")
    plan = Plan("manual", on(a="w", b="w", c="w", d="w"), worker_orders={"w": order})
    spec = RunSpec.build(wf, plan.placements)
    platform = Platform()
    result = Simulation.create(spec, platform, GroundTruth(wf, platform),
                               np.random.default_rng(0)).run()
    started = sorted(result.tasks.values(), key=lambda r: r.exec_start_ms)
    assert tuple(r.task for r in started) == order


# -- the rules of an order -----------------------------------------------------------------
@pytest.mark.parametrize(("order", "message"), [
    (("a", "b", "d"), r"worker 'w': its order misses task 'c'"),
    (("a", "b", "b", "c", "d"), r"worker 'w': its order lists task 'b' twice"),
    (("a", "b", "c", "d", "e"), r"worker 'w': its order lists task 'e', which is placed on 'v'"),
    (("a", "b", "d", "c"), r"worker 'w': its order runs task 'd' before its upstream task 'c'"),
])
def test_an_order_lists_each_task_once_after_its_upstream_tasks(order, message):
    wf = diamond(tail=True)
    plan = Plan("manual", on(a="w", b="w", c="w", d="w", e="v"), worker_orders={"w": order})
    with pytest.raises(PlanError, match=message):
        plan.validate(wf)


def test_an_order_for_a_worker_without_tasks_is_refused():
    wf = diamond()
    plan = Plan("manual", on(a="w", b="w", c="w", d="w"),
                worker_orders={"w": wf.topological_order, "ghost": ("a",)})
    with pytest.raises(PlanError, match="order for worker 'ghost', which runs no task"):
        plan.validate(wf)


def test_the_spec_refuses_an_order_that_would_lose_or_stall_a_task():
    wf = diamond()
    with pytest.raises(ValueError, match="lists 3 of its 4 tasks"):
        RunSpec.build(wf, OrderedPlacements(on(a="w", b="w", c="w", d="w"),
                                            {"w": ("a", "b", "c")}))
    with pytest.raises(ValueError, match="before an upstream task of the same worker"):
        RunSpec.build(wf, OrderedPlacements(on(a="w", b="w", c="w", d="w"),
                                            {"w": ("a", "d", "b", "c")}))


def test_an_ordered_worker_needs_no_continuation_between_its_tasks():
    wf = two_chains()
    unordered = Plan("manual", on(a1="A", a2="A", b1="B", b2="B"))
    with pytest.raises(PlanError, match="cannot be reached by continuation"):
        unordered.validate(wf)
    ordered = Plan("manual", on(a1="A", a2="A", b1="B", b2="B"),
                   worker_orders={"A": ("a1", "a2"), "B": ("b2", "b1")})
    ordered.validate(wf)
    result = run_in_memory(RunSpec.build(wf, ordered.placements), lambda e: Payload(10))
    assert sorted(result.executed) == ["a1", "a2", "b1", "b2"]


# -- orders that would deadlock ------------------------------------------------------------
def test_orders_that_make_workers_wait_for_each_other_are_refused_with_the_cycle():
    wf = two_chains()
    # A runs a2 first, which needs b2; B runs b1 first, which needs a1: each waits forever.
    placements = on(a1="A", a2="A", b1="B", b2="B")
    orders = {"A": ("a2", "a1"), "B": ("b1", "b2")}
    plan = Plan("manual", placements, worker_orders=orders)
    with pytest.raises(PlanError, match="wait for each other in a cycle") as err:
        plan.validate(wf)
    message = str(err.value)
    for part in ("worker 'A' runs 'a2' before 'a1'", "worker 'B' runs 'b1' before 'b2'",
                 "'b1' (worker 'B') needs the output of 'a1' (worker 'A')",
                 "'a2' (worker 'A') needs the output of 'b2' (worker 'B')"):
        assert part in message
    # Each order alone is valid; together no worker's first task ever becomes ready.
    run = run_in_memory(RunSpec.build(wf, OrderedPlacements(placements, orders)),
                        lambda e: Payload(10))
    assert run.executed == []


def test_workers_started_in_a_cycle_of_waits_would_deadlock():
    a1, b2 = op(task_id="a1"), op(task_id="b2")
    ra, rb = op(task_id="ra"), op(task_id="rb")
    wf = Workflow([op(a1, task_id="b1"), op(b2, task_id="a2"), ra, rb], name="crossed",
                  detect=False)
    placements = on(ra="A", a1="A", a2="A", rb="B", b1="B", b2="B")
    orders = {"A": ("ra", "a2", "a1"), "B": ("rb", "b1", "b2")}
    with pytest.raises(PlanError, match="cycle"):
        Plan("manual", placements, worker_orders=orders).validate(wf)
    # Both workers start, run their root, then wait for each other: the check is needed.
    with pytest.raises(DeadlockError):
        run_in_memory(RunSpec.build(wf, OrderedPlacements(placements, orders)),
                      lambda e: Payload(10))
    fine = {"A": ("ra", "a1", "a2"), "B": ("rb", "b1", "b2")}
    Plan("manual", placements, worker_orders=fine).validate(wf)
    run = run_in_memory(RunSpec.build(wf, OrderedPlacements(placements, fine)),
                        lambda e: Payload(10))
    assert sorted(run.executed) == sorted(wf.tasks)


def test_a_cycle_through_a_worker_in_topological_order_is_refused_too():
    wf = two_chains()
    order = wf.topological_order
    # B keeps topological order; A is ordered against it so that the two wait in a cycle.
    b_topo = tuple(t for t in order if t in ("b1", "b2"))
    a_bad = ("a2", "a1") if b_topo == ("b1", "b2") else ("a1", "a2")
    plan = Plan("manual", on(a1="A", a2="A", b1="B", b2="B"), worker_orders={"A": a_bad})
    with pytest.raises(PlanError, match="cycle"):
        plan.validate(wf)


def test_admission_counts_the_workers_that_wait_in_their_order():
    # w = {x, y}: y needs z from worker v. Run after x, y makes w wait while holding a
    # sandbox; run first, y is w's entry and w is only started once z is stored.
    x, z = op(task_id="x"), op(task_id="z")
    wf = Workflow([x, op(z, task_id="y")], name="wait", detect=False)
    placements = on(x="w", y="w", z="v")
    waits = Plan("manual", placements, worker_orders={"w": ("x", "y")})
    starts_late = Plan("manual", placements, worker_orders={"w": ("y", "x")})
    for plan in (waits, starts_late):
        plan.validate(wf)
    RunSpec.build(wf, starts_late.placements).check_concurrency(1)
    with pytest.raises(ValueError, match="1 workers that can wait"):
        RunSpec.build(wf, waits.placements).check_concurrency(1)
    for plan in (waits, starts_late):
        run = run_in_memory(RunSpec.build(wf, plan.placements), lambda e: Payload(10))
        assert sorted(run.executed) == ["x", "y", "z"]


# -- persistence ---------------------------------------------------------------------------
def test_orders_survive_saving_and_loading(tmp_path):
    wf = diamond()
    later, earlier = against_topological(wf)
    order = ("a", later, earlier, "d")
    plan = Plan("manual", on(a="w", b="w", c="w", d="w"), worker_orders={"w": order})
    path = tmp_path / "plan.json"
    plan.save(path)
    assert json.loads(path.read_text())["worker_orders"] == {"w": list(order)}
    loaded = Plan.load(path)
    assert loaded.worker_orders == {"w": order} and loaded == plan
    loaded.validate(wf)
    assert RunSpec.build(wf, loaded.placements).worker_tasks["w"] == order


def test_a_plan_file_without_orders_has_none_and_writes_none(tmp_path):
    plan = Plan("manual", on(a="w", b="w", c="w", d="w"))
    assert "worker_orders" not in plan.to_dict()
    assert Plan.from_dict(plan.to_dict()).worker_orders == {}


def test_a_malformed_order_in_a_file_names_the_file(tmp_path):
    data = Plan("manual", on(a="w")).to_dict()
    data["worker_orders"] = {"w": "a"}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PlanError, match=r"bad.json: 'worker_orders' must map each worker id"):
        Plan.load(path)


# -- end to end: the public simulator and the real runtime ---------------------------------
@task(io=io.constant(100))
def slow(*xs):
    import time

    time.sleep(0.05)
    return len(xs)


def forked() -> Workflow:
    """root -> (x, y) -> join; x and y independent of each other."""
    root = slow(task_id="root")
    return Workflow(slow(slow(root, task_id="x"), slow(root, task_id="y"), task_id="join"),
                    name="forked", detect=False)


def started_order(trace, worker: str) -> tuple[str, ...]:
    rows = trace.tasks
    mine = rows[rows["worker"] == worker].sort_values("exec_start_ms")
    return tuple(mine["task"])


@pytest.mark.redis
def test_simulate_and_run_execute_a_worker_in_its_plan_order():
    import faasplan
    from faasplan.conformance import check

    wf = forked()
    topo = [t for t in wf.topological_order if t in ("x", "y")]
    order = ("root", topo[1], topo[0], "join")  # the later of x and y first
    plan = Plan("manual", on(root="w", x="w", y="w", join="w"), worker_orders={"w": order})
    plan.validate(wf)
    simulated = faasplan.simulate(wf, plan, seed=1)
    assert started_order(simulated, "w") == order
    real = faasplan.run(wf, plan, timeout_s=120)
    assert started_order(real.trace, "w") == order
    report = check(wf, plan, seed=1)
    assert report.ok, str(report)
