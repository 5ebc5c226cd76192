"""The run view of a finished run, inline in Jupyter (what :func:`faasplan.dashboard.view`
returns)."""

from __future__ import annotations

from typing import Any

import panel as pn

from faasplan.dashboard.finished import as_trace, model_from_trace, prediction_from_trace
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
                             prediction=None if predicted is None
                             else prediction_from_trace(predicted, workflow))
    return RunView(model).layout
