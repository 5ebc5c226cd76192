"""Real runs as metrics: WfFormat traces read as metrics records, histories, types."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from faasplan.data import trace_path
from faasplan.predictors.metrics import (
    MetricsError,
    records_to_frame,
    save_metrics,
    validate_records,
)
from faasplan.predictors.wfrecords import (
    load_history,
    records_from_wfformat,
    single_type,
    workflow_types,
)
from faasplan.simulator import Platform
from faasplan.workflow import WorkflowFormatError
from faasplan.workflow.wfformat import load_recorded_run, load_wfformat, trace_task_records


def fan_trace(workers: int = 2, runtimes: list[float] | None = None,
              version: str = "1.5", name: str = "fan") -> dict[str, Any]:
    """split -> ``workers`` x work -> merge, in the 1.5 layout.

    ``split`` reads the workflow input ``in.dat`` (100 B) and writes ``a.out`` (40 B) and
    ``log.txt`` (5 B, read by nobody); work ``k`` reads ``a.out`` and the workflow input
    ``ref.db`` (7 B) and writes ``bk.out`` (10 + k B); ``merge`` reads every ``bk.out`` and
    writes ``final`` (3 B). Runtimes default to 2.0, 0.5, 1.25, ... s.
    """
    ids = ["split_ID01", *(f"work_ID{k + 2:02d}" for k in range(workers)),
           f"merge_ID{workers + 2:02d}"]
    runtimes = runtimes if runtimes is not None else [2.0, *(0.5 + 0.75 * k
                                                              for k in range(workers)), 0.75]
    work_ids = ids[1:-1]
    outs = [f"b{k + 1}.out" for k in range(workers)]
    files = [{"id": "in.dat", "sizeInBytes": 100}, {"id": "ref.db", "sizeInBytes": 7},
             {"id": "a.out", "sizeInBytes": 40}, {"id": "log.txt", "sizeInBytes": 5},
             {"id": "final", "sizeInBytes": 3},
             *({"id": f, "sizeInBytes": 11 + k} for k, f in enumerate(outs))]
    tasks = [{"id": ids[0], "name": ids[0], "category": "split", "parents": [],
              "children": work_ids, "inputFiles": ["in.dat"],
              "outputFiles": ["a.out", "log.txt"]}]
    tasks += [{"id": tid, "name": tid, "category": "work", "parents": [ids[0]],
               "children": [ids[-1]], "inputFiles": ["a.out", "ref.db"],
               "outputFiles": [outs[k]]} for k, tid in enumerate(work_ids)]
    tasks.append({"id": ids[-1], "name": ids[-1], "category": "merge", "parents": work_ids,
                  "children": [], "inputFiles": outs, "outputFiles": ["final"]})
    execution = [{"id": tid, "runtimeInSeconds": s} for tid, s in zip(ids, runtimes,
                                                                        strict=True)]
    return {"name": name, "schemaVersion": version,
            "workflow": {"specification": {"tasks": tasks, "files": files},
                         "execution": {"makespanInSeconds": 9.0, "tasks": execution}}}


def chain_trace(n: int = 3, function: str = "other") -> dict[str, Any]:
    """``n`` tasks of one function in a chain; task i runs i + 1 s and writes 8 B."""
    ids = [f"{function}_ID{i:02d}" for i in range(n)]
    tasks = [{"id": tid, "name": tid, "category": function,
              "parents": [ids[i - 1]] if i else [], "children": [],
              "inputFiles": [f"f{i}"], "outputFiles": [f"f{i + 1}"]}
             for i, tid in enumerate(ids)]
    return {"schemaVersion": "1.5",
            "workflow": {"specification": {
                "tasks": tasks, "files": [{"id": f"f{i}", "sizeInBytes": 8} for i in
                                          range(n + 1)]},
                "execution": {"tasks": [{"id": tid, "runtimeInSeconds": i + 1.0}
                                        for i, tid in enumerate(ids)]}}}


def v14_trace() -> dict[str, Any]:
    """Two tasks in the flat 1.4 layout: ``load`` (1 s) feeds ``crunch`` (3 s)."""
    return {"name": "old", "schemaVersion": "1.4", "workflow": {"tasks": [
        {"id": "ID01", "name": "load_ID01", "runtimeInSeconds": 1.0, "parents": [],
         "files": [{"name": "raw", "link": "input", "sizeInBytes": 50},
                   {"name": "mid", "link": "output", "sizeInBytes": 20}]},
        {"id": "ID02", "name": "crunch_ID02", "runtimeInSeconds": 3.0,
         "parents": ["load_ID01"],
         "files": [{"name": "mid", "link": "input", "sizeInBytes": 20},
                   {"name": "raw", "link": "input", "sizeInBytes": 50},
                   {"name": "out", "link": "output", "sizeInBytes": 9}]}]}}


def write(tmp_path: Path, doc: Any, name: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


# -- records ------------------------------------------------------------------------------
def test_fan_trace_gives_one_hand_computed_record_per_task(tmp_path: Path) -> None:
    path = write(tmp_path, fan_trace(), "run-a.json")
    frame = records_from_wfformat([path])
    validate_records(frame)
    empty = records_to_frame([])
    assert list(frame.columns) == list(empty.columns)
    assert frame.dtypes.to_dict() == empty.dtypes.to_dict()
    wf = load_wfformat(path)
    assert set(frame["workflow_hash"]) == {wf.structure_hash}
    assert set(frame["run_id"]) == {"run-a"}
    assert set(frame["planner"]) == {"wfformat"}
    got = {row.task: (row.function, row.input_bytes, row.output_bytes, row.exec_ms)
           for row in frame.itertuples()}
    assert got == {
        "split_ID01": ("split", 100, 40 + 5, 2000.0),         # log.txt counts: it is written
        "work_ID02": ("work", 40 + 7, 11, 500.0),             # ref.db is a workflow input
        "work_ID03": ("work", 40 + 7, 12, 1250.0),
        "merge_ID04": ("merge", 11 + 12, 3, 750.0),
    }
    for row in frame.itertuples():
        assert wf.node(row.task).func.name == row.function
    assert list(frame["task"]) == list(wf.topological_order)
    assert set(frame["memory_mb"]) == {Platform().reference_memory_mb}
    assert set(frame["startup"]) == {"none"}
    assert set(frame["startup_ms"]) == {0.0}
    assert frame["downloads"].map(len).sum() == frame["uploads"].map(len).sum() == 0


def test_memory_and_planner_can_be_given(tmp_path: Path) -> None:
    path = write(tmp_path, fan_trace(), "r.json")
    frame = records_from_wfformat(path, memory_mb=3008, planner="pegasus")
    assert set(frame["memory_mb"]) == {3008}
    assert set(frame["planner"]) == {"pegasus"}
    with pytest.raises(MetricsError, match="memory_mb"):
        records_from_wfformat(path, memory_mb=0)


def test_several_traces_keep_their_order_and_run_ids(tmp_path: Path) -> None:
    a = write(tmp_path, fan_trace(2), "a.json")
    b = write(tmp_path, fan_trace(3), "b.json")
    frame = records_from_wfformat(p for p in (b, a))
    assert list(dict.fromkeys(frame["run_id"])) == ["b", "a"]
    assert len(frame) == 5 + 4
    assert frame["workflow_hash"].nunique() == 2


def test_schema_14_bytes_and_runtimes(tmp_path: Path) -> None:
    frame = records_from_wfformat(write(tmp_path, v14_trace(), "old.json"))
    got = {row.task: (row.function, row.input_bytes, row.output_bytes, row.exec_ms)
           for row in frame.itertuples()}
    assert got == {"ID01": ("load", 50, 20, 1000.0), "ID02": ("crunch", 70, 9, 3000.0)}


def test_shipped_blast_trace_against_its_json() -> None:
    path = trace_path("blast_43t")
    doc = json.loads(path.read_text())
    frame = records_from_wfformat([path])
    wf = load_wfformat(path)
    assert len(frame) == len(doc["workflow"]["specification"]["tasks"]) == 43
    assert set(frame["workflow_hash"]) == {wf.structure_hash}
    assert set(frame["run_id"]) == {"blast_43t"}
    for row in frame.itertuples():
        assert wf.node(row.task).func.name == row.function
    total_s = sum(t["runtimeInSeconds"] for t in doc["workflow"]["execution"]["tasks"])
    assert frame["exec_ms"].sum() == pytest.approx(total_s * 1000.0)
    # split_fasta reads the query and its own executable, and writes every chunk.
    spec = {t["id"]: t for t in doc["workflow"]["specification"]["tasks"]}
    sizes = {f["id"]: f["sizeInBytes"] for f in doc["workflow"]["specification"]["files"]}
    tid = "split_fasta_ID000001"
    row = frame.set_index("task").loc[tid]
    assert row["function"] == "split_fasta"
    assert row["input_bytes"] == sum(sizes[f] for f in spec[tid]["inputFiles"])
    assert row["output_bytes"] == sum(sizes[f] for f in spec[tid]["outputFiles"])
    assert len(spec[tid]["outputFiles"]) == 40


def test_gzip_traces_read_like_plain_ones(tmp_path: Path) -> None:
    doc = fan_trace(3)
    plain = write(tmp_path, doc, "x.json")
    packed = tmp_path / "gz" / "x.json.gz"
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(json.dumps(doc).encode()))
    a, b = records_from_wfformat(plain), records_from_wfformat(packed)
    assert set(b["run_id"]) == {"x"}
    pd.testing.assert_frame_equal(a, b)


def test_recorded_run_parses_once_and_agrees_with_the_importer(tmp_path: Path) -> None:
    path = write(tmp_path, fan_trace(2), "r.json")
    run = load_recorded_run(path)
    assert run.schema_version == "1.5"
    assert run.path == str(path)
    assert run.workflow.structure_hash == load_wfformat(path).structure_hash
    assert [t.task_id for t in run.tasks] == list(run.workflow.topological_order)
    assert [(t.function, t.runtime_s, t.read_bytes, t.written_bytes) for t in run.tasks] == [
        ("split", 2.0, 100, 45), ("work", 0.5, 47, 11), ("work", 1.25, 47, 12),
        ("merge", 0.75, 23, 3)]
    assert trace_task_records(path) == ("1.5", list(run.tasks))


def test_reading_traces_does_not_import_the_simulator() -> None:
    code = ("import sys, faasplan.predictors.wfrecords as w; "
            "print('simpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# -- bad input ----------------------------------------------------------------------------
def test_trace_without_execution_section_names_file_and_field(tmp_path: Path) -> None:
    doc = fan_trace()
    del doc["workflow"]["execution"]
    path = write(tmp_path, doc, "noexec.json")
    with pytest.raises(WorkflowFormatError,
                       match=r"noexec\.json: field 'workflow\.execution': no 'execution'"):
        records_from_wfformat(path)


def test_all_runtimes_zero_is_nothing_to_learn_from(tmp_path: Path) -> None:
    path = write(tmp_path, fan_trace(2, [0.0, 0.0, 0.0, 0.0]), "zeros.json")
    with pytest.raises(WorkflowFormatError,
                       match=r"zeros\.json: field 'runtimeInSeconds': .*4 tasks.*nothing to "
                             r"learn from"):
        records_from_wfformat(path)
    # Some zeros among real runtimes are fine.
    some = write(tmp_path, fan_trace(2, [0.0, 1.0, 0.0, 0.0]), "some.json")
    assert len(records_from_wfformat(some)) == 4


def test_two_schema_versions_in_one_call_are_refused(tmp_path: Path) -> None:
    a = write(tmp_path, fan_trace(version="1.5"), "a.json")
    b = write(tmp_path, v14_trace(), "b.json")
    pattern = r"a\.json is schema 1\.5 and .*b\.json is schema 1\.4"
    with pytest.raises(MetricsError, match=pattern):
        records_from_wfformat([a, b])
    with pytest.raises(MetricsError, match=pattern):
        load_history([a, b])


def test_missing_unreadable_and_misnamed_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent\.json"):
        records_from_wfformat(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(WorkflowFormatError, match=r"broken\.json: invalid JSON at line 1"):
        records_from_wfformat(broken)
    text = write(tmp_path, fan_trace(), "trace.txt")
    with pytest.raises(MetricsError, match=r"trace\.txt: not a WfFormat trace by its name"):
        records_from_wfformat(text)
    with pytest.raises(MetricsError, match="no trace given"):
        records_from_wfformat([])


def test_one_run_id_twice_is_refused(tmp_path: Path) -> None:
    a = write(tmp_path, fan_trace(2), "one/x.json")
    b = write(tmp_path, fan_trace(3), "two/x.json")
    with pytest.raises(MetricsError, match=r"one/x\.json and .*two/x\.json have the same "
                                           r"run id 'x'"):
        records_from_wfformat([a, b])


# -- histories ----------------------------------------------------------------------------
def test_history_mixes_parquet_and_traces_in_the_order_given(tmp_path: Path) -> None:
    store = tmp_path / "runs.parquet"
    save_metrics(records_from_wfformat(write(tmp_path, fan_trace(2), "old.json")), store)
    trace = write(tmp_path, fan_trace(3, [1.0] * 5), "new.json")
    frame = load_history([trace, store])
    validate_records(frame)
    assert list(dict.fromkeys(frame["run_id"])) == ["new", "old"]
    assert len(frame) == 5 + 4
    assert list(frame.index) == list(range(9))
    assert frame[frame["run_id"] == "new"]["exec_ms"].tolist() == [1000.0] * 5
    pd.testing.assert_frame_equal(load_history(store), frame[frame["run_id"] == "old"]
                                  .reset_index(drop=True))


def test_history_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MetricsError, match=r"notes\.txt: not a history file"):
        load_history([tmp_path / "notes.txt"])
    with pytest.raises(FileNotFoundError, match=r"gone\.json"):
        load_history([tmp_path / "gone.json"])
    with pytest.raises(FileNotFoundError, match=r"gone\.parquet"):
        load_history([tmp_path / "gone.parquet"])
    with pytest.raises(MetricsError, match="no history given"):
        load_history([])


def test_a_run_given_as_trace_and_as_metrics_is_refused(tmp_path: Path) -> None:
    trace = write(tmp_path, fan_trace(2), "r1.json")
    store = tmp_path / "r1.parquet"
    save_metrics(records_from_wfformat(trace), store)
    with pytest.raises(MetricsError, match=r"run 'r1' is both a trace given and a run in "
                                           r".*r1\.parquet"):
        load_history([store, trace])


# -- workflow types -----------------------------------------------------------------------
def test_scaled_instances_are_one_type(tmp_path: Path) -> None:
    small = write(tmp_path, fan_trace(2), "small.json")
    large = write(tmp_path, fan_trace(5), "large.json")
    assert load_wfformat(small).structure_hash != load_wfformat(large).structure_hash
    same = load_history([small, large])
    types = workflow_types(same)
    assert len(types) == 1
    (name, rows), = types.items()
    assert name.startswith("merge+split+work#") and len(name) == len("merge+split+work#") + 8
    assert len(rows) == 4 + 7
    assert single_type(same, "hist") is same
    # The key depends on the functions only, not on the runs or their sizes.
    assert list(workflow_types(records_from_wfformat(large))) == [name]


def test_different_functions_are_another_type_and_never_mixed(tmp_path: Path) -> None:
    small = write(tmp_path, fan_trace(2), "small.json")
    large = write(tmp_path, fan_trace(5), "large.json")
    other = write(tmp_path, chain_trace(3), "other.json")
    mixed = load_history([small, other, large])
    types = workflow_types(mixed)
    assert len(types) == 2
    assert sorted(len(g) for g in types.values()) == [3, 11]
    fan = next(g for k, g in types.items() if k.startswith("merge+split+work#"))
    assert list(dict.fromkeys(fan["run_id"])) == ["small", "large"]
    with pytest.raises(MetricsError) as info:
        single_type(mixed, "--history")
    message = str(info.value)
    assert message.startswith("--history: the history mixes 2 workflow types")
    for key in types:
        assert key in message
    assert "runs small, large" in message and "runs other" in message
    assert "pass the files of one workflow type only" in message


def test_long_type_names_are_truncated_and_empty_frames_have_no_type(tmp_path: Path) -> None:
    path = write(tmp_path, chain_trace(2, function="f" * 80), "long.json")
    (name,) = workflow_types(records_from_wfformat(path))
    label, digest = name.split("#")
    assert label == "f" * 45 + "..." and len(digest) == 8
    empty = records_to_frame([])
    assert workflow_types(empty) == {}
    assert single_type(empty, "x") is empty
