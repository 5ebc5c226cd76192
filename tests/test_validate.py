"""faasplan validate: every problem of a scenario or a WfFormat trace at once."""

from __future__ import annotations

import json
from pathlib import Path

from faasplan.cli import main
from faasplan.data import trace_names, trace_path
from faasplan.scenarios.validate import validate_file

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_traces_and_scenarios_are_valid():
    for name in trace_names():
        assert validate_file(trace_path(name)) == [], name
    for scenario in sorted((ROOT / "scenarios").glob("*.toml")):
        assert validate_file(scenario) == [], scenario.name


def test_every_problem_of_a_trace_is_listed(tmp_path, capsys):
    doc = json.loads(trace_path("blast_43t").read_text())
    del doc["name"]
    doc["workflow"]["specification"]["tasks"][0]["id"] = 5
    doc["workflow"]["execution"]["tasks"][1]["runtimeInSeconds"] = "x"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    problems = validate_file(bad)
    keys = {p.key for p in problems}
    assert "(document)" in keys                                   # 'name' is required
    assert "workflow.specification.tasks.0.id" in keys
    assert "workflow.execution.tasks.1.runtimeInSeconds" in keys
    assert any("runtime must be a finite number" in p.message for p in problems)  # importer
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == len(problems) and f"{len(problems)} problem(s)" in err


def test_every_problem_of_a_scenario_is_listed(tmp_path, capsys):
    scenario = tmp_path / "s.toml"
    scenario.write_text('[scenario]\nreplicates = -3\ncolour = "red"\n'
                        '[workflow]\nwfformat = "nothere.json"\n'
                        '[history]\ntraces = ["gone.json"]\n')
    problems = validate_file(scenario)
    assert [p.key for p in problems] == ["scenario.replicates", "scenario.colour",
                                         "workflow.wfformat", "history.traces[0]"]
    assert "remove the key" in problems[1].fix
    assert main(["validate", str(scenario), "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report[str(scenario)]["ok"] is False
    assert len(report[str(scenario)]["problems"]) == 4


def test_broken_files(tmp_path):
    assert validate_file(tmp_path / "absent.toml")[0].message == "file not found"
    (tmp_path / "x.toml").write_text("[scenario\n")
    assert "invalid TOML" in validate_file(tmp_path / "x.toml")[0].message
    (tmp_path / "y.json").write_text("{")
    assert "invalid JSON" in validate_file(tmp_path / "y.json")[0].message
    (tmp_path / "z.txt").write_text("")
    assert "not a scenario" in validate_file(tmp_path / "z.txt")[0].message
    assert main(["validate", str(ROOT / "scenarios" / "quickstart.toml")]) == 0
