"""WfFormat 1.5 export of simulated and real runs, and faasplan export."""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime, timedelta

import jsonschema
import numpy as np
import pytest

from faasplan import (
    Placement,
    Platform,
    SizedBlob,
    Workflow,
    load_wfformat,
    simulate,
    task,
)
from faasplan.cli import main
from faasplan.data import SCHEMA_PATH, trace_path
from faasplan.predictors import fit, records_from_wfformat
from faasplan.trace.wfformat import trace_to_wfformat, write_wfformat
from faasplan.workflow import trace_edge_bytes
from faasplan.workloads import gemm, wfchef

SCHEMA = json.loads(SCHEMA_PATH.read_text())
HOST_NAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def schema_errors(doc: dict) -> list[str]:
    """Every violation of the WfFormat 1.5 schema, and of its ``date-time`` and ``hostname``
    formats (which jsonschema checks only with optional packages, so they are checked here).
    """
    validator = jsonschema.Draft4Validator(SCHEMA)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    execution = doc.get("workflow", {}).get("execution", {})
    stamps = [execution.get("executedAt", "")] + \
        [t.get("executedAt", "") for t in execution.get("tasks", [])]
    errors += [f"not RFC 3339: {s!r}" for s in stamps if not RFC3339.match(s)]
    errors += [f"not a host name: {m.get('nodeName')!r}" for m in execution.get("machines", [])
               if not HOST_NAME.match(m.get("nodeName", ""))]
    return errors


@task
def inc(x):
    return x + 1


@task
def add(a, b):
    return a + b


def two_tasks() -> Workflow:
    return Workflow(inc(inc(1)), name="two")


def montage() -> Workflow:
    return load_wfformat(trace_path("montage_58t"))


# -- the document ---------------------------------------------------------------------------
def test_two_tasks_document():
    wf = two_tasks()
    trace = simulate(wf)
    doc = trace_to_wfformat(trace, wf)
    assert schema_errors(doc) == []
    assert doc["schemaVersion"] == "1.5" and doc["name"] == "two"
    from faasplan import __version__

    assert doc["runtimeSystem"] == {"name": "faasplan", "version": __version__}
    spec, execution = doc["workflow"]["specification"], doc["workflow"]["execution"]
    fn = inc.name
    out0 = int(trace.tasks.set_index("task").at["inc-0", "output_bytes"])
    out1 = int(trace.tasks.set_index("task").at["inc-1", "output_bytes"])
    assert spec["tasks"] == [
        {"name": fn, "id": "inc-0", "parents": [], "children": ["inc-1"], "inputFiles": [],
         "outputFiles": ["inc-0.output"]},
        {"name": fn, "id": "inc-1", "parents": ["inc-0"], "children": [],
         "inputFiles": ["inc-0.output"], "outputFiles": ["inc-1.output"]},
    ]
    assert spec["files"] == [{"id": "inc-0.output", "sizeInBytes": out0},
                             {"id": "inc-1.output", "sizeInBytes": out1}]
    assert execution["makespanInSeconds"] == pytest.approx(trace.makespan_ms / 1000)
    assert [t["id"] for t in execution["tasks"]] == ["inc-0", "inc-1"]
    assert all(t["command"] == {"program": fn} for t in execution["tasks"])


def test_schema_validation_is_real_a_broken_document_fails():
    wf = two_tasks()
    doc = trace_to_wfformat(simulate(wf), wf)
    del doc["workflow"]["execution"]["tasks"][0]["runtimeInSeconds"]
    doc["workflow"]["specification"]["tasks"][1]["parents"] = ["not allowed!"]
    doc["workflow"]["execution"]["machines"][0]["nodeName"] = "flex_inc-0"
    doc["workflow"]["execution"]["executedAt"] = "1970-01-01 00:00"
    errors = schema_errors(doc)
    assert len(errors) == 4
    assert any("runtimeInSeconds" in e for e in errors)


def test_simulated_montage_validates_with_the_schema_and_wfcommons():
    from wfcommons.wfinstances.schema import SchemaValidator

    wf = montage()
    doc = trace_to_wfformat(simulate(wf, seed=3), wf)
    assert schema_errors(doc) == []
    validator = SchemaValidator(schema_file_path=SCHEMA_PATH)
    validator.validate_instance(doc)
    assert validator.errors == [] and validator.warnings == []


def test_runtimes_starts_and_bytes_are_the_trace_s():
    wf = montage()
    trace = simulate(wf, seed=1)
    doc = trace_to_wfformat(trace, wf)
    start = datetime.fromisoformat(doc["workflow"]["execution"]["executedAt"])
    assert start == datetime(1970, 1, 1, tzinfo=UTC)
    rows = trace.tasks.set_index("task")
    for t in doc["workflow"]["execution"]["tasks"]:
        row = rows.loc[t["id"]]
        assert t["runtimeInSeconds"] == row["exec_ms"] / 1000
        offset = datetime.fromisoformat(t["executedAt"]) - start
        assert abs(offset - timedelta(milliseconds=float(row["exec_start_ms"]))) \
            <= timedelta(microseconds=1)
        assert (t["readBytes"], t["writtenBytes"]) == (row["input_bytes"], row["output_bytes"])


def test_workers_are_machines_with_memory_and_vcpu_share():
    wf = two_tasks()
    platform = Platform()
    plan = {"inc-0": Placement("w_a", 512), "inc-1": Placement("w b", 3538)}
    trace = simulate(wf, plan, platform)
    doc = trace_to_wfformat(trace, wf, platform=platform)
    assert schema_errors(doc) == []
    machines = {m["nodeName"]: m for m in doc["workflow"]["execution"]["machines"]}
    assert len(machines) == trace.workers["worker"].nunique() == 2
    assert all(HOST_NAME.match(name) for name in machines)
    by_task = {t["id"]: machines[t["machines"][0]] for t in doc["workflow"]["execution"]["tasks"]}
    small, big = by_task["inc-0"], by_task["inc-1"]
    assert small["memoryInBytes"] == 512 * 2**20 and big["memoryInBytes"] == 3538 * 2**20
    assert small["cpu"] == {"coreCount": 1, "vcpuShare": platform.vcpu(512)}
    assert big["cpu"] == {"coreCount": 2, "vcpuShare": platform.vcpu(3538)}
    assert platform.vcpu(512) < 1 < platform.vcpu(3538) <= 2


def test_a_real_run_s_start_is_its_date():
    wf = two_tasks()
    when = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    doc = trace_to_wfformat(simulate(wf), wf, executed_at=when, name="mine",
                            description="about it")
    assert doc["workflow"]["execution"]["executedAt"] == "2026-05-04T12:00:00.000000+00:00"
    assert (doc["name"], doc["description"]) == ("mine", "about it")
    with pytest.raises(ValueError, match="has no timezone"):
        trace_to_wfformat(simulate(wf), wf, executed_at=datetime(2026, 5, 4))


def test_the_trace_must_be_of_the_workflow():
    trace = simulate(two_tasks())
    with pytest.raises(ValueError, match="export a trace with the workflow that ran"):
        trace_to_wfformat(trace, montage())


def test_task_ids_wfformat_cannot_reference_are_refused():
    wf = Workflow(inc(inc(1, task_id="first one")), name="spaces")
    with pytest.raises(ValueError, match=r"task id 'first one' has characters WfFormat"):
        trace_to_wfformat(simulate(wf), wf)


def test_the_document_is_deterministic_and_gzip_is_read_back(tmp_path):
    wf = montage()
    trace = simulate(wf, seed=2)
    plain = write_wfformat(trace, wf, tmp_path / "m.json")
    packed = write_wfformat(trace, wf, tmp_path / "m.json.gz")
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    assert trace_to_wfformat(trace, wf) == json.loads(plain.read_text())
    assert load_wfformat(packed).structure_hash == wf.structure_hash


# -- round trips ----------------------------------------------------------------------------
def assert_same_workflow(back: Workflow, wf: Workflow, trace) -> None:
    rows = trace.tasks.set_index("task")
    assert set(back) == set(wf)
    assert {t: back.node(t).func.name for t in back} == {t: wf.node(t).func.name for t in wf}
    assert set(back.graph.edges) == set(wf.graph.edges)
    for tid in wf:
        assert back.node(tid).profile.output_bytes == rows.at[tid, "output_bytes"]
        assert back.node(tid).profile.exec_ms == pytest.approx(rows.at[tid, "exec_ms"],
                                                               rel=1e-12)


def test_round_trip_of_a_trace_workflow_is_exact(tmp_path):
    wf = montage()
    trace = simulate(wf, seed=4)
    path = write_wfformat(trace, wf, tmp_path / "montage.json")
    back = load_wfformat(path)
    assert_same_workflow(back, wf, trace)
    assert back.structure_hash == wf.structure_hash
    outputs = dict(zip(trace.tasks["task"], trace.tasks["output_bytes"], strict=True))
    assert trace_edge_bytes(path) == {(a, b): outputs[a] for a, b in wf.graph.edges}
    # the recorded run's own input files come back with their names and sizes
    for tid in wf:
        original = wf.node(tid).kwargs["inputs"]
        assert back.node(tid).kwargs["inputs"] == original
    assert sum(len(wf.node(t).kwargs["inputs"]) for t in wf) > 0


def test_round_trip_of_python_tasks_with_literals_and_blobs(tmp_path):
    big = np.arange(50_000, dtype=np.float64)  # a large literal, fetched from storage
    left = add(inc(1), big)
    right = add(inc(2), SizedBlob("catalog.csv", 123_456))
    wf = Workflow(add(left, right), name="literals")
    trace = simulate(wf, seed=0)
    path = write_wfformat(trace, wf, tmp_path / "literals.json")
    doc = json.loads(path.read_text())
    assert schema_errors(doc) == []
    back = load_wfformat(path)
    assert_same_workflow(back, wf, trace)
    spec = {t["id"]: t for t in doc["workflow"]["specification"]["tasks"]}
    sizes = {f["id"]: f["sizeInBytes"] for f in doc["workflow"]["specification"]["files"]}
    rows = trace.tasks.set_index("task")
    left_id, right_id = wf.upstream(wf.sinks[0])
    assert "catalog.csv" in spec[right_id]["inputFiles"] and sizes["catalog.csv"] == 123_456
    assert sizes[f"{left_id}.input"] > big.nbytes  # the pickled array, as the trace counts it
    for tid, t in spec.items():
        assert sum(sizes[f] for f in t["inputFiles"]) == rows.at[tid, "input_bytes"]
    records = records_from_wfformat(path)
    assert dict(zip(records["task"], records["input_bytes"], strict=True)) == \
        rows["input_bytes"].to_dict()


def test_round_trip_of_gemm_keeps_tasks_edges_and_bytes(tmp_path):
    wf = gemm()
    trace = simulate(wf, seed=0)
    back = load_wfformat(write_wfformat(trace, wf, tmp_path / "gemm.json"))
    assert_same_workflow(back, wf, trace)


def test_records_read_the_runtimes_back_and_the_run_predicts_itself(tmp_path):
    wf = montage()
    trace = simulate(wf, seed=5)
    path = write_wfformat(trace, wf, tmp_path / "run-1.json")
    records = records_from_wfformat(path)
    rows = trace.tasks.set_index("task")
    assert sorted(records["task"]) == sorted(wf)
    for r in records.itertuples():
        assert r.exec_ms == pytest.approx(rows.at[r.task, "exec_ms"], rel=1e-12)
        assert (r.input_bytes, r.output_bytes) == (rows.at[r.task, "input_bytes"],
                                                   rows.at[r.task, "output_bytes"])
    platform = Platform()
    predictor = fit(records, platform=platform)
    errors = []
    for r in records.itertuples():
        dist = predictor.exec_distribution(r.function, r.input_bytes, r.memory_mb,
                                           r.workflow_hash, r.task)
        assert dist.source == "task"
        errors.append(abs(dist.median_ms / r.exec_ms - 1))
    assert np.median(errors) < 0.05


def test_a_wfchef_instance_round_trips(tmp_path):
    wf = wfchef("genome", 120, seed=2)
    trace = simulate(wf, seed=0)
    back = load_wfformat(write_wfformat(trace, wf, tmp_path / "genome.json"))
    assert_same_workflow(back, wf, trace)
    assert back.structure_hash == wf.structure_hash


# -- the command ----------------------------------------------------------------------------
def export(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["export", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_command_writes_a_valid_instance(capsys, tmp_path):
    out = tmp_path / "montage.json"
    code, stdout, err = export(capsys, str(trace_path("montage_58t")), "--wfformat", str(out),
                               "--planner", "heft", "--seed", "3", "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["tasks"] == 58 and summary["source"] == "simulation"
    doc = json.loads(out.read_text())
    assert schema_errors(doc) == []
    assert doc["workflow"]["execution"]["makespanInSeconds"] * 1000 == \
        pytest.approx(summary["makespan_ms"])
    assert "under heft, seed 3" in doc["description"]
    assert load_wfformat(out).structure_hash == montage().structure_hash
    assert main(["validate", str(out)]) == 0
    # an exported run is a target and a history like any trace
    assert main(["simulate", str(out), "--json"]) == 0
    again = tmp_path / "montage-again.json"
    assert export(capsys, str(trace_path("montage_58t")), "--wfformat", str(again),
                  "--seed", "4")[0] == 0
    assert main(["fit", str(out), str(again), "--json"]) == 0


def test_export_command_of_a_wfchef_target_gzip(capsys, tmp_path):
    out = tmp_path / "m.json.gz"
    code, _, err = export(capsys, "wfchef:montage?tasks=80&seed=1", "--wfformat", str(out))
    assert code == 0, err
    assert f"{out}: a simulation under wukong, seed 0" in " ".join(err.split())
    back = load_wfformat(out)
    assert back.structure_hash == wfchef("montage", 80, seed=1).structure_hash


def test_export_command_of_a_real_run(capsys, tmp_path):
    out = tmp_path / "tree.json"
    before = datetime.now(UTC)
    code, stdout, err = export(capsys, "faasplan.workloads:tree_reduction", "--run",
                               "--wfformat", str(out), "--json")
    assert code == 0, err
    assert json.loads(stdout)["source"] == "run"
    doc = json.loads(out.read_text())
    assert schema_errors(doc) == []
    assert "a real run on Redis" in doc["description"]
    assert datetime.fromisoformat(doc["workflow"]["execution"]["executedAt"]) >= before
    records = records_from_wfformat(out)
    assert len(records) == 127 and (records["exec_ms"] > 0).all()


@pytest.mark.parametrize(("argv", "message"), [
    (["faasplan.workloads:gemm", "--wfformat", "{tmp}/out.txt"],
     r"--wfformat .*out\.txt: name the instance \*\.json \(or \*\.json\.gz"),
    (["faasplan.workloads:gemm", "--wfformat", "{tmp}/no/such/dir/out.json"],
     r"folder .*no/such/dir does not exist; create it"),
    (["{tmp}/missing.json", "--wfformat", "{tmp}/out.json"], r"missing\.json: file not found"),
    (["faasplan.workloads:gemm", "--wfformat", "{tmp}/out.json", "--redis", "redis://:pw@h:1"],
     r"--redis applies to a real run; add --run"),
    (["faasplan.workloads:gemm", "--wfformat", "{tmp}/out.json", "--planner", "nope"],
     r"--planner: unknown planner 'nope'"),
    (["wfchef:montage?tasks=10", "--wfformat", "{tmp}/out.json"], r"tasks >= 58"),
])
def test_export_command_bad_input_exits_2(capsys, tmp_path, argv, message):
    code, _, err = export(capsys, *(a.replace("{tmp}", str(tmp_path)) for a in argv))
    assert code == 2
    assert re.search(message, err), err
    assert "Traceback" not in err
    assert not (tmp_path / "out.json").exists()


def test_export_command_needs_an_output(capsys):
    code, _, err = export(capsys, "faasplan.workloads:gemm")
    assert code == 2 and "--wfformat" in err


def test_trace_method_and_function_give_the_same_document():
    wf = montage()
    trace = simulate(wf, seed=4)
    when = datetime(2026, 1, 2, tzinfo=UTC)
    doc = trace.to_wfformat(wf, executed_at=when)
    assert doc == trace_to_wfformat(trace, wf, executed_at=when)
    assert schema_errors(doc) == []
