"""Calibration recovers known platform parameters from simulated metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import faasplan
from faasplan.cli import main
from faasplan.predictors import records_to_frame, save_metrics
from faasplan.predictors.calibrate import calibrate, exec_memory_exponents
from faasplan.simulator import GroundTruth, Platform, simulate
from faasplan.worker import Placement
from faasplan.workloads import gemm

TRUE = Platform(storage_latency_ms=3.0, worker_bandwidth_mb_s_at_1024=40.0,
                worker_bandwidth_exponent=0.7, cold_start_ms=400.0, cold_start_sigma=0.2,
                warm_start_ms=12.0, keep_alive_s=1.0, storage_bandwidth_mb_s=float("inf"))


@pytest.fixture(scope="module")
def metrics():
    wf = gemm(n=256, block=64)
    truth = GroundTruth(wf, TRUE, profiles=faasplan.profile(wf))
    records = []
    for i in range(8):
        memory = (512, 1024, 2048, 3008)[i % 4]
        plan = {t: Placement(f"w-{t}", memory) for t in wf}
        records += simulate(wf, plan, TRUE, seed=i, behaviour=truth).metrics(run_id=str(i))
    return records_to_frame(records)


def test_calibrate_recovers_known_parameters_within_10_percent(metrics):
    platform, report = calibrate(metrics)
    for name in ("storage_latency_ms", "worker_bandwidth_mb_s_at_1024",
                 "worker_bandwidth_exponent", "cold_start_ms", "cold_start_sigma",
                 "warm_start_ms"):
        assert report[name]["fitted"], name
        assert getattr(platform, name) == pytest.approx(getattr(TRUE, name), rel=0.10), name
    assert platform.cold_start_memory_exponent == pytest.approx(0.05, abs=0.02)


def test_calibrate_keeps_defaults_it_cannot_identify(metrics):
    no_starts = metrics.assign(startup="none", startup_ms=0.0)
    platform, report = calibrate(no_starts)
    assert not report["cold_start_ms"]["fitted"]
    assert platform.cold_start_ms == Platform().cold_start_ms
    assert report["storage_latency_ms"]["fitted"]


def test_calibrate_cli_writes_a_platform_file_that_scenarios_accept(metrics, tmp_path, capsys):
    path = tmp_path / "m.parquet"
    save_metrics(metrics, path)
    out = tmp_path / "platform.toml"
    assert main(["calibrate", str(path), "--out", str(out)]) == 0
    loaded = Platform.from_toml(out)
    assert loaded.warm_start_ms == pytest.approx(12.0, rel=0.1)
    scenario = tmp_path / "s.toml"
    scenario.write_text("[workflow]\nworkload = 'tree_reduction'\nparams = { leaves = 4 }\n"
                        f"[platform]\nfile = '{out.name}'\n[history]\ntraining_runs = 2\n")
    capsys.readouterr()
    assert main(["simulate", str(scenario), "--json"]) == 0
    assert '"makespan_ms"' in capsys.readouterr().out


# -- execution speed and memory ---------------------------------------------------------------
def test_calibrate_fits_the_memory_speed_rule_of_the_platform(metrics):
    # The fixture's runs span 512-3008 MB: both sides of one vCPU (1769 MB).
    platform, report = calibrate(metrics)
    assert report["cpu_exponent"]["fitted"] and report["multicore_exponent"]["fitted"]
    assert platform.cpu_exponent == pytest.approx(TRUE.cpu_exponent, abs=0.1)
    assert platform.multicore_exponent == pytest.approx(TRUE.multicore_exponent, abs=0.1)


def test_memory_rule_is_robust_to_a_few_slow_executions(metrics):
    rng = np.random.default_rng(0)
    slowed = metrics.copy()
    small = np.flatnonzero(slowed["memory_mb"].to_numpy() == 512)
    hit = rng.choice(small, size=len(metrics) // 50, replace=False)
    slowed.loc[hit, "exec_ms"] *= 20.0  # e.g. a busy machine during some runs
    clean = exec_memory_exponents(metrics)
    noisy = exec_memory_exponents(slowed)
    assert noisy["cpu_exponent"] == pytest.approx(clean["cpu_exponent"], abs=0.1)


def test_memory_rule_is_zero_when_memory_does_not_matter(metrics):
    flat = metrics.copy()
    rng = np.random.default_rng(1)
    levels = {f: 5.0 * (i + 1) for i, f in enumerate(sorted(flat["function"].unique()))}
    flat["exec_ms"] = [levels[f] * float(np.exp(0.1 * rng.standard_normal()))
                       for f in flat["function"]]
    found = exec_memory_exponents(flat)
    assert set(found) == {"cpu_exponent", "multicore_exponent"}
    assert all(0.0 <= v < 0.05 for v in found.values())


def test_memory_rule_needs_two_memory_sizes(metrics):
    one = metrics[metrics["memory_mb"] == 1024]
    assert exec_memory_exponents(one) == {}
    platform, report = calibrate(one)
    assert not report["cpu_exponent"]["fitted"]
    assert platform.cpu_exponent == Platform().cpu_exponent


def test_memory_rule_uses_one_exponent_when_sides_cannot_be_told_apart(metrics):
    # One size below and one above one vCPU: only the overall slope is identified.
    two = metrics[metrics["memory_mb"].isin([512, 3008])]
    found = exec_memory_exponents(two)
    assert found["cpu_exponent"] == found["multicore_exponent"] > 0


# -- worker tables ----------------------------------------------------------------------------
def _workers(run: str, t0: float) -> pd.DataFrame:
    """One run: containers 7 and 8 start once, then each serves one more invocation."""
    return pd.DataFrame({
        "run_id": run, "worker": ["a", "b", "c", "d"], "memory_mb": 1024,
        "invoked_ms": [t0, t0, t0 + 40.0, t0 + 60.0],
        "start_ms": [t0 + 12.0, t0 + 14.0, t0 + 46.0, t0 + 66.0],
        "startup_state": "warm", "startup_ms": [10.0, 11.0, 2.0, 3.0],
        "queued_ms": 0.0, "container": [7, 8, 7, 8]})


def test_warm_pool_maps_first_starts_to_cold_and_reuses_to_warm(metrics):
    workers = pd.concat([_workers(r, 100.0 * i) for i, r in enumerate("xyz")],
                        ignore_index=True)
    platform, report = calibrate(metrics, workers=workers, warm_pool=True)
    assert report["cold_start_ms"]["samples"] == 6 and report["warm_start_ms"]["samples"] == 6
    assert platform.cold_start_ms == pytest.approx(np.sqrt(10.0 * 11.0), rel=0.01)
    assert platform.warm_start_ms == pytest.approx(2.5)
    # The emulator called every start warm: without the mapping nothing looks cold.
    _, report = calibrate(metrics, workers=workers)
    assert not report["cold_start_ms"]["fitted"] and report["warm_start_ms"]["samples"] == 12
    # Each run's first start waited for nothing: 12 - 0 - 10 ms.
    assert platform.invocation_base_ms == pytest.approx(2.0)


def test_invocation_latency_is_recovered_from_simulated_worker_tables():
    wf = gemm(n=128, block=64)
    true = TRUE.replace(invocation_base_ms=7.0, invocation_ms_per_kib=0.0)
    truth = GroundTruth(wf, true, profiles=faasplan.profile(wf))
    traces = [simulate(wf, None, true, seed=i, behaviour=truth) for i in range(3)]
    metrics = records_to_frame([r for t in traces for r in t.metrics()])
    workers = pd.concat([t.workers.assign(run_id=str(i)) for i, t in enumerate(traces)])
    platform, report = calibrate(metrics, workers=workers)
    assert report["invocation_base_ms"] == {"value": platform.invocation_base_ms,
                                            "samples": 3, "fitted": True}
    assert platform.invocation_base_ms == pytest.approx(7.0, rel=0.01)


def test_calibrate_names_missing_worker_columns(metrics):
    with pytest.raises(ValueError, match=r"workers table lacks columns \['container'\]"):
        calibrate(metrics, workers=_workers("x", 0.0).drop(columns="container"))
