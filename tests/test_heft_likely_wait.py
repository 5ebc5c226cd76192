"""HEFT's cost policy prices the wait a worker is likely to have, not only its wait at the
SLA level, and plans cheaply without extra simulations where HEFT's own estimate decides."""

from __future__ import annotations

import random
from typing import Any

import pytest

from faasplan.experiments.planning import make_evaluator
from faasplan.planners import Plan, PlanningContext, run_planner
from faasplan.planners.heft import (
    MAKESPAN_TOLERANCE,
    _placements,
    antichain_width,
    heft_inputs,
    heft_schedule,
    plan_heft,
    typical_exec_ms,
)
from faasplan.predictors import ExecModel, Predictor
from faasplan.predictors.sla import Empirical
from faasplan.simulator import Platform
from faasplan.workflow import TaskNode, Workflow, io, task


@task(io=io.constant(10_000))
def grow(*xs: object) -> tuple[object, ...]:
    return xs


@task(io=io.constant(10_000))
def gather(*xs: object) -> tuple[object, ...]:
    return xs


@task(io=io.constant(10_000))
def plot(*xs: object) -> tuple[object, ...]:
    return xs


# Growing a field takes 10 s at the median, 5-15 s from run to run; the rest is fixed.
SPREAD = Empirical.of([0.5, 0.7, 0.85, 1.0, 1.15, 1.3, 1.5])
TIMES = Predictor(exec_models={grow.name: ExecModel(0.0, 0.0, 0.5, constant_ms=10_000.0,
                                                    residuals=SPREAD),
                               gather.name: ExecModel(0.0, 0.0, 0.5, constant_ms=100.0),
                               plot.name: ExecModel(0.0, 0.0, 0.5, constant_ms=30_000.0)},
                  hints={f.name: f.io for f in (grow, gather, plot) if f.io is not None})


def fields(k: int) -> Workflow:
    """``k`` chains of two uncertain ``grow`` tasks, each start also read by a quick side
    sink; one ``summary`` gathers the chain ends and feeds a long ``plot``.

    At the SLA level every chain ends at the same time, so the summary looks free to join a
    chain's worker. In a run the chains end seconds apart, and that worker would be billed
    while it waits for the slowest chain.
    """
    starts = [grow(task_id=f"s{i}") for i in range(k)]
    ends = [grow(s, task_id=f"e{i}") for i, s in enumerate(starts)]
    sides = [gather(s, task_id=f"side{i}") for i, s in enumerate(starts)]
    summary = gather(*ends, task_id="summary")
    return Workflow([plot(summary, task_id="plot"), *sides], name="fields", detect=False)


def context(wf: Workflow, predictor: Predictor = TIMES) -> PlanningContext:
    platform = Platform()
    return PlanningContext(wf, predictor, platform, "p95", 0,
                           make_evaluator(wf, predictor, platform, "p95", 0))


def plan(wf: Workflow, **options: Any) -> Plan:
    platform = Platform()
    return run_planner("heft", wf, TIMES, platform, sla="p95", seed=0,
                       evaluate=make_evaluator(wf, TIMES, platform, "p95", 0), **options)


def idle_ms(p: Plan) -> float:
    """Billed worker time of the predicted run spent waiting for inputs."""
    tasks, workers = p.predicted.tasks, p.predicted.workers
    billed = (workers["end_ms"] - workers["start_ms"]).sum()
    busy = (tasks["exec_ms"] + tasks["download_ms"] + tasks["upload_ms"]).sum()
    return float(billed - busy)


def chain_workers(wf: Workflow, worker_of: dict[str, str]) -> set[str]:
    """Workers of the chains' tasks (``s<i>``, ``e<i>``)."""
    return {worker_of[t] for t in wf.topological_order if t[0] in "se" and t[1:].isdigit()}


def test_typical_times_are_the_means_and_never_above_the_sla_level() -> None:
    wf = fields(3)
    ctx = context(wf)
    typical = typical_exec_ms(ctx, 1769)
    assert typical["s0"] < ctx.exec_ms("s0", 1769)  # the spread: p95 is above the mean
    assert typical["summary"] == ctx.exec_ms("summary", 1769)  # no spread
    assert all(typical[t] <= ctx.exec_ms(t, 1769) for t in wf.topological_order)


def test_pricing_the_likely_wait_moves_the_gather_off_a_chain_worker() -> None:
    wf = fields(6)
    ctx = context(wf)
    fastest = heft_schedule(ctx, 1769, "finish")
    target = fastest.makespan_ms * (1 + MAKESPAN_TOLERANCE)
    sla_only = heft_schedule(ctx, 1769, "cost", target)
    likely = heft_schedule(ctx, 1769, "cost", target, risk=True)
    # At the SLA level joining a chain's worker costs no wait, so it is taken.
    assert sla_only.worker_of["summary"] in chain_workers(wf, sla_only.worker_of)
    # Priced by its likely wait, the summary gets a worker of its own (with the plot).
    assert likely.worker_of["summary"] not in chain_workers(wf, likely.worker_of)
    assert likely.worker_of["plot"] == likely.worker_of["summary"]
    assert likely.makespan_ms <= target * 1.001


def test_a_gather_of_uncertain_chains_is_not_billed_for_waiting() -> None:
    wf = fields(6)
    finish, cost = plan(wf, policy="finish"), plan(wf)
    assert cost.placements["summary"].worker not in chain_workers(
        wf, {t: p.worker for t, p in cost.placements.items() if p.worker})
    assert idle_ms(finish) > 5_000.0  # a chain worker waits for the slowest chain
    assert idle_ms(cost) < 0.1 * idle_ms(finish)
    assert cost.predicted_cost_usd < 0.98 * finish.predicted_cost_usd
    assert len(cost.workers) <= antichain_width(wf)
    ratio = cost.predicted_quantiles["p95"] / finish.predicted_quantiles["p95"]
    assert ratio <= 1 + MAKESPAN_TOLERANCE


def test_a_small_workflow_keeps_the_cheapest_confirmed_candidate() -> None:
    wf = fields(6)
    ctx = context(wf)
    chosen = plan_heft(ctx)
    assert "the cheapest of" in chosen.notes[-1]
    # Every candidate the cost policy may keep, simulated on the same draws.
    fastest = heft_schedule(ctx, 1769, "finish")
    base = ctx.simulate(_placements(ctx, fastest, 1769))
    confirmed = []
    for risk in (False, True):
        for share, one_start_up in ((1.0, False), (1.0, True), (0.0, True)):
            cheap = heft_schedule(ctx, 1769, "cost",
                                  fastest.makespan_ms * (1 + share * MAKESPAN_TOLERANCE),
                                  one_start_up, risk=risk)
            trial = ctx.simulate(_placements(ctx, cheap, 1769))
            if (trial.cost_usd <= base.cost_usd
                    and trial.makespan_ms <= base.makespan_ms * (1 + MAKESPAN_TOLERANCE)):
                confirmed.append(trial.cost_usd)
    assert confirmed
    mine = ctx.simulate(chosen.placements)
    assert mine.cost_usd <= min(confirmed) * (1 + 1e-9)


def test_shared_inputs_give_the_same_schedules() -> None:
    wf = fields(4)
    ctx = context(wf)
    inputs = heft_inputs(ctx, 1769)
    for policy, risk in (("finish", False), ("cost", False), ("cost", True)):
        alone = heft_schedule(ctx, 1769, policy, 1.0, risk=risk)
        shared = heft_schedule(ctx, 1769, policy, 1.0, risk=risk, inputs=inputs)
        assert alone == shared


# -- the width bound, decided without simulating where HEFT's estimate is clear -------------
@task(io=io.constant(10_000))
def short(*xs: object) -> tuple[object, ...]:
    return xs


@task(io=io.constant(2_000_000))
def medium(*xs: object) -> tuple[object, ...]:
    return xs


@task(io=io.constant(50_000))
def long(*xs: object) -> tuple[object, ...]:
    return xs


MIXED = Predictor(exec_models={short.name: ExecModel(0.0, 0.0, 0.5, constant_ms=50.0),
                               medium.name: ExecModel(0.0, 0.0, 0.5, constant_ms=700.0),
                               long.name: ExecModel(0.0, 0.0, 0.5, constant_ms=3000.0)},
                  hints={f.name: f.io for f in (short, medium, long) if f.io is not None})


def stacked(seed: int, layers: int, size: int) -> Workflow:
    """Layers of ``size`` tasks, each reading 1-3 tasks of the layer above; tasks nobody
    reads are sinks in every layer, so a worker whose last task is one can take nothing
    later (the continuation rule) and a width bound leaves later tasks queueing."""
    rng = random.Random(seed)
    above: list[TaskNode] = []
    nodes: list[TaskNode] = []
    read: set[int] = set()
    for layer in range(layers):
        row = []
        for j in range(size):
            picks = rng.sample(range(len(above)), k=min(len(above), rng.randint(1, 3)))
            read.update(id(above[p]) for p in picks)
            node = rng.choice((short, medium, long))(*(above[p] for p in picks),
                                                     task_id=f"L{layer}_{j}")
            row.append(node)
            nodes.append(node)
        above = row
    return Workflow([x for x in nodes if id(x) not in read], name=f"stacked-{seed}",
                    detect=False)


def test_a_bound_hopeless_by_continuation_is_not_simulated_and_ordered_workers_hold_it() -> None:
    wf = stacked(0, 10, 6)
    ctx = context(wf, MIXED)
    width = antichain_width(wf)
    free = heft_schedule(ctx, 1769, "finish")
    bounded = heft_schedule(ctx, 1769, "finish", max_workers=width)
    assert free.workers > width
    assert bounded.makespan_ms > 1.10 * free.makespan_ms
    p = plan_heft(ctx, policy="finish")
    # Only the ordered bound and the unbounded schedule were simulated, then the final score.
    assert ctx.evaluations == 2
    assert "by continuation" not in p.notes[-1]
    assert "workers in HEFT's start order" in p.notes[-1]
    p.validate(wf)
    assert len(p.workers) <= width and set(p.worker_orders) == set(p.workers)
    # The simulation agrees: bounded by continuation the plan would be far slower, while
    # the ordered workers keep the unbounded makespan within the tolerance.
    slow = ctx.simulate(_placements(ctx, bounded, 1769)).makespan_ms
    fast = ctx.simulate(_placements(ctx, free, 1769)).makespan_ms
    ordered = ctx.simulate(p.placements).makespan_ms
    assert slow > (1 + MAKESPAN_TOLERANCE) * fast
    assert ordered <= (1 + MAKESPAN_TOLERANCE) * fast


def ordered_heft(seed: int) -> tuple[Workflow, Plan]:
    wf = stacked(seed, 10, 6)
    p = plan_heft(context(wf, MIXED), policy="cost")
    assert "workers in HEFT's start order" in p.notes[-1]
    return wf, p


def test_sim_guided_started_from_ordered_workers_keeps_valid_orders() -> None:
    wf, start = ordered_heft(0)
    platform = Platform()
    p = run_planner("sim-guided", wf, MIXED, platform, sla="p95", seed=0,
                    evaluate=make_evaluator(wf, MIXED, platform, "p95", 0),
                    time_budget_s=60.0, max_evaluations=40)
    assert p.notes[0].startswith("started from heft")
    improving = int(p.notes[0].split("; ")[1].split()[0])
    assert improving >= 1  # the search moved tasks of ordered workers, and they simulated
    p.validate(wf)
    assert set(p.worker_orders) == set(p.workers)
    assert len(p.workers) <= antichain_width(wf)
    assert p.predicted_quantiles["p95"] <= start.predicted_quantiles["p95"] * 1.000001


@pytest.mark.redis
def test_ordered_heft_workers_run_on_redis_in_their_orders() -> None:
    import faasplan
    from faasplan.conformance import check

    wf, p = ordered_heft(0)
    real = faasplan.run(wf, p, timeout_s=300)
    assert real.result == faasplan.run_local(wf)
    rows = real.trace.tasks
    for worker, order in p.worker_orders.items():
        ran = rows[rows["worker"] == worker].sort_values("exec_start_ms")
        assert tuple(ran["task"]) == order, worker
    report = check(wf, p, seed=1)
    assert report.ok, str(report)


def test_a_given_bound_uses_ordered_workers_only_when_the_simulation_says_faster() -> None:
    wf = stacked(1, 10, 6)
    ctx = context(wf, MIXED)
    p = plan_heft(ctx, policy="finish", max_workers=3)
    p.validate(wf)
    assert len(p.workers) == 3 and "workers in HEFT's start order" in p.notes[-1]
    plain = heft_schedule(ctx, 1769, "finish", max_workers=3)
    by_continuation = ctx.simulate(_placements(ctx, plain, 1769)).makespan_ms
    assert ctx.simulate(p.placements).makespan_ms < by_continuation
