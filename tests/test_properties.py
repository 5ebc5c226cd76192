"""Properties of :class:`Workflow` on random DAGs whose edges hide in nested arguments.

A DAG is drawn as a lower-triangular adjacency: task ``j`` reads distinct earlier tasks
``parents[j]``, in that argument order, each placed at a random depth inside lists,
tuples, dicts and named tuples, mixed with literals and sometimes repeated. The expected
answers come from that adjacency through networkx, never from the workflow under test.
"""

from __future__ import annotations

import itertools
import re
from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from faasplan.workflow import TaskNode, TaskProfile, Workflow, iter_leaves, map_leaves, task


@task
def alpha(*inputs):
    raise AssertionError("not run")


@task
def beta(*inputs):
    raise AssertionError("not run")


@task
def gamma(*inputs):
    raise AssertionError("not run")


FUNCS = (alpha, beta, gamma)
SHORT = ("alpha", "beta", "gamma")
Box = namedtuple("Box", "items label")
MAX_TASKS = 9
FAST = settings(max_examples=120, deadline=None)


# -- random workflow specs ------------------------------------------------------------------
@dataclass(frozen=True)
class Ref:
    """Placeholder for the node of task ``index`` in an argument template."""

    index: int


@dataclass(frozen=True)
class Lit:
    """Placeholder for a literal argument (shifted by an offset when instantiated)."""

    value: int


@dataclass(frozen=True)
class Spec:
    funcs: tuple[int, ...]
    parents: tuple[tuple[int, ...], ...]
    args: tuple[tuple[Any, ...], ...]

    def __len__(self) -> int:
        return len(self.funcs)

    def graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        g.add_nodes_from(range(len(self)))
        g.add_edges_from((p, j) for j, ps in enumerate(self.parents) for p in ps)
        return g


KINDS = ("list", "tuple", "dict", "box")


def _container(kind: str, inner: list[Any], depth: int) -> Any:
    if kind == "list":
        return inner
    if kind == "tuple":
        return tuple(inner)
    if kind == "dict":
        return {f"k{i}": v for i, v in enumerate(inner)}
    return Box(inner, Lit(depth))


def _nest(draw: st.DrawFn, items: list[Any], depth: int) -> list[Any]:
    """Split ``items`` (kept in order) into plain values and containers nested up to depth 4."""
    out: list[Any] = []
    rest = list(items)
    while rest:
        if depth < 4 and draw(st.booleans()):
            k = draw(st.integers(1, len(rest)))
            head, rest = rest[:k], rest[k:]
            kind = draw(st.sampled_from(KINDS))
            out.append(_container(kind, _nest(draw, head, depth + 1), depth))
        else:
            out.append(rest.pop(0))
    return out


@st.composite
def specs(draw: st.DrawFn, max_tasks: int = MAX_TASKS) -> Spec:
    n = draw(st.integers(1, max_tasks))
    funcs, parents, args = [], [], []
    for j in range(n):
        chosen = draw(st.lists(st.integers(0, j - 1), unique=True, max_size=j)) if j else []
        again = draw(st.lists(st.sampled_from(chosen), max_size=2)) if chosen else []
        items: list[Any] = [Ref(i) for i in chosen + again]
        for value in draw(st.lists(st.integers(0, 9), max_size=2)):
            items.insert(draw(st.integers(0, len(items))), Lit(value))
        funcs.append(draw(st.integers(0, len(FUNCS) - 1)))
        parents.append(tuple(chosen))
        args.append(tuple(_nest(draw, items, 0)))
    return Spec(tuple(funcs), tuple(parents), tuple(args))


def _instantiate(template: Any, nodes: list[Any], offset: int) -> Any:
    if isinstance(template, Ref):
        return nodes[template.index]
    if isinstance(template, Lit):
        return template.value + offset
    if isinstance(template, Box):
        return Box(*(_instantiate(v, nodes, offset) for v in template))
    if isinstance(template, list):
        return [_instantiate(v, nodes, offset) for v in template]
    if isinstance(template, tuple):
        return tuple(_instantiate(v, nodes, offset) for v in template)
    if isinstance(template, dict):
        return {k: _instantiate(v, nodes, offset) for k, v in template.items()}
    raise AssertionError(f"unexpected template part {template!r}")


def build(spec: Spec, *, names: list[str | None] | None = None, offset: int = 0,
          weights: list[float] | None = None) -> tuple[Workflow, list[TaskNode]]:
    nodes: list[TaskNode] = []
    for j in range(len(spec)):
        options: dict[str, Any] = {}
        if names is not None and names[j] is not None:
            options["task_id"] = names[j]
        if weights is not None:
            options["profile"] = TaskProfile(exec_ms=weights[j], output_bytes=0)
        args = _instantiate(spec.args[j], nodes, offset)
        nodes.append(FUNCS[spec.funcs[j]](*args, **options))
    has_child = {p for ps in spec.parents for p in ps}
    sinks = [nodes[j] for j in range(len(spec)) if j not in has_child]
    return Workflow(sinks, detect=False), nodes


@st.composite
def specs_with_names(draw: st.DrawFn) -> tuple[Spec, list[str | None]]:
    """A spec and ids for some of its tasks, taken from the ids generated ones look like."""
    spec = draw(specs())
    n = len(spec)
    pool = [f"{s}-{k}" for s in SHORT for k in range(n)]
    chosen = draw(st.permutations(pool))[:n]
    given_mask = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return spec, [name if keep else None for name, keep in zip(chosen, given_mask, strict=True)]


def _all_paths(g: nx.DiGraph) -> Iterator[list[int]]:
    stack = [[s] for s in g]
    while stack:
        path = stack.pop()
        yield path
        stack.extend([*path, c] for c in g.successors(path[-1]))


def _same_shape(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same_shape(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same_shape(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# -- properties -----------------------------------------------------------------------------
@FAST
@given(specs())
def test_edges_and_order_match_the_adjacency(spec: Spec) -> None:
    wf, nodes = build(spec)
    g = spec.graph()
    tid = [wf.id_of(n) for n in nodes]
    assert len(wf) == len(spec) == len(set(tid))
    assert set(wf) == set(tid)
    pos = {t: i for i, t in enumerate(wf.topological_order)}
    assert all(pos[tid[p]] < pos[tid[j]] for p, j in g.edges)
    assert wf.graph.number_of_edges() == sum(len(ps) for ps in spec.parents)
    assert set(wf.graph.edges) == {(tid[p], tid[j]) for p, j in g.edges}
    for j, node in enumerate(nodes):
        assert node.upstream == [nodes[p] for p in spec.parents[j]]
        assert wf.upstream(tid[j]) == tuple(tid[p] for p in spec.parents[j])
        assert sorted(wf.downstream(tid[j])) == sorted(tid[c] for c in g.successors(j))
    assert set(wf.roots) == {tid[j] for j in g if g.in_degree(j) == 0}
    assert set(wf.sinks) == {tid[j] for j in g if g.out_degree(j) == 0}


@FAST
@given(specs_with_names())
def test_ids_unique_deterministic_and_user_ids_kept(case: tuple[Spec, list[str | None]]
                                                    ) -> None:
    spec, names = case
    wf, nodes = build(spec, names=names)
    tid = [wf.id_of(n) for n in nodes]
    assert len(set(tid)) == len(spec)
    for j, name in enumerate(names):
        if name is not None:
            assert tid[j] == name
        else:
            assert re.fullmatch(rf"{SHORT[spec.funcs[j]]}-\d+", tid[j])
    again, again_nodes = build(spec, names=names, offset=5)
    assert [again.id_of(n) for n in again_nodes] == tid
    assert again.topological_order == wf.topological_order


@FAST
@given(specs(), st.data())
def test_subdag_is_root_plus_descendants(spec: Spec, data: st.DataObject) -> None:
    wf, nodes = build(spec)
    g = spec.graph()
    tid = [wf.id_of(n) for n in nodes]
    root = data.draw(st.integers(0, len(spec) - 1))
    keep = nx.descendants(g, root) | {root}
    sub = wf.subdag(tid[root])
    assert set(sub) == {tid[k] for k in keep}
    assert sub.topological_order == tuple(t for t in wf.topological_order if t in sub)
    assert sub.roots == (tid[root],)
    assert sub.external_inputs == {tid[p] for k in keep for p in g.predecessors(k)
                                   if p not in keep}
    assert set(sub.graph.edges) == {(tid[p], tid[c]) for p, c in g.subgraph(keep).edges}


@FAST
@given(specs_with_names(), st.integers(1, 100))
def test_structure_hash_blind_to_ids_and_literals(case: tuple[Spec, list[str | None]],
                                                  offset: int) -> None:
    spec, names = case
    plain, _ = build(spec)
    renamed, _ = build(spec, names=names, offset=offset)
    every_named, _ = build(spec, names=[f"t{len(spec) - j}" for j in range(len(spec))])
    assert plain.structure_hash == renamed.structure_hash == every_named.structure_hash


@FAST
@given(specs(), st.data())
def test_structure_hash_sees_an_added_edge(spec: Spec, data: st.DataObject) -> None:
    missing = [(p, j) for j in range(len(spec)) for p in range(j) if p not in spec.parents[j]]
    if not missing:
        return
    p, j = data.draw(st.sampled_from(missing))
    parents = list(spec.parents)
    parents[j] = (*parents[j], p)
    args = list(spec.args)
    args[j] = (*args[j], Ref(p))
    wider = Spec(spec.funcs, tuple(parents), tuple(args))
    assert build(wider)[0].structure_hash != build(spec)[0].structure_hash


@FAST
@given(specs(max_tasks=8), st.data())
def test_critical_path_is_the_longest_path(spec: Spec, data: st.DataObject) -> None:
    weights = data.draw(st.lists(st.integers(0, 20).map(float), min_size=len(spec),
                                 max_size=len(spec)))
    wf, nodes = build(spec)
    g = spec.graph()
    index = {wf.id_of(n): j for j, n in enumerate(nodes)}
    length, path = wf.critical_path({t: weights[j] for t, j in index.items()})
    brute = max(sum(weights[k] for k in p) for p in _all_paths(g))
    assert length == brute
    assert length >= max(weights)
    steps = [index[t] for t in path]
    assert all(g.has_edge(a, b) for a, b in itertools.pairwise(steps))
    assert sum(weights[k] for k in steps) == length
    profiled, _ = build(spec, weights=weights)
    assert profiled.critical_path() == (length, path)


@FAST
@given(specs())
def test_map_and_iter_leaves_walk_the_nested_arguments(spec: Spec) -> None:
    _, nodes = build(spec)
    index = {id(n): j for j, n in enumerate(nodes)}
    marks = [("node", j) for j in range(len(spec))]
    for node, template in zip(nodes, spec.args, strict=True):
        numbered = map_leaves(node.args, lambda n: ("node", index[id(n)]), TaskNode)
        assert _same_shape(numbered, _instantiate(template, marks, 0))
        assert _same_shape(node.args, _instantiate(template, nodes, 0))  # not mutated
        assert [index[id(n)] for n in iter_leaves(node.args, TaskNode)] == _refs(template)


def _refs(template: Any) -> list[int]:
    if isinstance(template, Ref):
        return [template.index]
    if isinstance(template, list | tuple):
        return [i for v in template for i in _refs(v)]
    if isinstance(template, dict):
        return [i for v in template.values() for i in _refs(v)]
    return []
