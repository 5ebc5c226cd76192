"""Calibration recovers known platform parameters from simulated metrics."""

from __future__ import annotations

import pytest

import faasplan
from faasplan.calibrate import calibrate
from faasplan.cli import main
from faasplan.predictors import records_to_frame, save_metrics
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
