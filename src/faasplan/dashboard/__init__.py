"""Dashboards: watch a run on Redis as it happens, look at a finished run, and compare the
planners on the workflow types a metrics history has seen.

* :func:`serve` — the web dashboard (pages and JSON API) on 127.0.0.1, in the background;
  ``faasplan dashboard`` runs it;
* :func:`view` — the same run view inline in Jupyter, for a finished run or a trace;
* :class:`RunModel` — the state of a run folded from its decision-log events, which every
  view draws; :class:`RedisFeed` keeps one per run on a Redis server;
* :class:`HistoryStore` and :func:`compare_type` — the history view's data;
  :func:`plan_run` plans a type for a real run (the history view's run button), with the
  :class:`Prediction` that the live view lines up with what happens.

The pages are Panel layouts of Bokeh figures (Panel and Bokeh are the ``dashboard`` extra:
``pip install 'faasplan[dashboard]'``); the model, the feed and the history need neither.
"""

from __future__ import annotations

from typing import Any

from faasplan.dashboard.finished import model_from_trace, plan_vs_actual, prediction_from_trace
from faasplan.dashboard.history import (
    CompareRequest,
    HistoryError,
    HistoryStore,
    RunRequest,
    compare_type,
    plan_run,
    run_support,
)
from faasplan.dashboard.model import (
    PHASES,
    STATES,
    PredictedTask,
    Prediction,
    RunModel,
    TaskInfo,
    model_from_info,
    prediction_from_json,
)

__all__ = [
    "PHASES",
    "STATES",
    "CompareRequest",
    "HistoryError",
    "HistoryStore",
    "PredictedTask",
    "Prediction",
    "RunModel",
    "RunRequest",
    "TaskInfo",
    "compare_type",
    "model_from_info",
    "model_from_trace",
    "plan_run",
    "plan_vs_actual",
    "prediction_from_json",
    "prediction_from_trace",
    "run_support",
    "serve",
    "view",
]

INSTALL_HINT = "the dashboard needs Panel and Bokeh: pip install 'faasplan[dashboard]'"


def _require_panel() -> None:
    try:
        import bokeh  # noqa: F401
        import panel  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc


def serve(redis_url: str | None = None, metrics: Any = (), port: int = 0,
          open_browser: bool = False) -> Any:
    """Start the web dashboard; see :func:`faasplan.dashboard.server.serve`."""
    _require_panel()
    from faasplan.dashboard.server import serve as _serve

    return _serve(redis_url, tuple(str(m) for m in metrics), port, open_browser)


def view(run_or_trace: Any, workflow: Any = None, plan: Any = None) -> Any:
    """The run view of a finished run, as a Panel layout that renders inline in Jupyter.

    Parameters
    ----------
    run_or_trace : Trace, RunResult or Plan
        A trace from :func:`faasplan.simulate`, the result of :func:`faasplan.run`, or a
        plan (its predicted trace).
    workflow : Workflow, optional
        Gives the DAG its edges (without it they are read from the run's decision log).
    plan : Plan, optional
        The plan the run followed: its predicted Gantt is overlaid on the actual one and a
        table gives the per-task error.

    Returns
    -------
    panel.Column
        Displayed by Jupyter as the last expression of a cell; ``.servable()`` or
        ``panel.serve`` also work.
    """
    _require_panel()
    from faasplan.dashboard.notebook import run_view

    return run_view(run_or_trace, workflow, plan)
