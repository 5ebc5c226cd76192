"""The immutable :class:`Workflow`: a DAG of task nodes with ids."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import networkx as nx

from faasplan.workflow.errors import WorkflowError
from faasplan.workflow.gcpause import gc_paused
from faasplan.workflow.requirements import detect_requirements, merge_requirements
from faasplan.workflow.task import TaskFunction, TaskNode

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from faasplan.workflow.codec import DagSizes


class Workflow:
    """A DAG of tasks built from its sink node(s); immutable once built.

    Parameters
    ----------
    sinks : TaskNode or sequence of TaskNode
        The final task(s). Every node reachable through arguments belongs to the workflow.
    name : str, optional
        A label for reports (default: the first sink's function name).
    requirements : iterable of str
        PEP 508 requirements, merged with the installed distributions that the modules of
        the task functions import (see :func:`faasplan.workflow.requirements.detect_requirements`).
        Workers check them at start and fail fast.
    detect : bool
        Detect requirements from the task functions' modules (default ``True``).

    Notes
    -----
    Task ids are the ``task_id`` given when calling a task, else ``<function>-<n>``,
    numbered per function in a deterministic order, so the same code builds the same ids.
    In Jupyter a workflow displays as a summary and its DAG (:meth:`visualize`).

    Examples
    --------
    >>> from faasplan import task, Workflow
    >>> @task
    ... def inc(x):
    ...     return x + 1
    >>> wf = Workflow(inc(inc(1)))
    >>> len(wf), wf.topological_order
    (2, ('inc-0', 'inc-1'))
    """

    def __init__(self, sinks: TaskNode | Sequence[TaskNode], name: str | None = None,
                 requirements: Iterable[str] = (), *, detect: bool = True) -> None:
        sink_list = _sink_list(sinks)
        if not sink_list:
            raise WorkflowError("a workflow needs at least one task; pass its sink node(s)")
        for s in sink_list:
            if not isinstance(s, TaskNode):
                raise WorkflowError(f"Workflow() takes task nodes, got {type(s).__name__}: {s!r}")
        order = _postorder(sink_list)
        ids = _assign_ids(order)
        self._init(order, ids, external=frozenset(),
                   name=name or sink_list[0].func.name.rsplit(".", 1)[-1])
        detected = detect_requirements({n.func.fn for n in order}) if detect else set()
        self.requirements: tuple[str, ...] = merge_requirements(requirements, detected)

    def _init(self, order: list[TaskNode], ids: dict[int, str], external: frozenset[str],
              name: str) -> None:
        self.name = name
        self._order = tuple(ids[id(n)] for n in order)
        self._nodes: Mapping[str, TaskNode] = MappingProxyType(
            {ids[id(n)]: n for n in order})
        self._ids = ids
        self.external_inputs = external
        up: dict[str, tuple[str, ...]] = {}
        down: dict[str, list[str]] = {tid: [] for tid in self._order}
        position = {tid: i for i, tid in enumerate(self._order)}
        ordered = True
        for i, tid in enumerate(self._order):
            parents = tuple(ids[id(u)] for u in self._nodes[tid].upstream)
            up[tid] = parents
            for p in parents:
                at = position.get(p)
                if at is not None:
                    down[p].append(tid)
                    ordered = ordered and at < i
        self._up = MappingProxyType(up)
        self._down = MappingProxyType({k: tuple(v) for k, v in down.items()})
        # Every edge going forward in the order proves the graph acyclic; only otherwise
        # is the graph built now, to find the cycle.
        if not ordered and not nx.is_directed_acyclic_graph(self.graph):
            cycle = nx.find_cycle(self.graph)
            raise WorkflowError(f"workflow has a cycle through tasks {[e[0] for e in cycle]}")

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The DAG as a frozen ``networkx.DiGraph`` (task ids; an edge per input inside the
        workflow), built on first use."""
        g: nx.DiGraph = nx.DiGraph()
        g.add_nodes_from(self._order)
        nodes = self._nodes
        g.add_edges_from((p, t) for t in self._order for p in self._up[t] if p in nodes)
        return nx.freeze(g)

    # -- pickling -----------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """The nodes with their ids (a workflow finds its task ids by node identity, which
        unpickling does not keep, so :meth:`__setstate__` rebuilds that index)."""
        order = [self._nodes[t] for t in self._order]
        named = {id(n): n for n in order}
        for n in order:
            for u in n.upstream:
                named.setdefault(id(u), u)
        return {"name": self.name, "order": order, "external": self.external_inputs,
                "requirements": self.requirements,
                "ids": [(n, self._ids[key]) for key, n in named.items()]}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild the workflow from :meth:`__getstate__`'s nodes and ids."""
        ids = {id(n): tid for n, tid in state["ids"]}
        self._init(list(state["order"]), ids, frozenset(state["external"]), state["name"])
        self.requirements = tuple(state["requirements"])

    # -- basic access -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._nodes

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, tasks={len(self)}, edges={self.graph.number_of_edges()})"

    def visualize(self, ax: Axes | None = None, title: str | None = None) -> Figure:
        """Draw the DAG before any planning: one row per topological generation, nodes
        coloured by function, the critical path (profiled execution times, else one per
        task) in red.

        Returns a matplotlib figure that displays itself in Jupyter; ``fig.savefig(path)``
        writes it to a file. With ``ax``, draws into those axes. The drawing is
        :func:`faasplan.report.plot_dag` without a plan.

        >>> from faasplan import task, Workflow
        >>> @task
        ... def inc(x):
        ...     return x + 1
        >>> fig = Workflow(inc(inc(1)), name="two").visualize()
        >>> fig.axes[0].get_title()
        'two: 2 tasks, 1 edge, 1 function'
        """
        # Imported here: the workflow language loads no plotting code until asked to draw.
        from faasplan.report.dag import plot_dag

        return plot_dag(self, None, ax, title)

    def _repr_html_(self) -> str:
        """Jupyter's rich view: a summary line and the DAG picture."""
        from faasplan.report.dag import workflow_html

        return workflow_html(self)

    @property
    def tasks(self) -> Mapping[str, TaskNode]:
        """Read-only mapping task id -> node, in topological order."""
        return self._nodes

    def node(self, task_id: str) -> TaskNode:
        """The node of ``task_id``; ``KeyError`` naming the id if unknown."""
        try:
            return self._nodes[task_id]
        except KeyError:
            raise KeyError(f"unknown task id {task_id!r} in workflow {self.name!r}") from None

    def id_of(self, node: TaskNode) -> str:
        """The id this workflow gave ``node``; ``KeyError`` if ``node`` is not one of its tasks."""
        try:
            return self._ids[id(node)]
        except KeyError:
            raise KeyError(f"{node!r} is not a task of workflow {self.name!r}") from None

    def upstream(self, task_id: str) -> tuple[str, ...]:
        """Ids of the task's inputs, in argument order (may include external inputs)."""
        return self._up[task_id]

    def downstream(self, task_id: str) -> tuple[str, ...]:
        """Ids of the tasks that take this task's output."""
        return self._down[task_id]

    @property
    def topological_order(self) -> tuple[str, ...]:
        """Task ids, each after all its upstream tasks (deterministic)."""
        return self._order

    @cached_property
    def roots(self) -> tuple[str, ...]:
        """Tasks with no upstream task inside this workflow."""
        return tuple(t for t in self._order if not any(p in self._nodes for p in self._up[t]))

    @cached_property
    def encoded_sizes(self) -> DagSizes | None:
        """Encoded sizes of the tasks and functions (:func:`~faasplan.workflow.codec.dag_sizes`).

        Measured once per workflow, the same numbers for the simulator and the runtime;
        ``None`` when the workflow cannot be encoded (its code cannot be pickled).
        """
        from faasplan.workflow.codec import dag_sizes

        try:
            return dag_sizes(self)
        except Exception:
            return None

    @cached_property
    def sinks(self) -> tuple[str, ...]:
        """Tasks with no downstream task."""
        return tuple(t for t in self._order if not self._down[t])

    @cached_property
    def structure_hash(self) -> str:
        """A hash of the DAG's shape and function names, blind to ids and argument values.

        Tasks are numbered by a depth-first walk from the sinks through their inputs in
        argument order, and the hash covers each task's function name with the numbers of
        its inputs (external inputs of a subDAG count as nameless tasks). Sinks are walked in
        the order of a hash of their ancestry, so the order in which sinks were given
        matters only between sinks with identical ancestry. Workflows whose tasks all have
        the same ancestries but share inputs differently get different hashes.
        """
        # An object or more per task, while the heap may hold a simulated run's records:
        # with the collector on it took 1.6 s of 2.2 at 100k tasks.
        with gc_paused():
            return self._structure_hash()

    def _structure_hash(self) -> str:
        ancestry: dict[str, str] = {}
        quoted: dict[str, str] = {}  # function name -> its JSON string
        for tid in self._order:
            name = self._nodes[tid].func.name
            q = quoted.get(name)
            if q is None:
                q = quoted[name] = json.dumps(name)
            # _digest([name, *ancestries]), written out: hex digests need no escaping.
            text = ",".join([q, *(f'"{ancestry.get(p, "")}"' for p in self._up[tid])])
            ancestry[tid] = hashlib.sha256(f"[{text}]".encode()).hexdigest()
        sinks = sorted(self.sinks, key=ancestry.__getitem__)
        number: dict[str, int] = {}
        rows: list[tuple[str | None, list[int]]] = []
        for sink in sinks:
            stack: list[tuple[str, Iterator[str]]] = [(sink, iter(self._up[sink]))]
            entered = {sink}
            while stack:
                tid, inputs = stack[-1]
                parent = next(inputs, None)
                if parent is None:
                    stack.pop()
                    number[tid] = len(rows)
                    node = self._nodes.get(tid)
                    rows.append((node.func.name if node is not None else None,
                                 [number[p] for p in self._up.get(tid, ())]))
                elif parent not in number and parent not in entered:
                    entered.add(parent)
                    stack.append((parent, iter(self._up.get(parent, ()))))
        return _digest(rows)[:16]

    # -- derived workflows --------------------------------------------------------------
    def subdag(self, root_id: str) -> Workflow:
        """The workflow made of ``root_id`` and all its descendants.

        Inputs of those tasks produced outside it are listed in ``external_inputs``.
        """
        self.node(root_id)
        keep = {root_id}
        stack = [root_id]
        while stack:
            for child in self._down[stack.pop()]:
                if child not in keep:
                    keep.add(child)
                    stack.append(child)
        order = [self._nodes[t] for t in self._order if t in keep]
        external = frozenset(p for t in keep for p in self._up[t] if p not in keep)
        sub = object.__new__(Workflow)
        sub._init(order, self._ids, external, name=f"{self.name}/{root_id}")
        sub.requirements = self.requirements
        return sub

    def critical_path(self, weight: Callable[[str], float] | Mapping[str, float] | None = None
                      ) -> tuple[float, list[str]]:
        """Longest path by task weight: ``(length, task ids from root to sink)``.

        ``weight`` maps a task id to its cost (default: the task's profile ``exec_ms``,
        else 1).
        """
        w: Callable[[str], float]
        if weight is None:
            w = self._profile_weight
        elif isinstance(weight, Mapping):
            w = weight.__getitem__
        else:
            w = weight
        best: dict[str, float] = {}
        prev: dict[str, str | None] = {}
        for t in self._order:
            parents = [p for p in self._up[t] if p in best]
            p_best = max(parents, key=best.__getitem__, default=None)
            best[t] = w(t) + (best[p_best] if p_best is not None else 0.0)
            prev[t] = p_best
        end = max(self._order, key=best.__getitem__)
        path: list[str] = []
        cur: str | None = end
        while cur is not None:
            path.append(cur)
            cur = prev[cur]
        return best[end], path[::-1]

    def _profile_weight(self, task_id: str) -> float:
        prof = self._nodes[task_id].profile
        return prof.exec_ms if prof is not None else 1.0


def _sink_list(sinks: TaskNode | Sequence[TaskNode]) -> list[TaskNode]:
    if isinstance(sinks, TaskNode):
        return [sinks]
    if isinstance(sinks, TaskFunction):
        raise WorkflowError(f"Workflow() takes task nodes, got the task function {sinks!r}; "
                            "call it to make a node")
    try:
        if isinstance(sinks, str | bytes):
            raise TypeError
        return list(sinks)
    except TypeError:
        raise WorkflowError(f"Workflow() takes a task node or a sequence of them, got "
                            f"{type(sinks).__name__}: {sinks!r}") from None


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, separators=(",", ":")).encode()).hexdigest()


def _postorder(sinks: list[TaskNode]) -> list[TaskNode]:
    """Nodes reachable from ``sinks``, each after its upstream nodes (iterative DFS)."""
    seen: set[int] = set()
    out: list[TaskNode] = []
    for sink in sinks:
        if id(sink) in seen:
            continue
        stack: list[tuple[TaskNode, Iterator[TaskNode]]] = [(sink, iter(sink.upstream))]
        seen.add(id(sink))
        while stack:
            node, it = stack[-1]
            child = next(it, None)
            if child is None:
                stack.pop()
                out.append(node)
            elif id(child) not in seen:
                seen.add(id(child))
                stack.append((child, iter(child.upstream)))
    return out


def _assign_ids(order: list[TaskNode]) -> dict[int, str]:
    ids: dict[int, str] = {}
    given: dict[str, TaskNode] = {}
    for n in order:
        if n.task_id is not None:
            if n.task_id in given:
                raise WorkflowError(
                    f"duplicate task id {n.task_id!r} ({given[n.task_id].func.name} and "
                    f"{n.func.name}); give each task a unique task_id")
            given[n.task_id] = n
    counters: dict[str, int] = {}
    for n in order:
        if n.task_id is not None:
            ids[id(n)] = n.task_id
            continue
        short = n.func.name.rsplit(".", 1)[-1].replace("<", "").replace(">", "")
        while True:
            k = counters.get(short, 0)
            counters[short] = k + 1
            candidate = f"{short}-{k}"
            if candidate not in given:
                break
        ids[id(n)] = candidate
    return ids
