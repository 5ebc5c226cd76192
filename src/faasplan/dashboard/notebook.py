"""The run view of a finished run, inline in Jupyter (what :func:`faasplan.dashboard.view`
returns)."""

from __future__ import annotations

from typing import Any

import panel as pn

from faasplan.dashboard.figures import segments_json
from faasplan.dashboard.finished import as_trace, model_from_trace, plan_vs_actual
from faasplan.dashboard.pages import RunView


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def run_view(run_or_trace: Any, workflow: Any = None, plan: Any = None) -> pn.Column:
    """See :func:`faasplan.dashboard.view`."""
    trace = as_trace(run_or_trace)
    if _in_kernel() and not getattr(pn.extension, "_loaded", False):
        pn.extension()  # loads Panel's and Bokeh's JavaScript into the notebook, once
    planner = getattr(run_or_trace, "planner", "") or getattr(plan, "planner", "") or ""
    predicted = getattr(plan, "predicted", None) if plan is not None else None
    model = model_from_trace(trace, workflow, run_id=str(getattr(run_or_trace, "run_id", "")),
                             planner=str(planner),
                             predicted_makespan_ms=None if predicted is None
                             else float(predicted.makespan_ms))
    bars: dict[str, list[Any]] | None = None
    pva: list[dict[str, Any]] | None = None
    if predicted is not None:
        bars = segments_json(model_from_trace(predicted, workflow).detail()["workers"])
        pva = [{str(k): v for k, v in row.items()}
               for row in plan_vs_actual(predicted, trace).to_dict(orient="records")]
    return RunView(model, predicted=bars, plan_vs_actual=pva).layout
