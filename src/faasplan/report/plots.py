"""Plots of traces and planner comparisons, as matplotlib :class:`Figure` objects.

Figures are built with :class:`matplotlib.figure.Figure` directly rather than through
pyplot, so nothing here selects a backend or keeps figures alive in a global registry:
a notebook shows the returned figure (a :class:`ReportFigure`, which renders itself
inline with any backend), and :meth:`Figure.savefig` writes PNGs anywhere.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from faasplan.report.pareto import pareto_front

PHASES: tuple[tuple[str, str, str, str], ...] = (
    ("inputs", "start_ms", "exec_start_ms", "#9ecae1"),
    ("execution", "exec_start_ms", "exec_end_ms", "#3182bd"),
    ("upload / delegation", "exec_end_ms", "end_ms", "#fdae6b"),
)
"""Gantt phases of a task: (label, start column, end column, colour)."""

STARTUP_COLOUR = "#bbbbbb"

MAX_LANE_LABELS = 40
"""Above this many workers the Gantt lanes are not labelled (labels would overlap)."""


class ReportFigure(Figure):
    """A :class:`~matplotlib.figure.Figure` that shows itself in Jupyter.

    Figures made without pyplot have no inline display of their own: a notebook shows
    ``<Figure size ...>`` unless ``%matplotlib inline`` ran first. This subclass adds the
    ``_repr_png_`` hook IPython looks for, so the last expression of a cell displays the
    chart with any backend, and stays a plain Figure everywhere else (``savefig``,
    ``axes``, pickling).
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=INLINE_DPI, bbox_inches="tight")
        return buffer.getvalue()


INLINE_DPI = 90
"""Resolution of the PNG a :class:`ReportFigure` shows in a notebook."""


def new_axes(ax: Axes | None, size: tuple[float, float] = (8.0, 4.5)) -> tuple[Figure, Axes]:
    """``ax`` with its figure, or a fresh :class:`ReportFigure` of ``size`` inches with one
    axes."""
    if ax is not None:
        fig = ax.get_figure()
        # Axes of a subfigure: return the top-level figure, the one that can be saved.
        root = getattr(fig, "figure", None) if not isinstance(fig, Figure) else fig
        if not isinstance(root, Figure):
            raise ValueError("ax must belong to a matplotlib Figure")
        return root, ax
    fig = ReportFigure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise ``ValueError`` naming the columns of ``df`` that ``what`` needs but lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs columns {missing}; got {list(df.columns)}")


# -- Gantt --------------------------------------------------------------------------------
def plot_gantt(trace: Any, ax: Axes | None = None, title: str | None = None) -> Figure:
    """One lane per worker: its start-up, then per task inputs, execution and upload.

    Parameters
    ----------
    trace : Trace
        Its ``tasks`` DataFrame needs ``worker``, ``start_ms`` and ``end_ms``;
        ``exec_start_ms`` and ``exec_end_ms`` split each bar into phases, and a ``workers``
        DataFrame with ``worker``, ``start_ms`` and ``startup_ms`` adds the start-ups.
    ax : Axes, optional
        Draw into these axes (default: a new figure).
    title : str, optional
        Axes title (default: workflow name and makespan).

    Returns
    -------
    Figure
        The figure holding the axes.

    Bars are drawn as one polygon collection per phase, so a trace of thousands of tasks
    plots in well under a second.
    """
    tasks: pd.DataFrame = trace.tasks
    require_columns(tasks, ["worker", "start_ms", "end_ms"], "plot_gantt")
    workers = _startup_table(trace)
    lanes = _lane_order(tasks, workers)
    fig, ax = new_axes(ax, (10.0, max(2.5, min(12.0, 1.0 + 0.25 * len(lanes)))))
    bars: list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray, float]] = []
    if workers is not None:
        start = workers["start_ms"].to_numpy(dtype=float)
        bars.append(("start-up", STARTUP_COLOUR, start - workers["startup_ms"].to_numpy(float),
                     start, _lanes_of(workers, lanes), 0.8))
    phased = {"exec_start_ms", "exec_end_ms"} <= set(tasks.columns)
    y = _lanes_of(tasks, lanes)
    for label, a, b, colour in (PHASES if phased else (("task", "start_ms", "end_ms",
                                                         "#3182bd"),)):
        bars.append((label, colour, tasks[a].to_numpy(dtype=float),
                     tasks[b].to_numpy(dtype=float), y, 0.6))
    handles = []
    for label, colour, left, right, lane, height in bars:
        keep = np.isfinite(left) & np.isfinite(right) & (right > left)
        if keep.any():
            verts = _rectangles(left[keep], right[keep], lane[keep], height)
            ax.add_collection(PolyCollection(list(verts), facecolors=colour, edgecolors="none"))
        handles.append(Patch(facecolor=colour, label=label))
    makespan = getattr(trace, "makespan_ms", None)
    end = float(np.nanmax(tasks["end_ms"].to_numpy(dtype=float), initial=0.0))
    end = max(end, float(makespan) if makespan is not None else 0.0, 1e-9)
    if makespan is not None:
        ax.axvline(float(makespan), color="black", linewidth=0.8)
    ax.set_xlim(0.0, end * 1.02)
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    if len(lanes) <= MAX_LANE_LABELS:
        ax.set_yticks(range(len(lanes)), list(lanes))
    else:
        ax.set_yticks([])
    ax.set_xlabel("time (ms)")
    ax.set_ylabel(f"worker ({len(lanes)})")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    ax.set_title(title if title is not None else _trace_title(trace))
    return fig


def _startup_table(trace: Any) -> pd.DataFrame | None:
    """The trace's ``workers`` table if it can place start-ups on lanes, else ``None``."""
    workers = getattr(trace, "workers", None)
    if isinstance(workers, pd.DataFrame) and {"worker", "start_ms", "startup_ms"} <= set(
            workers.columns):
        return workers
    return None


def _lane_order(tasks: pd.DataFrame, workers: pd.DataFrame | None) -> dict[str, int]:
    """Worker -> lane index: by start of the worker (else of its first task), then name."""
    starts = tasks.assign(worker=tasks["worker"].astype(str)).groupby("worker")["start_ms"].min()
    if workers is not None and len(workers):
        first = workers.assign(worker=workers["worker"].astype(str)).groupby("worker")[
            "start_ms"].min()
        starts = first.combine(starts, min, fill_value=np.inf)
    frame = pd.DataFrame({"worker": starts.index, "start": starts.to_numpy(dtype=float)})
    ordered = frame.sort_values(["start", "worker"], kind="stable")["worker"]
    return {str(w): i for i, w in enumerate(ordered)}


def _lanes_of(df: pd.DataFrame, lanes: dict[str, int]) -> np.ndarray:
    return df["worker"].astype(str).map(lanes).to_numpy(dtype=float)


def _rectangles(left: np.ndarray, right: np.ndarray, y: np.ndarray,
                height: float) -> np.ndarray:
    """Vertices ``(n, 4, 2)`` of bars from ``left`` to ``right`` centred on ``y``."""
    lo, hi = y - height / 2, y + height / 2
    xs = np.stack([left, right, right, left], axis=1)
    ys = np.stack([lo, lo, hi, hi], axis=1)
    return np.stack([xs, ys], axis=2)


def _trace_title(trace: Any) -> str:
    name = getattr(trace, "workflow_name", "") or "trace"
    makespan = getattr(trace, "makespan_ms", None)
    return f"{name}: makespan {float(makespan):.0f} ms" if makespan is not None else name


# -- makespan CDF -------------------------------------------------------------------------
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")
MAX_MARKERS = 10
"""Markers drawn per CDF curve at most (they tell curves apart, not mark every run)."""


def plot_makespan_cdf(runs: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Empirical CDF of the makespan over replicates, one step curve per planner.

    Each planner gets its own colour, line style and marker, and the markers of different
    planners sit on different replicates, so curves that coincide stay visible; a curve
    identical to an earlier one says so in the legend (``b (= a)``).

    Parameters
    ----------
    runs : DataFrame
        ``Comparison.runs``: columns ``planner`` and ``makespan_ms``, one row per run.
    """
    require_columns(runs, ["planner", "makespan_ms"], "plot_makespan_cdf")
    fig, ax = new_axes(ax)
    first_with: dict[tuple[float, ...], str] = {}
    drawn = 0
    for planner, group in runs.groupby("planner", sort=False):
        values = np.sort(group["makespan_ms"].to_numpy(dtype=float))
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        name = str(planner)
        same = first_with.setdefault(tuple(values.tolist()), name)
        label = name if same == name else f"{name} (= {same})"
        probs = np.arange(1, len(values) + 1) / len(values)
        every = max(1, -(-len(values) // MAX_MARKERS))
        # Start the curve at probability 0 so a single replicate still draws a step.
        ax.step(np.concatenate([[values[0]], values]), np.concatenate([[0.0], probs]),
                where="post", label=label, linestyle=LINE_STYLES[drawn % len(LINE_STYLES)],
                marker=MARKERS[drawn % len(MARKERS)], markersize=4.5, fillstyle="none",
                markevery=(1 + drawn % every, every))
        drawn += 1
    ax.set_xlabel("makespan (ms)")
    ax.set_ylabel("fraction of runs")
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize="small")
    ax.set_title("makespan distribution")
    return fig


# -- cost vs makespan ---------------------------------------------------------------------
def planner_points(df: pd.DataFrame, makespan: str = "makespan_p95_ms") -> pd.DataFrame:
    """One row per planner with ``cost_usd`` and the ``makespan`` column.

    ``df`` is either a summary (one row per planner, has ``makespan``) or runs (one row
    per run, has ``makespan_ms``): runs are reduced to the mean cost and the percentile
    ``makespan`` names (``makespan_p95_ms`` -> 95th; ``makespan_mean_ms`` -> mean).
    """
    if makespan in df.columns:
        require_columns(df, ["planner", "cost_usd"], "planner_points")
        return df[["planner", "cost_usd", makespan]].reset_index(drop=True)
    require_columns(df, ["planner", "cost_usd", "makespan_ms"], "planner_points")
    q = _quantile_of(makespan)
    grouped = df.groupby("planner", sort=False)
    agg = (grouped["makespan_ms"].mean() if q is None
           else grouped["makespan_ms"].quantile(q))
    return pd.DataFrame({"planner": agg.index, "cost_usd": grouped["cost_usd"].mean().to_numpy(),
                         makespan: agg.to_numpy()})


def _quantile_of(column: str) -> float | None:
    """``makespan_p95_ms`` -> 0.95; ``makespan_mean_ms`` -> None (the mean)."""
    stat = column.removeprefix("makespan_").removesuffix("_ms")
    if stat == "mean":
        return None
    if stat.startswith("p") and stat[1:].replace(".", "", 1).isdigit():
        return float(stat[1:]) / 100.0
    raise ValueError(f"cannot read a statistic from column {column!r}; use makespan_pNN_ms "
                     "or makespan_mean_ms")


def plot_cost_vs_makespan(df: pd.DataFrame, ax: Axes | None = None,
                          makespan: str = "makespan_p95_ms") -> Figure:
    """Each planner at (mean cost, makespan percentile), the Pareto front highlighted.

    Parameters
    ----------
    df : DataFrame
        ``Comparison.summary`` or ``Comparison.runs`` (see :func:`planner_points`); with
        runs, the individual runs are drawn faintly behind the planner points.
    makespan : str
        The makespan statistic on the y axis (default the 95th percentile).
    """
    points = planner_points(df, makespan)
    fig, ax = new_axes(ax)
    if "replicate" in df.columns and "makespan_ms" in df.columns:
        ax.scatter(df["cost_usd"], df["makespan_ms"], s=8, color="0.75", zorder=1,
                   label="runs")
    xy = list(zip(points["cost_usd"].astype(float), points[makespan].astype(float),
                  strict=True))
    front = pareto_front(xy)
    on_front = np.zeros(len(points), dtype=bool)
    on_front[front] = True
    for mask, size, colour, label in ((~on_front, 40, "#6baed6", "dominated"),
                                      (on_front, 70, "#d62728", "Pareto front")):
        if mask.any():
            ax.scatter(points["cost_usd"][mask], points[makespan][mask], s=size,
                       color=colour, zorder=3 if mask is on_front else 2, label=label)
    if len(front) > 1:
        ax.plot([xy[i][0] for i in front], [xy[i][1] for i in front], color="#d62728",
                lw=1.2, zorder=3)
    # Planners with the same outcome share one label instead of overprinting each other.
    labels: dict[tuple[float, float], list[str]] = {}
    for (x, y), name in zip(xy, points["planner"], strict=True):
        if np.isfinite(x) and np.isfinite(y):
            labels.setdefault((x, y), []).append(str(name))
    for (x, y), names in labels.items():
        ax.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(5, 4),
                    fontsize="small")
    ax.set_xlabel("cost per run (USD)")
    ax.set_ylabel(makespan.removesuffix("_ms").replace("_", " ") + " (ms)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("cost vs makespan")
    return fig
