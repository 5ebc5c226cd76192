"""Follow the runs on a Redis server from the runtime's own events.

The runtime publishes, per run (see :mod:`faasplan.runtime.keys`):

* ``fp:runs`` — a sorted set, run id -> start (wall-clock ms); a run leaves it when its
  keys are cleaned up;
* ``fp:{run_id}:info`` — a JSON string: ``run_id``, ``workflow``, ``planner``,
  ``started_ms``, ``tasks`` (``id``, ``function``, ``upstream``, planned ``worker``,
  ``memory_mb``) and ``predicted_makespan_ms``;
* ``fp:{run_id}:log`` — a stream whose entries have one field ``e``, a JSON array of
  decision-log events, each an object ``{"w", "k", "t", "key", "b", "s", "e", "x"}``
  (:func:`faasplan.runtime.events.event_json`; a single object is read as one event).

:class:`RedisFeed` reads the registry every ``registry_s``, each new run's ``info`` once, and
the streams of every listed run with one blocking ``XREAD`` from the last id it saw: the
cost of following a run is the size of its log, never a scan of its keys. A run that left
the registry stays in :attr:`RedisFeed.runs` as it was last read (closed), so a finished
run stays viewable.

The ``info`` key carries the plan's predicted makespan but not its per-task prediction:
the dashboard knows that of the runs it started itself (:meth:`RedisFeed.expect`, from the
history view's run button), or of a run whose ``info`` has a ``prediction``
(:func:`faasplan.dashboard.model.prediction_from_json`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from faasplan.dashboard.model import Prediction, RunModel, model_from_info
from faasplan.runtime.events import events_from_json
from faasplan.runtime.keys import RUNS_KEY, RunKeys
from faasplan.runtime.security import redact

log = logging.getLogger(__name__)

XREAD_COUNT = 5000
"""Entries one ``XREAD`` returns at most per stream."""

MAX_CLOSED_RUNS = 100
"""Finished runs kept in memory; the oldest go first."""


class RedisFeed:
    """The runs of one Redis server, kept up to date from their events (see the module docs).

    Parameters
    ----------
    url : str
        ``redis://`` URL (its password is never shown: :attr:`where` is redacted).
    registry_s : float
        Seconds between two reads of ``fp:runs``.
    block_ms : int
        How long one ``XREAD`` waits for new entries.
    client : redis.Redis, optional
        A client to use instead of one made from ``url`` (tests).
    """

    def __init__(self, url: str, *, registry_s: float = 0.5, block_ms: int = 200,
                 client: redis.Redis | None = None) -> None:
        self.where = redact(url)
        self._client = client if client is not None else redis.Redis.from_url(
            url, socket_timeout=max(5.0, block_ms / 1000.0 + 5.0), socket_connect_timeout=5.0)
        self.registry_s = registry_s
        self.block_ms = block_ms
        self.runs: dict[str, RunModel] = {}
        self.lock = threading.Lock()
        self.error: str | None = None
        self._last_id: dict[str, bytes] = {}
        self._expected: dict[str, Prediction] = {}  # predictions of runs not seen yet
        self._next_registry = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one round --------------------------------------------------------------------------
    def step(self, clock: Callable[[], float] = time.monotonic) -> int:
        """Read the registry when due, then new log entries; returns the events applied."""
        if clock() >= self._next_registry:
            self._next_registry = clock() + self.registry_s
            self._read_registry()
        streams: dict[Any, Any] = {RunKeys(r).log: last for r, last in self._last_id.items()}
        if not streams:
            self._stop.wait(min(self.registry_s, self.block_ms / 1000.0))
            return 0
        return self._apply(self._client.xread(streams, count=XREAD_COUNT, block=self.block_ms))

    def _apply(self, reply: Any) -> int:
        """Fold the entries of an ``XREAD`` reply into their runs' models."""
        applied = 0
        with self.lock:
            for key, entries in reply or ():
                run_id = _run_of(key)
                model = self.runs.get(run_id)
                for entry_id, fields in entries:
                    if run_id in self._last_id:
                        self._last_id[run_id] = entry_id
                    raw = fields.get(b"e")
                    if model is None or raw is None:
                        continue
                    try:
                        events = events_from_json(raw)
                    except (ValueError, KeyError, TypeError) as exc:
                        log.warning("run %s: skipped a malformed log entry %r: %s", run_id,
                                    entry_id, exc)
                        continue
                    for event in events:
                        model.apply(event)
                    applied += len(events)
        return applied

    def _read_registry(self) -> None:
        listed: Any = self._client.zrange(RUNS_KEY, 0, -1, withscores=True)
        ids = {_text(r): float(score) for r, score in listed}
        new = [r for r in ids if r not in self.runs]
        infos: list[Any] = []
        if new:
            with self._client.pipeline(transaction=False) as pipe:
                for r in new:
                    pipe.get(RunKeys(r).info)
                infos = pipe.execute()
        with self.lock:
            for run_id, raw in zip(new, infos, strict=True):
                model = _model(run_id, raw, ids[run_id])
                if model is not None:
                    expected = self._expected.pop(run_id, None)
                    if expected is not None:
                        model.prediction = expected
                    self.runs[run_id] = model
                    self._last_id.setdefault(run_id, b"0-0")
            for run_id, model in self.runs.items():
                if run_id not in ids and not model.closed:
                    model.closed = True
            self._trim()
        # A run leaves the registry before its keys are deleted: read what is left of its
        # log once more, then no more.
        gone = {r: self._last_id.pop(r) for r in [r for r in self._last_id if r not in ids]}
        if gone:
            self._apply(self._client.xread({RunKeys(r).log: last for r, last in gone.items()},
                                           count=XREAD_COUNT * 20))

    def _trim(self) -> None:
        closed = [r for r, m in self.runs.items() if m.closed]
        for run_id in closed[:max(0, len(closed) - MAX_CLOSED_RUNS)]:
            del self.runs[run_id]

    # -- reading, from other threads ----------------------------------------------------------
    def snapshot(self) -> list[dict[str, Any]]:
        """``GET /api/runs``: every run's summary, oldest first."""
        now = time.time() * 1000.0
        with self.lock:
            models = sorted(self.runs.values(), key=lambda m: m.t0)
            return [m.summary(now) for m in models]

    def expect(self, run_id: str, prediction: Prediction) -> None:
        """Give run ``run_id`` (seen already, or to come) the plan's per-task prediction."""
        with self.lock:
            model = self.runs.get(run_id)
            if model is not None:
                model.prediction = prediction
            else:
                self._expected[run_id] = prediction
                for old in list(self._expected)[:max(0, len(self._expected) - MAX_CLOSED_RUNS)]:
                    del self._expected[old]

    def plan_vs_actual(self, run_id: str) -> dict[str, Any] | None:
        """``GET /api/runs/{id}/plan-vs-actual``, or ``None`` for a run never seen."""
        with self.lock:
            model = self.runs.get(run_id)
            if model is None:
                return None
            return plan_vs_actual_json(model, time.time() * 1000.0)

    def detail(self, run_id: str) -> dict[str, Any] | None:
        """``GET /api/runs/{id}``, or ``None`` for a run never seen."""
        with self.lock:
            model = self.runs.get(run_id)
            return None if model is None else model.detail(time.time() * 1000.0)

    # -- running in the background ------------------------------------------------------------
    def start(self) -> None:
        """Follow the server in a daemon thread until :meth:`stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="faasplan-dashboard-feed",
                                            daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                self.step()
                self.error, backoff = None, 0.2
            except redis.RedisError as exc:
                self.error = f"Redis at {self.where}: {exc}"
                self._stop.wait(backoff)
                backoff = min(5.0, backoff * 2)

    def stop(self) -> None:
        """Stop the background thread and close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        with contextlib.suppress(redis.RedisError):
            self._client.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _run_of(stream_key: Any) -> str:
    """``fp:{run_id}:log`` -> ``run_id``."""
    return _text(stream_key)[3:-4]


def _model(run_id: str, raw: Any, started_ms: float) -> RunModel | None:
    """The model of a listed run from its ``info`` (``None`` until the info is stored)."""
    if raw is None:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        log.warning("run %s: its info key is not JSON; not shown", run_id)
        return None
    info.setdefault("run_id", run_id)
    info.setdefault("started_ms", started_ms)
    return model_from_info(info)


def plan_vs_actual_json(model: RunModel, now_ms: float | None = None) -> dict[str, Any]:
    """The plan-against-actual answer of ``model``: its summary line, where the prediction
    comes from, the per-task rows of :meth:`RunModel.plan_vs_actual`, and over the tasks
    executed so far the median and range of ``exec_ratio``."""
    rows = model.plan_vs_actual()
    ratios = sorted(r["exec_ratio"] for r in rows if r["exec_ratio"] is not None)
    p = model.prediction
    return {"run": model.summary(now_ms), "predicted": p is not None,
            "source": None if p is None else p.source,
            "predicted_makespan_s": None if p is None else round(p.makespan_ms / 1000.0, 6),
            "tasks": rows,
            "exec_ratio": {"executed": len(ratios),
                           "median": statistics.median(ratios) if ratios else None,
                           "min": ratios[0] if ratios else None,
                           "max": ratios[-1] if ratios else None}}
