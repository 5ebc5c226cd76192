"""The faasplan command on scenario files, traces and module targets."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from faasplan.cli import main
from faasplan.data import trace_path
from faasplan.planners import planner_names

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))
FAST = "wukong,uniform-opt,heft"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_bundled_scenario_compares(capsys, tmp_path):
    assert len(SCENARIOS) >= 14
    for path in SCENARIOS:
        big = "1738" in path.name or "98" in path.name or "1001" in path.name
        planners = "wukong,uniform" if big else FAST
        rows = run_json(capsys, "compare", str(path), "--replicates", "2",
                        "--planners", planners)
        assert [r["planner"] for r in rows] == planners.split(","), path.name
        for r in rows:
            assert r["makespan_p50_ms"] > 0 and r["cost_usd"] > 0, path.name


def test_compare_trace_json_has_every_planner_with_the_documented_keys(capsys):
    rows = run_json(capsys, "compare", str(trace_path("montage_58t.json")), "--replicates", "3")
    assert [r["planner"] for r in rows] == list(planner_names())
    keys = {"planner", "makespan_p50_ms", "makespan_p95_ms", "cost_usd", "cold_starts",
            "storage_bytes", "planning_ms"}
    for r in rows:
        assert keys <= set(r)
        assert r["makespan_p95_ms"] >= r["makespan_p50_ms"] > 0


def test_compare_writes_the_report(capsys, tmp_path):
    out = tmp_path / "report"
    assert main(["compare", str(ROOT / "scenarios" / "quickstart.toml"), "--replicates", "3",
                 "--planners", "wukong,uniform-opt", "--out", str(out)]) == 0
    for name in ("report.html", "runs.csv", "summary.csv", "makespan_cdf.png",
                 "cost_vs_makespan.png", "gantt_wukong.png", "gantt_uniform-opt.png"):
        assert (out / name).stat().st_size > 0, name
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 6 and set(runs["planner"]) == {"wukong", "uniform-opt"}
    html = (out / "report.html").read_text()
    assert "uniform-opt" in html and html.count("<img") >= 4


def test_simulate_json_and_metrics_out(capsys, tmp_path):
    metrics = tmp_path / "m.parquet"
    one = run_json(capsys, "simulate", "faasplan.workloads:tree_reduction", "--planner",
                   "uniform", "--metrics-out", str(metrics))
    assert one["planner"] == "uniform" and one["tasks"] == 127
    assert isinstance(one["makespan_ms"], float) and one["makespan_ms"] > 0
    assert {"cost_usd", "cold_starts", "storage_bytes"} <= set(one)
    many = run_json(capsys, "simulate", "faasplan.workloads:tree_reduction", "--replicates", "4")
    assert isinstance(many["makespan_ms"], list) and len(many["makespan_ms"]) == 4
    df = pd.read_parquet(metrics)
    assert len(df) == 127 and set(df["planner"]) == {"uniform"}


def test_same_seed_same_result_different_seed_differs(capsys):
    target = str(trace_path("epigenomics_41t.json"))
    a = run_json(capsys, "simulate", target, "--seed", "3", "--replicates", "3")
    b = run_json(capsys, "simulate", target, "--seed", "3", "--replicates", "3")
    c = run_json(capsys, "simulate", target, "--seed", "4", "--replicates", "3")
    assert a["makespan_ms"] == b["makespan_ms"]
    assert a["makespan_ms"] != c["makespan_ms"]


def test_plan_out_then_fit(capsys, tmp_path):
    plan_path = tmp_path / "plan.json"
    data = run_json(capsys, "plan", "faasplan.workloads:gemm", "--planner", "heft", "--out",
                    str(plan_path))
    assert data["planner"] == "heft" and len(data["placements"]) == 113
    assert json.loads(plan_path.read_text())["placements"] == data["placements"]
    metrics = tmp_path / "m.parquet"
    assert main(["simulate", "faasplan.workloads:gemm", "--replicates", "6",
                 "--metrics-out", str(metrics)]) == 0
    capsys.readouterr()
    report = run_json(capsys, "fit", str(metrics))
    assert report["models"]
    first = report["models"][0]
    assert {"function", "model", "samples", "mdape_ours", "mdape_baseline",
            "p90_coverage"} <= set(first)


def test_planners_lists_the_registry(capsys):
    rows = run_json(capsys, "planners")
    assert [r["planner"] for r in rows] == list(planner_names(extras=True))
    assert "saga:HEFT" in {r["planner"] for r in rows}  # the saga extra is in dev


@pytest.mark.parametrize(("text", "key"), [
    ("[workflow]\nworkload = 'gemm'\ncolour = 1\n", "workflow.colour"),
    ("[workflow]\nworkload = 'gemm'\n[scenario]\nreplicates = 'many'\n", "scenario.replicates"),
    ("[workflow]\nworkload = 'gemm'\n[scenario]\nreplicates = -3\n", "scenario.replicates"),
    ("[workflow]\nwfformat = 'nope.json'\n", "workflow.wfformat"),
    ("[workflow]\nworkload = 'gemm'\n[planning]\nplanners = ['wukong', 'magic']\n",
     r"planning.planners\[1\]"),
    ("[workflow]\nworkload = 'nosuch'\n", "workflow.workload"),
    ("[workflow]\nworkload = 'gemm'\nparams = { n = 250, block = 64 }\n", "workflow.params"),
    ("[workflow]\nworkload = 'gemm'\n[platform]\nwarp_speed = 9\n", "platform"),
    ("[workflow]\nworkload = 'gemm'\n[planning]\nsla = 'p101x'\n", "planning.sla"),
    ("[workflow]\n", "workflow"),
])
def test_bad_scenarios_exit_2_naming_the_key(capsys, tmp_path, text, key):
    path = write(tmp_path, text)
    code = main(["compare", str(path), "--replicates", "1", "--planners", "wukong"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(path) in err
    assert pytest.importorskip("re").search(key, err), err


def test_bad_targets_and_flags_exit_2(capsys, tmp_path):
    assert main(["simulate", str(tmp_path / "missing.toml")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["simulate", "no_such_module_xyz:fn"]) == 2
    assert "cannot import" in capsys.readouterr().err
    assert main(["simulate", "faasplan.workloads:gemm", "--planner", "magic"]) == 2
    assert "unknown planner 'magic'" in capsys.readouterr().err
    assert main(["simulate", "faasplan.workloads:gemm", "--replicates", "0"]) == 2
    assert main(["compare", "faasplan.workloads:gemm", "--replicates", "-1"]) == 2
    bad_trace = write(tmp_path, '{"workflow": {}}', "t.json")
    assert main(["compare", str(bad_trace)]) == 2
    assert "t.json" in capsys.readouterr().err


def test_help_of_every_command_shows_examples(capsys):
    for cmd in ("simulate", "plan", "compare", "fit", "run", "sweep", "calibrate", "worker"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        assert "examples:" in capsys.readouterr().out, cmd


def test_sweep_locally_over_a_grid(capsys, tmp_path):
    scenario = write(tmp_path, "[workflow]\nworkload = 'tree_reduction'\n"
                               "params = { leaves = 8 }\n[planning]\nplanners = ['wukong']\n"
                               "[history]\ntraining_runs = 2\n")
    rows = run_json(capsys, "sweep", str(scenario), "--grid", "workflow.params.leaves=4,16",
                    "--grid", "platform.cold_start_ms=100,900", "--replicates", "2",
                    "--workers", "2", "--out", str(tmp_path / "sw"))
    assert len(rows) == 4
    assert {(r["workflow.params.leaves"], r["platform.cold_start_ms"]) for r in rows} == {
        (4, 100), (4, 900), (16, 100), (16, 900)}
    slow = {r["workflow.params.leaves"]: r for r in rows if r["platform.cold_start_ms"] == 900}
    fast = {r["workflow.params.leaves"]: r for r in rows if r["platform.cold_start_ms"] == 100}
    assert all(slow[k]["makespan_p50_ms"] > fast[k]["makespan_p50_ms"] for k in (4, 16))
    assert (tmp_path / "sw" / "sweep.parquet").stat().st_size > 0


def test_sweep_on_a_dask_cluster_gives_the_same_rows(capsys, tmp_path):
    distributed = pytest.importorskip("distributed")
    # No in-process profiling: measured times would differ between processes.
    scenario = write(tmp_path, "[workflow]\nworkload = 'tree_reduction'\nprofile = false\n"
                               "params = { leaves = 8 }\n[planning]\nplanners = ['uniform']\n"
                               "[history]\ntraining_runs = 2\n")
    local = run_json(capsys, "sweep", str(scenario), "--grid", "workflow.params.leaves=4,8",
                     "--replicates", "2", "--workers", "1")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        remote = run_json(capsys, "sweep", str(scenario), "--grid",
                          "workflow.params.leaves=4,8", "--replicates", "2", "--dask",
                          cluster.scheduler_address)
    for rows in (local, remote):
        for row in rows:
            row.pop("planning_ms")
    assert remote == local


def test_bad_grid_exits_2(capsys, tmp_path):
    scenario = write(tmp_path, "[workflow]\nworkload = 'tree_reduction'\n")
    assert main(["sweep", str(scenario), "--grid", "workflow.params.leaves"]) == 2
    assert "KEY.PATH=V1,V2" in capsys.readouterr().err
    assert main(["sweep", str(scenario), "--grid", "workflow.bogus=1,2"]) == 2
    assert "workflow.bogus" in capsys.readouterr().err


def test_compare_history_replans_every_workflow_type_of_a_metrics_store(capsys, tmp_path):
    metrics = tmp_path / "m.parquet"
    for target in ("faasplan.workloads:tree_reduction", str(trace_path("blast_43t.json"))):
        assert main(["simulate", target, "--replicates", "4", "--metrics-out",
                     str(metrics)]) == 0
    capsys.readouterr()
    rows = run_json(capsys, "compare", "--history", str(metrics), "--planners",
                    "wukong,uniform", "--replicates", "3")
    assert {(r["workflow"], r["planner"]) for r in rows} == {
        ("tree_reduction", "wukong"), ("tree_reduction", "uniform"),
        ("makeflow-blast-small", "wukong"), ("makeflow-blast-small", "uniform")}
    tree = [r for r in rows if r["workflow"] == "tree_reduction"]
    assert all(r["records"] == 4 * 127 for r in tree)


def test_compare_history_without_catalog_says_how_to_fix(capsys, tmp_path):
    from faasplan.predictors import save_metrics

    src = tmp_path / "a.parquet"
    assert main(["simulate", "faasplan.workloads:wordcount", "--metrics-out", str(src)]) == 0
    bare = tmp_path / "bare.parquet"
    from faasplan.predictors import load_metrics

    save_metrics(load_metrics(src), bare)
    capsys.readouterr()
    assert main(["compare", "--history", str(bare)]) == 2
    assert "faasplan compare TARGET --history" in capsys.readouterr().err


def test_run_on_real_redis_writes_gantt_and_metrics_store(capsys, tmp_path):
    out = tmp_path / "runs"
    data = run_json(capsys, "run", "faasplan.workloads:tree_reduction", "--planner", "wukong",
                    "--out", str(out))
    from faasplan.workflow.local import run_local
    from faasplan.workloads import tree_reduction

    assert data["result"] == run_local(tree_reduction()).tolist()
    assert data["tasks"] == 127 and data["makespan_ms"] > 0
    assert Path(data["gantt"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_parquet(out / "metrics.parquet")) == 127
    data = run_json(capsys, "run", "faasplan.workloads:gemm", "--planner", "non-uniform-opt",
                    "--out", str(out))
    assert len(pd.read_parquet(out / "metrics.parquet")) == 127 + 113
    # after a real run, how far the prediction was, and advice when it was far
    ratio = data["makespan_ms"] / data["predicted_makespan_ms"]
    assert data["actual_over_predicted"] == pytest.approx(ratio)
    far = not 0.8 <= ratio <= 1.25
    assert (data["advice"] is not None) == far
    if far:
        assert "faasplan calibrate" in data["advice"]
        assert str(out / "metrics.parquet") in data["advice"]
    rows = run_json(capsys, "compare", "--history", str(out / "metrics.parquet"),
                    "--planners", "wukong", "--replicates", "2")
    assert {r["workflow"] for r in rows} == {"tree_reduction", "gemm"}


def test_prediction_advice_only_when_far_and_names_the_metrics():
    from faasplan.cli import prediction_advice

    assert prediction_advice(500.0, 448.0, Path("m.parquet")) is None
    assert prediction_advice(448.0 / 1.2, 448.0, Path("m.parquet")) is None
    slow = prediction_advice(7721.0, 448.0, Path("runs/m.parquet"))
    assert slow is not None and "17.2x" in slow and "faasplan calibrate runs/m.parquet" in slow
    fast = prediction_advice(100.0, 448.0, None)
    assert fast is not None and "0.2x" in fast and "--no-files" in fast
    assert prediction_advice(100.0, float("nan"), None) is None
