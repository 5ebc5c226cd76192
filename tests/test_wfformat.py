"""Importing WfCommons WfFormat traces: real traces, hand-written documents, bad input."""

from __future__ import annotations

import copy
import gzip
import json
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faasplan.data import trace_path
from faasplan.workflow import SizedBlob, WorkflowFormatError
from faasplan.workflow.wfformat import load_wfformat, synthetic_task, trace_edge_bytes

# Tasks, edges and sum of runtimes (s, rounded to 0.1) as published in the traces' README.
PUBLISHED = {
    "epigenomics_41t.json": (41, 48, 539.3),
    "blast_43t.json": (43, 120, 382.9),
    "montage_58t.json": (58, 114, 221.7),
    "montage-v14_58t.json": (58, 114, 5585.8),
    "cycles_67t.json": (67, 97, 862.7),
    "epigenomics_983t.json": (983, 1218, 18044.4),
    "seismology_1001t.json": (1001, 1000, 538.4),
    "montage_1738t.json": (1738, 4698, 8694.7),
}


def read_trace_text(name: str) -> str:
    """The JSON text of a shipped trace (the large ones are stored gzip-compressed)."""
    path = trace_path(name)
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8")


def read(name: str) -> dict[str, Any]:
    return json.loads(read_trace_text(name))


def write(tmp_path: Path, doc: Any, name: str = "trace.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def edges_in(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """Parent->child pairs of a trace, straight from the JSON."""
    if doc["schemaVersion"] == "1.4":
        tasks = doc["workflow"]["tasks"]
        id_of = {t["name"]: t["id"] for t in tasks}
        return {(id_of[p], t["id"]) for t in tasks for p in t["parents"]}
    tasks = doc["workflow"]["specification"]["tasks"]
    return ({(p, t["id"]) for t in tasks for p in t["parents"]}
            | {(t["id"], c) for t in tasks for c in t["children"]})


def spec_task(doc: dict[str, Any], task_id: str) -> dict[str, Any]:
    return next(t for t in doc["workflow"]["specification"]["tasks"] if t["id"] == task_id)


def exec_task(doc: dict[str, Any], task_id: str) -> dict[str, Any]:
    return next(t for t in doc["workflow"]["execution"]["tasks"] if t["id"] == task_id)


def v14_task(doc: dict[str, Any], task_id: str) -> dict[str, Any]:
    return next(t for t in doc["workflow"]["tasks"] if t["id"] == task_id)


# -- real traces --------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_every_shared_trace_loads_with_its_tasks_edges_and_runtimes(name: str) -> None:
    doc = read(name)
    n_tasks, n_edges, runtime_s = PUBLISHED[name]
    wf = load_wfformat(trace_path(name))
    expected_edges = edges_in(doc)

    assert len(wf) == n_tasks
    assert wf.graph.number_of_edges() == len(expected_edges) == n_edges
    assert set(wf.graph.edges) == expected_edges
    assert wf.name == doc["name"]
    total_ms = sum(node.profile.exec_ms for node in wf.tasks.values() if node.profile)
    assert total_ms / 1000 == pytest.approx(runtime_s, abs=0.05)
    assert set(trace_edge_bytes(trace_path(name))) == expected_edges


def test_structure_hash_is_stable_and_blind_to_task_order_in_the_file(
        tmp_path: Path) -> None:
    first = load_wfformat(trace_path("montage_58t.json"))
    again = load_wfformat(str(trace_path("montage_58t.json")))
    assert first.structure_hash == again.structure_hash

    doc = read("montage_58t.json")
    random.Random(7).shuffle(doc["workflow"]["specification"]["tasks"])
    random.Random(8).shuffle(doc["workflow"]["execution"]["tasks"])
    shuffled = load_wfformat(write(tmp_path, doc))
    assert shuffled.structure_hash == first.structure_hash
    assert shuffled.topological_order == first.topological_order

    other = load_wfformat(trace_path("montage_1738t.json"))
    assert other.structure_hash != first.structure_hash


def test_profiles_carry_the_recorded_runtimes() -> None:
    doc = read("montage_58t.json")
    wf = load_wfformat(trace_path("montage_58t.json"))
    for tid in ("mProject_ID0000001", "mDiffFit_ID0000005", "mViewer_ID0000058"):
        seconds = exec_task(doc, tid)["runtimeInSeconds"]
        profile = wf.node(tid).profile
        assert profile is not None
        assert profile.exec_ms == pytest.approx(seconds * 1000)

    v14 = load_wfformat(trace_path("montage-v14_58t.json"))
    profile = v14.node("ID0000001").profile
    assert profile is not None
    assert profile.exec_ms == pytest.approx(534058.0)


def test_one_function_per_category_named_after_it() -> None:
    wf = load_wfformat(trace_path("montage_58t.json"))
    names = {node.func.name for node in wf.tasks.values()}
    assert names == {"mProject", "mDiffFit", "mConcatFit", "mBgModel", "mBackground",
                     "mImgtbl", "mAdd", "mViewer"}
    assert len({id(node.func) for node in wf.tasks.values()}) == len(names)
    assert all(node.func.fn is synthetic_task for node in wf.tasks.values())
    v14 = load_wfformat(trace_path("montage-v14_58t.json"))
    assert {node.func.name for node in v14.tasks.values()} == names


def test_workflow_inputs_output_bytes_and_edge_bytes_follow_the_files() -> None:
    doc = read("montage_58t.json")
    size = {f["id"]: f["sizeInBytes"] for f in doc["workflow"]["specification"]["files"]}
    wf = load_wfformat(trace_path("montage_58t.json"))
    edge_bytes = trace_edge_bytes(trace_path("montage_58t.json"))

    root = spec_task(doc, "mProject_ID0000001")
    node = wf.node("mProject_ID0000001")
    # mProject reads only files no task writes: an image and the region header.
    assert node.kwargs["inputs"] == tuple(SizedBlob(f, size[f]) for f in root["inputFiles"])
    assert node.args == ()
    child = spec_task(doc, root["children"][0])
    shared = set(root["outputFiles"]) & set(child["inputFiles"])
    assert shared
    assert edge_bytes[(root["id"], child["id"])] == sum(size[f] for f in shared)

    sink = spec_task(doc, "mViewer_ID0000058")
    assert sink["children"] == []
    profile = wf.node(sink["id"]).profile
    assert profile is not None
    assert profile.output_bytes == sum(size[f] for f in sink["outputFiles"])
    assert [wf.id_of(p) for p in wf.node(sink["id"]).args] == sorted(sink["parents"])


def test_synthetic_task_returns_a_sized_placeholder_without_sleeping() -> None:
    wf = load_wfformat(trace_path("blast_43t.json"))
    node = wf.node("split_fasta_ID000001")
    start = time.perf_counter()
    out = node.func.fn(*node.args, **node.kwargs)
    assert time.perf_counter() - start < 0.5  # the recorded runtime is not waited for
    assert node.profile is not None
    assert out == SizedBlob("split_fasta_ID000001", node.profile.output_bytes)

    start = time.perf_counter()
    assert synthetic_task(runtime_ms=30.0, output_bytes=5, sleep=True) == SizedBlob("output", 5)
    assert time.perf_counter() - start >= 0.03
    slow = load_wfformat(trace_path("blast_43t.json"), sleep=True)
    assert slow.node("split_fasta_ID000001").kwargs["sleep"] is True


# -- hand-written documents ---------------------------------------------------------------
def test_hand_written_v14_document(tmp_path: Path) -> None:
    def task(tid: str, name: str, parents: list[str], files: list[tuple[str, str, int]],
             runtime: float) -> dict[str, Any]:
        return {"id": tid, "name": name, "type": "compute", "parents": parents,
                "runtimeInSeconds": runtime,
                "files": [{"link": lk, "name": f, "sizeInBytes": n} for lk, f, n in files]}

    doc = {"name": "tiny-v14", "schemaVersion": "1.4", "workflow": {"tasks": [
        task("ID03", "join_ID03", ["split_ID01", "work_ID02"],
             [("input", "a.dat", 100), ("input", "b.dat", 40), ("output", "c.dat", 7)], 2.0),
        task("ID01", "split_ID01", [],
             [("input", "raw.dat", 1000), ("output", "a.dat", 100), ("output", "log", 3)], 1.5),
        task("ID02", "work_ID02", ["split_ID01"],
             [("input", "a.dat", 100), ("input", "ref.dat", 9), ("output", "b.dat", 40)], 0.0),
    ]}}
    path = write(tmp_path, doc)
    wf = load_wfformat(path)

    assert wf.name == "tiny-v14"
    assert wf.topological_order == ("ID01", "ID02", "ID03")
    assert set(wf.graph.edges) == {("ID01", "ID02"), ("ID01", "ID03"), ("ID02", "ID03")}
    assert {n.func.name for n in wf.tasks.values()} == {"split", "work", "join"}
    profiles = {tid: wf.node(tid).profile for tid in wf}
    assert profiles["ID01"] is not None and profiles["ID01"].output_bytes == 100  # log unread
    assert profiles["ID02"] is not None and profiles["ID02"].exec_ms == 0.0
    assert profiles["ID03"] is not None and profiles["ID03"].output_bytes == 7
    assert wf.node("ID01").kwargs["inputs"] == (SizedBlob("raw.dat", 1000),)
    assert wf.node("ID02").kwargs["inputs"] == (SizedBlob("ref.dat", 9),)
    assert wf.node("ID03").kwargs["inputs"] == ()
    assert trace_edge_bytes(path) == {("ID01", "ID02"): 100, ("ID01", "ID03"): 100,
                                      ("ID02", "ID03"): 40}


def test_hand_written_v15_document_unites_parents_and_children(tmp_path: Path) -> None:
    doc = {
        "name": "tiny-v15", "schemaVersion": "1.5",
        "workflow": {
            "specification": {
                "tasks": [
                    # a -> b is written only as a child, b -> c only as a parent,
                    # a -> c both ways: three edges in all.
                    {"id": "a", "name": "a", "category": "load", "parents": [],
                     "children": ["b", "c"], "inputFiles": ["in"], "outputFiles": ["x"]},
                    {"id": "b", "name": "b", "category": "step", "parents": [],
                     "children": [], "inputFiles": ["x"], "outputFiles": ["y"]},
                    {"id": "c", "name": "c_ID000003", "parents": ["a", "b", "a"],
                     "children": [], "inputFiles": ["x", "y"], "outputFiles": ["z"]},
                ],
                "files": [{"id": "in", "sizeInBytes": 11}, {"id": "x", "sizeInBytes": 22},
                          {"id": "y", "sizeInBytes": 33}, {"id": "z", "sizeInBytes": 44}],
            },
            "execution": {"makespanInSeconds": 9, "executedAt": "2024-01-01T00:00:00Z",
                          "tasks": [{"id": "a", "runtimeInSeconds": 1.25},
                                    {"id": "b", "runtimeInSeconds": 0.0},
                                    {"id": "c", "runtimeInSeconds": 3}]},
        },
    }
    path = write(tmp_path, doc)
    wf = load_wfformat(path)

    assert set(wf.graph.edges) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert [wf.node(t).func.name for t in wf.topological_order] == ["load", "step", "c"]
    assert [wf.id_of(p) for p in wf.node("c").args] == ["a", "b"]
    assert wf.sinks == ("c",)
    assert trace_edge_bytes(path) == {("a", "b"): 22, ("a", "c"): 22, ("b", "c"): 33}
    prof = wf.node("a").profile
    assert prof is not None and (prof.exec_ms, prof.output_bytes) == (1250.0, 22)
    prof = wf.node("b").profile
    assert prof is not None and prof.exec_ms == 0.0


# -- malformed input ----------------------------------------------------------------------
def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def _drop(path: list[Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return mutate


def _on(find: Callable[[dict[str, Any], str], dict[str, Any]], tid: str,
        change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda doc: change(find(doc, tid))


def _drop_exec(doc: dict[str, Any]) -> None:
    doc["workflow"]["execution"]["tasks"] = [
        t for t in doc["workflow"]["execution"]["tasks"] if t["id"] != "mAdd_ID0000056"]


V15 = "montage_58t.json"
V14 = "montage-v14_58t.json"
ROOT = "mProject_ID0000001"
SPEC = ["workflow", "specification"]

MALFORMED: list[tuple[str, str, Callable[[dict[str, Any]], None], str]] = [
    ("no workflow", V15, _drop(["workflow"]), r"field 'workflow': no 'workflow' object"),
    ("workflow not an object", V15, _set(["workflow"], [1]),
     r"field 'workflow': 'workflow' must be a JSON object, got list"),
    ("unknown version", V15, _set(["schemaVersion"], "2.0"),
     r"field 'schemaVersion': unsupported schemaVersion '2.0'; supported versions are "
     r"1\.4, 1\.5"),
    ("no version", V15, _drop(["schemaVersion"]), r"unsupported schemaVersion None"),
    ("no tasks", V15, _drop([*SPEC, "tasks"]), r"field 'specification.tasks': missing"),
    ("empty tasks", V15, _set([*SPEC, "tasks"], []), r"the trace has no tasks"),
    ("no id", V15, _drop([*SPEC, "tasks", 3, "id"]),
     r"field 'id': specification\.tasks\[3\] has no 'id'"),
    ("no name", V15, _on(spec_task, "mDiffFit_ID0000005", lambda t: t.pop("name")),
     r"task 'mDiffFit_ID0000005': field 'name': .* has no 'name'"),
    ("no runtime", V15, _on(exec_task, "mBgModel_ID0000050",
                            lambda t: t.pop("runtimeInSeconds")),
     r"task 'mBgModel_ID0000050': field 'runtimeInSeconds': no runtimeInSeconds"),
    ("no execution record", V15, _drop_exec,
     r"task 'mAdd_ID0000056': field 'runtimeInSeconds': no execution record"),
    ("negative runtime", V15, _on(exec_task, ROOT, lambda t: t.update(runtimeInSeconds=-1.5)),
     rf"task '{ROOT}': field 'runtimeInSeconds': .* got -1\.5"),
    ("runtime as text", V15, _on(exec_task, ROOT, lambda t: t.update(runtimeInSeconds="3")),
     rf"task '{ROOT}': field 'runtimeInSeconds': .* got '3'"),
    ("unknown parent", V15, _on(spec_task, "mDiffFit_ID0000005",
                                lambda t: t["parents"].append("mGhost_ID0000999")),
     r"task 'mDiffFit_ID0000005': field 'parents': refers to task 'mGhost_ID0000999', "
     r"which is not in the trace"),
    ("unknown child", V15, _on(spec_task, ROOT, lambda t: t["children"].append("nobody")),
     rf"task '{ROOT}': field 'children': refers to task 'nobody'"),
    ("parents not a list", V15, _on(spec_task, ROOT, lambda t: t.update(parents="x")),
     rf"task '{ROOT}': field 'parents': expected a JSON list, got str"),
    ("self loop", V15, _on(spec_task, ROOT, lambda t: t["parents"].append(ROOT)),
     rf"task '{ROOT}': field 'parents': the dependencies form a cycle: {ROOT} -> {ROOT}"),
    ("negative file size", V15, _set([*SPEC, "files", 0, "sizeInBytes"], -5),
     r"field 'sizeInBytes': file '2mass-atlas-980914s-j0820044\.fits': .* got -5"),
    ("unknown input file", V15, _on(spec_task, ROOT, lambda t: t["inputFiles"].append("nope")),
     rf"task '{ROOT}': field 'inputFiles': file 'nope' is not listed"),
    ("duplicate id", V15, _set([*SPEC, "tasks", 1, "id"], ROOT),
     rf"task '{ROOT}': field 'id': task id used twice"),
    ("stray execution record", V15,
     lambda doc: doc["workflow"]["execution"]["tasks"].append(
         {"id": "ghost", "runtimeInSeconds": 1.0}),
     r"task 'ghost': field 'execution\.tasks'"),
    ("v14 no runtime", V14, _on(v14_task, "ID0000007", lambda t: t.pop("runtimeInSeconds")),
     r"task 'ID0000007': field 'runtimeInSeconds'"),
    ("v14 negative file size", V14,
     _on(v14_task, "ID0000002", lambda t: t["files"][1].update(sizeInBytes=-1)),
     r"task 'ID0000002': field 'files\[1\]\.sizeInBytes': .* got -1"),
    ("v14 bad link", V14, _on(v14_task, "ID0000002", lambda t: t["files"][0].update(link="in")),
     r"task 'ID0000002': field 'files\[0\]\.link': link must be 'input' or 'output'"),
    ("v14 unknown parent name", V14,
     _on(v14_task, "ID0000013", lambda t: t["parents"].append("mProject_ID0000999")),
     r"task 'ID0000013': field 'parents': refers to task 'mProject_ID0000999'"),
    ("v14 ambiguous parent name", V14,
     _on(v14_task, "ID0000002", lambda t: t.update(name="mProject_ID0000001")),
     r"field 'parents': 'mProject_ID0000001' is the name of several tasks"),
    ("v14 no id", V14, _drop(["workflow", "tasks", 4, "id"]),
     r"field 'id': workflow\.tasks\[4\] has no 'id'"),
]


@pytest.mark.parametrize(("trace", "mutate", "message"),
                         [case[1:] for case in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_traces_raise_naming_task_and_field(
        tmp_path: Path, trace: str, mutate: Callable[[dict[str, Any]], None],
        message: str) -> None:
    doc = copy.deepcopy(read(trace))
    mutate(doc)
    path = write(tmp_path, doc)
    with pytest.raises(WorkflowFormatError, match=message) as info:
        load_wfformat(path)
    assert str(info.value).startswith(str(path))
    with pytest.raises(WorkflowFormatError, match=message):
        trace_edge_bytes(path)


def test_a_cycle_through_several_tasks_names_them(tmp_path: Path) -> None:
    doc = read(V15)
    child = spec_task(doc, ROOT)["children"][0]
    spec_task(doc, ROOT)["parents"].append(child)
    with pytest.raises(WorkflowFormatError, match="form a cycle") as info:
        load_wfformat(write(tmp_path, doc))
    assert info.value.task in (ROOT, child)
    assert info.value.field == "parents"
    assert re.search(rf"({ROOT} -> {child} -> {ROOT}|{child} -> {ROOT} -> {child})",
                     str(info.value))


def test_invalid_json_and_missing_file(tmp_path: Path) -> None:
    text = read_trace_text(V15)
    broken = tmp_path / "broken.json"
    broken.write_text(text[: len(text) // 2])
    with pytest.raises(WorkflowFormatError, match=r"broken\.json: invalid JSON at line \d+"):
        load_wfformat(broken)
    with pytest.raises(WorkflowFormatError, match=r"must be a JSON object, got list"):
        load_wfformat(write(tmp_path, [1, 2]))
    missing = tmp_path / "absent.json"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_wfformat(missing)


# -- random DAGs --------------------------------------------------------------------------
@st.composite
def dag_documents(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A schema 1.5 document of a random DAG, and what the importer must make of it.

    Task ``k`` in topological position reads ``in<k>`` (a workflow input) and its parents'
    ``out`` files, and writes ``out<k>`` and ``log<k>`` (read by nobody).
    """
    n = draw(st.integers(1, 25))
    pairs = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1))
    edges = draw(st.sets(pairs.filter(lambda e: e[0] < e[1]), max_size=3 * n))
    ids = [f"{draw(st.sampled_from(['split', 'map', 'reduce']))}_ID{k:04d}"
           for k in draw(st.permutations(range(n)))]
    size = {f"{kind}{k}": draw(st.integers(0, 10**12))
            for k in range(n) for kind in ("in", "out", "log")}
    runtime = [draw(st.floats(0, 1e5, allow_nan=False)) for _ in range(n)]
    # Each edge is recorded on the child's parents, the parent's children, or both.
    side = {e: draw(st.sampled_from(["parents", "children", "both"])) for e in sorted(edges)}
    tasks = []
    for k in range(n):
        ups = [i for i, j in sorted(edges) if j == k]
        downs = [j for i, j in sorted(edges) if i == k]
        tasks.append({
            "id": ids[k], "name": ids[k],
            "parents": [ids[i] for i in ups if side[(i, k)] != "children"],
            "children": [ids[j] for j in downs if side[(k, j)] != "parents"],
            "inputFiles": [f"in{k}"] + [f"out{i}" for i in ups],
            "outputFiles": [f"out{k}", f"log{k}"],
        })
    order = draw(st.permutations(range(n)))
    doc = {"name": "random", "schemaVersion": "1.5", "workflow": {
        "specification": {"tasks": [tasks[k] for k in order],
                          "files": [{"id": f, "sizeInBytes": b} for f, b in size.items()]},
        "execution": {"tasks": [{"id": ids[k], "runtimeInSeconds": runtime[k]}
                                for k in range(n)]}}}
    has_child = {i for i, _ in edges}
    expected = {
        "edges": {(ids[i], ids[j]): size[f"out{i}"] for i, j in edges},
        "exec_ms": {ids[k]: runtime[k] * 1000 for k in range(n)},
        "output_bytes": {ids[k]: size[f"out{k}"] + (0 if k in has_child else size[f"log{k}"])
                         for k in range(n)},
        "inputs": {ids[k]: (SizedBlob(f"in{k}", size[f"in{k}"]),) for k in range(n)},
        "functions": {ids[k]: ids[k].split("_ID")[0] for k in range(n)},
    }
    return doc, expected


@settings(max_examples=60, deadline=None)
@given(dag_documents())
def test_random_dags_round_trip(tmp_path_factory: pytest.TempPathFactory,
                                case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    doc, expected = case
    path = write(tmp_path_factory.mktemp("dag"), doc)
    wf = load_wfformat(path)
    assert len(wf) == len(expected["exec_ms"])
    assert wf.graph.number_of_edges() == len(expected["edges"])
    assert set(wf.graph.edges) == set(expected["edges"])
    assert trace_edge_bytes(path) == expected["edges"]
    for tid, node in wf.tasks.items():
        assert node.profile is not None
        assert node.profile.exec_ms == pytest.approx(expected["exec_ms"][tid])
        assert node.profile.output_bytes == expected["output_bytes"][tid]
        assert node.kwargs["inputs"] == expected["inputs"][tid]
        assert node.func.name == expected["functions"][tid]
