"""Hierarchical execution-time models: function-level model choice on a known size law,
stragglers, task-level repeats and shrinkage, the bounded vCPU rule, p90 coverage.

Every expected value comes from the law the records were generated with.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from faasplan import Platform, TaskProfile, Workflow, task
from faasplan.experiments.planning import fit_history, training_history
from faasplan.predictors import MetricsRecord, Predictor, fit, records_to_frame
from faasplan.predictors.hierarchy import MemoryRule, fit_function
from faasplan.simulator import GroundTruth
from faasplan.workflow import SizedBlob

MB = 1_000_000
REF = 1769
WF = "wf-hash"


def record(task_id: str, function: str, exec_ms: float, *, input_bytes: int = MB,
           memory_mb: int = REF, run: str = "r0", output_bytes: int = 1000) -> MetricsRecord:
    return MetricsRecord(WF, run, "history", task_id, function, memory_mb, input_bytes,
                         output_bytes, float(exec_ms))


def fitted(records: list[MetricsRecord]) -> Predictor:
    return fit(records, platform=Platform())


# -- 1. a known size law ------------------------------------------------------------------
def size_law_records(seed: int = 1, n: int = 80) -> list[MetricsRecord]:
    """exec_ms = 2 * (input MB) ** 0.8, 10 % lognormal noise, sizes 0.01 MB .. 10 GB."""
    rng = np.random.default_rng(seed)
    sizes_mb = 10 ** np.linspace(-2, 4, n)
    return [record(f"t{i}", "law", 2.0 * s ** 0.8 * math.exp(rng.normal(0, 0.1)),
                   input_bytes=round(s * MB))
            for i, s in enumerate(sizes_mb)]


def test_size_law_picks_the_lowest_held_out_error_and_predicts_the_law() -> None:
    predictor = fitted(size_law_records())
    model = predictor.hierarchy.functions["law"]
    assert set(model.cv_error) == {"median", "power", "knn"}
    best = min(model.cv_error.values())
    # A constant is hopeless over six decades of size; a power law is the generating form.
    assert model.kind == "power"
    assert model.cv_error["power"] <= best * 1.02 + 1e-12
    assert model.cv_error["median"] > 10 * model.cv_error["power"]
    assert model.size_exponent == pytest.approx(0.8, abs=0.03)
    for size_mb in (0.037, 3.3, 777.0):
        dist = predictor.exec_distribution("law", size_mb * MB, REF)
        assert dist.source == "function:power"
        assert dist.median_ms == pytest.approx(2.0 * size_mb ** 0.8, rel=0.05)
    # One memory size in the data: the platform's own rule, 2 vCPU -> 2 ** -0.1 faster.
    at_two_vcpu = predictor.exec_distribution("law", 3.3 * MB, 2 * REF).median_ms
    assert at_two_vcpu == pytest.approx(2.0 * 3.3 ** 0.8 * 2 ** -0.1, rel=0.05)


def test_residuals_of_the_size_law_reflect_the_noise() -> None:
    dist = fitted(size_law_records()).exec_distribution("law", 10 * MB, REF)
    # 10 % lognormal noise: p90 / p10 = exp(2 * 1.2816 * 0.1) = 1.29.
    assert dist.quantile(0.9) / dist.quantile(0.1) == pytest.approx(1.29, rel=0.2)
    assert dist.quantile(0.1) <= dist.quantile(0.5) <= dist.quantile(0.9)


def test_constant_function_picks_the_median_candidate() -> None:
    rng = np.random.default_rng(2)
    recs = [record(f"t{i}", "flat", 40.0 * math.exp(rng.normal(0, 0.1)),
                   input_bytes=round(10 ** rng.uniform(3, 9)))
            for i in range(60)]
    model = fitted(recs).hierarchy.functions["flat"]
    assert model.cv_error[model.kind] <= min(model.cv_error.values()) * 1.02 + 1e-12
    # Size does not matter; whichever candidate wins predicts the constant.
    for x in (1e4, 1e6, 1e8):
        assert model.point_ms(x) == pytest.approx(40.0, rel=0.1)


def test_fit_function_needs_three_samples() -> None:
    x = np.asarray([1e6, 2e6])
    assert fit_function(x, np.log([10.0, 20.0]), np.asarray(["a", "b"])) is None
    model = fit_function(np.asarray([1e6, 2e6, 4e6]), np.log([10.0, 10.0, 10.0]),
                         np.asarray(["a", "b", "c"]))
    assert model is not None and model.samples == 3
    assert model.point_ms(3e6) == pytest.approx(10.0)


# -- 2. stragglers ------------------------------------------------------------------------
STRAGGLER_TASKS = 41
RUNS = 3


def straggler_law(i: int) -> float:
    """Task i's median time: geometric from 5 ms (task 0) to 30 s (task 40)."""
    return 5.0 * 6000.0 ** (i / (STRAGGLER_TASKS - 1))


def straggler_records(seed: int = 3) -> list[MetricsRecord]:
    rng = np.random.default_rng(seed)
    return [record(f"d{i}", "diff", straggler_law(i) * math.exp(rng.normal(0, 0.05)),
                   run=f"r{r}")
            for r in range(RUNS) for i in range(STRAGGLER_TASKS)]


def test_stragglers_do_not_dominate_the_function_model() -> None:
    predictor = fitted(straggler_records())
    dist = predictor.exec_distribution("diff", MB, REF)
    assert dist.source.startswith("function:")
    median_task = straggler_law(20)  # 5 * sqrt(6000) = 387 ms
    mean_task = float(np.mean([straggler_law(i) for i in range(STRAGGLER_TASKS)]))
    assert mean_task > 8 * median_task
    assert dist.median_ms == pytest.approx(median_task, rel=0.15)
    # The residuals span the stragglers: the middle 80 % of tasks covers 6000 ** 0.8 ~ 1000x.
    assert dist.quantile(0.9) / dist.quantile(0.1) > 300
    assert dist.quantile(0.1) < 50 < 3000 < dist.quantile(0.9)


@pytest.mark.parametrize("i", [0, 7, 20, 33, 40])
def test_a_task_seen_before_is_predicted_from_its_own_history(i: int) -> None:
    predictor = fitted(straggler_records())
    dist = predictor.exec_distribution("diff", MB, REF, WF, f"d{i}")
    assert dist.source == "task"
    assert dist.samples == RUNS
    assert dist.median_ms == pytest.approx(straggler_law(i), rel=0.15)
    # The task's run-to-run spread (5 %) is far narrower than the function's.
    assert dist.quantile(0.9) / dist.quantile(0.1) < 1.5


def test_unseen_task_of_a_known_workflow_falls_back_to_the_function() -> None:
    predictor = fitted(straggler_records())
    dist = predictor.exec_distribution("diff", MB, REF, WF, "never-seen")
    assert dist.source.startswith("function:")
    assert predictor.exec_distribution("diff", MB, REF, "other-hash", "d40").source != "task"


# -- 3. repeats and shrinkage -------------------------------------------------------------
def test_task_seen_five_times_keeps_its_own_median_among_tasks_100x_slower() -> None:
    rng = np.random.default_rng(4)
    recs = [record("fast", "g", 100.0 * math.exp(rng.normal(0, 0.05)), run=f"r{r}")
            for r in range(5)]
    for i in range(12):
        base = 10_000.0 * 2.0 ** ((i - 6) / 6)  # 5 s .. 20 s, ~100x the fast task
        recs += [record(f"slow{i}", "g", base * math.exp(rng.normal(0, 0.05)), run=f"r{r}")
                 for r in range(5)]
    predictor = fitted(recs)
    func = predictor.exec_distribution("g", MB, REF)
    assert func.median_ms > 5_000
    own = predictor.exec_distribution("g", MB, REF, WF, "fast")
    assert own.source == "task" and own.samples == 5
    assert own.median_ms == pytest.approx(100.0, rel=0.1)


def shrinkage_case(sigma: float, tau: float, seed: int) -> tuple[float, float, float]:
    """Tasks with log-medians ~ N(log 1000, tau), each seen 4 times with noise ~ N(0, sigma),
    plus one task seen once at 1000 * e ** 1.5 ms. Returns (log own, log function,
    log predicted) for that task."""
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(40):
        base = 1000.0 * math.exp(tau * rng.normal())
        recs += [record(f"t{i}", "h", base * math.exp(sigma * rng.normal()), run=f"r{r}")
                 for r in range(4)]
    own = 1000.0 * math.exp(1.5)
    recs.append(record("once", "h", own, run="r0"))
    predictor = fitted(recs)
    func = predictor.exec_distribution("h", MB, REF).median_ms
    pred = predictor.exec_distribution("h", MB, REF, WF, "once")
    assert pred.source == "task" and pred.samples == 1
    return math.log(own), math.log(func), math.log(pred.median_ms)


@pytest.mark.parametrize(("sigma", "tau", "low", "high"), [
    # Empirical Bayes: a single sample is pulled toward the function by
    # sigma^2 / (sigma^2 + tau^2) of the way.
    (0.1, 1.0, 0.0, 0.06),   # expected pull 0.0099: tasks differ, repeats agree
    (0.5, 0.5, 0.3, 0.7),    # expected pull 0.5
    (0.8, 0.2, 0.75, 1.0),   # expected pull 0.94: tasks alike, repeats noisy
])
def test_a_single_sample_is_shrunk_in_proportion_to_the_spreads(
        sigma: float, tau: float, low: float, high: float) -> None:
    log_own, log_func, log_pred = shrinkage_case(sigma, tau, seed=5)
    pull = (log_own - log_pred) / (log_own - log_func)
    assert low <= pull <= high, (pull, sigma ** 2 / (sigma ** 2 + tau ** 2))


def test_more_repeats_are_shrunk_less() -> None:
    rng = np.random.default_rng(6)
    recs = []
    for i in range(40):
        base = 1000.0 * math.exp(0.4 * rng.normal())
        recs += [record(f"t{i}", "h", base * math.exp(0.4 * rng.normal()), run=f"r{r}")
                 for r in range(4)]
    # Two outlying tasks with the same observed median, one seen once, one seen 8 times.
    recs.append(record("one", "h", 5000.0, run="r0"))
    recs += [record("eight", "h", 5000.0 * f, run=f"r{r}")
             for r, f in enumerate((0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.1))]
    predictor = fitted(recs)
    func = predictor.exec_distribution("h", MB, REF).median_ms
    one = predictor.exec_distribution("h", MB, REF, WF, "one").median_ms
    eight = predictor.exec_distribution("h", MB, REF, WF, "eight").median_ms
    assert func < one < eight <= 5000.0 * 1.0001


# -- 4. physical clamps -------------------------------------------------------------------
RULE_MEMORIES = (512, 1769, 3008, 10240)


def rule_records(slowness, seed: int = 7, tasks: int = 12) -> list[MetricsRecord]:
    """Each task runs at every memory; time = base * slowness(memory), 3 % noise."""
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(tasks):
        base = 200.0 * 1.3 ** i
        for j, m in enumerate(RULE_MEMORIES):
            ms = base * slowness(m) * math.exp(rng.normal(0, 0.03))
            recs.append(record(f"t{i}", "cpu", ms, memory_mb=m, run=f"r{j}",
                               input_bytes=MB * (i + 1)))
    return recs


def all_rules(predictor: Predictor) -> list[MemoryRule]:
    h = predictor.hierarchy
    return [h.rule, *h.function_rules.values(), *(h.rule_for(f) for f in h.functions)]


@pytest.mark.parametrize(("a", "b"), [(1.0, 0.1), (0.6, 0.35)])
def test_memory_exponents_recovered_within_one_grid_step(a: float, b: float) -> None:
    truth = Platform(cpu_exponent=a, multicore_exponent=b)
    predictor = fitted(rule_records(truth.exec_factor))
    for rule in all_rules(predictor):
        assert rule.fitted
        assert 0.0 <= rule.cpu_exponent <= 1.0 and 0.0 <= rule.multicore_exponent <= 1.0
        assert rule.cpu_exponent == pytest.approx(a, abs=0.05 + 1e-9)
        assert rule.multicore_exponent == pytest.approx(b, abs=0.05 + 1e-9)
    if 0.0 < a < 1.0 and 0.0 < b < 1.0:
        assert predictor.hierarchy.rule.clamped == ()
    # The fitted rule predicts a task at a memory it has not been seen at.
    dist = predictor.exec_distribution("cpu", MB * 3, 2048, WF, "t2")
    expected = 200.0 * 1.3 ** 2 * truth.exec_factor(2048)
    assert dist.median_ms == pytest.approx(expected, rel=0.08)


def test_impossible_speedup_is_clamped_to_one_and_reported() -> None:
    # time ~ memory ** -3: tripling memory 27x faster, beyond perfect parallelism.
    predictor = fitted(rule_records(lambda m: (m / REF) ** -3.0))
    for rule in all_rules(predictor):
        assert rule.cpu_exponent == 1.0
        assert rule.multicore_exponent == 1.0
        assert "cpu_exponent" in rule.clamped
        assert "multicore_exponent" in rule.clamped
    summary = predictor.hierarchy.summary()
    assert "cpu_exponent" in summary.loc[0, "clamped"]


def test_slowdown_with_memory_is_clamped_to_zero_and_reported() -> None:
    # time grows with memory: no physical vCPU rule does that.
    predictor = fitted(rule_records(lambda m: (m / REF) ** 0.5))
    for rule in all_rules(predictor):
        assert rule.cpu_exponent == 0.0
        assert rule.multicore_exponent == 0.0
        assert set(rule.clamped) == {"cpu_exponent", "multicore_exponent"}


def test_exponent_no_data_identifies_keeps_the_platform_value() -> None:
    # Memories all above one vCPU: the sub-vCPU exponent cannot be measured.
    rng = np.random.default_rng(8)
    truth = Platform(multicore_exponent=0.5)
    recs = [record(f"t{i}", "cpu", 300.0 * (i + 1) * truth.exec_factor(m)
                   * math.exp(rng.normal(0, 0.02)), memory_mb=m, run=f"r{j}")
            for i in range(8) for j, m in enumerate((1769, 3538, 7076))]
    rule = fitted(recs).hierarchy.rule
    assert rule.cpu_exponent == Platform().cpu_exponent
    assert "cpu_exponent" not in rule.clamped
    assert rule.multicore_exponent == pytest.approx(0.5, abs=0.05 + 1e-9)


def test_exponent_fitted_from_distinct_tasks_of_one_size_at_several_memories() -> None:
    # Forty different tasks of one function, all on 1 MB of input, each run once at one
    # of four memories above one vCPU; truth: multicore_exponent 0.5. Observations of a
    # function at one input size are repeated work (fit_memory_rule's own definition of a
    # group), so the exponent is identified; the platform's 0.1 would predict 10240 MB
    # about 1.4x too slow.
    rng = np.random.default_rng(9)
    truth = Platform(multicore_exponent=0.5)
    memories = (1769, 3538, 7076, 10240)
    recs = [record(f"t{i}", "cpu", 100.0 * truth.exec_factor(memories[i % 4])
                   * math.exp(rng.normal(0, 0.03)), memory_mb=memories[i % 4])
            for i in range(40)]
    predictor = fitted(recs)
    assert predictor.hierarchy.rule_for("cpu").multicore_exponent == pytest.approx(
        0.5, abs=0.05 + 1e-9)
    at_max = predictor.exec_distribution("cpu", MB, 10240).median_ms
    assert at_max == pytest.approx(100.0 * truth.exec_factor(10240), rel=0.1)


def test_platform_rule_is_clamped_into_physical_range() -> None:
    rule = MemoryRule.of_platform(Platform(cpu_exponent=1.5, multicore_exponent=0.2))
    assert rule.cpu_exponent == 1.0 and rule.clamped == ("cpu_exponent",)
    assert not rule.fitted
    assert rule.factor(REF) == pytest.approx(1.0)
    # Half a vCPU at exponent 1: twice as slow; two vCPUs at 0.2: 2 ** -0.2.
    assert rule.factor(REF / 2) == pytest.approx(2.0)
    assert rule.factor(2 * REF) == pytest.approx(2 ** -0.2)


def test_memory_factor_enters_task_and_function_levels_alike() -> None:
    recs = rule_records(Platform().exec_factor)
    predictor = fitted(recs)
    # Tasks were seen at every memory; predicted at 512 MB they are 1769/512 = 3.455x
    # slower than at the reference (cpu_exponent 1).
    for tid, function in (("t5", "cpu"),):
        ref = predictor.exec_distribution(function, 6 * MB, REF, WF, tid).median_ms
        low = predictor.exec_distribution(function, 6 * MB, 512, WF, tid).median_ms
        assert low / ref == pytest.approx(REF / 512, rel=0.12)


# -- 5. coverage --------------------------------------------------------------------------
@task
def stage(*xs):
    return xs


def coverage_workflow() -> Workflow:
    """Fan-out of 8 tasks of two functions with different profiles, then a fan-in."""
    root = stage(SizedBlob("in", 2 * MB), task_id="root", profile=TaskProfile(300.0, 4 * MB))
    mids = [stage(root, task_id=f"m{i}", profile=TaskProfile(100.0 * (i + 1), MB // 2))
            for i in range(8)]
    return Workflow(stage(*mids, task_id="sink", profile=TaskProfile(800.0, 1000)),
                    name="cov", detect=False)


def test_p90_coverage_on_fresh_runs() -> None:
    wf = coverage_workflow()
    platform = Platform()
    truth = GroundTruth(wf, platform, noise=0.2)
    history = training_history(wf, platform, truth, runs=12, seed=11)
    predictor = fit_history(wf, records_to_frame(history), platform)
    fresh = records_to_frame(training_history(wf, platform, truth, runs=12, seed=12345))
    assert set(fresh["run_id"]) == {f"train-{i}" for i in range(12)}
    # Fresh runs really are new draws, not the history again.
    old = records_to_frame(history)
    assert not np.allclose(np.sort(old["exec_ms"]), np.sort(fresh["exec_ms"]))
    hits = []
    sources = set()
    for row in fresh.itertuples():
        dist = predictor.exec_distribution(row.function, row.input_bytes, row.memory_mb,
                                           row.workflow_hash, row.task)
        sources.add(dist.source)
        hits.append(row.exec_ms <= dist.quantile(0.9))
    assert sources == {"task"}
    coverage = float(np.mean(hits))
    assert 0.80 <= coverage <= 0.97, coverage
    # Medians: each task's prediction at the reference memory is its profile.
    for tid in ("root", "m0", "m7", "sink"):
        dist = predictor.exec_distribution(wf.node(tid).func.name, 0, REF,
                                           wf.structure_hash, tid)
        assert dist.median_ms == pytest.approx(wf.node(tid).profile.exec_ms, rel=0.12)
