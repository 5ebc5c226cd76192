"""The fidelity experiment end to end, tiny: one workload, two planners, real Redis runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from faasplan.experiments.fidelity import (
    COMPONENTS,
    Measurements,
    _folds,
    components,
    evaluate,
    measure,
    measured_metrics,
)
from faasplan.simulator import Platform
from faasplan.workloads import wordcount
from faasplan.workloads.wordcount import bundled_text

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

PLANNERS = ("wukong", "uniform")


@pytest.fixture(scope="module")
def measured() -> Measurements:
    wf = wordcount(3, bundled_text() * 10)
    return measure({"wordcount": wf}, PLANNERS, runs=2, warmup_runs=1, probe_runs=1)


@pytest.fixture(scope="module")
def evaluated(measured: Measurements):
    return evaluate(measured, replicates=4)  # leave-plan-out


def test_measure_runs_every_cell_the_asked_number_of_times(measured):
    assert [(c.workload, c.planner) for c in measured.cells] == [
        ("wordcount", p) for p in PLANNERS]
    assert all(len(c.runs) == 2 for c in measured.cells)
    assert len(measured.probes["wordcount"]) == 2  # one per probe memory size
    wukong = measured.cell("wordcount", "wukong")
    assert all(p.worker is None for p in wukong.placements.values())
    assert all(t.makespan_ms > 0 and len(t.tasks) == 4 for t in wukong.runs)


def test_every_held_out_run_gets_a_finite_error(evaluated):
    runs, summary = evaluated.runs, evaluated.summary
    assert len(runs) == 2 * len(PLANNERS)  # leave-plan-out scores every run of every cell
    assert set(runs["run"]) == {0, 1}
    for column in ["error", "replay_error", *(f"{c}_error" for c in COMPONENTS)]:
        assert np.isfinite(runs[column].to_numpy(dtype=float)).all(), column
    assert (runs["sim_ms"] > 0).all()
    assert np.allclose(runs["error"], runs["sim_ms"] / runs["real_ms"] - 1.0)
    assert list(summary["planner"]) == list(PLANNERS)
    assert (summary["sim_p10_ms"] <= summary["sim_ms"]).all()
    assert (summary["sim_ms"] <= summary["sim_p90_ms"]).all()
    assert math.isfinite(evaluated.median_abs_error) and math.isfinite(evaluated.noise_floor)


def test_leave_plan_out_never_learns_from_the_runs_it_scores(measured):
    folds = {f.cell.planner: f for f in _folds(measured, "plan", 1, "first", "workload")}
    for planner, fold in folds.items():
        own = {id(t) for t in measured.cell("wordcount", planner).runs}
        learned = {id(t) for t in (*fold.platform_runs, *fold.fit_runs)}
        assert learned and not learned & own
        assert fold.scored == (0, 1)
    peeking = _folds(measured, "runs", 1, "first", "workload")
    assert any(id(f.cell.runs[0]) in {id(t) for t in f.fit_runs} for f in peeking)
    with pytest.raises(ValueError, match="at least two workloads"):
        evaluate(measured, holdout="workload")


def test_the_emulator_is_simulated_on_one_host(measured, evaluated):
    cores = measured.settings["cpus"]
    assert all(p.host_cores == cores for p in evaluated.platforms.values())
    dedicated = evaluate(measured, replicates=4, host_model=False)
    assert all(math.isinf(p.host_cores) for p in dedicated.platforms.values())


def test_calibration_moves_the_platform_toward_what_was_measured(measured, evaluated):
    # The platform of the uniform cell is calibrated on the wukong cell's runs.
    training = list(measured.cell("wordcount", "wukong").runs)
    workers = pd.concat([t.workers.assign(run=i) for i, t in enumerate(training)])
    firsts, delays = [], []
    for _, run in workers.groupby("run"):
        run = run.sort_values("start_ms")
        firsts += run.drop_duplicates("container")["startup_ms"].tolist()
        first = run.iloc[0]
        delays.append(first["start_ms"] - first["invoked_ms"] - first["startup_ms"])
    platform, default = evaluated.platforms["wordcount/-uniform"], Platform()
    # The emulator's processes are warm: a sandbox's first start in a run takes ms, not
    # the default's cold start of hundreds of ms.
    measured_start = float(np.median(firsts))
    assert abs(platform.cold_start_ms - measured_start) < \
        abs(default.cold_start_ms - measured_start)
    measured_delay = float(np.median(delays))
    assert abs(platform.invocation_base_ms - measured_delay) < \
        abs(default.invocation_base_ms - measured_delay)
    assert platform.client_bandwidth_mb_s == math.inf


def test_simulated_components_are_sums_over_the_simulated_tasks(evaluated):
    trace = evaluated.simulated[("wordcount", "wukong")]
    parts = components(trace)
    assert parts["execution"] == pytest.approx(float(trace.tasks["exec_ms"].sum()))
    assert all(v >= 0 for v in parts.values())


def test_measured_metrics_use_the_execution_interval_unless_asked(measured):
    trace = measured.cells[0].runs[0]
    spans = trace.tasks.set_index("task")
    spans = (spans["exec_end_ms"] - spans["exec_start_ms"])
    interval = measured_metrics([trace], "x").set_index("task")["exec_ms"]
    function = measured_metrics([trace], "x", exec_time="function").set_index("task")["exec_ms"]
    assert np.allclose(interval.loc[spans.index], spans.clip(lower=0.0))
    assert (function <= interval.loc[function.index] + 1e-6).all()


def test_saved_measurements_evaluate_the_same(measured, evaluated, tmp_path):
    path = tmp_path / "m.pkl"
    measured.save(path)
    again = evaluate(Measurements.load(path), replicates=4)
    # The reloaded workflow encodes to a few bytes more or less (code pickled again),
    # which moves the simulated DAG upload by microseconds.
    pd.testing.assert_frame_equal(again.runs, evaluated.runs, check_exact=False, rtol=1e-3,
                                  atol=1e-3)


def test_evaluate_needs_a_held_out_run(measured):
    with pytest.raises(ValueError, match="training_runs must be between 1 and 1"):
        evaluate(measured, holdout="runs", training_runs=2)


def test_measure_rejects_no_runs():
    with pytest.raises(ValueError, match="need runs >= 1"):
        measure({}, runs=0)


def test_core_time_shares_the_host_while_intervals_overlap():
    from faasplan.experiments.fidelity import core_ms

    # Two cores: alone a task has a whole core; three at once share two.
    starts = np.array([0.0, 0.0, 0.0, 10.0])
    ends = np.array([3.0, 3.0, 3.0, 12.0])
    assert core_ms(starts, ends, 2.0) == pytest.approx([2.0, 2.0, 2.0, 2.0])
    assert core_ms(starts, ends, 8.0) == pytest.approx(ends - starts)


def test_measured_core_time_is_at_most_the_interval(measured):
    trace = measured.cells[0].runs[0]
    interval = measured_metrics([trace], "x").set_index("task")["exec_ms"]
    core = measured_metrics([trace], "x", host_cores=1.0).set_index("task")["exec_ms"]
    assert (core <= interval + 1e-9).all() and (core > 0).any()
