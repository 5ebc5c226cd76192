"""The workflow DAG, alone (coloured by function) or as placed by a plan (coloured by worker,
sized by memory), critical path red.

The layout is computed here (layers = topological generations, order within a layer by
the mean position of the parents) because it is linear in the graph size, which keeps a
2,000-task workflow well under a second; force-directed layouts are far slower and hide
the DAG's depth.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from collections.abc import Hashable, Mapping
from itertools import pairwise
from typing import Any

import matplotlib as mpl
import networkx as nx
import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from faasplan.planners import Plan
from faasplan.report.plots import new_axes
from faasplan.workflow import Workflow

MAX_LABELLED_NODES = 60
"""Above this many tasks nodes are drawn without their ids."""

MAX_LEGEND_WORKERS = 12
"""Above this many planned workers (or functions, without a plan) the legend lists only
flexible and the critical path."""

FLEXIBLE_COLOUR = "0.6"


def layered_layout(graph: nx.DiGraph) -> dict[Hashable, tuple[float, float]]:
    """Node -> ``(x, y)``: one row per topological generation, roots on top (``y = 0``).

    Within a row nodes are ordered by the mean ``x`` of their parents (ties keep the
    graph's node order), then spread evenly over ``[0, 1]`` so wide and narrow rows share
    the same width.
    """
    rank = {n: i for i, n in enumerate(graph.nodes)}
    pos: dict[Hashable, tuple[float, float]] = {}
    for depth, generation in enumerate(nx.topological_generations(graph)):
        def key(node: Hashable) -> tuple[float, int]:
            parents = [pos[p][0] for p in graph.predecessors(node)]
            return (float(np.mean(parents)) if parents else 0.0, rank[node])

        row = sorted(generation, key=key)
        for i, node in enumerate(row):
            pos[node] = ((i + 0.5) / len(row), -float(depth))
    return pos


def predicted_exec_ms(plan: Plan) -> dict[str, float] | None:
    """Task -> execution time of the plan's predicted trace, or ``None`` without one.

    Uses the ``exec_ms`` column when the trace has it, else ``exec_end_ms - exec_start_ms``;
    a task that ran more than once counts its longest execution.
    """
    trace = plan.predicted
    tasks = getattr(trace, "tasks", None)
    if tasks is None or "task" not in tasks.columns:
        return None
    if "exec_ms" in tasks.columns:
        exec_ms = tasks["exec_ms"]
    elif {"exec_start_ms", "exec_end_ms"} <= set(tasks.columns):
        exec_ms = tasks["exec_end_ms"] - tasks["exec_start_ms"]
    else:
        return None
    per_task = exec_ms.groupby(tasks["task"].astype(str)).max()
    return {str(k): float(v) for k, v in per_task.items()}


def plot_dag(workflow: Workflow, plan: Plan | None = None, ax: Axes | None = None,
             title: str | None = None) -> Figure:
    """Draw ``workflow``, as placed by ``plan`` when one is given.

    With a plan, node colour is the planned worker (flexible tasks grey), node area grows
    with the task's memory, and the edges of the critical path (by the plan's predicted
    execution times when it carries a predicted trace, else the workflow's default
    weights) are red. Without a plan, node colour is the task's function and the critical
    path uses the workflow's default weights (profiled execution times, else 1 per task).
    Task ids are written only up to :data:`MAX_LABELLED_NODES` tasks.

    Parameters
    ----------
    workflow : Workflow
        The workflow to draw.
    plan : Plan, optional
        Must place every task of ``workflow``.
    ax : Axes, optional
        Draw into these axes (default: a new figure sized to the DAG).
    title : str, optional
        Axes title (default: planner name, task and worker counts; without a plan the
        workflow's name, task and edge counts).

    Examples
    --------
    >>> import faasplan
    >>> from faasplan.report import plot_dag
    >>> fig = plot_dag(faasplan.workloads.tree_reduction(leaves=4))
    >>> fig.axes[0].get_title()
    'tree_reduction: 7 tasks, 6 edges, 2 functions'
    """
    order = list(workflow.topological_order)
    pos = layered_layout(workflow.graph)
    xy = np.array([pos[t] for t in order], dtype=float).reshape(-1, 2)
    rows = Counter(y for _, y in pos.values())
    depth, width = max(len(rows), 1), max(rows.values(), default=1)
    size = (min(18.0, max(6.0, 1.1 * width + 2.5)), min(12.0, max(3.0, 0.9 * depth)))
    fig, ax = new_axes(ax, size)
    index = {t: i for i, t in enumerate(order)}
    labelled = len(order) <= MAX_LABELLED_NODES

    edges = [(index[u], index[v]) for u, v in workflow.graph.edges]
    if edges:
        ends = np.array(edges)
        segments = np.stack([xy[ends[:, 0]], xy[ends[:, 1]]], axis=1)
        ax.add_collection(LineCollection(list(segments), colors="0.8", linewidths=0.6,
                                         zorder=1))
    weights = predicted_exec_ms(plan) if plan is not None else None
    _, path = workflow.critical_path(_with_default(weights) if weights is not None else None)
    if len(path) > 1:
        segs = [np.array([xy[index[a]], xy[index[b]]]) for a, b in pairwise(path)]
        ax.add_collection(LineCollection(segs, colors="#d62728", linewidths=2.0, zorder=2))

    base = 220.0 if labelled else max(4.0, 6000.0 / max(len(order), 1))
    if plan is not None:
        colours, legend, sizes = _plan_style(order, plan, base)
    else:
        functions = [workflow.node(t).func.name.rsplit(".", 1)[-1] for t in order]
        colours, legend = _group_colours(functions)
        sizes = np.full(len(order), base)
    ax.scatter(xy[:, 0], xy[:, 1], s=sizes, c=colours, edgecolors="0.2",
               linewidths=0.4 if labelled else 0.0, zorder=3)
    if labelled:
        for t, (x, y) in zip(order, xy, strict=True):
            ax.annotate(t, (x, y), textcoords="offset points", xytext=(0, 8), ha="center",
                        fontsize=6, zorder=4)
    legend.append(Line2D([], [], color="#d62728", lw=2.0, label="critical path"))
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-depth + 0.5, 0.6)
    ax.set_axis_off()
    ax.set_title(title if title is not None else _default_title(workflow, plan))
    return fig


def _plan_style(order: list[str], plan: Plan, base: float
                ) -> tuple[list[Any], list[Any], np.ndarray]:
    """Colours by planned worker, legend handles and sizes by memory of ``order``."""
    placements = [plan.placement(t) for t in order]
    colours, legend = _worker_colours([p.worker for p in placements])
    memory = np.array([p.memory_mb for p in placements], dtype=float)
    sizes = base * (0.35 + 0.65 * memory / memory.max()) if len(order) else memory
    if memory.size:
        low, high = int(memory.min()), int(memory.max())
        legend.append(Line2D([], [], ls="", label=f"memory {low} MB" if low == high else
                             f"size ~ memory ({low}-{high} MB)"))
    return colours, legend, sizes


def _default_title(workflow: Workflow, plan: Plan | None) -> str:
    n = len(workflow)
    if plan is not None:
        flexible = sum(plan.placement(t).worker is None for t in workflow.topological_order)
        return (f"{plan.planner}: {n} tasks, {len(plan.workers)} planned workers, "
                f"{flexible} flexible")
    functions = len({node.func.name for node in workflow.tasks.values()})
    return (f"{workflow.name}: {_count(n, 'task')}, "
            f"{_count(workflow.graph.number_of_edges(), 'edge')}, {_count(functions, 'function')}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def workflow_html(workflow: Workflow, dpi: int = 80) -> str:
    """An HTML fragment describing ``workflow``: a summary line and its DAG as a PNG.

    This is what :meth:`Workflow._repr_html_ <faasplan.Workflow>` shows in Jupyter. The
    image is embedded (base64), so the fragment is self-contained.
    """
    fig = plot_dag(workflow)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    image = base64.b64encode(buffer.getvalue()).decode("ascii")
    functions = Counter(node.func.name.rsplit(".", 1)[-1] for node in workflow.tasks.values())
    listed = ", ".join(f"{name} &times;{count}" for name, count in functions.most_common(8))
    if len(functions) > 8:
        listed += f", and {len(functions) - 8} more"
    requirements = ", ".join(workflow.requirements) or "none"
    return (f"<div class=\"faasplan-workflow\"><p><b>{html.escape(workflow.name)}</b>: "
            f"{_count(len(workflow), 'task')}, "
            f"{_count(workflow.graph.number_of_edges(), 'edge')}, "
            f"{_count(len(workflow.roots), 'root')}, {_count(len(workflow.sinks), 'sink')}; "
            f"functions: {listed}; "
            f"requirements: {html.escape(requirements)}</p>"
            f"<img alt=\"DAG of {html.escape(workflow.name)}\" "
            f"src=\"data:image/png;base64,{image}\"/></div>")


def _with_default(weights: Mapping[str, float]) -> Any:
    """A weight function that gives tasks missing from the trace zero weight."""
    def weight(task_id: str) -> float:
        return weights.get(task_id, 0.0)

    return weight


def _worker_colours(workers: list[str | None]) -> tuple[list[Any], list[Any]]:
    """A colour per task (by worker, flexible grey) and legend handles."""
    named = [w for w in workers if w is not None]
    colour_of, handles = _palette(list(dict.fromkeys(named)))
    colour_of[None] = FLEXIBLE_COLOUR
    if None in workers:
        handles.append(Line2D([], [], ls="", marker="o", color=FLEXIBLE_COLOUR,
                              label="flexible"))
    return [colour_of[w] for w in workers], handles


def _group_colours(groups: list[str]) -> tuple[list[Any], list[Any]]:
    """A colour per item by its group (e.g. function) and legend handles."""
    colour_of, handles = _palette(list(dict.fromkeys(groups)))
    return [colour_of[g] for g in groups], handles


def _palette(names: list[str]) -> tuple[dict[str | None, Any], list[Any]]:
    """A colour per name; legend handles unless there are more than MAX_LEGEND_WORKERS."""
    palette = mpl.colormaps["tab20"]
    colour_of: dict[str | None, Any] = {n: palette(i % palette.N) for i, n in enumerate(names)}
    handles: list[Any] = []
    if len(names) <= MAX_LEGEND_WORKERS:
        handles = [Line2D([], [], ls="", marker="o", color=colour_of[n], label=str(n))
                   for n in names]
    return colour_of, handles
