"""HEFT's cost: billed idle time and start-ups in the choice of a worker, within its makespan.

Plans are made as :func:`faasplan.plan` makes them (Monte-Carlo evaluator) and compared on
their predicted p95 makespan and mean cost.
"""

from __future__ import annotations

from typing import Any

import pytest

from faasplan.data import trace_path
from faasplan.experiments.planning import make_evaluator
from faasplan.planners import Plan, PlanningContext, get_planner, run_planner
from faasplan.planners.heft import MAKESPAN_TOLERANCE, heft_schedule
from faasplan.planners.registry import PlannerOptionsError
from faasplan.predictors import ExecModel, Predictor
from faasplan.simulator import Platform
from faasplan.worker import Placement, RunSpec
from faasplan.workflow import Workflow, io, load_wfformat, task


@task(io=io.constant(10_000))
def slow(*xs):
    return xs


@task(io=io.constant(10_000))
def quick(*xs):
    return xs


@task(io=io.constant(10_000))
def step(*xs):
    return xs


TIMES = Predictor(exec_models={slow.name: ExecModel(0.0, 0.0, 0.5, constant_ms=6000.0),
                               quick.name: ExecModel(0.0, 0.0, 0.5, constant_ms=100.0),
                               step.name: ExecModel(0.0, 0.0, 0.5, constant_ms=1000.0)},
                  hints={f.name: f.io for f in (slow, quick, step)})


def late_model(n: int) -> Workflow:
    """``n`` quick roots, each read with one slow root by one step (a montage background),
    beside a chain of two slow tasks that is the critical path.

    The step of root ``q_i`` can run on ``q_i``'s worker, which then idles until the slow
    root is done, or on a new worker started when both inputs exist.
    """
    model = slow(task_id="model")
    steps = [step(model, quick(task_id=f"q{i}"), task_id=f"b{i}") for i in range(n)]
    critical = slow(slow(task_id="c0"), task_id="c1")
    return Workflow(step(*steps, critical, task_id="sink"), name="late-model", detect=False)


def plan(wf: Workflow, predictor: Predictor | None = None, platform: Platform | None = None,
         **options: Any) -> Plan:
    predictor = predictor or TIMES
    platform = platform or Platform()
    return run_planner("heft", wf, predictor, platform, sla="p95", seed=0,
                       evaluate=make_evaluator(wf, predictor, platform, "p95", 0), **options)


def idle_ms(plan: Plan) -> float:
    """Billed worker time of the predicted run that is neither start-up, transfer nor
    execution: waiting for inputs."""
    tasks, workers = plan.predicted.tasks, plan.predicted.workers
    billed = (workers["end_ms"] - workers["start_ms"] + workers["startup_ms"]).sum()
    busy = (tasks["exec_ms"] + tasks["download_ms"] + tasks["upload_ms"]).sum()
    return float(billed - busy - workers["startup_ms"].sum())


def trace(name: str) -> Workflow:
    return load_wfformat(trace_path(name))


def test_cost_policy_does_not_keep_workers_idle_for_a_late_input():
    wf = late_model(4)
    finish, cost = plan(wf, policy="finish"), plan(wf, policy="cost")
    # Earliest finish runs each step on its quick root's worker, idle for ~6 s.
    assert all(finish.placements[f"b{i}"].worker == finish.placements[f"q{i}"].worker
               for i in range(1, 4))
    assert idle_ms(finish) > 3 * 5000.0
    assert idle_ms(cost) < 0.2 * idle_ms(finish)
    assert cost.predicted_cost_usd < 0.8 * finish.predicted_cost_usd
    q = MAKESPAN_TOLERANCE
    assert cost.predicted_quantiles["p95"] <= (1 + q) * finish.predicted_quantiles["p95"]


def test_a_worker_is_reused_when_its_wait_is_shorter_than_a_start_up():
    # Two quick roots feed one step: whichever worker takes it waits at most a few ms.
    wf = Workflow(step(quick(task_id="a"), quick(task_id="b"), task_id="c"), name="pair",
                  detect=False)
    p = plan(wf)
    assert len(p.workers) == 2
    assert p.placements["c"].worker in {p.placements["a"].worker, p.placements["b"].worker}


def test_cost_policy_never_costs_more_on_real_traces():
    for name in ("montage_58t", "cycles_67t", "epigenomics_41t"):
        wf = trace(name)
        predictor = Predictor.empty()
        finish, cost = plan(wf, predictor, policy="finish"), plan(wf, predictor)
        assert cost.predicted_cost_usd <= finish.predicted_cost_usd * (1 + 1e-9), name
        ratio = cost.predicted_quantiles["p95"] / finish.predicted_quantiles["p95"]
        assert ratio <= 1 + 2 * MAKESPAN_TOLERANCE, name


def test_the_cost_pass_expects_a_smaller_bill_than_earliest_finish():
    wf = trace("montage_58t")
    platform = Platform()
    ctx = PlanningContext(wf, Predictor.empty(), platform, "p95", 0,
                          make_evaluator(wf, Predictor.empty(), platform, "p95", 0))
    memory = platform.default_memory_mb
    fastest = heft_schedule(ctx, memory, "finish")
    cheap = heft_schedule(ctx, memory, "cost", fastest.makespan_ms * (1 + MAKESPAN_TOLERANCE))
    assert cheap.billed_ms < 0.95 * fastest.billed_ms
    # Ranks leave out start-ups, so the target binds only approximately.
    assert cheap.makespan_ms <= fastest.makespan_ms * 1.05


def test_waiting_workers_stay_below_the_concurrency_limit():
    wf = late_model(8)
    unlimited = plan(wf, policy="finish")
    waiting = RunSpec.build(wf, unlimited.placements).waiting_workers
    assert waiting >= 4  # the steps wait for the model on their roots' workers
    platform = Platform().replace(concurrency_limit=3)
    limited = plan(wf, platform=platform, policy="finish")
    assert RunSpec.build(wf, limited.placements).waiting_workers <= 2
    assert limited.predicted_makespan_ms > 0  # the simulator accepts it


def test_policy_finish_is_classic_earliest_finish_on_a_chain():
    wf = Workflow(step(step(quick(task_id="a"), task_id="b"), task_id="c"), name="chain",
                  detect=False)
    for policy in ("finish", "cost"):
        assert len(plan(wf, policy=policy).workers) == 1


def test_unknown_policy_and_negative_tolerance_are_refused():
    entry = get_planner("heft")
    with pytest.raises(PlannerOptionsError, match="policy"):
        entry.validate_options({"policy": "cheapest"})
    wf = late_model(1)
    with pytest.raises(ValueError, match="unknown policy 'cheapest'"):
        plan(wf, policy="cheapest")
    with pytest.raises(ValueError, match="makespan_tolerance must be >= 0"):
        plan(wf, makespan_tolerance=-0.1)


def test_notes_say_which_schedule_was_kept():
    p = plan(late_model(4))
    assert "policy cost" in p.notes[-1]
    assert "the makespan of earliest finish" in p.notes[-1]


def test_every_task_placed_on_one_memory():
    p = plan(late_model(3), memory_mb=3008)
    assert {pl.memory_mb for pl in p.placements.values()} == {3008}
    assert all(isinstance(pl, Placement) and pl.worker for pl in p.placements.values())
