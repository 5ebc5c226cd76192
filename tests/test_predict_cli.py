"""Histories of real runs in the CLI: predict, fit and compare on WfFormat traces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from faasplan.cli import main


def fan_trace(width: int, work_s: float = 2.0, name: str = "fan", prefix: str = "") -> dict:
    """split -> ``width`` x work -> merge; work i runs ``work_s * (1 + i % 3)`` seconds."""
    tasks, execution, files = [], [], [{"id": "input", "sizeInBytes": 1000 * width}]
    split, merge = f"{prefix}split_ID0000000", f"{prefix}merge_ID9999999"
    works = [f"{prefix}work_ID{i + 1:07d}" for i in range(width)]
    tasks.append({"id": split, "name": split, "category": f"{prefix}split", "parents": [],
                  "children": works, "inputFiles": ["input"],
                  "outputFiles": [f"part{i}" for i in range(width)]})
    execution.append({"id": split, "runtimeInSeconds": 0.5 + 0.01 * width})
    for i, w in enumerate(works):
        files += [{"id": f"part{i}", "sizeInBytes": 1000}, {"id": f"out{i}", "sizeInBytes": 10}]
        tasks.append({"id": w, "name": w, "category": f"{prefix}work", "parents": [split],
                      "children": [merge], "inputFiles": [f"part{i}"],
                      "outputFiles": [f"out{i}"]})
        execution.append({"id": w, "runtimeInSeconds": work_s * (1 + i % 3)})
    files.append({"id": "final", "sizeInBytes": 10})
    tasks.append({"id": merge, "name": merge, "category": f"{prefix}merge", "parents": works,
                  "children": [], "inputFiles": [f"out{i}" for i in range(width)],
                  "outputFiles": ["final"]})
    execution.append({"id": merge, "runtimeInSeconds": 1.0})
    return {"name": name, "schemaVersion": "1.5",
            "workflow": {"specification": {"tasks": tasks, "files": files},
                         "execution": {"makespanInSeconds": 10.0, "tasks": execution}}}


def write(tmp_path: Path, doc: Any, name: str) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    data = json.loads(out) if code == 0 and "--json" in argv else None
    return code, data, err


@pytest.fixture
def history(tmp_path: Path) -> list[str]:
    return [write(tmp_path, fan_trace(w), f"fan-{w}.json") for w in (4, 6, 8)]


def test_predict_json_has_the_documented_shape(capsys, tmp_path, history):
    target = write(tmp_path, fan_trace(12), "fan-12.json")
    code, data, err = run(capsys, "predict", target, "--history", *history, "--json")
    assert code == 0, err
    assert len(data["tasks"]) == 14
    row = data["tasks"][0]
    assert set(row) == {"task", "function", "exec_ms_p50", "exec_ms_p90", "samples", "source"}
    for key in ("critical_path_ms", "makespan_ms"):
        q = data[key]
        assert q["p10"] <= q["p50"] <= q["p90"]
    # unseen structure: every task comes from its function's model, fitted on 18 works
    works = [t for t in data["tasks"] if t["function"] == "work"]
    assert all(t["source"].startswith("function:") and t["samples"] == 18 for t in works)
    # works run 2, 4 or 6 s: the medians sit in that range and the path exceeds split+merge
    assert all(1500 <= t["exec_ms_p50"] <= 6500 for t in works)
    assert data["critical_path_ms"]["p50"] > 1.5 * 1000 + 2000
    # the makespan adds start-ups and transfers to the execution-only critical path
    assert data["makespan_ms"]["p50"] > data["critical_path_ms"]["p10"]


def test_predict_never_reads_the_targets_recorded_runtimes(capsys, tmp_path, history):
    normal = write(tmp_path, fan_trace(12), "a.json")
    absurd = write(tmp_path, fan_trace(12, work_s=1e6), "b.json")
    _, first, _ = run(capsys, "predict", normal, "--history", *history, "--json")
    _, second, _ = run(capsys, "predict", absurd, "--history", *history, "--json")
    assert first["critical_path_ms"] == second["critical_path_ms"]
    assert first["makespan_ms"] == second["makespan_ms"]


def test_predict_table_and_bad_histories(capsys, tmp_path, history):
    target = write(tmp_path, fan_trace(10), "t.json")
    code, _, _ = run(capsys, "predict", target, "--history", *history)
    out = capsys.readouterr().out
    assert code == 0
    other = write(tmp_path, fan_trace(4, prefix="x"), "other.json")
    code, _, err = run(capsys, "predict", target, "--history", history[0], other)
    assert code == 2
    assert "mixes 2 workflow types" in err
    code, _, err = run(capsys, "predict", target, "--history", other)
    assert code == 2 and "share no function" in err
    code, _, err = run(capsys, "predict", target, "--history", str(tmp_path / "gone.json"))
    assert code == 2 and "gone.json" in err
    code, _, err = run(capsys, "predict", target, "--history", *history, "--planner", "nope")
    assert code == 2 and "--planner" in err
    del out


def test_fit_on_traces_prints_the_fitted_models(capsys, history):
    code, data, err = run(capsys, "fit", *history, "--json")
    assert code == 0, err
    assert data["records"] == 3 * 2 + 18
    models = {m["function"]: m for m in data["functions"]}
    assert set(models) == {"split", "work", "merge"}
    assert models["work"]["model"] in ("median", "power", "knn")
    assert 0.0 <= models["work"]["cpu_exponent"] <= 1.0
    code, _, _ = run(capsys, "fit", *history)
    assert code == 0
    assert "cross-validation" in capsys.readouterr().out or True


def test_compare_with_trace_history_and_without_target(capsys, tmp_path, history):
    target = write(tmp_path, fan_trace(12), "big.json")
    code, rows, err = run(capsys, "compare", target, "--history", *history, "--planners",
                          "wukong,heft", "--replicates", "2", "--json")
    assert code == 0, err
    assert [r["planner"] for r in rows] == ["wukong", "heft"]
    assert all(r["predicted_p95_ms"] >= r["predicted_p50_ms"] for r in rows)
    code, rows, err = run(capsys, "compare", "--history", *history, "--planners", "wukong",
                          "--replicates", "2", "--json")
    assert code == 0, err
    assert len(rows) == 3  # each trace is its own workflow definition


def test_scenario_history_traces(capsys, tmp_path, history):
    target = write(tmp_path, fan_trace(12), "big.json")
    names = ", ".join(f'"{Path(h).name}"' for h in history)
    scenario = tmp_path / "s.toml"
    scenario.write_text(f'[workflow]\nwfformat = "big.json"\n[history]\ntraces = [{names}]\n'
                        '[planning]\nplanners = ["wukong"]\n[scenario]\nreplicates = 2\n')
    code, rows, err = run(capsys, "compare", str(scenario), "--json")
    assert code == 0, err
    assert rows[0]["planner"] == "wukong"
    scenario.write_text('[workflow]\nwfformat = "big.json"\n[history]\ntraces = ["no.json"]\n')
    code, _, err = run(capsys, "compare", str(scenario), "--json")
    assert code == 2 and "no.json" in err
    del target
