"""Planners: valid plans on random DAGs and real traces, determinism, purity, known optima.

Every candidate plan is scored by the real simulator with the predictor's models at the
SLA (``PredictedBehaviour``), exactly as :func:`faasplan.plan` wires it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faasplan.data import trace_path
from faasplan.planners import Plan, PlanError, PlanningContext, planner_names, run_planner
from faasplan.planners.heft import upward_ranks
from faasplan.planners.non_uniform import critical_tasks
from faasplan.planners.sim_guided import REFERENCE_PLANNERS, START_PLANNERS, pareto_front
from faasplan.predictors import ExecModel, Predictor
from faasplan.simulator import Platform, PredictedBehaviour, simulate
from faasplan.worker import Opt, Placement
from faasplan.workflow import SizedBlob, Workflow, io, load_wfformat, task

SMALL_TRACES = ("blast_43t", "cycles_67t", "epigenomics_41t", "montage-v14_58t", "montage_58t")
LARGE_TRACES = ("epigenomics_983t", "seismology_1001t", "montage_1738t")
ALL = planner_names()

# Small budgets keep the search-based planners fast; with the simulation cap binding before
# the clock, their results are reproducible.
OPTIONS: dict[str, dict[str, Any]] = {
    "non-uniform": {"time_budget_s": 60.0, "max_evaluations": 12},
    "non-uniform-opt": {"time_budget_s": 60.0, "max_evaluations": 12},
    "sim-guided": {"time_budget_s": 60.0, "max_evaluations": 30},
}


@task(io=io.constant(2_000_000))
def produce(blob):
    return blob


@task(io=io.linear(1.0))
def keep(*xs):
    return xs


@task(io=io.linear(0.25))
def shrink(*xs):
    return xs


@task(io=io.constant(50_000_000))
def big(*xs):
    return xs


@task(io=io.constant(1000))
def long_step(*xs):
    return xs


def evaluator(wf: Workflow, predictor: Predictor, platform: Platform, sla: str, seed: int):
    behaviour = PredictedBehaviour(wf, predictor, sla)

    def evaluate(placements: Mapping[str, Placement]) -> Any:
        return simulate(wf, placements, platform, seed=seed, behaviour=behaviour)

    return evaluate


def hints(wf: Workflow) -> dict[str, Any]:
    return {wf.node(t).func.name: wf.node(t).func.io for t in wf if wf.node(t).func.io}


def run(name: str, wf: Workflow, predictor: Predictor | None = None, *, seed: int = 0,
        sla: str = "p95", **options: Any) -> Plan:
    """Run a registered planner as faasplan.plan does (the registry validates the plan)."""
    predictor = predictor or Predictor.empty(hints(wf))
    platform = Platform()
    opts = {**OPTIONS.get(name, {}), **options}
    return run_planner(name, wf, predictor, platform, sla=sla, seed=seed,
                       evaluate=evaluator(wf, predictor, platform, sla, seed),
                       history=bool(predictor.functions), **opts)


def context(wf: Workflow, predictor: Predictor | None = None, seed: int = 0) -> PlanningContext:
    predictor = predictor or Predictor.empty(hints(wf))
    platform = Platform()
    return PlanningContext(wf, predictor, platform, "p95", seed,
                           evaluator(wf, predictor, platform, "p95", seed))


def predicted_ms(wf: Workflow, placements: Mapping[str, Placement],
                 predictor: Predictor | None = None) -> float:
    return float(context(wf, predictor).simulate(placements).makespan_ms)


def start_plans(ctx: PlanningContext) -> dict[str, Plan]:
    """The plans sim-guided starts from (like it, leaving out those that fail to simulate)."""
    plans = {}
    for name, fn in START_PLANNERS:
        try:
            plans[name] = fn(ctx)
        except RuntimeError:
            continue
    return plans


def trace(name: str) -> Workflow:
    return load_wfformat(trace_path(name))


@st.composite
def dags(draw: st.DrawFn, max_tasks: int = 9) -> Workflow:
    """A random DAG: task i reads up to three distinct earlier tasks."""
    n = draw(st.integers(1, max_tasks))
    nodes = []
    has_child: set[int] = set()
    for i in range(n):
        parents = sorted(draw(st.sets(st.integers(0, i - 1), max_size=min(3, i)))) if i else []
        if parents:
            fn = draw(st.sampled_from((keep, shrink, big)))
            nodes.append(fn(*(nodes[j] for j in parents), task_id=f"t{i}"))
            has_child.update(parents)
        else:
            size = draw(st.integers(0, 20_000_000))
            nodes.append(produce(SizedBlob(f"in{i}", size), task_id=f"t{i}"))
    return Workflow([nodes[i] for i in range(n) if i not in has_child], name="random",
                    detect=False)


def chain(n: int, fn: Any = big) -> Workflow:
    node = produce(SizedBlob("in", 1_000_000), task_id="c0")
    for i in range(1, n):
        node = fn(node, task_id=f"c{i}")
    return Workflow(node, name="chain", detect=False)


def fan_out(width: int) -> Workflow:
    root = produce(SizedBlob("in", 1000), task_id="root")
    mids = [long_step(root, task_id=f"m{i}") for i in range(width)]
    return Workflow(keep(*mids, task_id="sink"), name="fan-out", detect=False)


LONG = Predictor(exec_models={long_step.name: ExecModel(0.0, 0.0, 0.5, constant_ms=3000.0)},
                 hints={produce.name: produce.io, keep.name: keep.io,
                        long_step.name: long_step.io})

RANDOM = settings(max_examples=12, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])


# -- every planner, valid plans -------------------------------------------------------------
def test_registry_lists_every_planner():
    assert set(ALL) == {"wukong", "wukong-opt", "uniform", "uniform-opt", "non-uniform",
                        "non-uniform-opt", "heft", "sim-guided"}


@RANDOM
@given(dags())
def test_every_planner_gives_a_valid_plan_on_random_dags(wf):
    for name in ALL:
        plan = run(name, wf)
        plan.validate(wf)
        assert plan.planner == name
        assert set(plan.placements) == set(wf.topological_order)
        assert plan.predicted_makespan_ms > 0
        assert plan.sla == "p95"
        assert plan.notes[0].startswith("no metrics history")


@pytest.mark.parametrize("name", SMALL_TRACES)
@pytest.mark.parametrize("planner", ALL)
def test_every_planner_gives_a_valid_plan_on_small_traces(planner, name):
    wf = trace(name)
    plan = run(planner, wf)
    plan.validate(wf)
    assert plan.predicted_makespan_ms > 0


@pytest.mark.parametrize("name", LARGE_TRACES)
@pytest.mark.parametrize("planner", ["wukong", "wukong-opt", "uniform", "heft", "non-uniform"])
def test_fast_planners_give_valid_plans_on_large_traces(name, planner):
    wf = trace(name)
    plan = run(planner, wf, max_evaluations=1) if planner == "non-uniform" else run(planner, wf)
    plan.validate(wf)
    assert len(plan.placements) == len(wf)


# -- determinism and purity -----------------------------------------------------------------
@RANDOM
@given(dags(), st.integers(0, 3))
def test_same_seed_gives_the_same_plan(wf, seed):
    for name in ALL:
        a, b = run(name, wf, seed=seed), run(name, wf, seed=seed)
        assert a.placements == b.placements, name
        assert a.predicted_makespan_ms == b.predicted_makespan_ms


def _snapshot(wf: Workflow) -> tuple[Any, ...]:
    nodes = {t: (id(n), id(n.args), n.args, dict(n.kwargs), n.task_id, n.profile)
             for t, n in wf.tasks.items()}
    ups = {t: wf.upstream(t) for t in wf}
    return (wf.structure_hash, wf.topological_order, nodes, ups, wf.name)


def test_planning_leaves_the_workflow_unchanged():
    wf = trace("montage_58t")
    before = _snapshot(wf)
    hash_before = Workflow.structure_hash.func(wf)  # recomputed, not the cached value
    for name in ALL:
        run(name, wf)
    assert _snapshot(wf) == before
    assert Workflow.structure_hash.func(wf) == hash_before
    # A second planner sees exactly what the first saw.
    assert run("uniform", wf).placements == run("uniform", wf).placements


# -- non-uniform ----------------------------------------------------------------------------
@RANDOM
@given(dags())
def test_non_uniform_never_predicted_slower_than_uniform(wf):
    assert run("non-uniform", wf).predicted_makespan_ms <= \
        run("uniform", wf).predicted_makespan_ms * (1 + 1e-9)
    assert run("non-uniform-opt", wf).predicted_makespan_ms <= \
        run("uniform-opt", wf).predicted_makespan_ms * (1 + 1e-9)


@pytest.mark.parametrize("name", ["montage_58t", "cycles_67t"])
def test_non_uniform_on_traces_keeps_its_makespan_and_saves_cost(name):
    wf = trace(name)
    nu = run("non-uniform", wf)
    assert nu.predicted_makespan_ms <= run("uniform", wf).predicted_makespan_ms * (1 + 1e-9)
    memories = {p.memory_mb for p in nu.placements.values()}
    # Workers off the critical path were lowered, and that did not cost time.
    top = max(Platform().memory_sizes_mb)
    everything_top = {t: Placement(p.worker, top, p.optimizations)
                      for t, p in nu.placements.items()}
    assert len(memories) > 1
    top_trace = context(wf).simulate(everything_top)
    assert nu.predicted_makespan_ms <= float(top_trace.makespan_ms) * (1 + 1e-9)
    assert nu.predicted_cost_usd < float(top_trace.cost_usd)


def test_non_uniform_respects_its_simulation_cap():
    wf = trace("montage_58t")
    ctx = context(wf)
    from faasplan.planners.non_uniform import plan_non_uniform
    plan = plan_non_uniform(ctx, max_evaluations=3, time_budget_s=60.0)
    # uniform baseline + all-largest start + 3 lowered candidates
    assert ctx.evaluations == 5
    assert any("after 3 simulations" in n for n in plan.notes)


# -- HEFT -----------------------------------------------------------------------------------
def test_heft_keeps_a_chain_on_one_worker_which_beats_one_worker_per_task():
    wf = chain(6)
    plan = run("heft", wf)
    assert len(plan.workers) == 1
    spread = {t: Placement(f"w{t}", Platform().default_memory_mb) for t in wf}
    assert plan.predicted_makespan_ms < predicted_ms(wf, spread)


def test_heft_spreads_a_wide_fan_out_of_long_tasks():
    wf = fan_out(8)
    plan = run("heft", wf, LONG)
    mids = [f"m{i}" for i in range(8)]
    assert len({plan.placements[m].worker for m in mids}) == 8
    memory = Platform().default_memory_mb
    one = {t: Placement("solo", memory) for t in wf}
    # Eight 3 s tasks in parallel instead of in a row.
    assert plan.predicted_makespan_ms < 0.5 * predicted_ms(wf, one, LONG)


def test_heft_ranks_decrease_along_edges():
    wf = trace("cycles_67t")
    rank = upward_ranks(context(wf), Platform().default_memory_mb)
    for t in wf:
        for d in wf.downstream(t):
            assert rank[t] > rank[d]


def test_heft_uses_the_memory_option():
    wf = chain(3)
    plan = run("heft", wf, memory_mb=3008)
    assert {p.memory_mb for p in plan.placements.values()} == {3008}


# -- sim-guided -----------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: chain(5), lambda: fan_out(6),
                                  lambda: trace("epigenomics_41t")])
def test_sim_guided_is_at_least_as_good_as_every_start(make):
    wf = make()
    predictor = LONG if wf.name == "fan-out" else None
    plan = run("sim-guided", wf, predictor, max_evaluations=60)
    starts = start_plans(context(wf, predictor))
    assert len(starts) >= 4
    eps = 1 + 1e-9
    for name, start in starts.items():
        # never dominated by a start: as fast, or cheaper
        assert (plan.predicted_makespan_ms <= start.predicted_makespan_ms * eps
                or plan.predicted_cost_usd < start.predicted_cost_usd), name
    # no slower and no costlier than the fastest of wukong, uniform and heft
    ref = min((starts[n] for n in REFERENCE_PLANNERS),
              key=lambda p: (p.predicted_makespan_ms, p.predicted_cost_usd))
    assert plan.predicted_makespan_ms <= ref.predicted_makespan_ms * eps
    assert plan.predicted_cost_usd <= ref.predicted_cost_usd * eps
    assert any("cost capped" in n for n in plan.notes)
    # without the cap: at least as fast as every start
    free = run("sim-guided", wf, predictor, max_evaluations=60, cost_budget_usd=math.inf)
    for name, start in starts.items():
        assert free.predicted_makespan_ms <= start.predicted_makespan_ms * eps, name


def test_sim_guided_improves_on_its_start_in_a_fan_out():
    wf = fan_out(6)
    plan = run("sim-guided", wf, LONG, max_evaluations=80)
    best_start = min(p.predicted_makespan_ms for p in start_plans(context(wf, LONG)).values())
    # More memory speeds up the long tasks (memory exponent 0.5): there is room to improve.
    assert plan.predicted_makespan_ms < best_start
    assert plan.notes[0].startswith("started from")


def test_sim_guided_respects_a_cost_budget():
    wf = trace("epigenomics_41t")
    free = run("sim-guided", wf)
    budget = 0.8 * free.predicted_cost_usd
    cheapest_start = min(p.predicted_cost_usd for p in start_plans(context(wf)).values())
    plan = run("sim-guided", wf, cost_budget_usd=budget)
    if cheapest_start <= budget:
        assert plan.predicted_cost_usd <= budget
    else:
        assert any("cost budget" in n for n in plan.notes)
        assert plan.predicted_cost_usd <= cheapest_start


def test_sim_guided_pareto_front_in_notes():
    wf = chain(4)
    plan = run("sim-guided", wf, pareto=True)
    note = next(n for n in plan.notes if n.startswith("pareto front"))
    points = [tuple(map(float, p.strip("() ").split(",")))
              for p in note.split("[", 1)[1].rstrip("]").split("), (")]
    costs = [c for c, _ in points]
    spans = [m for _, m in points]
    assert costs == sorted(costs)
    assert spans == sorted(spans, reverse=True)
    assert len(set(spans)) == len(spans)


def test_non_uniform_rejects_bad_budgets():
    with pytest.raises(ValueError, match="non-uniform-opt: time_budget_s must be > 0"):
        run("non-uniform-opt", chain(2), time_budget_s=-1.0)
    with pytest.raises(ValueError, match=r"max_evaluations >= 0, got 60\.0 and -1"):
        run("non-uniform", chain(2), max_evaluations=-1)


def test_sim_guided_rejects_bad_budgets():
    wf = chain(2)
    with pytest.raises(ValueError, match="time_budget_s must be > 0"):
        run("sim-guided", wf, time_budget_s=0.0)
    with pytest.raises(ValueError, match="cost_budget_usd must be > 0"):
        run("sim-guided", wf, cost_budget_usd=-1.0)


def test_pareto_front():
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 5.0)]) == [(1.0, 5.0)]
    pts = [(3.0, 1.0), (1.0, 9.0), (2.0, 4.0), (2.0, 3.0), (1.0, 9.0), (4.0, 1.0), (5.0, 0.5)]
    assert pareto_front(pts) == [(1.0, 9.0), (2.0, 3.0), (3.0, 1.0), (5.0, 0.5)]


# -- critical path of a trace ---------------------------------------------------------------
def test_critical_tasks_follow_the_long_branch():
    wf = fan_out(3)
    predictor = Predictor(exec_models={long_step.name: ExecModel(0.0, 0.0, 0.5, 100.0)},
                          hints=hints(wf))
    placements = {t: Placement(None, 1769) for t in wf}
    assert critical_tasks(wf, context(wf, predictor).simulate(placements))[0] == "root"
    path = critical_tasks(wf, context(wf, predictor).simulate(placements))
    assert path[-1] == "sink" and len(path) == 3
    wf2 = chain(4)
    assert critical_tasks(wf2, context(wf2).simulate(
        {t: Placement(None, 1769) for t in wf2})) == ["c0", "c1", "c2", "c3"]


# -- Plan rules and persistence -------------------------------------------------------------
def _abc() -> Workflow:
    return chain(3, keep)  # c0 -> c1 -> c2


def test_validate_rejects_two_memory_sizes_on_one_worker():
    plan = Plan("x", {"c0": Placement("w", 512), "c1": Placement("w", 1024),
                      "c2": Placement("w", 512)})
    with pytest.raises(PlanError, match=r"worker 'w' has two memory sizes: 512 MB \(task "
                                        r"'c0'\) and 1024 MB \(task 'c1'\)"):
        plan.validate(_abc())


def test_validate_rejects_a_task_unreachable_by_continuation():
    plan = Plan("x", {"c0": Placement("a", 512), "c1": Placement("b", 512),
                      "c2": Placement("a", 512)})
    with pytest.raises(PlanError, match="worker 'a': task 'c2' cannot be reached by "
                                        "continuation"):
        plan.validate(_abc())


def test_validate_accepts_fan_out_siblings_and_root_groups():
    wf = fan_out(3)
    ok = {t: Placement("a", 512) for t in wf}
    ok.update({"m1": Placement("b", 512), "m2": Placement("b", 512)})
    Plan("x", ok).validate(wf)
    roots = Workflow([produce(1, task_id="r1"), produce(2, task_id="r2")], detect=False)
    Plan("x", {"r1": Placement("a", 512), "r2": Placement("a", 512)}).validate(roots)


def test_validate_rejects_unknown_and_missing_tasks():
    wf = _abc()
    full = {t: Placement(None, 512) for t in wf}
    with pytest.raises(PlanError, match=r"unknown task ids \['ghost'\]"):
        Plan("x", {**full, "ghost": Placement(None, 512)}).validate(wf)
    with pytest.raises(PlanError, match=r"no placement for tasks \['c2'\]"):
        Plan("x", {"c0": full["c0"], "c1": full["c1"]}).validate(wf)


def test_validate_rejects_flexible_only_optimizations_on_planned_workers():
    wf = _abc()
    plan = Plan("x", {t: Placement("w", 512, frozenset({Opt.CLUSTER})) for t in wf})
    with pytest.raises(PlanError, match="task 'c0' on worker 'w': cluster applies to "
                                        "flexible workers only"):
        plan.validate(wf)


def test_plan_save_load_round_trip(tmp_path):
    wf = trace("montage_58t")
    plan = run("uniform-opt", wf)
    assert any(p.optimizations for p in plan.placements.values())
    path = tmp_path / "plan.json"
    plan.save(path)
    loaded = Plan.load(path)
    assert loaded.placements == plan.placements
    assert (loaded.planner, loaded.sla, loaded.notes) == (plan.planner, plan.sla, plan.notes)
    loaded.validate(wf)
    assert json.loads(path.read_text())["predicted_makespan_ms"] == pytest.approx(
        plan.predicted_makespan_ms)


def test_plan_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PlanError, match=r"bad\.json: not valid JSON"):
        Plan.load(bad)
    bad.write_text(json.dumps({"placements": {"t": {"memory_mb": 512}}}))
    with pytest.raises(PlanError, match=r"bad\.json: missing key 'worker'"):
        Plan.load(bad)
