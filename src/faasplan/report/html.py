"""Write a planner comparison to a directory: tables, plots, plans and one HTML page."""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
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


def write_report(comparison: Any, out_dir: str | os.PathLike[str], *, dpi: int = 110,
                 generated: datetime | None = None) -> Path:
    """Write tables, plots, plans and a self-contained ``report.html`` into ``out_dir``.

    Files: ``runs.csv``, ``runs.parquet``, ``summary.csv``, ``gantt_<planner>.png`` per
    planner with a trace, ``makespan_cdf.png``, ``cost_vs_makespan.png``,
    ``dag_<planner>.png`` (every planner up to :data:`ALL_DAGS_MAX_TASKS` tasks, else the
    best one), ``plans/<planner>.json`` and ``report.html`` with every plot embedded, so
    the page can be moved or mailed on its own.

    Parameters
    ----------
    comparison : Comparison
        Output of :func:`faasplan.experiments.compare.compare`.
    out_dir : path
        Created if needed. Files of the same names are overwritten; nothing else is touched.
    dpi : int
        Resolution of the PNGs.
    generated : datetime, optional
        The time the page says it was generated (default: now, in UTC).

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
              f"Makespan over {setup.replicates} replicates; each planner has its own line "
              "style and markers, and a planner whose runs are identical to another's is "
              "marked (= that planner) in the legend", dpi),
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
    when = generated if generated is not None else datetime.now(UTC)
    page.write_text(_page(comparison, images, best, when), encoding="utf-8")
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
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em;
       max-width: 1400px; color: #222; }
.table-wrap { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f0f0f0; font-weight: 600; white-space: normal; vertical-align: bottom; }
td { white-space: nowrap; font-variant-numeric: tabular-nums; }
td:first-child, th:first-child { text-align: left; }
tr.best td { background: #fff3cd; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.meta dt { font-weight: 600; }
table.platform td:nth-child(odd) { text-align: left; font-family: monospace; }
table.platform td.changed { font-weight: 600; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
"""

_GROUPS: dict[str, tuple[str, str]] = {
    "makespan_p50_ms": ("simulated makespan (ms)", "p50"),
    "makespan_p95_ms": ("simulated makespan (ms)", "p95"),
    "makespan_p99_ms": ("simulated makespan (ms)", "p99"),
    "makespan_mean_ms": ("simulated makespan (ms)", "mean"),
    "predicted_makespan_ms": ("predicted makespan (ms)", "at SLA"),
    "predicted_p50_ms": ("predicted makespan (ms)", "p50"),
    "predicted_p95_ms": ("predicted makespan (ms)", "p95"),
    "predicted_p99_ms": ("predicted makespan (ms)", "p99"),
    "predicted_cost_usd": ("cost (USD)", "predicted"),
    "cost_usd": ("cost (USD)", "simulated"),
}
"""Summary column -> (group header, column header) of the report's two-row table header."""

_LABELS = {"storage_bytes": "storage (MB)", "planning_ms": "planning (ms)",
           "cold_starts": "cold starts"}
"""Summary column -> header of columns outside any group (default: the name, spaced)."""

PLATFORM_COLUMNS = 3
"""Parameter/value pairs per row of the platform table."""


def _page(comparison: Any, images: list[_Image], best: str | None, generated: datetime) -> str:
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
        "faasplan": _version(),
        "generated": generated.isoformat(timespec="seconds"),
    }
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>faasplan report: {esc(setup.name)}</title>", f"<style>{_CSS}</style>",
        "</head><body>", f"<h1>Planner comparison: {esc(setup.name)}</h1>",
        '<dl class="meta">',
        *(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in meta.items()), "</dl>",
        "<h2>Summary</h2>", _table(comparison.summary, best),
        "<p>Simulated columns are measured on the ground truth over the replicates; "
        "predicted ones are the planner's own estimate. Storage counts the bytes workers "
        "stored. Full-precision values and the column names used in the files are in "
        '<a href="summary.csv">summary.csv</a>; per-run rows in <a href="runs.csv">runs.csv'
        '</a> and <a href="runs.parquet">runs.parquet</a>, plans in <code>plans/</code>.</p>',
        "<h2>Platform</h2>", _platform_section(setup),
        "<h2>Plots</h2>",
        *(_figure(img) for img in images),
        "<h2>Plan notes</h2>", _notes(comparison.plans),
        "</body></html>",
    ]
    return "\n".join(parts)


def _version() -> str:
    # Imported here: faasplan's top-level package imports the report lazily.
    from faasplan import __version__

    return __version__


def _table(summary: pd.DataFrame, best: str | None) -> str:
    """The summary as a table with grouped, wrapping headers and compact numbers.

    Wrapped in a horizontally scrollable block, so a summary wider than the page scrolls
    instead of hiding columns.
    """
    columns = [c for c in summary.columns if c != "notes"]
    rows = []
    for record in summary[columns].to_dict(orient="records"):
        cls = ' class="best"' if best is not None and record.get("planner") == best else ""
        cells = "".join(f"<td>{html.escape(_cell(c, record[c]))}</td>" for c in columns)
        rows.append(f"<tr{cls}>{cells}</tr>")
    return (f'<div class="table-wrap"><table class="summary"><thead>{_header(columns)}'
            f"</thead><tbody>{''.join(rows)}</tbody></table></div>")


def _header(columns: list[str]) -> str:
    """Two header rows: groups spanning their columns, then the columns of each group."""
    top: list[str] = []
    bottom: list[str] = []
    i = 0
    while i < len(columns):
        group = _GROUPS.get(columns[i], (None, ""))[0]
        if group is None:
            label = _LABELS.get(columns[i], columns[i].replace("_", " "))
            top.append(f'<th rowspan="2" title="{html.escape(columns[i])}">'
                       f"{html.escape(label)}</th>")
            i += 1
            continue
        j = i
        while j < len(columns) and _GROUPS.get(columns[j], (None, ""))[0] == group:
            bottom.append(f'<th title="{html.escape(columns[j])}">'
                          f"{html.escape(_GROUPS[columns[j]][1])}</th>")
            j += 1
        top.append(f'<th colspan="{j - i}">{html.escape(group)}</th>')
        i = j
    second = f"<tr>{''.join(bottom)}</tr>" if bottom else ""
    return f"<tr>{''.join(top)}</tr>{second}"


def _cell(column: str, value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if column.startswith("cost") or column.endswith("cost_usd"):
            return f"{value:.4g}"
        if column.endswith("bytes"):
            return f"{value / 1e6:,.1f}"
        if column.endswith("_ms"):
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
        if value.is_integer():
            return f"{value:,.0f}"
        return f"{value:,.1f}"
    return str(value)


def _platform_section(setup: Any) -> str:
    """The platform the plans were scored on, and the one planners believed if different."""
    truth = setup.platform
    believed = getattr(setup, "planning_platform", None)
    out = ["<p>Parameters of the platform model the plans were scored on (ground truth); "
           "<b>bold</b> values differ from faasplan's defaults.</p>", _platform_table(truth)]
    if believed is not None and believed != truth:
        out += ["<p>Planners believed this platform (calibrated from the metrics history):"
                "</p>", _platform_table(believed)]
    return "\n".join(out)


def _platform_table(platform: Any) -> str:
    cls: Any = type(platform)
    if not dataclasses.is_dataclass(platform) or isinstance(platform, type):
        return f"<p><code>{html.escape(repr(platform))}</code></p>"
    defaults = cls()
    cells = []
    for f in dataclasses.fields(platform):
        value = getattr(platform, f.name)
        changed = ' class="changed"' if value != getattr(defaults, f.name) else ""
        cells.append(f"<td>{html.escape(f.name)}</td>"
                     f"<td{changed}>{html.escape(_param(value))}</td>")
    rows = ["".join(cells[k:k + PLATFORM_COLUMNS])
            for k in range(0, len(cells), PLATFORM_COLUMNS)]
    body = "".join(f"<tr>{r}</tr>" for r in rows)
    return f'<div class="table-wrap"><table class="platform"><tbody>{body}</tbody></table></div>'


def _param(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(_param(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
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
