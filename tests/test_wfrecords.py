"""Real runs as metrics: WfFormat traces read as metrics records, histories, types."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from faasplan.data import trace_path
from faasplan.predictors import MetricsError, records_to_frame, save_metrics, validate_records
from faasplan.predictors.wfrecords import (
    REFERENCE_MEMORY_MB,
    load_history,
    records_from_wfformat,
    single_type,
    workflow_types,
)
from faasplan.workflow import WorkflowFormatError, load_wfformat


def chain_trace(n: int = 3, runtimes: list[float] | None = None, prefix: str = "step",
                version: str = "1.5") -> dict[str, Any]:
    """``n`` tasks in a chain: task i reads file i (i * 1000 + 10 bytes), writes file i+1."""
    runtimes = runtimes if runtimes is not None else [1.5 * (i + 1) for i in range(n)]
    tasks, execution, files = [], [], []
    for i in range(n + 1):
        files.append({"id": f"f{i}", "sizeInBytes": i * 1000 + 10})
    for i in range(n):
        tid = f"{prefix}_ID{i:07d}"
        tasks.append({"id": tid, "name": tid, "category": prefix,
                      "parents": [f"{prefix}_ID{i - 1:07d}"] if i else [],
                      "children": [f"{prefix}_ID{i + 1:07d}"] if i + 1 < n else [],
                      "inputFiles": [f"f{i}"], "outputFiles": [f"f{i + 1}"]})
        execution.append({"id": tid, "runtimeInSeconds": runtimes[i]})
    return {"name": f"{prefix}-chain", "schemaVersion": version,
            "workflow": {"specification": {"tasks": tasks, "files": files},
                         "execution": {"makespanInSeconds": sum(runtimes), "tasks": execution}}}


def write(tmp_path: Path, doc: Any, name: str) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_one_record_per_task_with_hand_computed_fields(tmp_path: Path) -> None:
    path = write(tmp_path, chain_trace(3, [1.5, 0.25, 4.0]), "run-a.json")
    frame = records_from_wfformat([path])
    validate_records(frame)
    assert list(frame.columns) == list(records_to_frame([]).columns)
    assert len(frame) == 3
    assert set(frame["run_id"]) == {"run-a"}
    assert set(frame["planner"]) == {"wfformat"}
    assert set(frame["workflow_hash"]) == {load_wfformat(path).structure_hash}
    row = frame.set_index("task").loc["step_ID0000001"]
    assert row["function"] == "step"
    assert row["exec_ms"] == pytest.approx(250.0)
    assert row["input_bytes"] == 1010          # reads f1
    assert row["output_bytes"] == 2010         # writes f2
    assert row["memory_mb"] == REFERENCE_MEMORY_MB
    assert set(frame["startup"]) == {"none"}
    assert frame["downloads"].map(len).sum() == 0


def test_memory_and_planner_can_be_given(tmp_path: Path) -> None:
    path = write(tmp_path, chain_trace(), "r.json")
    frame = records_from_wfformat(path, memory_mb=3008, planner="pegasus")
    assert set(frame["memory_mb"]) == {3008}
    assert set(frame["planner"]) == {"pegasus"}


def test_functions_and_hash_match_the_imported_workflow() -> None:
    path = trace_path("blast_43t")
    frame = records_from_wfformat([path])
    wf = load_wfformat(path)
    doc = json.loads(path.read_text())
    assert len(frame) == len(wf) == 43
    assert set(frame["workflow_hash"]) == {wf.structure_hash}
    for _, row in frame.iterrows():
        assert wf.node(row["task"]).func.name == row["function"]
    total_s = sum(t["runtimeInSeconds"] for t in doc["workflow"]["execution"]["tasks"])
    assert frame["exec_ms"].sum() == pytest.approx(total_s * 1000.0)
    # one task checked against the JSON by hand: its read and written files' sizes
    spec = {t["id"]: t for t in doc["workflow"]["specification"]["tasks"]}
    sizes = {f["id"]: f["sizeInBytes"] for f in doc["workflow"]["specification"]["files"]}
    tid = sorted(spec)[5]
    row = frame.set_index("task").loc[tid]
    assert row["input_bytes"] == sum(sizes[f] for f in spec[tid]["inputFiles"])
    assert row["output_bytes"] == sum(sizes[f] for f in spec[tid]["outputFiles"])


def test_gzip_traces_read_like_plain_ones(tmp_path: Path) -> None:
    doc = chain_trace(4)
    plain = write(tmp_path, doc, "x.json")
    packed = tmp_path / "x.json.gz"
    packed.write_bytes(gzip.compress(json.dumps(doc).encode()))
    a, b = records_from_wfformat(plain), records_from_wfformat(packed)
    assert set(b["run_id"]) == {"x"}
    pd.testing.assert_frame_equal(a, b)


def test_trace_without_execution_section_names_file_and_field(tmp_path: Path) -> None:
    doc = chain_trace()
    del doc["workflow"]["execution"]
    path = write(tmp_path, doc, "noexec.json")
    with pytest.raises(WorkflowFormatError, match=r"noexec\.json.*runtimeInSeconds"):
        records_from_wfformat(path)


def test_all_runtimes_zero_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, chain_trace(3, [0.0, 0.0, 0.0]), "zeros.json")
    with pytest.raises(MetricsError, match=r"zeros\.json: every runtimeInSeconds is 0"):
        records_from_wfformat(path)


def test_mixed_schema_versions_are_refused(tmp_path: Path) -> None:
    a = write(tmp_path, chain_trace(version="1.5"), "a.json")
    b = write(tmp_path, chain_trace(version="1.6"), "b.json")
    with pytest.raises(MetricsError, match=r"a\.json \(schema 1\.5\).*b\.json \(schema 1\.6\)"):
        records_from_wfformat([a, b])


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent\.json"):
        records_from_wfformat(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(WorkflowFormatError, match=r"broken\.json: invalid JSON"):
        records_from_wfformat(broken)
    with pytest.raises(MetricsError, match="no trace given"):
        records_from_wfformat([])


def test_history_mixes_parquet_and_traces(tmp_path: Path) -> None:
    store = tmp_path / "runs.parquet"
    save_metrics(records_from_wfformat(write(tmp_path, chain_trace(3), "old.json")), store)
    trace = write(tmp_path, chain_trace(3, [2.0, 2.0, 2.0]), "new.json")
    frame = load_history([store, trace])
    assert sorted(frame["run_id"].unique()) == ["new", "old"]
    assert len(frame) == 6
    with pytest.raises(MetricsError, match=r"notes\.txt: not a history file"):
        load_history([tmp_path / "notes.txt"])
    with pytest.raises(FileNotFoundError, match=r"gone\.json"):
        load_history([tmp_path / "gone.json"])


def test_scaled_instances_are_one_type_other_functions_another(tmp_path: Path) -> None:
    small = write(tmp_path, chain_trace(3), "small.json")
    large = write(tmp_path, chain_trace(7), "large.json")
    other = write(tmp_path, chain_trace(3, prefix="other"), "other.json")
    same = load_history([small, large])
    assert load_wfformat(small).structure_hash != load_wfformat(large).structure_hash
    assert len(workflow_types(same)) == 1
    assert single_type(same, "hist") is same
    mixed = load_history([small, large, other])
    types = workflow_types(mixed)
    assert len(types) == 2
    assert sorted(len(g) for g in types.values()) == [3, 10]
    with pytest.raises(MetricsError, match=r"hist: the history mixes 2 workflow types"):
        single_type(mixed, "hist")
