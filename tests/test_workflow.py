"""The workflow language: @task, nested arguments, io hints, Workflow, requirements."""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections import namedtuple
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from faasplan.workflow import (
    IOHint,
    TaskFunction,
    TaskNode,
    TaskProfile,
    Workflow,
    WorkflowError,
    io,
    iter_leaves,
    map_leaves,
    task,
)
from faasplan.workflow.requirements import (
    detect_requirements,
    merge_requirements,
    missing_requirements,
)

HERE = __name__


# -- tasks used below -----------------------------------------------------------------------
@task
def src(value):
    return value


@task
def add(a, b):
    """Add two numbers."""
    return a + b


@task
def sub(a, b):
    return a - b


@task(io=io.linear(0.5), name="halve")
def halve(x):
    return x / 2


@task
def collect(items, mapping=None, *, scale=1):
    return items


@task
def explode(*parents, tag=None):
    raise AssertionError("a task body must not run while the graph is built")


@task
def mean(x):
    return np.mean(x)


Pair = namedtuple("Pair", "left right")


def ids(wf: Workflow, nodes: list[TaskNode]) -> list[str]:
    return [wf.id_of(n) for n in nodes]


# -- @task ----------------------------------------------------------------------------------
def test_bare_task_keeps_function_identity():
    assert isinstance(add, TaskFunction)
    assert add.name == f"{HERE}.add"
    assert add.io is None
    assert add.__name__ == "add"
    assert add.__doc__ == "Add two numbers."
    assert str(add.signature) == "(a, b)"


def test_task_with_options():
    assert halve.name == "halve"
    assert halve.io == io.linear(0.5)
    assert halve.__name__ == "halve"
    assert repr(halve) == "TaskFunction(halve)"


def test_calling_a_task_returns_a_node_and_runs_nothing():
    node = explode(explode(1), tag="t")
    assert isinstance(node, TaskNode)
    assert node.func is explode
    assert node.kwargs == {"tag": "t"}
    assert node.task_id is None and node.profile is None
    wf = Workflow(node)
    assert wf.topological_order == ("explode-0", "explode-1")


def test_call_keeps_task_id_and_profile():
    prof = TaskProfile(exec_ms=5.0, output_bytes=8)
    node = add(1, 2, task_id="sum", profile=prof)
    assert node.args == (1, 2)
    assert node.task_id == "sum"
    assert node.profile is prof


@pytest.mark.parametrize(("call", "expected"), [
    (lambda: add(1), "add(a, b): missing a required argument: 'b'"),
    (lambda: add(1, 2, 3), "add(a, b): too many positional arguments"),
    (lambda: add(1, 2, c=3), "add(a, b): got an unexpected keyword argument 'c'"),
    (lambda: collect([], None, 2),
     "collect(items, mapping=None, *, scale=1): too many positional arguments"),
])
def test_wrong_call_names_function_and_signature(call, expected):
    with pytest.raises(TypeError, match=re.escape(f"cannot call task {HERE}.{expected}")):
        call()


def test_wrong_call_message_is_exact():
    with pytest.raises(TypeError) as info:
        add(1)
    assert str(info.value) == (
        f"cannot call task {HERE}.add(a, b): missing a required argument: 'b'")
    with pytest.raises(TypeError, match=re.escape(
            f"cannot call task {HERE}.collect(items, mapping=None, *, scale=1): ")):
        collect()


@pytest.mark.parametrize("bad", [
    "linear", io.linear, 0.5, {"kind": "linear"},
])
def test_task_io_must_be_a_hint(bad):
    with pytest.raises(TypeError, match=r"@task\(io=\.\.\.\) expects faasplan\.io\."
                                        r"linear/power/constant, got"):
        task(io=bad)


def test_task_rejects_non_functions_and_double_decoration():
    with pytest.raises(TypeError, match="@task decorates a function, got 5"):
        task(5)
    with pytest.raises(TypeError, match=r"TaskFunction\(.*add\) is already a task"):
        task(add)


def test_task_rejects_reserved_parameter_names():
    def f(x, profile):
        return x

    with pytest.raises(TypeError, match=r"f\(x, profile\): parameter name\(s\) \['profile'\] "
                                        r"are reserved"):
        task(f)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"task_id": ""}, "task_id must be a non-empty string, got ''"),
    ({"task_id": 7}, "task_id must be a non-empty string, got 7"),
    ({"profile": 12.0}, "profile must be a TaskProfile, got 12.0"),
])
def test_task_call_validates_task_id_and_profile(kwargs, match):
    with pytest.raises(TypeError, match=re.escape(f"task {HERE}.add: {match}")):
        add(1, 2, **kwargs)


# -- io hints -------------------------------------------------------------------------------
def test_io_hint_predictions():
    assert io.linear(0.5).output_bytes(1000) == 500.0
    assert io.linear().output_bytes(300) == 300.0  # ratio to be fitted: 1.0 until then
    assert io.power(0.5, coefficient=2.0).output_bytes(100) == 20.0
    assert io.constant(64).output_bytes(10**9) == 64.0
    assert io.linear(2) == IOHint("linear", ratio=2)


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: io.linear(-1), ValueError, "io hint ratio must be a finite number >= 0, got -1"),
    (lambda: io.linear(float("nan")), ValueError, "io hint ratio must be a finite number"),
    (lambda: io.power(float("inf")), ValueError, "io hint exponent must be a finite number"),
    (lambda: io.power(1.0, coefficient=-2.0), ValueError, "io hint coefficient must be"),
    (lambda: io.constant(-64), ValueError, "io hint nbytes must be a finite number >= 0"),
    (lambda: io.linear("0.5"), TypeError, "io hint ratio must be a number, got '0.5'"),
    (lambda: io.constant(True), TypeError, "io hint nbytes must be a number, got True"),
    (lambda: IOHint("exponential"), ValueError,
     "unknown io hint kind 'exponential'; use linear, power or constant"),
])
def test_io_hint_validation(make, error, match):
    with pytest.raises(error, match=re.escape(match)):
        make()


def test_profile_validation():
    with pytest.raises(ValueError, match=r"exec_ms must be >= 0, got -1\.0"):
        TaskProfile(exec_ms=-1.0, output_bytes=0)
    with pytest.raises(ValueError, match=r"output_bytes must be >= 0, got -5"):
        TaskProfile(exec_ms=1.0, output_bytes=-5)


# -- nested arguments -----------------------------------------------------------------------
def test_upstream_found_in_dict_of_list_of_tuple():
    x, y, z = src(1), src(2), src(3)
    node = collect({"a": [x, (y, z)]})
    assert node.upstream == [x, y, z]
    wf = Workflow(node)
    assert wf.topological_order == ("src-0", "src-1", "src-2", "collect-0")
    assert wf.upstream("collect-0") == ("src-0", "src-1", "src-2")
    assert sorted(wf.graph.edges) == [("src-0", "collect-0"), ("src-1", "collect-0"),
                                      ("src-2", "collect-0")]


def test_upstream_in_list_of_lists():
    grid = [[src(0), src(1)], [src(2), src(3)]]
    node = collect(grid)
    assert node.upstream == [grid[0][0], grid[0][1], grid[1][0], grid[1][1]]


def test_upstream_in_dict_follows_insertion_order():
    x, y = src(1), src(2)
    assert collect({"left": x, "right": y}).upstream == [x, y]
    assert collect({"right": y, "left": x}).upstream == [y, x]


def test_upstream_at_depth_five_and_in_named_tuples():
    x, y = src(1), src(2)
    assert collect([[[[(x,)]]]], mapping=Pair(left=0, right={"k": [y]})).upstream == [x, y]


def test_literals_and_strings_are_leaves():
    node = collect(["abc", b"xy", 3, None, {"k": (1.5,)}])
    assert node.upstream == []
    assert Workflow(node).topological_order == ("collect-0",)


def test_same_node_twice_counts_once():
    x = src(1)
    node = collect([x, {"again": x}], mapping=(x,))
    assert node.upstream == [x]
    wf = Workflow(node)
    assert wf.upstream("collect-0") == ("src-0",)
    assert wf.graph.number_of_edges() == 1


def test_keyword_and_positional_calls_bind_alike():
    x, y = src(1), src(2)
    by_position, by_keyword, swapped = add(x, y), add(a=x, b=y), add(b=y, a=x)
    for node in (by_position, by_keyword, swapped):
        assert node.args == (x, y)
        assert node.kwargs == {}
        assert node.upstream == [x, y]


def test_keyword_only_and_skipped_default_arguments():
    x, y = src(1), src(2)
    node = collect([x], scale=y)
    assert node.args == ([x],)
    assert node.kwargs == {"scale": y}
    assert node.upstream == [x, y]
    # mapping left at its default: scale cannot be positional, so it stays a keyword
    assert collect(items=[y], scale=x).upstream == [y, x]


def test_map_leaves_rebuilds_containers_and_keeps_named_tuples():
    value = {"p": Pair(1, [2, (3, "s")]), "t": (4,), "l": [5]}
    out = map_leaves(value, lambda v: v * 10, int)
    assert out == {"p": Pair(10, [20, (30, "s")]), "t": (40,), "l": [50]}
    assert type(out["p"]) is Pair
    assert type(out["p"].right[1]) is tuple
    assert value == {"p": Pair(1, [2, (3, "s")]), "t": (4,), "l": [5]}  # not mutated


def test_map_leaves_replaces_nodes():
    x, y = src(1), src(2)
    names = {id(x): "x", id(y): "y"}
    args = ({"a": [x, (y, 3)]}, Pair(x, y))
    assert map_leaves(args, lambda n: names[id(n)], TaskNode) == (
        {"a": ["x", ("y", 3)]}, Pair("x", "y"))


def test_iter_leaves_in_argument_order():
    assert list(iter_leaves({"a": [1, (2, 3)], "b": 4, "c": "56"}, int)) == [1, 2, 3, 4]
    assert list(iter_leaves([[], {}, ()], int)) == []
    assert list(iter_leaves(7, int)) == [7]


# -- Workflow -------------------------------------------------------------------------------
def test_empty_workflow():
    with pytest.raises(WorkflowError, match="a workflow needs at least one task"):
        Workflow([])


@pytest.mark.parametrize(("sinks", "match"), [
    ([src(1), 3], "Workflow() takes task nodes, got int: 3"),
    (5, "Workflow() takes a task node or a sequence of them, got int: 5"),
    ("abc", "Workflow() takes a task node or a sequence of them, got str: 'abc'"),
    (add, "got the task function TaskFunction(" + HERE + ".add); call it to make a node"),
])
def test_workflow_takes_only_task_nodes(sinks, match):
    with pytest.raises(WorkflowError, match=re.escape(match)):
        Workflow(sinks)


def test_duplicate_task_id_is_named():
    node = add(src(1, task_id="a"), halve(2, task_id="a"))
    with pytest.raises(WorkflowError, match=re.escape(
            f"duplicate task id 'a' ({HERE}.src and halve)")):
        Workflow(node)


def test_cycle_from_mutated_argument_is_named():
    items: list[TaskNode] = []
    first = collect(items, task_id="first")
    second = add(first, 1, task_id="second")
    items.append(second)  # the list is shared with ``first``: second now feeds first
    with pytest.raises(WorkflowError, match="workflow has a cycle through tasks") as info:
        Workflow(second)
    names = re.findall(r"'(\w+)'", str(info.value))
    assert sorted(names) == ["first", "second"]


def test_self_cycle():
    items: list[TaskNode] = []
    node = collect(items, task_id="loop")
    items.append(node)
    with pytest.raises(WorkflowError, match=re.escape("cycle through tasks ['loop']")):
        Workflow(node)


def _chain_workflow(base: int = 1) -> Workflow:
    return Workflow(add(add(src(base), src(base + 1)), src(base + 2)))


def test_generated_ids_are_deterministic():
    first, second = _chain_workflow(), _chain_workflow(10)
    assert first.topological_order == ("src-0", "src-1", "add-0", "src-2", "add-1")
    assert second.topological_order == first.topological_order
    assert {t: first.upstream(t) for t in first} == {t: second.upstream(t) for t in second}
    assert first.upstream("add-1") == ("add-0", "src-2")


def test_generated_ids_skip_user_ids():
    wf = Workflow(add(add(1, 2, task_id="add-0"), add(3, 4)))
    assert wf.topological_order == ("add-0", "add-1", "add-2")
    wf = Workflow(add(add(1, 2), add(3, 4, task_id="add-0")))
    assert wf.topological_order == ("add-1", "add-0", "add-2")


def test_lambda_and_nested_function_ids():
    inner = task(lambda v: v)

    def outer(v):
        return v

    wf = Workflow(task(outer)(inner(1)))
    assert wf.topological_order == ("lambda-0", "outer-0")
    assert wf.name == "outer"


def _diamond() -> tuple[Workflow, dict[str, TaskNode]]:
    r = src(0, task_id="r")
    left, right = halve(r, task_id="left"), halve(r, task_id="right")
    join = sub(right, left, task_id="join")
    lone = src(9, task_id="lone")
    nodes = {"r": r, "left": left, "right": right, "join": join, "lone": lone}
    return Workflow([join, lone], name="diamond"), nodes


def test_basic_access():
    wf, nodes = _diamond()
    assert len(wf) == 5
    assert list(wf) == list(wf.topological_order) == ["r", "right", "left", "join", "lone"]
    assert "join" in wf and "nope" not in wf
    assert wf.name == "diamond"
    assert repr(wf) == "Workflow('diamond', tasks=5, edges=4)"
    assert wf.node("left") is nodes["left"]
    assert wf.id_of(nodes["join"]) == "join"
    assert list(wf.tasks) == list(wf.topological_order)
    assert wf.external_inputs == frozenset()


def test_roots_sinks_upstream_downstream():
    wf, _ = _diamond()
    assert wf.roots == ("r", "lone")
    assert wf.sinks == ("join", "lone")
    assert wf.upstream("join") == ("right", "left")  # argument order, not id order
    assert wf.downstream("r") == ("right", "left")
    assert wf.downstream("join") == ()
    assert sorted(wf.graph.edges) == [("left", "join"), ("r", "left"), ("r", "right"),
                                      ("right", "join")]


def test_topological_order_is_valid():
    wf, _ = _diamond()
    pos = {t: i for i, t in enumerate(wf.topological_order)}
    assert all(pos[u] < pos[v] for u, v in wf.graph.edges)


def test_default_name_and_sink_also_upstream():
    a = src(1)
    wf = Workflow([a, add(a, 1), a])
    assert wf.name == "src"
    assert wf.topological_order == ("src-0", "add-0")
    assert wf.sinks == ("add-0",)


def test_workflow_is_read_only():
    wf, _ = _diamond()
    assert nx.is_frozen(wf.graph)
    with pytest.raises(nx.NetworkXError):
        wf.graph.add_edge("lone", "r")
    with pytest.raises(TypeError):
        wf.tasks["x"] = src(1)  # type: ignore[index]


def test_unknown_ids_and_nodes():
    wf, _ = _diamond()
    with pytest.raises(KeyError, match="unknown task id 'zzz' in workflow 'diamond'"):
        wf.node("zzz")
    with pytest.raises(KeyError, match=r"TaskNode\(.*src, id=None\) is not a task of workflow"):
        wf.id_of(src(1))


# -- structure hash -------------------------------------------------------------------------
def _shape(values: tuple[int, int, int], names: tuple[str, str, str] | None = None,
           f=add, combine=sub) -> Workflow:
    kw = [{} if names is None else {"task_id": n} for n in (names or (None,) * 3)]
    a, b = src(values[0], **kw[0]), src(values[1], **kw[1])
    return Workflow(combine(f(a, b), values[2], **kw[2]))


def test_structure_hash_ignores_literals_and_ids():
    base = _shape((1, 2, 3))
    assert re.fullmatch(r"[0-9a-f]{16}", base.structure_hash)
    assert _shape((7, 8, 9)).structure_hash == base.structure_hash
    assert _shape((1, 2, 3), ("p", "q", "r")).structure_hash == base.structure_hash


def test_structure_hash_sees_functions():
    base = _shape((1, 2, 3))
    assert _shape((1, 2, 3), f=sub).structure_hash != base.structure_hash
    assert _shape((1, 2, 3), combine=add).structure_hash != base.structure_hash


def test_structure_hash_sees_argument_order():
    x1, y1 = src(1), halve(2)
    x2, y2 = src(1), halve(2)
    assert Workflow(sub(x1, y1)).structure_hash != Workflow(sub(y2, x2)).structure_hash
    # swapping two inputs of the same shape is the same structure
    assert (Workflow(sub(src(1), src(2))).structure_hash
            == Workflow(sub(src(2), src(1))).structure_hash)


def test_structure_hash_sees_which_tasks_share_an_input():
    # b and c read one src, another src is left alone / b and c read one src each:
    # every task has the same ancestry in both, only the sharing differs.
    a1, a2 = src(1), src(2)
    shared = Workflow([halve(a1), mean(a1), a2])
    a1, a2 = src(1), src(2)
    split = Workflow([halve(a1), mean(a2)])
    assert shared.structure_hash != split.structure_hash


def test_structure_hash_sees_edges():
    a, b = src(1), src(2)
    with_edge = Workflow([add(a, b)])
    a, b = src(1), src(2)
    without_edge = Workflow([add(a, 2), b])
    assert with_edge.structure_hash != without_edge.structure_hash


def test_structure_hash_ignores_sink_order():
    r = src(1)
    first = Workflow([halve(r), mean(r)])
    r = src(1)
    second = Workflow([mean(r), halve(r)])
    assert first.structure_hash == second.structure_hash


# -- subdag ---------------------------------------------------------------------------------
def _subdag_workflow() -> Workflow:
    r = src(0, task_id="r")
    a, b = halve(r, task_id="a"), halve(r, task_id="b")
    c = mean(a, task_id="c")
    q = src(1, task_id="q")
    d = collect([b, c], {"q": q}, task_id="d")
    return Workflow(d, name="w")


def test_subdag_holds_root_and_descendants():
    wf = _subdag_workflow()
    sub_wf = wf.subdag("a")
    assert sub_wf.topological_order == ("a", "c", "d")
    assert sub_wf.external_inputs == frozenset({"r", "b", "q"})
    assert sub_wf.roots == ("a",)
    assert sub_wf.sinks == ("d",)
    assert sub_wf.upstream("d") == ("b", "c", "q")  # external inputs stay, in argument order
    assert sorted(sub_wf.graph.edges) == [("a", "c"), ("c", "d")]
    assert sub_wf.name == "w/a"
    assert sub_wf.requirements == wf.requirements
    assert len(wf) == 6  # the original is untouched


def test_subdag_of_a_sink_and_of_the_root():
    wf = _subdag_workflow()
    assert wf.subdag("d").topological_order == ("d",)
    assert wf.subdag("d").external_inputs == frozenset({"b", "c", "q"})
    whole = wf.subdag("r")
    assert set(whole) == {"r", "a", "b", "c", "d"}
    assert whole.external_inputs == frozenset({"q"})


def test_subdag_structure_hash_of_twin_branches():
    r = src(0)
    wf = Workflow([mean(halve(r)), mean(halve(r))])
    left_id, right_id = wf.downstream(wf.roots[0])
    assert wf.subdag(left_id).structure_hash == wf.subdag(right_id).structure_hash
    assert wf.subdag(left_id).structure_hash != wf.structure_hash
    # joined by add(left, right), the branches feed different argument positions
    r = src(0)
    wf = Workflow(add(mean(halve(r)), mean(halve(r))))
    left_id, right_id = wf.downstream(wf.roots[0])
    assert wf.subdag(left_id).structure_hash != wf.subdag(right_id).structure_hash


def test_subdag_unknown_root():
    with pytest.raises(KeyError, match="unknown task id 'zz' in workflow 'w'"):
        _subdag_workflow().subdag("zz")


# -- critical path --------------------------------------------------------------------------
def test_critical_path_default_weights():
    wf = _subdag_workflow()
    assert wf.critical_path() == (4.0, ["r", "a", "c", "d"])


def test_critical_path_with_mapping_and_callable():
    wf = _subdag_workflow()
    weights = {"r": 1.0, "a": 1.0, "b": 10.0, "c": 1.0, "d": 2.0, "q": 20.0}
    assert wf.critical_path(weights) == (22.0, ["q", "d"])
    assert wf.critical_path(lambda t: 5.0 if t == "b" else 1.0) == (7.0, ["r", "b", "d"])


def test_critical_path_with_profiles():
    r = src(0, task_id="r", profile=TaskProfile(10.0, 1))
    slow = halve(r, task_id="slow", profile=TaskProfile(30.0, 1))
    fast = halve(r, task_id="fast", profile=TaskProfile(5.0, 1))
    wf = Workflow(add(fast, slow, task_id="end", profile=TaskProfile(2.0, 1)))
    assert wf.critical_path() == (42.0, ["r", "slow", "end"])
    # a task without a profile weighs 1
    wf = Workflow(add(src(0, task_id="r", profile=TaskProfile(3.0, 1)), 1, task_id="end"))
    assert wf.critical_path() == (4.0, ["r", "end"])


def test_critical_path_on_subdag_ignores_external_inputs():
    wf = _subdag_workflow()
    assert wf.subdag("a").critical_path() == (3.0, ["a", "c", "d"])


# -- requirements ---------------------------------------------------------------------------
def test_requirements_detected_from_the_task_module():
    # this module imports numpy, networkx and pytest; faasplan and the standard library
    # are left out
    assert Workflow(mean(src(1))).requirements == ("networkx", "numpy", "pytest")
    assert Workflow(mean(1), detect=False).requirements == ()


def test_declared_requirements_merge_with_detected():
    wf = Workflow(mean(1), requirements=["NumPy >= 1.20", "pandas>=2", "numpy<100"])
    assert wf.requirements == ("networkx", "numpy<100", "NumPy>=1.20", "pandas>=2", "pytest")


def test_invalid_requirement_has_a_hint():
    with pytest.raises(ValueError, match=r"invalid requirement 'numpy>>2': .*; use PEP 508, "
                                         r"e\.g\. 'numpy>=2'"):
        Workflow(mean(1), requirements=["numpy>>2"])


def test_requirements_as_one_string_is_refused():
    with pytest.raises(TypeError, match=re.escape(
            "requirements must be a list of strings, e.g. ['numpy>=2'], not the string")):
        Workflow(mean(1), requirements="numpy>=2")


def test_detect_requirements_of_stdlib_code_is_empty():
    assert detect_requirements([json.dumps, Path.exists]) == set()


def _import_fresh(tmp_path, monkeypatch, files):
    """Write ``files`` (name -> source) into ``tmp_path`` and import the first one."""
    for name, source in files.items():
        (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in files:
        monkeypatch.delitem(sys.modules, name, raising=False)
    return importlib.import_module(next(iter(files)))


def test_detect_requirements_maps_modules_to_distributions(tmp_path, monkeypatch):
    pytest.importorskip("yaml")
    module = _import_fresh(tmp_path, monkeypatch, {"wf_with_imports": (
        "import os\n"
        "import yaml\n"
        "from faasplan import task\n\n"
        "@task\n"
        "def load(path):\n"
        "    return yaml.safe_load(path)\n")})
    # the module is yaml, the distribution PyYAML
    assert detect_requirements([module.load.fn]) == {"PyYAML"}
    assert Workflow(module.load("x")).requirements == ("PyYAML",)


def test_local_modules_and_optional_imports_are_not_requirements(tmp_path, monkeypatch):
    module = _import_fresh(tmp_path, monkeypatch, {
        "wf_main_xyz": (
            "from typing import TYPE_CHECKING\n"
            "import numpy\n"
            "import wf_helpers_xyz\n"                 # the user's own sibling module
            "from wf_helpers_xyz import double\n"
            "try:\n"
            "    import surely_absent_module_xyz\n"   # optional, absent here
            "except ImportError:\n"
            "    surely_absent_module_xyz = None\n"
            "try:\n"
            "    import yaml\n"                       # optional, maybe installed
            "except (ModuleNotFoundError, OSError):\n"
            "    yaml = None\n"
            "if TYPE_CHECKING:\n"
            "    import pandas\n"
            "from faasplan import task\n\n"
            "@task\n"
            "def run(x):\n"
            "    return double(x)\n"),
        "wf_helpers_xyz": "def double(x):\n    return 2 * x\n",
    })
    assert detect_requirements([module.run.fn]) == {"numpy"}
    wf = Workflow(module.run(1))
    assert wf.requirements == ("numpy",)
    # what a worker checks before running: nothing is missing, so the run is not refused
    assert missing_requirements(wf.requirements) == []


def test_imports_in_an_except_clause_are_still_requirements(tmp_path, monkeypatch):
    module = _import_fresh(tmp_path, monkeypatch, {"wf_fallback_xyz": (
        "try:\n"
        "    import surely_absent_module_xyz as fast\n"
        "except ImportError:\n"
        "    import numpy as fast\n"
        "def f():\n"
        "    return fast\n")})
    assert detect_requirements([module.f]) == {"numpy"}


def test_merge_requirements_directly():
    assert merge_requirements([], []) == ()
    assert merge_requirements(["scipy"], ["SciPy", "numpy"]) == ("numpy", "scipy")


def test_missing_requirements():
    installed = np.__version__
    assert missing_requirements(["numpy", "numpy>=1"]) == []
    assert missing_requirements(["surely-not-installed-xyz>=1"]) == [
        "surely-not-installed-xyz>=1"]
    assert missing_requirements(["numpy<1"]) == [f"numpy<1 (installed: {installed})"]
    # a marker that does not apply here means the requirement is not needed here
    assert missing_requirements(['surely-not-installed-xyz; python_version < "3"']) == []
    with pytest.raises(ValueError, match="invalid requirement 'numpy=='"):
        missing_requirements(["numpy=="])
