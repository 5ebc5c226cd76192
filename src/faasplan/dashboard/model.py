"""The state of one run, folded from its decision-log events: what every view draws.

A :class:`RunModel` starts from the run's description (tasks, edges, planned workers; the
``info`` key of a live run, or a finished :class:`~faasplan.trace.Trace`) and takes the
run's :class:`~faasplan.worker.log.Event` records one by one with :meth:`RunModel.apply`,
in the order a worker emitted them. Each task's state changes are derived from what was
seen of it, never stored as a guess that later events would have to undo:

===========  ===================================================================
state        from
===========  ===================================================================
``waiting``  the run's start
``ready``    every upstream task's output available (its upload's end, else the
             end of its execution); the run's start for a root
``running``  the first effect of the task (its first input fetch, or its
             execution), not before it was ready
``storing``  the end of its execution, when an upload was seen or is still
             expected (a dependent or the client needs it, and its worker has not
             ended)
``done``     the end of its upload, else the end of its execution (once no upload is
             expected, or a dependent started on the same worker)
``failed``   a ``fail`` event naming the task
===========  ===================================================================

Times are kept in the events' unit (wall-clock ms for a live run, ms since the start for a
trace) and reported in seconds since the run's start. The model is pure: no I/O, no
plotting, so the JSON API, the web pages and the notebook view read the same numbers.

A run whose plan is known carries its :class:`Prediction` (the plan's predicted trace:
per task when it should start, execute and end, in ms since the run's start):
:meth:`RunModel.plan_vs_actual` lines up the prediction with what happened so far.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from faasplan.worker.log import CLIENT, Event

STATES: tuple[str, ...] = ("waiting", "ready", "running", "storing", "done", "failed")
"""Task states, in the order a task goes through them."""

STATE_COLOURS: dict[str, str] = {
    "waiting": "#d9d9d9", "ready": "#fdd49e", "running": "#4292c6", "storing": "#fd8d3c",
    "done": "#41ab5d", "failed": "#d62728",
}

PHASES: tuple[str, ...] = ("start-up", "inputs", "execution", "upload")
"""Gantt phases of a worker's timeline (the report's Gantt phases, start-up first)."""

PHASE_COLOURS: dict[str, str] = {
    "start-up": "#bbbbbb", "inputs": "#9ecae1", "execution": "#3182bd", "upload": "#fdae6b",
}

_PHASE_OF_KIND = {"fetch": "inputs", "execute": "execution", "store": "upload",
                  "start": "start-up"}


class Segment(NamedTuple):
    """One bar of a worker's timeline: ``phase`` of ``task`` from ``start`` to ``end`` (ms)."""

    worker: str
    phase: str
    task: str | None
    start: float
    end: float


@dataclass(frozen=True)
class TaskInfo:
    """What is known of a task before it runs: its function, upstream tasks and placement."""

    id: str
    function: str
    upstream: tuple[str, ...] = ()
    worker: str | None = None
    memory_mb: int = 0


@dataclass
class _Seen:
    """What the events told of one task so far (ms, ``None`` until seen)."""

    worker: str | None = None
    first: float | None = None
    exec_start: float | None = None
    exec_end: float | None = None
    store_start: float | None = None
    store_end: float | None = None
    failed: float | None = None


@dataclass
class WorkerState:
    """One worker (invocation label): start-up, memory, when it started and ended."""

    label: str
    memory_mb: int = 0
    startup: str = ""
    startup_ms: float = 0.0
    started: float | None = None
    ended: float | None = None
    tasks: int = 0
    last: float = 0.0

    @property
    def busy(self) -> bool:
        """Started and not yet ended."""
        return self.started is not None and self.ended is None


@dataclass(frozen=True)
class Failure:
    """A task that failed on a worker, with the remote traceback."""

    task: str | None
    worker: str
    t: float
    traceback: str


@dataclass(frozen=True)
class PredictedTask:
    """When the plan predicted a task to run (ms since the run's start) and where."""

    worker: str
    start: float
    exec_start: float
    exec_end: float
    end: float

    @property
    def exec_ms(self) -> float:
        """Predicted execution time."""
        return self.exec_end - self.exec_start


@dataclass(frozen=True)
class Prediction:
    """The plan's predicted run: per task its :class:`PredictedTask`, and its Gantt bars.

    ``segments`` are Gantt columns (``worker``, ``phase``, ``task``, ``start``, ``end``; in
    seconds since the run's start), drawn as outlines over the actual Gantt.
    """

    makespan_ms: float
    tasks: Mapping[str, PredictedTask]
    segments: Mapping[str, Sequence[Any]]
    source: str = "plan"
    """Where the prediction comes from (shown on the page)."""

    def to_json(self) -> dict[str, Any]:
        """A plain-JSON form (:func:`prediction_from_json` reads it back)."""
        return {"makespan_ms": self.makespan_ms, "source": self.source,
                "tasks": {t: [p.worker, p.start, p.exec_start, p.exec_end, p.end]
                          for t, p in self.tasks.items()},
                "segments": {k: list(v) for k, v in self.segments.items()}}


SEGMENT_COLUMNS = ("worker", "phase", "task", "start", "end")


def prediction_from_json(obj: Mapping[str, Any]) -> Prediction:
    """The :class:`Prediction` of :meth:`Prediction.to_json`.

    Raises
    ------
    ValueError
        ``obj`` is not of that shape (the message says what is wrong).
    """
    try:
        tasks = {str(t): PredictedTask(str(v[0]), float(v[1]), float(v[2]), float(v[3]),
                                       float(v[4]))
                 for t, v in dict(obj["tasks"]).items()}
        raw = obj.get("segments") or {}
        segments = {k: list(raw.get(k, ())) for k in SEGMENT_COLUMNS}
        if len({len(v) for v in segments.values()}) > 1:
            raise ValueError("its segments columns differ in length")
        return Prediction(float(obj["makespan_ms"]), tasks, segments,
                          str(obj.get("source", "plan")))
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"not a prediction: {type(exc).__name__}: {exc}") from None


@dataclass
class RunModel:
    """The state of one run (see the module docstring).

    Parameters
    ----------
    run_id, workflow, planner : str
        What the run is.
    tasks : sequence of TaskInfo
        Every task of the run, in topological order.
    t0 : float
        The run's start, in the events' unit (ms).
    predicted_makespan_ms : float, optional
        The plan's prediction, for the expected end.
    prediction : Prediction, optional
        The plan's predicted run, per task (for plan against actual); may be set later.
    """

    run_id: str
    workflow: str
    planner: str
    tasks: Sequence[TaskInfo]
    t0: float = 0.0
    predicted_makespan_ms: float | None = None
    prediction: Prediction | None = None
    closed: bool = False
    """The run's keys are gone (or the trace is finished): nothing more will arrive."""
    segments: list[Segment] = field(default_factory=list)
    workers: dict[str, WorkerState] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    transfers: list[tuple[float, str, int]] = field(default_factory=list)
    """``(end ms, "down" | "up" | "invoke", bytes)`` of every transfer through storage."""
    events: int = 0
    last_t: float = 0.0
    index: dict[str, int] = field(init=False, repr=False)
    """Task id -> its position in :attr:`tasks`."""
    seen: dict[str, _Seen] = field(init=False, repr=False)
    downstream: dict[str, list[str]] = field(init=False, repr=False)
    invoked: dict[str, float] = field(init=False, repr=False)
    """Worker label -> when its invocation was requested (ms)."""

    def __post_init__(self) -> None:
        self.index = {t.id: i for i, t in enumerate(self.tasks)}
        self.seen = {t.id: _Seen() for t in self.tasks}
        self.downstream = {t.id: [] for t in self.tasks}
        for t in self.tasks:
            for up in t.upstream:
                if up in self.downstream:
                    self.downstream[up].append(t.id)
        self.last_t = self.t0
        self.invoked = {}

    # -- folding events ---------------------------------------------------------------------
    def apply(self, ev: Event) -> None:
        """Take one event of the run's log (in the order its worker emitted it)."""
        self.events += 1
        self.last_t = max(self.last_t, ev.end)
        if ev.kind == "invoke":
            self.transfers.append((ev.end, "invoke", ev.nbytes))
            if ev.key is not None:
                self.invoked.setdefault(ev.key, ev.start)
        if ev.worker == CLIENT:
            return
        worker = self.workers.get(ev.worker)
        if worker is None:
            worker = self.workers[ev.worker] = WorkerState(ev.worker)
        worker.last = max(worker.last, ev.end)
        kind = ev.kind
        if kind == "start":
            # A start-up lasts from the invocation request (when seen) to the first effect.
            begin = min(ev.start, self.invoked.get(ev.worker, ev.start))
            worker.started, worker.startup = ev.end, ev.info
            worker.memory_mb, worker.startup_ms = ev.nbytes, max(0.0, ev.end - begin)
            worker.ended = None
            self._segment(ev._replace(start=begin), None)
        elif kind == "end":
            worker.ended = ev.end
        elif kind == "fail":
            # The invocation stops at a failure (no ``end`` follows, no upload will come).
            worker.ended = ev.end if worker.ended is None else worker.ended
            self.failures.append(Failure(ev.task, ev.worker, ev.end, ev.info))
            if ev.task in self.seen:
                self.seen[ev.task].failed = ev.end
        elif kind in ("fetch", "execute", "store"):
            self._task_event(ev, worker)

    def apply_all(self, events: Iterable[Event]) -> None:
        """:meth:`apply` each of ``events``."""
        for ev in events:
            self.apply(ev)

    def _task_event(self, ev: Event, worker: WorkerState) -> None:
        if ev.kind == "fetch":
            self.transfers.append((ev.end, "down", ev.nbytes))
        elif ev.kind == "store":
            self.transfers.append((ev.end, "up", ev.nbytes))
        seen = self.seen.get(ev.task) if ev.task is not None else None
        self._segment(ev, ev.task)
        if seen is None:
            return
        seen.worker = seen.worker or ev.worker
        seen.first = ev.start if seen.first is None else min(seen.first, ev.start)
        if ev.kind == "execute" and seen.exec_end is None:
            seen.exec_start, seen.exec_end = ev.start, ev.end
            worker.tasks += 1
        elif ev.kind == "store" and seen.store_end is None:
            seen.store_start, seen.store_end = ev.start, ev.end

    def _segment(self, ev: Event, task: str | None) -> None:
        if ev.end >= ev.start:
            self.segments.append(Segment(ev.worker, _PHASE_OF_KIND[ev.kind], task, ev.start,
                                         ev.end))

    # -- task states ------------------------------------------------------------------------
    def available(self, task: str) -> float | None:
        """When the output of ``task`` was available to others (ms), ``None`` if not yet."""
        s = self.seen[task]
        if s.store_end is not None:
            return s.store_end
        if s.exec_end is None:
            return None
        if not self._expects_store(task, s) or self._used_locally(task, s):
            return s.exec_end
        return None

    def _used_locally(self, task: str, s: _Seen) -> bool:
        """Whether a dependent of ``task`` started on the worker that executed it (its
        output was there; an upload for other dependents may still follow)."""
        return any(self.seen[d].worker == s.worker and self.seen[d].first is not None
                   for d in self.downstream[task])

    def _expects_store(self, task: str, s: _Seen) -> bool:
        """Whether an upload of ``task`` may still come (decided once its worker ended)."""
        worker = self.workers.get(s.worker or "")
        if worker is not None and worker.ended is not None and worker.ended >= (s.exec_end or 0):
            return False
        if self.closed:
            return False
        down = self.downstream[task]
        if not down:
            return True  # a sink: the client reads it from storage
        planned = self.tasks[self.index[task]].worker
        return planned is None or any(self.tasks[self.index[d]].worker != planned for d in down)

    def changes(self, task: str) -> list[tuple[str, float]]:
        """The state changes of ``task`` so far: ``(state, ms)``, in order, times non-decreasing."""
        s = self.seen[task]
        out: list[tuple[str, float]] = [("waiting", self.t0)]
        ready = self._ready_at(task)
        if ready is not None:
            out.append(("ready", ready))
        if s.first is not None:
            out.append(("running", s.first if ready is None else max(s.first, ready)))
        if s.exec_end is not None:
            done = self.available(task)
            if s.store_end is not None or done is None:
                out.append(("storing", s.exec_end))
            if done is not None:
                out.append(("done", done))
        if s.failed is not None:
            out.append(("failed", s.failed))
        return _monotone(out)

    def _ready_at(self, task: str) -> float | None:
        ups = self.tasks[self.index[task]].upstream
        if not ups:
            return self.t0
        times = [self.available(u) for u in ups if u in self.seen]
        if any(t is None for t in times):
            return None
        return max([t for t in times if t is not None], default=self.t0)

    def state(self, task: str) -> str:
        """The current state of ``task``."""
        return self.changes(task)[-1][0]

    def states(self) -> list[str]:
        """The current state of every task, in :attr:`tasks` order."""
        return [self.state(t.id) for t in self.tasks]

    # -- totals -----------------------------------------------------------------------------
    @property
    def status(self) -> str:
        """``failed``, ``done`` (every task done), ``running``, or ``ended`` (closed early)."""
        if self.failures:
            return "failed"
        if self.done_count() == len(self.tasks):
            return "done"
        return "ended" if self.closed else "running"

    def done_count(self) -> int:
        """Tasks done so far."""
        return sum(1 for t in self.tasks if self.available(t.id) is not None)

    def ended_at(self) -> float | None:
        """When the run ended (ms): its last event once done, failed or closed."""
        return self.last_t if self.status != "running" else None

    def seconds(self, t_ms: float | None) -> float | None:
        """``t_ms`` in seconds since the run's start (``None`` stays ``None``)."""
        return None if t_ms is None else round((t_ms - self.t0) / 1000.0, 6)

    def bytes_total(self) -> dict[str, int]:
        """Bytes through storage: downloaded, uploaded, and invocation requests."""
        out = {"down": 0, "up": 0, "invoke": 0}
        for _, direction, n in self.transfers:
            out[direction] += n
        return out

    def summary(self, now_ms: float | None = None) -> dict[str, Any]:
        """The run's line of ``GET /api/runs``.

        ``now_ms`` (same unit as the events) gives the elapsed time of a running run;
        without it, the time of its last event.
        """
        ended = self.ended_at()
        last = ended if ended is not None else (now_ms if now_ms is not None else self.last_t)
        # The per-task prediction, when known, is what the page overlays: its end is the
        # expected end (for a run of scaled synthetic tasks it differs from the plan's).
        predicted = (self.prediction.makespan_ms if self.prediction is not None
                     else self.predicted_makespan_ms)
        busy = sum(1 for w in self.workers.values() if w.busy)
        return {
            "id": self.run_id, "workflow": self.workflow, "planner": self.planner,
            "status": self.status, "done": self.done_count(), "total": len(self.tasks),
            "started": self.t0 / 1000.0, "ended": None if ended is None else ended / 1000.0,
            "elapsed_s": self.seconds(last),
            "expected_end_s": None if predicted is None or not math.isfinite(predicted)
            else round(predicted / 1000.0, 6),
            "workers": len(self.workers), "busy_workers": busy,
            "failures": len(self.failures), "bytes": self.bytes_total(), "events": self.events,
        }

    def detail(self, now_ms: float | None = None) -> dict[str, Any]:
        """``GET /api/runs/{id}``: every task with its ordered state changes, every worker with
        its timeline, the failures with their tracebacks."""
        timelines: dict[str, list[dict[str, Any]]] = {w: [] for w in self.workers}
        for seg in self.segments:
            timelines.setdefault(seg.worker, []).append(
                {"phase": seg.phase, "task": seg.task, "start": self.seconds(seg.start),
                 "end": self.seconds(seg.end)})
        tasks = []
        predicted = self.prediction.tasks if self.prediction is not None else {}
        for t in self.tasks:
            changes = self.changes(t.id)
            row: dict[str, Any] = {
                "task": t.id, "function": t.function,
                "worker": self.seen[t.id].worker or t.worker, "state": changes[-1][0],
                "changes": [{"state": s, "t": self.seconds(ms)} for s, ms in changes]}
            p = predicted.get(t.id)
            if p is not None:
                row["predicted"] = {"worker": p.worker, "start": _s(p.start),
                                    "exec_start": _s(p.exec_start),
                                    "exec_end": _s(p.exec_end), "end": _s(p.end)}
            tasks.append(row)
        workers = [{"worker": w.label, "memory_mb": w.memory_mb, "startup": w.startup,
                    "startup_s": round(w.startup_ms / 1000.0, 6),
                    "started": self.seconds(w.started), "ended": self.seconds(w.ended),
                    "busy": w.busy, "tasks": w.tasks, "timeline": timelines.get(w.label, [])}
                   for w in self.workers.values()]
        failures = [{"task": f.task, "worker": f.worker, "t": self.seconds(f.t),
                     "traceback": f.traceback} for f in self.failures]
        return {"run": self.summary(now_ms), "tasks": tasks, "workers": workers,
                "failures": failures}

    def plan_vs_actual(self) -> list[dict[str, Any]]:
        """Per task, the plan's predicted times beside the actual ones seen so far.

        Rows in task order, times in seconds since the run's start: ``predicted_start``,
        ``predicted_exec``, ``predicted_end`` (and ``predicted_worker``); ``actual_start``
        (its first effect), ``actual_exec`` and ``actual_end`` (its output available), each
        ``None`` until seen; ``exec_ratio`` (actual over predicted execution time) and
        ``end_error`` (actual minus predicted end) once known. Empty without a prediction.
        """
        if self.prediction is None:
            return []
        out = []
        for t in self.tasks:
            p = self.prediction.tasks.get(t.id)
            if p is None:
                continue
            s = self.seen[t.id]
            done = self.seconds(self.available(t.id))
            actual_exec = (None if s.exec_start is None or s.exec_end is None
                           else (s.exec_end - s.exec_start) / 1000.0)
            predicted_exec = p.exec_ms / 1000.0
            ratio = (actual_exec / predicted_exec if actual_exec is not None
                     and predicted_exec > 0 else None)
            out.append({
                "task": t.id, "function": short_name(t.function), "state": self.state(t.id),
                "predicted_worker": p.worker, "actual_worker": s.worker,
                "predicted_start": _s(p.start), "predicted_exec": round(predicted_exec, 6),
                "predicted_end": _s(p.end),
                "actual_start": self.seconds(s.first), "actual_exec": None
                if actual_exec is None else round(actual_exec, 6),
                "actual_end": done,
                "exec_ratio": None if ratio is None else round(ratio, 6),
                "end_error": None if done is None else round(done - _s(p.end), 6),
            })
        return out

    def function_counts(self) -> dict[str, dict[str, int]]:
        """Function -> state -> number of its tasks in that state (the aggregate view)."""
        out: dict[str, dict[str, int]] = {}
        for t, state in zip(self.tasks, self.states(), strict=True):
            counts = out.setdefault(short_name(t.function), dict.fromkeys(STATES, 0))
            counts[state] += 1
        return out


def _s(ms: float) -> float:
    """ms since the run's start -> seconds (as :meth:`RunModel.seconds` reports)."""
    return round(ms / 1000.0, 6)


def _monotone(changes: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Clocks of different hosts may disagree by a little: never let a later state go back."""
    out, last = [], -math.inf
    for state, t in changes:
        last = max(last, t)
        out.append((state, last))
    return out


def short_name(function: str) -> str:
    """``pkg.module.fn`` -> ``fn`` (how the report names functions)."""
    return function.rsplit(".", 1)[-1]


def tasks_from_info(info: Mapping[str, Any]) -> list[TaskInfo]:
    """The tasks of a run's ``info`` key (see :mod:`faasplan.dashboard.live`)."""
    return [TaskInfo(str(t["id"]), str(t.get("function", "")),
                     tuple(str(u) for u in t.get("upstream", ())),
                     None if t.get("worker") is None else str(t["worker"]),
                     int(t.get("memory_mb") or 0)) for t in info.get("tasks", ())]


def model_from_info(info: Mapping[str, Any]) -> RunModel:
    """An empty model of the run a live ``info`` key describes.

    An ``info`` with a ``prediction`` (the shape of :meth:`Prediction.to_json`) gives the
    model its per-task prediction; a malformed one is left out.
    """
    predicted = info.get("predicted_makespan_ms")
    prediction = None
    if isinstance(info.get("prediction"), Mapping):
        with contextlib.suppress(ValueError):
            prediction = prediction_from_json(info["prediction"])
    return RunModel(str(info.get("run_id", "")), str(info.get("workflow", "")),
                    str(info.get("planner", "")), tasks_from_info(info),
                    float(info.get("started_ms") or 0.0),
                    None if predicted is None else float(predicted), prediction)
