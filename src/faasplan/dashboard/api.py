"""The dashboard's JSON API, served next to its pages by the same Tornado server.

=========================================  =================================================
``GET /api/runs``                          ``{"runs": [{"id", "workflow", "planner",
                                           "status", "done", "total", "started", "ended",
                                           ...}]}``, oldest first
``GET /api/runs/{id}``                     ``{"run", "tasks": [{"task", "state", "changes":
                                           [{"state", "t"}], "predicted"}], "workers":
                                           [{"worker", "timeline", ...}], "failures"}``;
                                           times in seconds since the run started;
                                           ``predicted`` (``worker``, ``start``,
                                           ``exec_start``, ``exec_end``, ``end``) when the
                                           plan's prediction is known
``GET /api/runs/{id}/plan-vs-actual``      ``{"run", "predicted", "source",
                                           "predicted_makespan_s", "tasks": [{"task",
                                           "predicted_exec", "actual_exec", "exec_ratio",
                                           "predicted_end", "actual_end", "end_error",
                                           ...}], "exec_ratio": {"median", "min", "max"}}``
``GET /api/history``                       the workflow types of the metrics history
``POST /api/history/{type}/compare``       body ``{"planners": [...], "sla": "p95"}``
                                           (also ``replicates``, ``seed``, ``workflow``);
                                           waits and returns the comparison
``POST /api/history/{type}/jobs``          the same, started as a job: ``202 {"id", ...}``
``POST /api/history/{type}/run``           body ``{"planner": "heft", "sla": "p95"}`` (also
                                           ``seed``, ``workflow``, ``time_scale``,
                                           ``timeout_s``): plans the type and runs the plan
                                           on the dashboard's Redis, as a job: ``202
                                           {"run", "job", "live"}``; ``409`` without
                                           ``--redis``, ``422`` for a type without code
``GET /api/jobs/{id}``                     a job's status and progress (and its result)
``DELETE /api/jobs/{id}``                  cancel a job
=========================================  =================================================

Errors are JSON ``{"error": message}`` with a 4xx status (5xx only for a failure of ours).
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from typing import Any

from tornado.web import RequestHandler

from faasplan.dashboard.history import CompareRequest, HistoryError, HistoryStore, RunRequest
from faasplan.dashboard.jobs import Job, Jobs
from faasplan.dashboard.live import RedisFeed


@dataclass
class Context:
    """What the handlers and the pages of one dashboard share."""

    feed: RedisFeed | None
    store: HistoryStore
    jobs: Jobs
    redis_url: str | None = None
    """Where runs started from the history view go (never shown: it may hold a password)."""

    def start_run(self, key: str, request: RunRequest) -> Job:
        """Plan type ``key`` and run it on the dashboard's Redis; the live feed gets the
        plan's prediction. :class:`HistoryError` for a request that cannot be served."""
        feed = self.feed
        return self.jobs.start_run(key, request, self.redis_url if feed is not None else None,
                                   feed.expect if feed is not None else None)

    def unknown_run(self, run_id: str) -> str:
        """Why run ``run_id`` has no view (yet)."""
        job = self.jobs.for_run(run_id)
        if job is not None and job.status == "running":
            return f"run {run_id!r} is being prepared ({job.id}: {job.stage}); retry soon"
        if job is not None:
            return f"run {run_id!r} did not start: {job.error[1] if job.error else job.status}"
        where = f"on {self.feed.where}" if self.feed is not None else \
            "(no Redis given: --redis URL)"
        return f"unknown run {run_id!r} {where}; GET /api/runs lists the runs"


def clean_json(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


class _Handler(RequestHandler):
    """JSON in and out; :class:`HistoryError` becomes its status with the message."""

    ctx: Context

    def initialize(self, ctx: Context) -> None:
        self.ctx = ctx

    def reply(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(clean_json(obj), separators=(",", ":"), allow_nan=False))

    def fail(self, status: int, message: str) -> None:
        self.reply({"error": message}, status)

    def body(self) -> Any:
        if not self.request.body:
            return {}
        try:
            return json.loads(self.request.body)
        except ValueError as exc:
            raise HistoryError(f"the body is not JSON: {exc}") from None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.reply({"error": self._reason}, status_code)


class RunsHandler(_Handler):
    """``GET /api/runs``."""

    def get(self) -> None:
        feed = self.ctx.feed
        self.reply({"runs": feed.snapshot() if feed is not None else [],
                    "redis": feed.where if feed is not None else None,
                    "error": feed.error if feed is not None else None})


class RunHandler(_Handler):
    """``GET /api/runs/{id}``."""

    def get(self, run_id: str) -> None:
        feed = self.ctx.feed
        detail = feed.detail(run_id) if feed is not None else None
        if detail is None:
            self.fail(404, self.ctx.unknown_run(run_id))
            return
        self.reply(detail)


class PlanVsActualHandler(_Handler):
    """``GET /api/runs/{id}/plan-vs-actual``."""

    def get(self, run_id: str) -> None:
        feed = self.ctx.feed
        out = feed.plan_vs_actual(run_id) if feed is not None else None
        if out is None:
            self.fail(404, self.ctx.unknown_run(run_id))
            return
        self.reply(out)


class HistoryHandler(_Handler):
    """``GET /api/history``."""

    def get(self) -> None:
        self.reply(self.ctx.store.to_json())


class CompareHandler(_Handler):
    """``POST /api/history/{type}/compare``: start a job and wait for its result."""

    job: Job | None = None

    async def post(self, key: str) -> None:
        try:
            self.job = self.ctx.jobs.start(key, CompareRequest.parse(self.body()))
            result = await asyncio.wrap_future(self.job.future)
        except HistoryError as exc:
            self.fail(exc.status, str(exc))
            return
        self.reply(result)

    def on_connection_close(self) -> None:
        if self.job is not None:
            self.job.cancel()  # nobody waits for it any more


class JobsHandler(_Handler):
    """``POST /api/history/{type}/jobs``: start a comparison job."""

    def post(self, key: str) -> None:
        try:
            job = self.ctx.jobs.start(key, CompareRequest.parse(self.body()))
        except HistoryError as exc:
            self.fail(exc.status, str(exc))
            return
        self.reply(job.to_json(), 202)


class StartRunHandler(_Handler):
    """``POST /api/history/{type}/run``: plan the type and run the plan for real."""

    def post(self, key: str) -> None:
        try:
            job = self.ctx.start_run(key, RunRequest.parse(self.body()))
        except HistoryError as exc:
            self.fail(exc.status, str(exc))
            return
        self.reply({"run": job.run_id, "job": job.id, "live": f"./?run={job.run_id}"}, 202)


class JobHandler(_Handler):
    """``GET`` / ``DELETE /api/jobs/{id}``."""

    def get(self, job_id: str) -> None:
        try:
            self.reply(self.ctx.jobs.get(job_id).to_json())
        except HistoryError as exc:
            self.fail(exc.status, str(exc))

    def delete(self, job_id: str) -> None:
        try:
            job = self.ctx.jobs.get(job_id)
        except HistoryError as exc:
            self.fail(exc.status, str(exc))
            return
        job.cancel()
        self.reply(job.to_json(with_result=False))


class NotFoundHandler(_Handler):
    """Any other ``/api/...`` path."""

    def get(self, path: str) -> None:
        self.fail(404, f"no such endpoint /api/{path}; see /api/runs, /api/history")

    post = delete = get


def patterns(ctx: Context) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """The API's Tornado routes, for the server's ``extra_patterns``."""
    kw = {"ctx": ctx}
    return [
        (r"/api/runs/?", RunsHandler, kw),
        (r"/api/runs/([^/]+)/?", RunHandler, kw),
        (r"/api/runs/([^/]+)/plan-vs-actual/?", PlanVsActualHandler, kw),
        (r"/api/history/?", HistoryHandler, kw),
        (r"/api/history/([^/]+)/compare/?", CompareHandler, kw),
        (r"/api/history/([^/]+)/jobs/?", JobsHandler, kw),
        (r"/api/history/([^/]+)/run/?", StartRunHandler, kw),
        (r"/api/jobs/([^/]+)/?", JobHandler, kw),
        (r"/api/(.*)", NotFoundHandler, kw),
    ]
