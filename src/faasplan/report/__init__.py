"""Plots and the HTML report of a planner comparison.

Every plot returns a :class:`matplotlib.figure.Figure` built without pyplot, so the module
works in notebooks (the figure displays itself) and headless (``fig.savefig``) alike.

- :func:`plot_gantt` — worker lanes with fetch / exec / upload phases of a trace
- :func:`plot_makespan_cdf` — makespan distribution per planner
- :func:`plot_cost_vs_makespan` — planners by cost and makespan, :func:`pareto_front` marked
- :func:`plot_dag` — the DAG coloured by planned worker, critical path highlighted
- :func:`write_report` — CSV / Parquet / PNG / plan files and a self-contained HTML page
"""

from faasplan.report.dag import layered_layout, plot_dag, predicted_exec_ms
from faasplan.report.html import best_planner, makespan_column, write_report
from faasplan.report.pareto import pareto_front
from faasplan.report.plots import (
    planner_points,
    plot_cost_vs_makespan,
    plot_gantt,
    plot_makespan_cdf,
)

__all__ = [
    "best_planner",
    "layered_layout",
    "makespan_column",
    "pareto_front",
    "planner_points",
    "plot_cost_vs_makespan",
    "plot_dag",
    "plot_gantt",
    "plot_makespan_cdf",
    "predicted_exec_ms",
    "write_report",
]
