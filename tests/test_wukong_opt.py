"""wukong-opt: task clustering and delayed I/O change what runs, and only when they help.

Clustering used to keep only the single-input dependents of a task. Without clustering a
flexible worker keeps one of them anyway, so on a task with one single-input dependent and
a fan-in dependent (montage's ``mAdd``) clustering changed nothing, and wukong-opt plans
differed from wukong's with identical figures. Clustering now also keeps the fan-ins the
task makes ready, and wukong-opt keeps an optimization only when the simulation says the
plan is faster, or as fast and cheaper, with it.
"""

from __future__ import annotations

import pytest

import faasplan
from faasplan import Platform, TaskProfile, Workflow, task
from faasplan.data import trace_path
from faasplan.experiments.planning import fit_history, make_evaluator, training_history
from faasplan.simulator import GroundTruth, simulate
from faasplan.worker import (
    Execute,
    Fetch,
    Invoke,
    Opt,
    Parallel,
    Payload,
    Placement,
    RunSpec,
    WorkerOptions,
)
from faasplan.worker.inmemory import run_in_memory

MB = 1 << 20


@task
def step(*inputs: object) -> int:
    return 0


def node(tid: str, *ups: object, ms: float = 100.0, out: int = 0) -> object:
    return step(*ups, task_id=tid, profile=TaskProfile(ms, out))


def mosaic_shape() -> Workflow:
    """``y -> x``; ``x`` feeds ``b`` alone and the fan-in ``j(y, x)``, like montage's mAdd."""
    y = node("y", out=MB)
    x = node("x", y, out=10 * MB)
    return Workflow([node("b", x), node("j", y, x)])


def placements(wf: Workflow, cluster: bool) -> dict[str, Placement]:
    opts = frozenset({Opt.CLUSTER})
    return {t: Placement(None, 1024, opts if cluster and t == "x" else frozenset()) for t in wf}


# -- the worker logic -------------------------------------------------------------------
@pytest.mark.parametrize("cluster", [False, True])
def test_cluster_keeps_the_fan_in_it_makes_ready(cluster: bool) -> None:
    wf = mosaic_shape()
    spec = RunSpec.build(wf, placements(wf, cluster).__getitem__, WorkerOptions(carry_bytes=0))
    run = run_in_memory(spec, lambda e: Payload(10 * MB if e.task == "x" else MB))
    ran_on = {e.task: w for w, e in run.log if isinstance(e, Execute)}
    fetches = [(w, f) for w, e in run.log
               for f in (e.effects if isinstance(e, Parallel) else (e,))]
    x_fetched = [w for w, f in fetches if isinstance(f, Fetch) and f.key == "out:x"]
    invoked = [e.invocation.roots for _, e in run.log if isinstance(e, Invoke)]
    if cluster:
        # j runs where x's output already is: no invocation, no download of x's output
        assert ran_on == {"y": 0, "x": 0, "b": 0, "j": 0}
        assert (invoked, x_fetched) == ([], [])
    else:
        assert ran_on["j"] != ran_on["x"] and invoked == [("j",)] and x_fetched


# -- the simulator ----------------------------------------------------------------------
def test_cluster_on_a_fan_out_with_one_fan_in_changes_the_simulated_run() -> None:
    wf = mosaic_shape()
    platform = Platform()
    truth = GroundTruth(wf, platform, noise=0.0)
    plain = simulate(wf, placements(wf, False), platform, behaviour=truth)
    clustered = simulate(wf, placements(wf, True), platform, behaviour=truth)
    assert (plain.invocations, clustered.invocations) == (2, 1)
    j_plain, j_clustered = (t.tasks.set_index("task").loc["j"] for t in (plain, clustered))
    assert j_plain["download_bytes"] >= 10 * MB and j_clustered["download_bytes"] == 0
    assert clustered.cost_usd < plain.cost_usd


# -- the planner ------------------------------------------------------------------------
def fitted(wf: Workflow, platform: Platform) -> object:
    truth = GroundTruth(wf, platform, noise=0.1)
    return fit_history(wf, training_history(wf, platform, truth, 4, seed=0), platform)


@task
def load(i: int) -> int:
    return i


@task
def look(x: int, k: int) -> int:
    return k


@task
def merge(*xs: int) -> int:
    return 0


def large_fan_outs() -> Workflow:
    """Two 50 MB outputs, each read by three 5 ms tasks: clustering pays."""
    roots = [load(i, task_id=f"load-{i}", profile=TaskProfile(200.0, 50 * MB))
             for i in range(2)]
    looks = [look(r, k, profile=TaskProfile(5.0, 8)) for r in roots for k in range(3)]
    return Workflow(merge(*looks, profile=TaskProfile(5.0, 8)))


def test_wukong_opt_clusters_large_fan_outs_and_is_faster() -> None:
    wf, platform = large_fan_outs(), Platform()
    predictor = fitted(wf, platform)
    base = faasplan.plan(wf, "wukong", predictor, platform)
    opt = faasplan.plan(wf, "wukong-opt", predictor, platform)
    assert {t for t in wf if opt.placement(t).has(Opt.CLUSTER)} == {"load-0", "load-1"}
    assert opt.predicted_makespan_ms < base.predicted_makespan_ms
    assert opt.predicted.invocations < base.predicted.invocations


def kept_optimizations_all_matter(wf: Workflow, predictor: object, platform: Platform) -> None:
    """Every optimization of the wukong-opt plan changes its figures, and plain wukong
    never dominates it."""
    base = faasplan.plan(wf, "wukong", predictor, platform)
    opt = faasplan.plan(wf, "wukong-opt", predictor, platform)
    figures = (opt.predicted_makespan_ms, opt.predicted.cost_usd)
    base_figures = (base.predicted_makespan_ms, base.predicted.cost_usd)
    assert not (base_figures[0] <= figures[0] and base_figures[1] <= figures[1]
                and base_figures != figures), (figures, base_figures)
    chosen = {t: opt.placement(t) for t in wf}
    evaluate = make_evaluator(wf, predictor, platform, "p95", 0)  # type: ignore[arg-type]
    for t, p in chosen.items():
        if p.optimizations:
            without = {**chosen, t: Placement(p.worker, p.memory_mb)}
            score = evaluate.final(without)  # type: ignore[attr-defined]
            assert (score.makespan_ms, score.cost_usd) != figures, f"{t}: {p} has no effect"
    if chosen == {t: base.placement(t) for t in wf}:
        assert figures == base_figures
        assert any("left out" in n for n in opt.notes)


def test_wukong_opt_on_montage_keeps_no_ineffective_optimization() -> None:
    wf, platform = faasplan.load_wfformat(trace_path("montage_58t")), Platform()
    kept_optimizations_all_matter(wf, fitted(wf, platform), platform)


def test_wukong_opt_on_montage_without_history_keeps_no_ineffective_optimization() -> None:
    # predictions from defaults made montage's mAdd (one mViewer alone, one fan-in)
    # a clustering candidate; clustering it used to change nothing
    wf, platform = faasplan.load_wfformat(trace_path("montage_58t")), Platform()
    kept_optimizations_all_matter(wf, faasplan.predictors.Predictor.empty(), platform)
