"""Monte-Carlo plan evaluation: reproducibility, common random numbers, makespan
percentiles against per-task SLA levels and against the simulated truth, sim-guided
determinism and non-domination, and predict_workflow from the history alone.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import faasplan
from faasplan import Placement, Plan, Platform, TaskProfile, Workflow, task
from faasplan.experiments.planning import (
    MC_FINAL_BATCH,
    MonteCarloEvaluator,
    fit_history,
    make_evaluator,
    monte_carlo_summary,
    quantile_settled,
    training_history,
)
from faasplan.experiments.predict import (
    critical_path_draws,
    predict_workflow,
    propagate_input_bytes,
)
from faasplan.planners import run_planner
from faasplan.predictors import Predictor, records_to_frame
from faasplan.simulator import GroundTruth, SampledModels, Simulator, simulate
from faasplan.workflow import SizedBlob

REF = 1769
MB = 1_000_000


@task
def step(*xs):
    return xs


@task
def split(*xs):
    return xs


@task
def join(*xs):
    return xs


def chain(n: int = 11, exec_ms: float = 1000.0, *, profile: bool = True) -> Workflow:
    """``n`` tasks of one function in a line, each exec_ms at the reference memory."""
    def prof() -> TaskProfile | None:
        return TaskProfile(exec_ms, 1000) if profile else None

    node = step(SizedBlob("in", 1000), task_id="c0", profile=prof())
    for i in range(1, n):
        node = step(node, task_id=f"c{i}", profile=prof())
    return Workflow(node, name="chain", detect=False)


DIAMOND_MS = {"a": 100.0, "b": 300.0, "c": 1000.0, "d": 200.0}
DIAMOND_OUT = {"a": 3 * MB, "b": 2 * MB, "c": MB // 2, "d": 1000}


def diamond(profiles: dict[str, TaskProfile] | None = None) -> Workflow:
    """a -> (b, c) -> d; critical path a, c, d = 1300 ms at the reference memory."""
    profiles = profiles or {t: TaskProfile(DIAMOND_MS[t], DIAMOND_OUT[t]) for t in DIAMOND_MS}
    a = split(SizedBlob("in", 4 * MB), task_id="a", profile=profiles["a"])
    b = step(a, task_id="b", profile=profiles["b"])
    c = step(a, task_id="c", profile=profiles["c"])
    return Workflow(join(b, c, task_id="d", profile=profiles["d"]), name="diamond",
                    detect=False)


def history_predictor(wf: Workflow, noise: float, runs: int, *, seed: int = 0,
                      memory_sizes: tuple[int, ...] | None = None) -> Predictor:
    platform = Platform()
    truth = GroundTruth(wf, platform, noise=noise)
    records = training_history(wf, platform, truth, runs, memory_sizes=memory_sizes,
                               seed=seed)
    return fit_history(wf, records, platform)


@pytest.fixture(scope="module")
def chain_wf() -> Workflow:
    return chain()


@pytest.fixture(scope="module")
def chain_predictor(chain_wf: Workflow) -> Predictor:
    return history_predictor(chain_wf, 0.3, 24, memory_sizes=(REF,))


def flexible(wf: Workflow, memory: int = REF) -> dict[str, Placement]:
    return {t: Placement(None, memory) for t in wf}


def one_worker_each(wf: Workflow, memory: int = REF) -> dict[str, Placement]:
    return {t: Placement(f"w-{t}", memory) for t in wf}


# -- 6. Monte-Carlo evaluation ------------------------------------------------------------
def test_same_seed_same_score(chain_wf: Workflow, chain_predictor: Predictor) -> None:
    platform = Platform()
    a = MonteCarloEvaluator(chain_wf, chain_predictor, platform, "p95", seed=9)
    b = MonteCarloEvaluator(chain_wf, chain_predictor, platform, "p95", seed=9)
    plan = flexible(chain_wf)
    ta, tb = a(plan), b(plan)
    assert ta.makespan_ms == tb.makespan_ms
    assert ta.cost_usd == tb.cost_usd
    assert ta.replicate_makespans_ms == tb.replicate_makespans_ms
    assert a(plan).makespan_ms == ta.makespan_ms  # and again on the same evaluator
    other = MonteCarloEvaluator(chain_wf, chain_predictor, platform, "p95", seed=10)(plan)
    assert other.replicate_makespans_ms != ta.replicate_makespans_ms


def test_evaluator_counts_replicates_and_summarises_them(chain_wf: Workflow,
                                                         chain_predictor: Predictor) -> None:
    ev = MonteCarloEvaluator(chain_wf, chain_predictor, Platform(), "p95", seed=1,
                             replicates=8, final_replicates=30)
    search, final = ev(flexible(chain_wf)), ev.final(flexible(chain_wf))
    assert len(search.replicate_makespans_ms) == 8
    assert len(final.replicate_makespans_ms) == 30
    # The search's replicates are the first replicates of the final score, and the final
    # score of the plan just searched reuses them instead of simulating them again.
    assert final.replicate_makespans_ms[:8] == search.replicate_makespans_ms
    assert ev.simulations == 30
    other = {t: Placement(None, 2 * REF) for t in chain_wf}
    ev.final(other)
    assert ev.simulations == 60
    reps = np.asarray(final.replicate_makespans_ms)
    assert final.makespan_ms == pytest.approx(float(np.quantile(reps, 0.95)))


def test_search_replicates_are_honoured_when_final_replicates_are_fewer(
        chain_wf: Workflow, chain_predictor: Predictor) -> None:
    # Asking for 30 search replicates and 8 final ones is contradictory: either a clear
    # error, or the search really simulates 30 (and counts what it simulated).
    try:
        ev = MonteCarloEvaluator(chain_wf, chain_predictor, Platform(), "p95", seed=1,
                                 replicates=30, final_replicates=8)
    except ValueError:
        return
    search = ev(flexible(chain_wf))
    assert len(search.replicate_makespans_ms) == ev.replicates == 30
    assert ev.simulations == len(search.replicate_makespans_ms)
    assert len(ev.final(flexible(chain_wf)).replicate_makespans_ms) >= ev.replicates


def test_summary_reads_the_sla_quantile_and_mean_cost(chain_wf: Workflow) -> None:
    traces = faasplan.simulate_many(chain_wf, flexible(chain_wf), seed=2, replicates=21)
    makespans = sorted(t.makespan_ms for t in traces)
    p90 = monte_carlo_summary(traces, "p90")
    assert p90.makespan_ms == pytest.approx(makespans[18])  # 0.9 * 20 = position 18
    assert p90.cost_usd == pytest.approx(float(np.mean([t.cost_usd for t in traces])))
    avg = monte_carlo_summary(traces, "average")
    assert avg.makespan_ms == pytest.approx(float(np.mean(makespans)))
    assert sorted(p90.replicate_makespans_ms) == makespans


def test_uniform_draws_are_common_random_numbers(chain_wf: Workflow,
                                                 chain_predictor: Predictor) -> None:
    models = SampledModels(chain_wf, chain_predictor)
    again = SampledModels(chain_wf, chain_predictor)
    u = models.uniforms(4, 12)
    assert u.shape == (12, len(chain_wf))
    assert ((u >= 0) & (u < 1)).all()
    assert np.array_equal(u, models.uniforms(4, 12))
    assert np.array_equal(u, again.uniforms(4, 12))
    assert np.array_equal(u, models.uniforms(4, 40)[:12])
    assert not np.array_equal(u, models.uniforms(5, 12))


def test_two_plans_see_the_same_draws_for_a_task(chain_wf: Workflow,
                                                 chain_predictor: Predictor) -> None:
    models = SampledModels(chain_wf, chain_predictor)
    behaviours = [models.replicate(row) for row in models.uniforms(6, 5)]
    sim = Simulator(chain_wf, Platform(), behaviours[0])
    plans = {"flex": flexible(chain_wf), "own": one_worker_each(chain_wf),
             "big": flexible(chain_wf, 3538)}
    runs = {name: sim.run_each(p, 6, behaviours) for name, p in plans.items()}

    def exec_ms(name: str, r: int) -> dict[str, float]:
        t = runs[name][r].tasks
        return dict(zip(t["task"], t["exec_ms"], strict=True))

    for r in range(5):
        flex, own, big = exec_ms("flex", r), exec_ms("own", r), exec_ms("big", r)
        # Different placements at one memory: each task runs exactly as long.
        assert set(flex) == set(own) == set(chain_wf)
        for tid in chain_wf:
            assert own[tid] == pytest.approx(flex[tid], rel=1e-9)
        # Twice the vCPUs: the platform's rule (history at one memory), 2 ** -0.1.
        for tid in chain_wf:
            assert big[tid] / flex[tid] == pytest.approx(2 ** -0.1, rel=1e-9)
    # Tasks differ from one another and replicates from one another.
    first = exec_ms("flex", 0)
    assert len({round(v, 6) for v in first.values()}) == len(chain_wf)
    assert first != exec_ms("flex", 1)
    # The placements changed the makespan but not the draws.
    assert runs["flex"][0].makespan_ms != runs["own"][0].makespan_ms


def test_draw_is_the_inverse_cdf_of_the_predicted_distribution(
        chain_wf: Workflow, chain_predictor: Predictor) -> None:
    models = SampledModels(chain_wf, chain_predictor)
    row = np.linspace(0.05, 0.95, len(chain_wf))
    behaviour = models.replicate(row)
    rng = np.random.default_rng(0)
    for i, tid in enumerate(models.order):
        dist = models.distribution(tid, REF, 1000)
        # the within-run spread is narrower than the marginal one it is part of
        assert dist.within_residuals.quantile(0.9) <= dist.residuals.quantile(0.9) * 1.05
        assert behaviour.exec_ms(tid, REF, 1000, rng) == pytest.approx(
            dist.median_ms * dist.within_residuals.quantile(row[i]) * behaviour.run_factor)
    # the median whole-run draw is (about) no run effect; other draws scale every task
    assert behaviour.run_factor == pytest.approx(1.0, rel=0.05)
    effects = chain_predictor.run_effects
    assert models.replicate(row, 1.0).run_factor == pytest.approx(max(effects.values))
    with pytest.raises(ValueError, match="one draw per task"):
        models.replicate(row[:-1])
    # one factor per function, shared by its tasks: the top draw of every function
    fus = np.ones(len(models.functions))
    shared = models.replicate(row, 0.5, fus)
    for fn, factor in shared.function_factors.items():
        assert factor == pytest.approx(max(chain_predictor.function_effect(fn).values))
    for tid in models.order:
        fn = models.function(tid)
        assert shared.exec_ms(tid, REF, 1000, rng) == pytest.approx(
            behaviour.exec_ms(tid, REF, 1000, rng) * shared.function_factors[fn])
    with pytest.raises(ValueError, match="one draw per function"):
        models.replicate(row, 0.5, fus[:-1])


def test_plan_carries_ordered_percentiles(chain_wf: Workflow,
                                          chain_predictor: Predictor) -> None:
    plan = faasplan.plan(chain_wf, "heft", predictor=chain_predictor, seed=1)
    q = plan.predicted_quantiles
    assert set(q) == {"p50", "p95", "p99"}
    assert q["p50"] <= q["p95"] <= q["p99"]
    assert q["p50"] < q["p99"]  # noisy tasks: the replicates differ
    reps = np.asarray(plan.predicted.replicate_makespans_ms)
    assert len(reps) >= 20
    assert q["p95"] == pytest.approx(float(np.quantile(reps, 0.95)))
    assert plan.predicted_makespan_ms == pytest.approx(q["p95"])


def test_chain_p95_is_a_makespan_percentile_not_a_sum_of_task_percentiles(
        chain_wf: Workflow, chain_predictor: Predictor) -> None:
    platform = Platform()
    placements = flexible(chain_wf)
    mc = MonteCarloEvaluator(chain_wf, chain_predictor, platform, "p95", seed=0,
                             replicates=400).final(placements)
    per_task = make_evaluator(chain_wf, chain_predictor, platform, "p95",
                              mode="per-task-sla")(placements)
    truth = simulate(chain_wf, placements, platform, seed=77, replicates=600,
                     behaviour=GroundTruth(chain_wf, platform, noise=0.3))
    true_p95 = float(np.quantile(truth.replicate_makespans_ms, 0.95))
    # By hand: 11 lognormal(sigma 0.3) tasks of 1 s. Sum of task p95s:
    # 11 * exp(1.645 * 0.3) = 18.0 s; the p95 of the sum is about
    # 11 * e^0.045 + 1.645 * sqrt(11) * sqrt((e^0.09 - 1) e^0.09) = 13.2 s.
    assert per_task.makespan_ms > 17_500
    assert 12_500 < true_p95 < 14_500
    assert mc.makespan_ms < 0.85 * per_task.makespan_ms
    assert mc.makespan_ms == pytest.approx(true_p95, rel=0.08)


def test_unknown_evaluator_mode_is_rejected(chain_wf: Workflow,
                                            chain_predictor: Predictor) -> None:
    with pytest.raises(ValueError, match="per-task-sla"):
        make_evaluator(chain_wf, chain_predictor, Platform(), "p95", mode="sum")


# -- 7. same seed, same plan; never dominated ---------------------------------------------
def fan_workflow() -> Workflow:
    """A fan-out of 6 tasks of very different lengths and a fan-in."""
    root = split(SizedBlob("in", 8 * MB), task_id="root", profile=TaskProfile(200.0, 6 * MB))
    mids = [step(root, task_id=f"m{i}", profile=TaskProfile(150.0 * 2 ** i, 2 * MB))
            for i in range(6)]
    return Workflow(join(*mids, task_id="sink", profile=TaskProfile(300.0, 1000)),
                    name="fan", detect=False)


@pytest.fixture(scope="module")
def fan_wf() -> Workflow:
    return fan_workflow()


@pytest.fixture(scope="module")
def fan_predictor(fan_wf: Workflow) -> Predictor:
    return history_predictor(fan_wf, 0.2, 8, seed=2)


SEARCH = {"max_evaluations": 40, "time_budget_s": 120.0}


def test_sim_guided_same_seed_same_plan(fan_wf: Workflow, fan_predictor: Predictor) -> None:
    a = faasplan.plan(fan_wf, "sim-guided", predictor=fan_predictor, seed=3, **SEARCH)
    b = faasplan.plan(fan_wf, "sim-guided", predictor=fan_predictor, seed=3, **SEARCH)
    assert dict(a.placements) == dict(b.placements)
    assert a.predicted_makespan_ms == b.predicted_makespan_ms
    assert not any("safety cap" in n for n in a.notes)


def test_sim_guided_is_dominated_by_no_baseline(fan_wf: Workflow,
                                                fan_predictor: Predictor) -> None:
    platform = Platform()
    best = faasplan.plan(fan_wf, "sim-guided", predictor=fan_predictor, seed=3, **SEARCH)
    ev = MonteCarloEvaluator(fan_wf, fan_predictor, platform, "p95", seed=3)
    mine = ev(best.placements)
    for name in ("wukong", "uniform", "heft"):
        base = faasplan.plan(fan_wf, name, predictor=fan_predictor, seed=3)
        theirs = ev(base.placements)
        no_worse = (theirs.makespan_ms <= mine.makespan_ms
                    and theirs.cost_usd <= mine.cost_usd)
        better = (theirs.makespan_ms < mine.makespan_ms * (1 - 1e-9)
                  or theirs.cost_usd < mine.cost_usd * (1 - 1e-9))
        assert not (no_worse and better), (name, theirs.makespan_ms, theirs.cost_usd,
                                           mine.makespan_ms, mine.cost_usd)


def test_sim_guided_within_a_cost_budget_is_no_slower_than_the_baseline_that_set_it(
        fan_wf: Workflow, fan_predictor: Predictor) -> None:
    platform = Platform()
    ev = MonteCarloEvaluator(fan_wf, fan_predictor, platform, "p95", seed=3)
    heft = ev(faasplan.plan(fan_wf, "heft", predictor=fan_predictor, seed=3).placements)
    budget = heft.cost_usd * (1 + 1e-9)
    best = faasplan.plan(fan_wf, "sim-guided", predictor=fan_predictor, seed=3,
                         cost_budget_usd=budget, **SEARCH)
    mine = ev(best.placements)
    assert mine.cost_usd <= budget
    assert mine.makespan_ms <= heft.makespan_ms * (1 + 1e-9)
    assert not any("cost budget" in n for n in best.notes)


class FailingEvaluate:
    """A per-task-SLA evaluation that raises on call number ``fail_at`` (1-based)."""

    def __init__(self, wf: Workflow, predictor: Predictor, fail_at: int | None) -> None:
        self.inner = make_evaluator(wf, predictor, Platform(), "p95", mode="per-task-sla")
        self.fail_at = fail_at
        self.calls = 0

    def __call__(self, placements):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("simulator broke")
        return self.inner(placements)


def test_sim_guided_surfaces_simulator_errors(fan_wf: Workflow,
                                              fan_predictor: Predictor) -> None:
    def run(fail_at: int | None) -> tuple[object, FailingEvaluate]:
        evaluate = FailingEvaluate(fan_wf, fan_predictor, fail_at)
        plan = run_planner("sim-guided", fan_wf, fan_predictor, Platform(), sla="p95",
                           seed=3, evaluate=evaluate, history=True, max_evaluations=25,
                           time_budget_s=120.0)
        return plan, evaluate

    _, counted = run(None)
    total = counted.calls
    assert total >= 25
    with pytest.raises(RuntimeError, match="starting plan of wukong"):
        run(1)
    # The last evaluation is a candidate of the search, not a starting plan.
    with pytest.raises(RuntimeError, match="candidate plan failed"):
        run(total)


def test_a_single_simulation_has_equal_quantiles(chain_wf: Workflow,
                                                 chain_predictor: Predictor) -> None:
    evaluate = make_evaluator(chain_wf, chain_predictor, Platform(), "p95",
                              mode="per-task-sla")
    trace = evaluate(flexible(chain_wf))
    q = Plan("x", flexible(chain_wf), predicted=trace).predicted_quantiles
    assert q["p50"] == q["p95"] == q["p99"] == pytest.approx(trace.makespan_ms)
    assert Plan("x", flexible(chain_wf)).predicted_quantiles == {}


# -- 8. predict_workflow ------------------------------------------------------------------
@pytest.fixture(scope="module")
def diamond_history() -> object:
    wf = diamond()
    platform = Platform()
    truth = GroundTruth(wf, platform, noise=0.2)
    return records_to_frame(training_history(wf, platform, truth, 16, seed=4))


def test_predicted_critical_path_brackets_the_known_one(diamond_history: object) -> None:
    pred = predict_workflow(diamond(), diamond_history, seed=1, path_replicates=2000)
    cp = pred.critical_path_ms
    assert cp["p10"] <= cp["p50"] <= cp["p90"]
    # a + c + d = 100 + 1000 + 200 ms; b's path is 600 ms.
    assert cp["p10"] <= 1300.0 <= cp["p90"]
    assert cp["p50"] == pytest.approx(1300.0, rel=0.12)
    assert cp["p90"] / cp["p10"] < 2.0
    ms = pred.makespan_ms
    assert ms["p10"] <= ms["p50"] <= ms["p90"]
    assert ms["p50"] >= cp["p10"]  # transfers and start-ups only add to the path
    rows = pred.tasks.set_index("task")
    assert set(rows["source"]) == {"task"}
    for tid, exec_ms in DIAMOND_MS.items():
        assert rows.loc[tid, "exec_ms_p50"] == pytest.approx(exec_ms, rel=0.12)
        assert rows.loc[tid, "exec_ms_p90"] > rows.loc[tid, "exec_ms_p50"]
        assert rows.loc[tid, "samples"] == 16


def test_target_profiles_are_never_read(diamond_history: object) -> None:
    absurd = {t: TaskProfile(1e9, 10 ** 12) for t in DIAMOND_MS}
    target = diamond(absurd)
    assert target.structure_hash == diamond().structure_hash
    normal = predict_workflow(diamond(), diamond_history, seed=5, path_replicates=500)
    odd = predict_workflow(target, diamond_history, seed=5, path_replicates=500)
    assert odd.critical_path_ms == normal.critical_path_ms
    # The profiles are encoded with the DAG, so its size (hence its transfer) changes by a
    # few bytes: microseconds, not the 1e9 ms the profiles claim.
    for q, v in normal.makespan_ms.items():
        assert odd.makespan_ms[q] == pytest.approx(v, abs=0.1)
    assert odd.tasks.equals(normal.tasks)
    assert odd.critical_path_ms["p90"] < 1e5


def test_input_bytes_propagate_from_history_outputs(diamond_history: object) -> None:
    wf = diamond({t: TaskProfile(1e9, 10 ** 12) for t in DIAMOND_MS})
    predictor = fit_history(wf, diamond_history, Platform())
    inputs = propagate_input_bytes(wf, predictor)
    assert inputs == {"a": 4 * MB, "b": DIAMOND_OUT["a"], "c": DIAMOND_OUT["a"],
                      "d": DIAMOND_OUT["b"] + DIAMOND_OUT["c"]}


def test_critical_path_of_a_chain_is_a_sum_of_draws() -> None:
    # Without noise every draw is the task's median: the path is exactly the sum.
    wf = chain(5, 400.0)
    predictor = history_predictor(wf, 0.0, 4, memory_sizes=(REF,))
    draws, table = critical_path_draws(wf, predictor, REF, 50, np.random.default_rng(0))
    assert draws.shape == (50,)
    assert np.allclose(draws, 5 * 400.0, rtol=1e-6)
    assert list(table["task"]) == [f"c{i}" for i in range(5)]
    # At half a vCPU (cpu exponent 1) every task takes twice as long.
    half, _ = critical_path_draws(wf, predictor, REF / 2, 10, np.random.default_rng(0))
    assert np.allclose(half, 2 * 5 * 400.0, rtol=1e-6)
    assert math.isfinite(float(table["exec_ms_p90"].max()))


def test_final_score_stops_once_the_quantile_is_settled(chain_wf: Workflow,
                                                        chain_predictor: Predictor) -> None:
    platform = Platform()
    # Tasks of 1 s that never vary: only cold starts differ, one batch settles the p95.
    steady = history_predictor(chain_wf, 0.001, 6, memory_sizes=(REF,))
    quiet = MonteCarloEvaluator(chain_wf, steady, platform, "p95", seed=3)
    settled = quiet.final(flexible(chain_wf))
    assert len(settled.replicate_makespans_ms) == MC_FINAL_BATCH < quiet.final_replicates
    assert quantile_settled(settled.replicate_makespans_ms, "p95")
    # Noisy tasks (sigma 0.3): the quantile is not settled before the size's bound.
    noisy = MonteCarloEvaluator(chain_wf, chain_predictor, platform, "p95", seed=3)
    scored = noisy.final(flexible(chain_wf))
    assert len(scored.replicate_makespans_ms) == noisy.final_replicates
    assert not quantile_settled(scored.replicate_makespans_ms[:MC_FINAL_BATCH], "p95")
    # Batches continue the same replicates as one call over all of them would.
    whole = noisy.simulator.run_each(flexible(chain_wf), noisy.seed,
                                     noisy._behaviours[:noisy.final_replicates])
    assert tuple(t.makespan_ms for t in whole) == scored.replicate_makespans_ms
    again = MonteCarloEvaluator(chain_wf, chain_predictor, platform, "p95", seed=3)
    assert again.final(flexible(chain_wf)).replicate_makespans_ms == \
        scored.replicate_makespans_ms


def test_quantile_settled_follows_the_spread_and_the_count() -> None:
    rng = np.random.default_rng(0)
    narrow = np.exp(rng.normal(9.0, 0.005, 16)).tolist()
    wide = np.exp(rng.normal(9.0, 0.2, 64)).tolist()
    assert quantile_settled(narrow, "p95") and quantile_settled(narrow, "average")
    assert not quantile_settled(wide, "p99")
    assert not quantile_settled(narrow[:MC_FINAL_BATCH - 1], "p95")  # too few to tell
