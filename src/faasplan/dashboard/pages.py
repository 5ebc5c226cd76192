"""The dashboard's pages (Panel layouts of Bokeh figures), and the run view they share.

* :class:`RunView` — one run: status line, progress, DAG by state (by function beyond
  :data:`~faasplan.dashboard.figures.MAX_DAG_TASKS` tasks), Gantt per worker, workers,
  bytes through storage, failures with tracebacks; with the plan's prediction, the
  predicted Gantt overlaid (outlined) and the per-task error, live.
  :meth:`RunView.update` sends only what changed.
* :func:`live_page` — ``/``: the runs on the Redis server, the chosen one updated live.
* :func:`history_page` — ``/history``: workflow types of the metrics history, planner
  comparisons run as cancellable jobs with progress, and a button that runs the chosen
  plan on the dashboard's Redis and opens its live view.
"""

from __future__ import annotations

import html
import statistics
import time
from collections.abc import Callable
from typing import Any

import panel as pn

from faasplan.dashboard.api import Context
from faasplan.dashboard.figures import (
    MAX_DAG_TASKS,
    MAX_PVA_ROWS,
    BytesPlot,
    DagPlot,
    FunctionPlot,
    GanttPlot,
    PlanVsActualPlot,
    WorkersTable,
    cdf_figure,
    counts_line,
    pareto_figure,
    segments_json,
    table,
)
from faasplan.dashboard.history import CompareRequest, HistoryError, RunRequest, run_support
from faasplan.dashboard.jobs import Job
from faasplan.dashboard.model import RunModel

LIVE_PERIOD_MS = 500
"""How often a live page sends what changed."""

JOB_PERIOD_MS = 300

PVA_COLUMNS = (("task", "task"), ("function", "function"), ("worker", "worker"),
               ("predicted_exec_ms", "predicted exec (ms)"),
               ("actual_exec_ms", "actual exec (ms)"), ("exec_error_pct", "exec error (%)"),
               ("predicted_end_ms", "predicted end (ms)"), ("actual_end_ms", "actual end (ms)"),
               ("end_error_ms", "end error (ms)"))


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f} s"


def header(active: str) -> pn.pane.HTML:
    """The links between the pages."""
    links = []
    for name, href in (("Runs", "./"), ("History", "./history")):
        style = "font-weight:bold;" if name == active else ""
        links.append(f'<a href="{href}" style="margin-right:1.2em;{style}">{name}</a>')
    return pn.pane.HTML(f'<div style="font-size:1.1em"><b>faasplan dashboard</b> &nbsp; '
                        f'{"".join(links)}</div>', sizing_mode="stretch_width")


class RunView:
    """The views of one run (see the module docs).

    Parameters
    ----------
    model : RunModel
        The run; read under the feed's lock when live (another thread writes it). With
        ``model.prediction`` the plan's predicted Gantt is overlaid on the actual one and
        the per-task error is shown, both updated as the run goes.
    """

    def __init__(self, model: RunModel) -> None:
        self.model = model
        prediction = model.prediction
        self.predicted = prediction is not None
        self.status = pn.pane.Markdown(sizing_mode="stretch_width", name="faasplan-status")
        self.progress = pn.indicators.Progress(value=0, max=max(1, len(model.tasks)),
                                               sizing_mode="stretch_width", height=18)
        self.dag = DagPlot(model)
        self.gantt = GanttPlot(model, predicted=None if prediction is None
                               else {k: list(v) for k, v in prediction.segments.items()},
                               title="Gantt per worker" + (
                                   " (actual filled; the plan's prediction outlined above)"
                                   if prediction is not None else ""))
        self.functions = FunctionPlot(model) if len(model.tasks) > MAX_DAG_TASKS else None
        self.bytes = BytesPlot(model)
        self.workers = WorkersTable(model)
        self.workers_pane = pn.pane.DataFrame(self.workers.frame(), index=False,
                                              sizing_mode="stretch_width", max_height=300,
                                              css_classes=["faasplan-workers"])
        self.failures = pn.pane.HTML(sizing_mode="stretch_width")
        parts: list[Any] = [self.status, self.progress, pn.pane.Bokeh(self.dag.figure)]
        if self.functions is not None:
            parts.append(pn.pane.Bokeh(self.functions.figure))
        parts += [pn.pane.Bokeh(self.gantt.figure),
                  pn.Row(pn.Column(pn.pane.Markdown("**workers**"),
                                   self.workers_pane),
                         pn.pane.Bokeh(self.bytes.figure), sizing_mode="stretch_width"),
                  self.failures]
        self.pva = PlanVsActualPlot(model) if prediction is not None else None
        self.pva_pane: pn.pane.DataFrame | None = None
        if self.pva is not None and prediction is not None:
            self.pva_pane = pn.pane.DataFrame(self.pva.frame(), index=False,
                                              sizing_mode="stretch_width", max_height=420,
                                              css_classes=["faasplan-pva"])
            shown = ("" if len(model.tasks) <= MAX_PVA_ROWS else
                     f"; the table shows {MAX_PVA_ROWS} of {len(model.tasks)} tasks, running "
                     "first: every task is in the API")
            parts += [pn.pane.Markdown(
                f"**plan vs actual, per task** (prediction: {html.escape(prediction.source)};"
                " exec ratio = actual / predicted execution time; end error = actual - "
                f"predicted end{shown})", sizing_mode="stretch_width"),
                pn.pane.Bokeh(self.pva.figure), self.pva_pane]
        self.layout = pn.Column(*parts, sizing_mode="stretch_width")
        self.update()

    def update(self, now_ms: float | None = None) -> None:
        """Send what changed since the last update."""
        m = self.model
        states = m.states()
        s = m.summary(now_ms)
        self.dag.update(states)
        self.gantt.update()
        self.bytes.update()
        workers = self.workers.frame()
        if workers is not None:
            self.workers_pane.object = workers
        if self.functions is not None:
            self.functions.update(m)
        if self.pva is not None and self.pva_pane is not None:
            self.pva.update()
            frame = self.pva.frame()
            if frame is not None:
                self.pva_pane.object = frame
        self.progress.value = s["done"]
        expected = s["expected_end_s"]
        busy = f"{s['busy_workers']} busy / {s['workers']}"
        b = s["bytes"]
        text = (f"**{html.escape(s['id'])}** · {html.escape(s['workflow'])} · planner "
                f"{html.escape(s['planner'] or '-')} · **{s['status']}** · "
                f"{s['done']}/{s['total']} done · elapsed {_seconds(s['elapsed_s'])} · "
                f"expected end {_seconds(expected)}"
                f"{' (prediction)' if expected is not None else ''} · workers {busy} · "
                f"storage: down {_mb(b['down'])}, up {_mb(b['up'])}, invocations "
                f"{_mb(b['invoke'])}  \n{counts_line(states)}")
        if self.gantt.truncated:
            text += " · Gantt shows its first bars only"
        if self.pva is not None:
            ratios = sorted(r["exec_ratio"] for r in self.pva.rows
                            if r["exec_ratio"] is not None)
            if ratios:
                text += (f" · actual / predicted execution: median "
                         f"{statistics.median(ratios):.2f} over {len(ratios)} task(s)")
        if text != self.status.object:
            self.status.object = text
        if len(m.failures) and not self.failures.object:
            blocks = [f"<h4>failed: task {html.escape(str(f.task))} on {html.escape(f.worker)}"
                      f" at {_seconds(m.seconds(f.t))}</h4><pre style='white-space:pre-wrap'>"
                      f"{html.escape(f.traceback)}</pre>" for f in m.failures]
            self.failures.object = "".join(blocks)


def live_page(ctx: Context) -> pn.Column:
    """``/``: the runs on the configured Redis server; the chosen (or newest) one, live."""
    page = pn.Column(header("Runs"), sizing_mode="stretch_width")
    feed = ctx.feed
    if feed is None:
        page.append(pn.pane.Markdown(
            "No Redis server given: start the dashboard with `--redis URL` to follow runs, "
            "or open **History** to compare planners on past runs."))
        return page
    select = pn.widgets.Select(name=f"runs on {feed.where}", options={},
                               sizing_mode="stretch_width")
    note = pn.pane.Markdown("waiting for a run...", sizing_mode="stretch_width")
    body = pn.Column(sizing_mode="stretch_width")
    page.extend([select, note, body])
    wanted = pn.state.session_args.get("run", [b""])[0].decode() if pn.state.session_args \
        else ""
    state: dict[str, Any] = {"view": None, "run": None, "pick": wanted or None}

    def refresh() -> None:
        runs = feed.snapshot()
        options = {f"{r['id']} · {r['workflow']} · {r['status']} "
                   f"({r['done']}/{r['total']})": r["id"] for r in runs}
        if options != select.options:
            select.options = options
        ids = [r["id"] for r in runs]
        if state["pick"] in ids:
            select.value, state["pick"] = state["pick"], None
        elif select.value not in ids and ids:
            select.value = ids[-1]
        note.object = feed.error or _waiting(ctx, state["pick"], bool(ids))
        run_id = select.value
        if run_id is None:
            return
        with feed.lock:
            model = feed.runs.get(run_id)
            if model is None:
                return
            view: RunView | None = state["view"]
            if (state["run"] != run_id or view is None
                    or view.predicted != (model.prediction is not None)):
                state["view"], state["run"] = RunView(model), run_id
                body.objects = [state["view"].layout]
            else:
                view.update(time.time() * 1000.0)

    refresh()
    # Refreshed only once the browser holds the page: a view built while it is still
    # fetching the document could reach it neither in that document nor as a later patch,
    # and every update after would name models the browser never got (BokehJS: "reference
    # ... isn't known"; the page then stops following the run).
    def follow() -> None:
        pn.state.add_periodic_callback(refresh, period=LIVE_PERIOD_MS)

    pn.state.onload(follow)
    return page


def _waiting(ctx: Context, pick: str | None, any_run: bool) -> str:
    """The live page's note while the run asked for (``?run=ID``) is not on Redis yet."""
    if pick is None:
        return "" if any_run else "waiting for a run..."
    job = ctx.jobs.for_run(pick)
    if job is None:
        return f"waiting for run {html.escape(pick)}..."
    if job.status == "running":
        planner = str(getattr(job.request, "planner", ""))
        return (f"run **{html.escape(pick)}** ({html.escape(planner)}): "
                f"{html.escape(job.stage)} {job.done}/{job.total} · "
                f"{time.time() - job.started:,.1f} s")
    error = job.error[1] if job.error else job.status
    return f"run **{html.escape(pick)}** did not start: {html.escape(error)}"


def history_page(ctx: Context) -> pn.Column:
    """``/history``: workflow types seen, and planner comparisons on one of them."""
    from faasplan.planners import planner_names

    store = ctx.store
    page = pn.Column(header("History"), sizing_mode="stretch_width")
    if not store.types:
        page.append(pn.pane.Markdown(
            "No metrics history given: start the dashboard with `--metrics FILE...` "
            "(Parquet metrics stores or WfFormat traces)."))
        return page
    options = {f"{t.name} · {len(t.runs)} run(s), {t.records} records"
               + ("" if t.hashes else " (no definition)"): t.id for t in store.types.values()}
    kind = pn.widgets.Select(name="workflow type", options=options, sizing_mode="stretch_width")
    runs = pn.Column(sizing_mode="stretch_width")
    planners = pn.widgets.MultiChoice(name="planners", options=list(planner_names()),
                                      value=[p for p in ("wukong", "uniform", "heft")
                                             if p in planner_names()])
    sla = pn.widgets.Select(name="SLA", options=["p50", "p90", "p95", "p99", "average"],
                            value="p95", width=120)
    replicates = pn.widgets.IntInput(name="replicates", value=20, start=1, end=1000, width=120)
    go = pn.widgets.Button(name="Compare", button_type="primary", width=120)
    stop = pn.widgets.Button(name="Cancel", button_type="warning", width=120, disabled=True)
    progress = pn.indicators.Progress(value=0, max=1, active=False, sizing_mode="stretch_width",
                                      height=18)
    status = pn.pane.Markdown("", sizing_mode="stretch_width", name="faasplan-job-status")
    results = pn.Column(sizing_mode="stretch_width")
    run_planner = pn.widgets.Select(name="plan to run", options=list(planner_names()),
                                    value=planners.value[0] if planners.value else "wukong",
                                    width=180)
    time_scale = pn.widgets.FloatInput(name="time scale (synthetic tasks)", value=1.0,
                                       start=0.001, end=1000.0, step=0.1, width=200)
    run_go = pn.widgets.Button(name="Run on Redis", button_type="success", width=150)
    run_note = pn.pane.Markdown("", sizing_mode="stretch_width", name="faasplan-run-note")
    page.extend([kind, runs, pn.Row(planners, sla, replicates, go, stop), progress, status,
                 pn.pane.Markdown("**Run a plan for real** (plans the type with the chosen "
                                  "planner at the SLA above, runs the plan on the dashboard's "
                                  "Redis and opens its live view, predicted against actual)",
                                  sizing_mode="stretch_width"),
                 pn.Row(run_planner, time_scale, run_go, run_note,
                        sizing_mode="stretch_width"), results])
    state: dict[str, Any] = {"job": None, "poll": None}

    def show_run_support(*_: Any) -> None:
        mode, why = run_support(store, kind.value)
        time_scale.visible = mode == "synthetic"
        if ctx.feed is None:
            run_go.disabled = True
            run_go.description = ("no Redis server: start the dashboard with --redis URL to "
                                  "run plans for real")
            run_note.object = ("*Running a plan needs a Redis server: start the dashboard "
                               "with* `--redis URL`.")
        elif mode is None:
            run_go.disabled, run_go.description = True, why
            run_note.object = f"*{html.escape(why)}*"
        else:
            run_go.disabled = False
            run_go.description = (f"plan with the chosen planner at the SLA and run the plan "
                                  f"on {ctx.feed.where}")
            run_note.object = (f"runs on {html.escape(ctx.feed.where)}: {html.escape(why)}; "
                               "the live view opens when it starts")

    def run_plan(*_: Any) -> None:
        body: dict[str, Any] = {"planner": run_planner.value, "sla": sla.value}
        if time_scale.visible:
            body["time_scale"] = float(time_scale.value or 1.0)
        try:
            job = ctx.start_run(kind.value, RunRequest.parse(body))
        except HistoryError as exc:
            run_note.object = f"**cannot run:** {html.escape(str(exc))}"
            return
        run_go.disabled = True
        run_note.object = (f"run **{job.run_id}** started ({job.id}): opening "
                           f"[its live view](./?run={job.run_id})...")
        location = pn.state.location
        if location is not None:
            path = location.pathname or "/"
            base = path[:-len("history")] if path.endswith("history") else path
            location.param.update(pathname=base or "/", search=f"?run={job.run_id}",
                                  reload=True)

    def show_runs(*_: Any) -> None:
        wt = store.get(kind.value)
        runs.objects = [pn.pane.Bokeh(table(list(wt.runs), (
            ("run_id", "run"), ("workflow", "workflow"), ("workflow_hash", "structure hash"),
            ("tasks", "tasks"), ("planner", "planner")), "faasplan-runs",
            height=min(300, 40 + 28 * len(wt.runs))))]

    def start(*_: Any) -> None:
        try:
            request = CompareRequest.parse({"planners": list(planners.value), "sla": sla.value,
                                            "replicates": int(replicates.value or 1)})
            job = ctx.jobs.start(kind.value, request)
        except HistoryError as exc:
            status.object = f"**cannot compare:** {html.escape(str(exc))}"
            return
        state["job"] = job
        go.disabled, stop.disabled = True, False
        progress.max, progress.value, progress.active = max(1, job.total), 0, True
        results.objects = []
        state["poll"] = pn.state.add_periodic_callback(poll, period=JOB_PERIOD_MS)

    def cancel(*_: Any) -> None:
        job: Job | None = state["job"]
        if job is not None:
            job.cancel()

    def poll() -> None:
        job: Job | None = state["job"]
        if job is None:
            return
        progress.value = min(job.done, progress.max)
        status.object = (f"{job.id}: **{job.status}** · {job.stage} {job.done}/{job.total} "
                         f"planner(s) · {time.time() - job.started:,.1f} s")
        if job.status == "running":
            return
        state["poll"].stop()
        go.disabled, stop.disabled, progress.active = False, True, False
        if job.result is not None:
            results.objects = comparison_panes(job.result)
            run_planner.value = job.result["best"]["planner"]
        elif job.error is not None:
            status.object += f" · {html.escape(job.error[1])}"

    kind.param.watch(show_runs, "value")
    kind.param.watch(show_run_support, "value")
    go.on_click(start)
    stop.on_click(cancel)
    run_go.on_click(run_plan)
    show_runs()
    show_run_support()
    return page


SUMMARY_COLUMNS = (("planner", "planner"), ("makespan_p50_ms", "p50 (ms)"),
                   ("makespan_p95_ms", "p95 (ms)"), ("makespan_p99_ms", "p99 (ms)"),
                   ("sla_makespan_ms", "at SLA (ms)"),
                   ("predicted_makespan_ms", "predicted at SLA (ms)"),
                   ("cost_usd", "cost (USD)"), ("cold_starts", "cold starts"),
                   ("workers", "workers"), ("planning_ms", "planning (ms)"),
                   ("pareto", "Pareto"))


def comparison_panes(result: dict[str, Any]) -> list[Any]:
    """The panes of a comparison: summary, CDFs, Pareto front, best plan's Gantt and error."""
    rows = [{**r, "pareto": "yes" if r["planner"] in result["pareto"] else ""}
            for r in result["summary"]]
    best = result["best"]
    gantt = GanttPlot(None, title=f"best at {result['sla']}: {best['planner']} "
                      "(one scored replicate; predicted above, outlined)",
                      bars=segments_json(best["workers"]),
                      predicted=segments_json(best["predicted_workers"]))
    return [
        pn.pane.Markdown(f"**{html.escape(result['workflow'])}** ({result['tasks']} tasks, "
                         f"{result['records']} records), SLA {result['sla']}, "
                         f"{result['replicates']} replicates, {result['elapsed_s']:.1f} s; "
                         f"best: **{html.escape(best['planner'])}**"),
        pn.pane.Bokeh(table(rows, SUMMARY_COLUMNS, "faasplan-summary", height=60 + 28 *
                            len(rows))),
        pn.Row(pn.pane.Bokeh(cdf_figure(result["cdf"], result["sla"])),
               pn.pane.Bokeh(pareto_figure(result["summary"], result["pareto"], result["sla"])),
               sizing_mode="stretch_width"),
        pn.pane.Bokeh(gantt.figure),
        pn.pane.Markdown("**plan vs scored replicate, per task** (error = actual / predicted "
                         "- 1)"),
        pn.pane.Bokeh(table(best["plan_vs_actual"], PVA_COLUMNS, "faasplan-pva", height=240)),
    ]


def apps(ctx: Context) -> dict[str, Callable[[], pn.Column]]:
    """The server's pages: a fresh layout per browser session."""
    return {"/": lambda: live_page(ctx), "/history": lambda: history_page(ctx)}
