"""Bokeh figures of a run and of a comparison, each updatable in place from a model.

Every figure owns its ``ColumnDataSource`` and an ``update`` that sends only what changed:
new Gantt bars are *streamed* (a bar never changes once its event arrived), changed task
states are *patched*. That keeps a live page cheap on a 2,000-task run. Beyond
:data:`MAX_DAG_TASKS` tasks the DAG is drawn by function and generation (one node per
group, coloured by the group's state) and a per-function bar counts states.

Each figure carries a ``name`` (``faasplan-dag``, ``faasplan-gantt``, ...) so a test or a
script can find it in the page's document.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, NumeralTickFormatter, Range1d
from bokeh.models.widgets.tables import DataTable, NumberFormatter, StringFormatter, TableColumn
from bokeh.plotting import figure
from bokeh.transform import dodge, factor_cmap

from faasplan.dashboard.model import (
    PHASE_COLOURS,
    PHASES,
    STATE_COLOURS,
    STATES,
    RunModel,
    short_name,
)
from faasplan.report.dag import MAX_LABELLED_NODES, layered_layout
from faasplan.report.plots import MAX_LANE_LABELS

MAX_DAG_TASKS = 600
"""Above this many tasks the DAG is drawn by (generation, function) groups."""

MAX_GANTT_BARS = 30_000
"""A live Gantt stops adding bars beyond this many (the page says so)."""

PLANNER_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                   "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")

def _state_cmap() -> Any:
    """A colour mapper by task state; a new one per figure (a Bokeh model has one document)."""
    return factor_cmap("state", palette=[STATE_COLOURS[s] for s in STATES], factors=STATES)


def _phase_cmap() -> Any:
    """A colour mapper by Gantt phase; a new one per figure."""
    return factor_cmap("phase", palette=[PHASE_COLOURS[p] for p in PHASES], factors=PHASES)


def _data(columns: dict[str, Any]) -> Any:
    """Columns for a ``ColumnDataSource`` (its type hints want sequences it does not need)."""
    return columns


def _group_state(states: Sequence[str]) -> str:
    """The state a group of tasks shows: failed, else the least advanced unfinished one."""
    seen = set(states)
    if "failed" in seen:
        return "failed"
    for state in ("running", "storing", "ready", "waiting"):
        if state in seen:
            return state
    return "done"


class DagPlot:
    """The run's DAG in the report's layered layout, coloured by task state."""

    def __init__(self, model: RunModel, title: str = "DAG by task state",
                 height: int = 420) -> None:
        graph: nx.DiGraph[Any] = nx.DiGraph()
        graph.add_nodes_from(t.id for t in model.tasks)
        graph.add_edges_from((u, t.id) for t in model.tasks for u in t.upstream
                             if u in model.index)
        self.grouped = len(model.tasks) > MAX_DAG_TASKS
        self.members: list[list[int]] = []
        if self.grouped:
            graph, labels, functions, counts = self._groups(model, graph)
        else:
            labels = [t.id for t in model.tasks]
            functions = [short_name(t.function) for t in model.tasks]
            counts = [1] * len(labels)
            self.members = [[i] for i in range(len(labels))]
        pos = layered_layout(graph)
        nodes = list(graph.nodes)
        xy = np.array([pos[n] for n in nodes], dtype=float).reshape(-1, 2)
        index = {n: i for i, n in enumerate(nodes)}
        edges = list(graph.edges)
        self.edges = ColumnDataSource({
            "x0": [xy[index[u], 0] for u, _ in edges], "y0": [xy[index[u], 1] for u, _ in edges],
            "x1": [xy[index[v], 0] for _, v in edges], "y1": [xy[index[v], 1] for _, v in edges]})
        size = 14 if len(nodes) <= MAX_LABELLED_NODES else max(4, int(1200 / max(len(nodes), 1)))
        self.source = ColumnDataSource({
            "x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(), "label": labels,
            "function": functions, "tasks": counts, "state": ["waiting"] * len(nodes),
            "size": [size if not self.grouped else min(30, 8 + 2 * int(np.sqrt(c)))
                     for c in counts]})
        depth = int(-xy[:, 1].min()) + 1 if len(nodes) else 1
        fig = figure(title=title + (" (grouped by generation and function)" if self.grouped
                                    else ""), height=height, sizing_mode="stretch_width",
                     tools="pan,wheel_zoom,box_zoom,reset,save", name="faasplan-dag",
                     x_range=Range1d(start=-0.05, end=1.3),
                     y_range=Range1d(start=-depth + 0.4, end=0.6))
        fig.segment("x0", "y0", "x1", "y1", source=self.edges, color="#bbbbbb", line_width=0.7)
        nodes_r = fig.scatter("x", "y", source=self.source, size="size", color=_state_cmap(),
                              line_color="#333333", legend_field="state")
        if len(nodes) <= MAX_LABELLED_NODES and not self.grouped:
            fig.text("x", "y", text="label", source=self.source, text_font_size="7pt",
                     y_offset=-9, text_align="center", text_baseline="bottom")
        fig.add_tools(HoverTool(renderers=[nodes_r], tooltips=[
            ("task" if not self.grouped else "group", "@label"), ("function", "@function"),
            ("tasks", "@tasks"), ("state", "@state")]))
        fig.axis.visible = False
        fig.grid.visible = False
        fig.legend.location = "top_right"
        fig.legend.title = "task state"
        self.figure = fig
        self._shown: list[str] = ["waiting"] * len(nodes)

    def _groups(self, model: RunModel, graph: nx.DiGraph[Any]
                ) -> tuple[nx.DiGraph[Any], list[str], list[str], list[int]]:
        """The quotient DAG of (generation, function) groups."""
        group_of: dict[str, tuple[int, str]] = {}
        for depth, generation in enumerate(nx.topological_generations(graph)):
            for task in generation:
                group_of[task] = (depth, short_name(model.tasks[model.index[task]].function))
        groups = list(dict.fromkeys(sorted(group_of.values())))
        gid = {g: i for i, g in enumerate(groups)}
        members: list[list[int]] = [[] for _ in groups]
        for task, g in group_of.items():
            members[gid[g]].append(model.index[task])
        self.members = members
        quotient: nx.DiGraph[Any] = nx.DiGraph()
        quotient.add_nodes_from(range(len(groups)))
        quotient.add_edges_from({(gid[group_of[u]], gid[group_of[v]]) for u, v in graph.edges})
        labels = [f"{fn} ×{len(m)} (gen {d})" for (d, fn), m in zip(groups, members,
                                                                      strict=True)]
        return quotient, labels, [fn for _, fn in groups], [len(m) for m in members]

    def update(self, states: Sequence[str]) -> None:
        """Patch the nodes whose state changed (``states`` in the model's task order)."""
        shown = [_group_state([states[i] for i in m]) if self.grouped else states[m[0]]
                 for m in self.members]
        changed = [(i, s) for i, (s, old) in enumerate(zip(shown, self._shown, strict=True))
                   if s != old]
        if changed:
            self.source.patch({"state": changed})
            self._shown = shown


class GanttPlot:
    """One lane per worker: start-up, inputs, execution, upload; bars streamed as they come.

    With ``predicted`` (segments of the plan's predicted run, in seconds) the predicted bars
    are drawn above the actual ones in each lane, outlined.
    """

    def __init__(self, model: RunModel | None, title: str = "Gantt per worker",
                 height: int = 420, predicted: dict[str, list[Any]] | None = None,
                 bars: dict[str, list[Any]] | None = None) -> None:
        self.model = model
        self.cursor = 0
        self.lanes: list[str] = []
        self.truncated = False
        self.source = ColumnDataSource(_data({k: [] for k in ("worker", "phase", "task",
                                                               "start", "end")}))
        self.y_range = FactorRange()
        fig = figure(title=title, height=height, sizing_mode="stretch_width",
                     y_range=self.y_range, name="faasplan-gantt",
                     tools="xpan,xwheel_zoom,box_zoom,reset,save",
                     x_axis_label="seconds since the run started", y_axis_label="worker")
        self.figure = fig
        shift = 0.0 if predicted is None else -0.15
        phase = _phase_cmap()
        bar_r = fig.hbar(y=dodge("worker", shift, range=self.y_range), left="start", right="end",
                        height=0.6 if predicted is None else 0.45, source=self.source,
                        color=phase, legend_field="phase")
        if predicted is not None:
            self.predicted = ColumnDataSource(_data(predicted))
            fig.hbar(y=dodge("worker", 0.27, range=self.y_range), left="start", right="end",
                     height=0.25, source=self.predicted, fill_alpha=0.15, color=phase,
                     line_color="#222222", line_width=0.6, legend_label="predicted (outlined)")
            self._add_lanes(predicted["worker"])
        fig.add_tools(HoverTool(renderers=[bar_r], tooltips=[
            ("worker", "@worker"), ("task", "@task"), ("phase", "@phase"),
            ("from", "@start{0.000} s"), ("to", "@end{0.000} s")]))
        fig.legend.location = "top_left"
        fig.legend.orientation = "horizontal"
        fig.legend.click_policy = "hide"
        fig.add_layout(fig.legend[0], "above")
        fig.ygrid.visible = False
        fig.x_range.start = 0.0  # type: ignore[attr-defined]
        if bars is not None:
            self._add_lanes(bars["worker"])
            self.source.data = _data(bars)
        self.update()

    def _add_lanes(self, workers: Sequence[str]) -> None:
        new = [w for w in dict.fromkeys(workers) if w not in self.lanes]
        if not new:
            return
        self.lanes.extend(new)
        self.y_range.factors = list(reversed(self.lanes))
        many = len(self.lanes) > MAX_LANE_LABELS
        self.figure.yaxis.major_label_text_font_size = "0px" if many else "8pt"
        self.figure.yaxis.axis_label = f"workers ({len(self.lanes)})" if many else "worker"

    def update(self) -> int:
        """Stream the bars that arrived since the last update; returns how many."""
        if self.model is None:
            return 0
        segments = self.model.segments[self.cursor:]
        room = MAX_GANTT_BARS - self.cursor
        if len(segments) > room:
            segments, self.truncated = segments[:max(0, room)], True
        if not segments:
            return 0
        self.cursor += len(segments)
        t0 = self.model.t0
        self._add_lanes([s.worker for s in segments])
        self.source.stream({
            "worker": [s.worker for s in segments], "phase": [s.phase for s in segments],
            "task": [s.task or "" for s in segments],
            "start": [(s.start - t0) / 1000.0 for s in segments],
            "end": [(s.end - t0) / 1000.0 for s in segments]})
        return len(segments)


def segments_json(workers: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Gantt columns from the ``workers`` of :meth:`RunModel.detail` (seconds)."""
    cols: dict[str, list[Any]] = {k: [] for k in ("worker", "phase", "task", "start", "end")}
    for w in workers:
        for bar in w["timeline"]:
            cols["worker"].append(w["worker"])
            cols["phase"].append(bar["phase"])
            cols["task"].append(bar["task"] or "")
            cols["start"].append(bar["start"])
            cols["end"].append(bar["end"])
    return cols


class FunctionPlot:
    """Per function, how many of its tasks are in each state (stacked bars)."""

    def __init__(self, model: RunModel, height: int = 260) -> None:
        counts = model.function_counts()
        self.functions = list(counts)
        self.source = ColumnDataSource(_data(self._data(counts)))
        fig = figure(title="tasks per function by state",
                     height=max(height, 60 + 24 * len(self.functions)),
                     y_range=FactorRange(factors=list(reversed(self.functions))),
                     sizing_mode="stretch_width",
                     tools="save", name="faasplan-functions", x_axis_label="tasks",
                     y_axis_label="function")
        fig.hbar_stack(list(STATES), y="function", height=0.7, source=self.source,
                       color=[STATE_COLOURS[s] for s in STATES],
                       legend_label=list(STATES))
        fig.legend.orientation = "horizontal"
        fig.add_layout(fig.legend[0], "above")
        fig.ygrid.visible = False
        self.figure = fig

    def _data(self, counts: dict[str, dict[str, int]]) -> dict[str, list[Any]]:
        data: dict[str, list[Any]] = {"function": self.functions}
        for s in STATES:
            data[s] = [counts.get(f, {}).get(s, 0) for f in self.functions]
        return data

    def update(self, model: RunModel) -> None:
        """Replace the counts (one row per function: small)."""
        data = self._data(model.function_counts())
        if data != dict(self.source.data):
            self.source.data = _data(data)


class BytesPlot:
    """Bytes through storage over time: downloads, uploads, invocation requests."""

    def __init__(self, model: RunModel, height: int = 260) -> None:
        self.model = model
        self.count = -1
        self.source = ColumnDataSource(_data({"t": [], "down": [], "up": [], "invoke": []}))
        fig = figure(title="bytes through storage (cumulative)", height=height,
                     sizing_mode="stretch_width", tools="save,reset", name="faasplan-bytes",
                     x_axis_label="seconds since the run started", y_axis_label="bytes")
        fig.yaxis.formatter = NumeralTickFormatter(format="0.0 b")
        for col, colour, label in (("down", "#3182bd", "downloaded"),
                                   ("up", "#fd8d3c", "uploaded"),
                                   ("invoke", "#756bb1", "invocation requests")):
            fig.step("t", col, source=self.source, color=colour, legend_label=label,
                     line_width=2, mode="after")
        fig.legend.location = "top_left"
        self.figure = fig
        self.update()

    def update(self) -> None:
        """Recompute the curves when transfers were added."""
        transfers = self.model.transfers
        if len(transfers) == self.count:
            return
        self.count = len(transfers)
        ordered = sorted(transfers)
        t = [(x[0] - self.model.t0) / 1000.0 for x in ordered]
        data: dict[str, Any] = {"t": t}
        for direction in ("down", "up", "invoke"):
            data[direction] = np.cumsum([float(n) if d == direction else 0.0
                                         for _, d, n in ordered]).tolist()
        self.source.data = _data(data)


WORKER_COLUMNS = (("worker", "worker"), ("memory_mb", "memory (MB)"), ("startup", "start-up"),
                  ("startup_s", "start-up (s)"), ("busy", "busy"), ("tasks", "tasks"),
                  ("started", "started (s)"), ("ended", "ended (s)"))


class WorkersTable:
    """One row per worker: memory, warm/cold, busy/idle, tasks done (busy and latest first).

    A pandas frame the page shows as an HTML table (a Bokeh ``DataTable`` does not redraw
    cells changed in place), cut to :data:`MAX_WORKER_ROWS` rows.
    """

    def __init__(self, model: RunModel) -> None:
        self.model = model
        self.key: tuple[Any, ...] = ()

    def frame(self) -> pd.DataFrame | None:
        """The table, or ``None`` when nothing changed since the last call."""
        m = self.model
        rows = sorted(m.workers.values(), key=lambda w: (not w.busy, -(w.started or 0.0)))
        rows = rows[:MAX_WORKER_ROWS]
        key = tuple((w.label, w.busy, w.tasks, w.ended) for w in rows)
        if key == self.key:
            return None
        self.key = key
        return pd.DataFrame({
            title: values for (_, title), values in zip(WORKER_COLUMNS, (
                [w.label for w in rows], [w.memory_mb for w in rows],
                [w.startup for w in rows], [round(w.startup_ms / 1000.0, 3) for w in rows],
                ["busy" if w.busy else "idle" for w in rows], [w.tasks for w in rows],
                [_fmt(m.seconds(w.started)) for w in rows],
                [_fmt(m.seconds(w.ended)) for w in rows]), strict=True)})


MAX_WORKER_ROWS = 200


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.3f}"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], name: str,
          height: int = 220) -> DataTable:
    """A DataTable of ``rows`` (dicts) showing ``columns`` (field, title)."""
    data = {k: [r.get(k) for r in rows] for k, _ in columns}
    numbers = NumberFormatter(format="0,0.000")
    cols = [TableColumn(field=k, title=t,
                        formatter=numbers if any(isinstance(v, float) for v in data[k])
                        else StringFormatter())
            for k, t in columns]
    return DataTable(source=ColumnDataSource(_data(data)), columns=cols, height=height,
                     sizing_mode="stretch_width", name=name, index_position=None)


def cdf_figure(cdf: dict[str, list[float]], sla: str, height: int = 320) -> Any:
    """Makespan CDF per planner (seconds), one line each, with a legend."""
    fig = figure(title=f"makespan CDF over replicates (SLA {sla})", height=height,
                 sizing_mode="stretch_width", tools="pan,wheel_zoom,reset,save",
                 name="faasplan-cdf", x_axis_label="makespan (s)",
                 y_axis_label="fraction of replicates")
    for i, (planner, spans) in enumerate(cdf.items()):
        n = len(spans)
        fig.step([s / 1000.0 for s in spans], [(k + 1) / n for k in range(n)], mode="after",
                 color=PLANNER_PALETTE[i % len(PLANNER_PALETTE)], line_width=2,
                 legend_label=planner)
    fig.legend.click_policy = "hide"
    fig.add_layout(fig.legend[0], "right")
    return fig


def pareto_figure(summary: Sequence[dict[str, Any]], front: Sequence[str], sla: str,
                  height: int = 320) -> Any:
    """Cost against makespan at the SLA, one colour per planner, the Pareto front joined."""
    fig = figure(title=f"cost vs makespan at {sla} (Pareto front joined)", height=height,
                 sizing_mode="stretch_width", tools="pan,wheel_zoom,reset,save",
                 name="faasplan-pareto", x_axis_label="mean cost per run (USD)",
                 y_axis_label=f"makespan at {sla} (s)")
    points = {r["planner"]: (float(r["cost_usd"]), float(r["sla_makespan_ms"]) / 1000.0)
              for r in summary}
    for i, (planner, (x, y)) in enumerate(points.items()):
        fig.scatter([x], [y], size=12, color=PLANNER_PALETTE[i % len(PLANNER_PALETTE)],
                    legend_label=planner, marker="diamond" if planner in front else "circle")
    if len(front) > 1:
        fig.line([points[p][0] for p in front], [points[p][1] for p in front],
                 color="#444444", line_dash="dashed", legend_label="Pareto front")
    fig.add_layout(fig.legend[0], "right")
    return fig


def counts_line(states: Sequence[str]) -> str:
    """``"3 done, 2 running, ..."`` for a status line (non-zero states, in state order)."""
    c = Counter(states)
    return ", ".join(f"{c[s]} {s}" for s in STATES if c[s])


PVA_FIELDS = (("task", "task"), ("function", "function"), ("state", "state"),
              ("predicted_worker", "predicted worker"), ("actual_worker", "actual worker"),
              ("predicted_exec", "predicted exec (s)"), ("actual_exec", "actual exec (s)"),
              ("exec_ratio", "exec ratio"), ("predicted_end", "predicted end (s)"),
              ("actual_end", "actual end (s)"), ("end_error", "end error (s)"))
"""Columns of the plan-against-actual table (:meth:`RunModel.plan_vs_actual` rows)."""

_TEXT_FIELDS = frozenset({"task", "function", "state", "predicted_worker", "actual_worker"})

MIN_EXEC_S = 1e-4
"""Execution times below this are drawn at it (the error plot has log axes)."""

MAX_ERROR_FUNCTIONS = len(PLANNER_PALETTE)


MAX_PVA_ROWS = 200
"""Rows of the plan-against-actual table on a page (the API has every task)."""

_STATE_ORDER = {"running": 0, "storing": 1, "failed": 2, "done": 3, "ready": 4, "waiting": 5}


class PlanVsActualPlot:
    """Plan against actual, per task: actual against predicted execution time, and a table.

    Both are fed from :meth:`RunModel.plan_vs_actual`. The scatter has log axes, one colour
    per function (the legend) and the line where actual equals predicted; its points are
    sent again when an execution ended. The table is a pandas frame the page shows as HTML
    (a Bokeh ``DataTable`` does not redraw rows that change): :meth:`frame` gives it when
    a row changed, running tasks first, then the latest done, cut to
    :data:`MAX_PVA_ROWS` rows.
    """

    def __init__(self, model: RunModel, height: int = 360) -> None:
        self.model = model
        rows = model.plan_vs_actual()
        self.rows: list[dict[str, Any]] = []
        self._shown: list[dict[str, Any]] | None = None
        functions = list(dict.fromkeys(r["function"] for r in rows))
        self.functions = (functions if len(functions) <= MAX_ERROR_FUNCTIONS
                          else [*functions[:MAX_ERROR_FUNCTIONS - 1], "other"])
        self.points = ColumnDataSource(_data({k: [] for k in ("task", "function", "x", "y",
                                                              "ratio")}))
        self.diagonal = ColumnDataSource(_data({"x": [], "y": []}))
        fig = figure(title="execution time per task: actual against the plan's prediction",
                     height=height, sizing_mode="stretch_width", x_axis_type="log",
                     y_axis_type="log", tools="pan,wheel_zoom,box_zoom,reset,save",
                     name="faasplan-pva-plot", x_axis_label="predicted execution (s)",
                     y_axis_label="actual execution (s)")
        fig.line("x", "y", source=self.diagonal, color="#444444", line_dash="dashed",
                 legend_label="actual = predicted")
        dots = fig.scatter("x", "y", source=self.points, size=8, alpha=0.8,
                           line_color="#333333",
                           color=factor_cmap("function", palette=list(PLANNER_PALETTE),
                                             factors=self.functions),
                           legend_field="function")
        fig.add_tools(HoverTool(renderers=[dots], tooltips=[
            ("task", "@task"), ("function", "@function"), ("predicted", "@x{0.000} s"),
            ("actual", "@y{0.000} s"), ("actual / predicted", "@ratio{0.00}")]))
        fig.legend.title = "function"
        fig.add_layout(fig.legend[0], "right")
        self.figure = fig
        self.update()

    def update(self) -> None:
        """Take the model's rows; send the points when an execution ended."""
        rows = self.model.plan_vs_actual()
        executed = [r for r in rows if r["exec_ratio"] is not None]
        if len(executed) != len(self.points.data["task"]):
            known = set(self.functions)
            xs = [max(MIN_EXEC_S, r["predicted_exec"]) for r in executed]
            ys = [max(MIN_EXEC_S, r["actual_exec"]) for r in executed]
            self.points.data = _data({
                "task": [r["task"] for r in executed],
                "function": [r["function"] if r["function"] in known else "other"
                             for r in executed],
                "x": xs, "y": ys, "ratio": [r["exec_ratio"] for r in executed]})
            if xs:
                lo, hi = min(min(xs), min(ys)) / 1.5, max(max(xs), max(ys)) * 1.5
                self.diagonal.data = _data({"x": [lo, hi], "y": [lo, hi]})
        self.rows = rows

    def frame(self) -> pd.DataFrame | None:
        """The table (see the class docs), or ``None`` when it did not change."""
        rows = self.rows
        if len(rows) > MAX_PVA_ROWS:
            rows = sorted(rows, key=lambda r: (_STATE_ORDER.get(r["state"], 9),
                                               -(r["actual_end"] or 0.0)))[:MAX_PVA_ROWS]
        if rows == self._shown:
            return None
        self._shown = rows
        return pd.DataFrame({title: [_cell(r[k], k) for r in rows] for k, title in PVA_FIELDS})


def _cell(value: Any, field: str) -> str:
    """A table cell: text as is, a number with 3 decimals, ``-`` for one not known yet."""
    if value is None:
        return "-"
    return str(value) if field in _TEXT_FIELDS else f"{float(value):,.3f}"
