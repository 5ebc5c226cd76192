"""Write a planner comparison to a directory: tables, plots, plans and one HTML page."""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from faasplan.report.dag import plot_dag
from faasplan.report.plots import (
    plot_cost_vs_makespan,
    plot_gantt,
    plot_makespan_cdf,
    require_columns,
)

ALL_DAGS_MAX_TASKS = 200
"""Up to this many tasks a DAG is drawn for every planner; above, for the best one only."""


@dataclass(frozen=True)
class _Image:
    """A plot written to ``file`` and embedded in the page under ``caption``."""

    file: str
    caption: str
    png: bytes


def makespan_column(sla: str) -> str:
    """The summary column that measures makespan at ``sla``: ``"p95"`` -> ``makespan_p95_ms``.

    ``"average"`` / ``"mean"`` map to ``makespan_mean_ms``.
    """
    return "makespan_mean_ms" if sla in ("average", "mean") else f"makespan_{sla}_ms"


def best_planner(summary: pd.DataFrame, sla: str = "p95") -> str:
    """The planner with the lowest makespan at ``sla`` (ties: lower cost, then first listed).

    Falls back to ``makespan_p95_ms`` when the summary has no column for ``sla``.
    """
    column = makespan_column(sla)
    if column not in summary.columns:
        column = "makespan_p95_ms"
    require_columns(summary, ["planner", column, "cost_usd"], "best_planner")
    if summary.empty:
        raise ValueError("best_planner: the summary has no planners")
    ranked = summary.assign(_row=range(len(summary))).sort_values(
        [column, "cost_usd", "_row"], na_position="last", kind="stable")
    return str(ranked["planner"].iloc[0])


def write_report(comparison: Any, out_dir: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Write tables, plots, plans and a self-contained ``report.html`` into ``out_dir``.

    Files: ``runs.csv``, ``runs.parquet``, ``summary.csv``, ``gantt_<planner>.png`` per
    planner with a trace, ``makespan_cdf.png``, ``cost_vs_makespan.png``,
    ``dag_<planner>.png`` (every planner up to :data:`ALL_DAGS_MAX_TASKS` tasks, else the
    best one), ``plans/<planner>.json`` and ``report.html`` with every plot embedded, so
    the page can be moved or mailed on its own.

    Parameters
    ----------
    comparison : Comparison
        Output of :func:`faasplan.compare.compare`.
    out_dir : path
        Created if needed. Files of the same names are overwritten; nothing else is touched.
    dpi : int
        Resolution of the PNGs.

    Returns
    -------
    Path
        The path of ``report.html``.
    """
    setup = comparison.setup
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "plans").mkdir(exist_ok=True)
    comparison.runs.to_csv(out / "runs.csv", index=False)
    comparison.runs.to_parquet(out / "runs.parquet", index=False)
    comparison.summary.to_csv(out / "summary.csv", index=False)
    slugs = _slugs(list(comparison.plans) + list(comparison.traces))
    for name, plan in comparison.plans.items():
        plan.save(out / "plans" / f"{slugs[name]}.json")

    best = best_planner(comparison.summary, setup.sla) if len(comparison.summary) else None
    images = [
        _save(plot_cost_vs_makespan(comparison.summary, makespan=_summary_makespan(
            comparison.summary, setup.sla)), out, "cost_vs_makespan.png",
            "Cost vs makespan; red points are on the Pareto front", dpi),
        _save(plot_makespan_cdf(comparison.runs), out, "makespan_cdf.png",
              f"Makespan over {setup.replicates} replicates", dpi),
    ]
    for name, trace in comparison.traces.items():
        images.append(_save(plot_gantt(trace, title=f"{name}: makespan {trace.makespan_ms:.0f} ms"),
                            out, f"gantt_{slugs[name]}.png",
                            f"Gantt chart of {name} (first replicate)", dpi))
    dag_planners: list[str] = list(comparison.plans)
    if len(setup.workflow) > ALL_DAGS_MAX_TASKS:
        dag_planners = [p for p in dag_planners if p == best]
    for name in dag_planners:
        images.append(_save(plot_dag(setup.workflow, comparison.plans[name]), out,
                            f"dag_{slugs[name]}.png", f"Placement of {name}", dpi))
    page = out / "report.html"
    page.write_text(_page(comparison, images, best), encoding="utf-8")
    return page


def _summary_makespan(summary: pd.DataFrame, sla: str) -> str:
    column = makespan_column(sla)
    return column if column in summary.columns else "makespan_p95_ms"


def _slugs(names: list[str]) -> dict[str, str]:
    """Planner -> a file-name-safe stem, unique among ``names``."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in dict.fromkeys(names):
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "planner"
        slug, k = stem, 1
        while slug in used:
            k += 1
            slug = f"{stem}_{k}"
        used.add(slug)
        out[name] = slug
    return out


def _save(fig: Figure, out: Path, file: str, caption: str, dpi: int) -> _Image:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    png = buffer.getvalue()
    (out / file).write_bytes(png)
    return _Image(file, caption, png)


# -- the page -----------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
tr.best td { background: #fff3cd; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.meta dt { font-weight: 600; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
"""


def _page(comparison: Any, images: list[_Image], best: str | None) -> str:
    setup = comparison.setup
    esc = html.escape
    wf = setup.workflow
    meta = {
        "scenario": setup.name,
        "workflow": f"{wf.name} ({len(wf)} tasks, {wf.graph.number_of_edges()} edges)",
        "SLA": setup.sla,
        "replicates": str(setup.replicates),
        "seed": str(setup.seed),
        "history": f"{setup.history_records} metrics records",
        "planners": ", ".join(setup.planners),
        "best at SLA": best or "-",
    }
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>faasplan report: {esc(setup.name)}</title>", f"<style>{_CSS}</style>",
        "</head><body>", f"<h1>Planner comparison: {esc(setup.name)}</h1>",
        '<dl class="meta">',
        *(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in meta.items()), "</dl>",
        "<h2>Summary</h2>", _table(comparison.summary, best),
        '<p>Data: <a href="summary.csv">summary.csv</a>, <a href="runs.csv">runs.csv</a>, '
        '<a href="runs.parquet">runs.parquet</a>, plans in <code>plans/</code>.</p>',
        "<h2>Plots</h2>",
        *(_figure(img) for img in images),
        "<h2>Plan notes</h2>", _notes(comparison.plans),
        "</body></html>",
    ]
    return "\n".join(parts)


def _table(summary: pd.DataFrame, best: str | None) -> str:
    columns = [c for c in summary.columns if c != "notes"]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    rows = []
    for record in summary[columns].to_dict(orient="records"):
        cls = ' class="best"' if best is not None and record.get("planner") == best else ""
        cells = "".join(f"<td>{html.escape(_cell(c, record[c]))}</td>" for c in columns)
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _cell(column: str, value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if column.startswith("cost"):
            return f"{value:.6g}"
        if column.endswith("bytes"):
            return f"{value:,.0f}"
        return f"{value:,.1f}"
    return str(value)


def _figure(img: _Image) -> str:
    data = base64.b64encode(img.png).decode("ascii")
    return (f'<figure id="{html.escape(img.file)}"><img alt="{html.escape(img.caption)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(img.caption)} '
            f'(<a href="{html.escape(img.file)}">{html.escape(img.file)}</a>)</figcaption>'
            "</figure>")


def _notes(plans: dict[str, Any]) -> str:
    items = []
    for name, plan in plans.items():
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in plan.notes) or "<li>none</li>"
        items.append(f"<h3>{html.escape(name)}</h3><ul>{notes}</ul>")
    return "\n".join(items)
