"""The workflow DAG of a plan: nodes coloured by worker, sized by memory, critical path red.

The layout is computed here (layers = topological generations, order within a layer by
the mean position of the parents) because it is linear in the graph size, which keeps a
2,000-task workflow well under a second; force-directed layouts are far slower and hide
the DAG's depth.
"""

from __future__ import annotations

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
"""Above this many planned workers the legend lists only flexible and the critical path."""

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


def plot_dag(workflow: Workflow, plan: Plan, ax: Axes | None = None,
             title: str | None = None) -> Figure:
    """Draw ``workflow`` as placed by ``plan``.

    Node colour is the planned worker (flexible tasks grey), node area grows with the
    task's memory, and the edges of the critical path (by the plan's predicted execution
    times when it carries a predicted trace, else the workflow's default weights) are red.
    Task ids are written only up to :data:`MAX_LABELLED_NODES` tasks.

    Parameters
    ----------
    workflow : Workflow
        The planned workflow.
    plan : Plan
        Must place every task of ``workflow``.
    ax : Axes, optional
        Draw into these axes (default: a new figure sized to the DAG).
    title : str, optional
        Axes title (default: planner name, task and worker counts).
    """
    order = list(workflow.topological_order)
    placements = [plan.placement(t) for t in order]
    pos = layered_layout(workflow.graph)
    xy = np.array([pos[t] for t in order], dtype=float).reshape(-1, 2)
    rows = Counter(y for _, y in pos.values())
    depth, width = max(len(rows), 1), max(rows.values(), default=1)
    size = (min(18.0, max(6.0, 1.1 * width + 2.5)), min(12.0, max(3.0, 0.9 * depth)))
    fig, ax = new_axes(ax, size)
    index = {t: i for i, t in enumerate(order)}

    edges = [(index[u], index[v]) for u, v in workflow.graph.edges]
    if edges:
        ends = np.array(edges)
        segments = np.stack([xy[ends[:, 0]], xy[ends[:, 1]]], axis=1)
        ax.add_collection(LineCollection(list(segments), colors="0.8", linewidths=0.6,
                                         zorder=1))
    weights = predicted_exec_ms(plan)
    _, path = workflow.critical_path(_with_default(weights) if weights is not None else None)
    if len(path) > 1:
        segs = [np.array([xy[index[a]], xy[index[b]]]) for a, b in pairwise(path)]
        ax.add_collection(LineCollection(segs, colors="#d62728", linewidths=2.0, zorder=2))

    colours, legend = _worker_colours([p.worker for p in placements])
    memory = np.array([p.memory_mb for p in placements], dtype=float)
    base = 220.0 if len(order) <= MAX_LABELLED_NODES else max(4.0, 6000.0 / max(len(order), 1))
    sizes = base * (0.35 + 0.65 * memory / memory.max()) if len(order) else memory
    ax.scatter(xy[:, 0], xy[:, 1], s=sizes, c=colours, edgecolors="0.2",
               linewidths=0.4 if len(order) <= MAX_LABELLED_NODES else 0.0, zorder=3)
    if len(order) <= MAX_LABELLED_NODES:
        for t, (x, y) in zip(order, xy, strict=True):
            ax.annotate(t, (x, y), textcoords="offset points", xytext=(0, 8), ha="center",
                        fontsize=6, zorder=4)
    legend.append(Line2D([], [], color="#d62728", lw=2.0, label="critical path"))
    if memory.size:
        low, high = int(memory.min()), int(memory.max())
        legend.append(Line2D([], [], ls="", label=f"memory {low} MB" if low == high else
                             f"size ~ memory ({low}-{high} MB)"))
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-depth + 0.5, 0.6)
    ax.set_axis_off()
    n_workers = len(plan.workers)
    flexible = sum(p.worker is None for p in placements)
    ax.set_title(title if title is not None else
                 f"{plan.planner}: {len(order)} tasks, {n_workers} planned workers, "
                 f"{flexible} flexible")
    return fig


def _with_default(weights: Mapping[str, float]) -> Any:
    """A weight function that gives tasks missing from the trace zero weight."""
    def weight(task_id: str) -> float:
        return weights.get(task_id, 0.0)

    return weight


def _worker_colours(workers: list[str | None]) -> tuple[list[Any], list[Any]]:
    """A colour per task (by worker, flexible grey) and legend handles."""
    palette = mpl.colormaps["tab20"]
    named = list(dict.fromkeys(w for w in workers if w is not None))
    colour_of: dict[str | None, Any] = {w: palette(i % palette.N) for i, w in enumerate(named)}
    colour_of[None] = FLEXIBLE_COLOUR
    handles: list[Any] = []
    if len(named) <= MAX_LEGEND_WORKERS:
        handles = [Line2D([], [], ls="", marker="o", color=colour_of[w], label=str(w))
                   for w in named]
    if None in workers:
        handles.append(Line2D([], [], ls="", marker="o", color=FLEXIBLE_COLOUR,
                              label="flexible"))
    return [colour_of[w] for w in workers], handles
