"""Joint draws as a random-effects model: run effects, function-in-run effects and
within-run residuals that depend on input size.

The records are generated from a known random-effects law, so every expectation follows from
it: a run factor shared by all tasks of a run, a factor shared by one function's tasks in a
run, and per-task noise whose spread shrinks with input size.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from faasplan import Platform, TaskProfile, Workflow, task
from faasplan.experiments.predict import critical_path_draws
from faasplan.predictors import MetricsRecord, Predictor, fit
from faasplan.predictors.hierarchy import WithinResiduals, smoothed_effects
from faasplan.workflow import SizedBlob

KB = 1_000
REF = 1769


@task
def split(x):
    return x


@task
def work(x, data):
    return x


@task
def merge(*xs):
    return xs


WORK, MERGE = work.name, merge.name


def fan(width: int, name: str) -> Workflow:
    """split -> ``width`` parallel ``work`` tasks of growing input -> merge."""
    root = split(SizedBlob("in", KB), task_id="split", profile=TaskProfile(100.0, KB))
    mids = [work(root, SizedBlob(f"d{i}", (1 + i % 20) * KB), task_id=f"w{i}",
                 profile=TaskProfile(100.0, KB)) for i in range(width)]
    return Workflow(merge(*mids, task_id="merge", profile=TaskProfile(100.0, KB)),
                    name=name, detect=False)


def law_run(run: str, width: int, rng: np.random.Generator, *, run_sigma: float = 0.25,
            function_sigma: float = 0.3) -> tuple[list[MetricsRecord], float]:
    """Records of one run of ``fan(width)`` and its critical path (ms).

    ``work`` takes ``50 ms * input KB`` times: the run's factor, its own factor in this run,
    and noise with log sd ``1.0`` below 10 KB of input and ``0.1`` above.
    """
    run_f = math.exp(rng.normal(0, run_sigma))
    work_f = math.exp(rng.normal(0, function_sigma))
    wf = fan(width, f"fan-{width}")
    records = []
    times: dict[str, float] = {}
    for tid in wf.topological_order:
        node = wf.node(tid)
        fn = node.func.name
        if fn == WORK:
            kb = (1 + int(tid[1:]) % 20) + 1  # its data plus the root's output
            sigma = 1.0 if kb <= 10 else 0.1
            ms = 50.0 * kb * run_f * work_f * math.exp(rng.normal(0, sigma))
            nbytes = kb * KB
        else:
            ms = 200.0 * run_f * math.exp(rng.normal(0, 0.05))
            nbytes = KB if fn == split.name else width * KB
        times[tid] = ms
        records.append(MetricsRecord(wf.structure_hash, run, "history", tid, fn, REF,
                                     nbytes, KB, ms))
    path = times["split"] + max(times[f"w{i}"] for i in range(width)) + times["merge"]
    return records, path


def history(runs: int, seed: int, widths: tuple[int, ...] = (60, 90, 120)
            ) -> list[MetricsRecord]:
    rng = np.random.default_rng(seed)
    out: list[MetricsRecord] = []
    for r in range(runs):
        out.extend(law_run(f"run-{r}", widths[r % len(widths)], rng)[0])
    return out


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return fit(history(12, seed=5), platform=Platform())


def test_within_run_spread_depends_on_input_size(predictor: Predictor) -> None:
    within = predictor.hierarchy.within[WORK]
    assert len(within.bins) >= 2
    small, large = within.at(3 * KB), within.at(19 * KB)
    spread = [math.log(b.quantile(0.9) / b.quantile(0.1)) for b in (small, large)]
    # log sd 1.0 vs 0.1: the p10-p90 range is 2.56 sigma in log space
    assert spread[0] == pytest.approx(2.56, rel=0.3)
    assert spread[1] < 0.35 * spread[0]
    dist = predictor.exec_distribution(WORK, 19 * KB, REF)
    assert dist.within_residuals is large
    # the marginal spread keeps the shared effects the within-run one does not
    assert dist.residuals.quantile(0.9) > large.quantile(0.9)


def test_shared_effects_are_recovered(predictor: Predictor) -> None:
    h = predictor.hierarchy
    fn = np.log(np.asarray(h.function_effects[WORK].values))
    run = np.log(np.asarray(h.run_effects.values))
    # The run effect is the median over a run's tasks, most of them `work`: it carries
    # work's own effect, and the split's and merge's effects then carry minus it. What is
    # identified is work's total shared spread, sqrt(0.25^2 + 0.3^2) = 0.39 in the law
    # (12 runs: within a factor of about 1.5).
    total = math.sqrt(float(np.var(fn)) + float(np.var(run)))
    assert 0.26 < total < 0.6
    assert float(np.std(np.log(h.function_effects[MERGE].values))) > 0.15
    # a function with one task per run has no within-run spread of its own
    only = h.within[MERGE].bins[0]
    assert only.quantile(0.9) == pytest.approx(only.quantile(0.1))


def test_critical_path_interval_covers_new_runs_of_a_new_width(predictor: Predictor) -> None:
    rng = np.random.default_rng(99)
    inside = []
    wf = fan(150, "fan-150")  # wider than any run of the history
    draws, table = critical_path_draws(wf, predictor, REF, 2000, np.random.default_rng(1))
    assert set(table["source"]) == {"function:power", "function:median"} or all(
        s.startswith("function") for s in table["source"])
    p10, p90 = np.quantile(draws, [0.1, 0.9])
    for _ in range(200):
        _, path = law_run("new", 150, rng)
        inside.append(p10 <= path <= p90)
    # an 80 % interval from 12 past runs: 200 fresh runs put about 160 inside
    assert 0.7 <= float(np.mean(inside)) <= 0.95, np.mean(inside)


def test_independent_draws_would_miss_the_slowest_of_many() -> None:
    """The law's maximum of 150 tasks, against the same tasks drawn from one pooled
    spread: pooling gives small inputs' spread to large ones and over-states the maximum."""
    records = history(12, seed=5)
    pooled = fit(records, platform=Platform())
    wf = fan(150, "fan-150")
    draws, _ = critical_path_draws(wf, pooled, REF, 2000, np.random.default_rng(1))
    rng = np.random.default_rng(7)
    truth = np.median([law_run("t", 150, rng)[1] for _ in range(200)])
    assert np.median(draws) == pytest.approx(truth, rel=0.25)


def test_smoothed_effects_widen_for_a_new_group_and_keep_the_centre() -> None:
    observed = np.log([0.8, 0.9, 1.0, 1.1, 1.25])
    dist = smoothed_effects(observed)
    logs = np.log(np.asarray(dist.values))
    k = len(observed)
    assert float(np.std(logs)) == pytest.approx(np.std(observed, ddof=1) * math.sqrt((k + 1) / k),
                                                rel=1e-6)
    assert float(np.mean(logs)) == pytest.approx(float(np.mean(observed)), abs=1e-9)
    assert max(dist.values) > 1.25 and min(dist.values) < 0.8
    assert smoothed_effects(observed).values == dist.values  # deterministic
    assert smoothed_effects(np.log([1.3])).values == (1.0,)
    assert smoothed_effects(np.log([1.3, 1.3])).values == (pytest.approx(1.3),)


def test_within_residuals_bins_by_input_size() -> None:
    lx = np.log(np.arange(1, 1001, dtype=float))
    resid = np.where(lx < np.log(500), 1.0, 0.0) * np.tile([-1.0, 1.0], 500)
    within = WithinResiduals.of(lx, resid)
    assert len(within.bins) == 8
    assert within.at(10).quantile(0.9) == pytest.approx(math.e)
    assert within.at(990).quantile(0.9) == pytest.approx(1.0)
    few = WithinResiduals.of(lx[:50], resid[:50])
    assert len(few.bins) == 1 and few.edges == ()
