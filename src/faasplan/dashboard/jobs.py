"""Long comparisons and real runs as jobs: each in its own process, with progress, and
cancellable.

A comparison is CPU-bound for seconds to minutes. Running it in the dashboard's process
would hold the interpreter while live views need it, and a thread cannot be stopped: so a
:class:`Job` runs :func:`faasplan.dashboard.history.compare_rows` in a child Python
(``python -m faasplan.dashboard.jobs``: a fresh interpreter, whatever the parent's main
module is), handing it the workflow and records on its standard input; the child writes
one JSON line per progress step and one with the result or the error. Cancelling
terminates the child.

A *run* job (:meth:`Jobs.start_run`) plans the type's workflow in the same way
(:func:`faasplan.dashboard.history.plan_run`), sends the plan's
:class:`~faasplan.dashboard.model.Prediction` back (a ``prediction`` line, before the run
starts), then executes the plan with :func:`faasplan.run` on the dashboard's Redis under
a run id chosen by the parent, so the live view can wait for it at once. Cancelling
interrupts the child (``SIGINT``: the run stops its workers), and terminates it if it has
not ended within :data:`CANCEL_GRACE_S`.
"""

from __future__ import annotations

import itertools
import json
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict
from typing import Any

import cloudpickle

from faasplan.dashboard.history import (
    CompareRequest,
    HistoryError,
    HistoryStore,
    RunRequest,
    resolve,
    run_support,
)
from faasplan.dashboard.model import Prediction, prediction_from_json

_COUNTER = itertools.count(1)
"""Job ids of this process (only the ids need to be unique; nothing else is shared)."""

CANCEL_GRACE_S = 15.0
"""How long a cancelled run may take to stop its workers before it is terminated."""

OnPrediction = Callable[[str, Prediction], None]


def _say(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, allow_nan=False, default=str) + "\n")
    sys.stdout.flush()


def child_main() -> int:
    """The job's process: read the job from stdin, compare or run, write JSON lines."""
    # Cancelling sends SIGINT: it must raise KeyboardInterrupt here even if the dashboard
    # was started with SIGINT ignored (a background job of a script), which children inherit.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Import what a comparison needs before the job arrives: a spare child waits here.
    import faasplan.dashboard.finished
    import faasplan.experiments.compare
    import faasplan.report.html  # noqa: F401
    from faasplan.dashboard.api import clean_json
    from faasplan.dashboard.history import compare_rows

    def progress(stage: str, done: int, total: int) -> None:
        _say({"progress": [stage, done, total]})

    try:
        data = sys.stdin.buffer.read()
        if not data:
            return 0  # a spare process: the dashboard stopped before it had a job
        job = cloudpickle.loads(data)
        if job[0] == "run":
            from faasplan.workflow.codec import decode

            _, (blob, payloads), rows, meta, request, redis_url, run_id = job
            wf = decode(blob, payloads)
            _say({"result": clean_json(_run(wf, rows, request, redis_url, run_id, progress))})
        else:
            _, wf, rows, meta, request = job
            _say({"result": clean_json(compare_rows(wf, rows, request, meta, progress))})
    except HistoryError as exc:
        _say({"error": [exc.status, str(exc)]})
    except KeyboardInterrupt:
        _say({"error": [409, "cancelled"]})
        return 130
    except Exception as exc:  # reported to the page and the API, never lost
        _say({"error": [500, f"{type(exc).__name__}: {exc}"]})
    return 0


def _run(wf: Any, rows: Any, request: RunRequest, redis_url: str, run_id: str,
         progress: Callable[[str, int, int], None]) -> dict[str, Any]:
    """Plan, report the prediction, run on Redis (in the child)."""
    from faasplan.dashboard.api import clean_json
    from faasplan.dashboard.history import plan_run
    from faasplan.runtime import run

    to_run, plan, prediction = plan_run(wf, rows, request, progress)
    _say({"prediction": clean_json(prediction.to_json()),
          "predicted_makespan_ms": float(plan.predicted_makespan_ms)})
    progress("running", 0, len(to_run))
    result = run(to_run, plan, redis_url, run_id=run_id, timeout_s=request.timeout_s,
                 progress=lambda p: progress("running", p.done, p.total))
    return {"run": result.run_id, "workflow": to_run.name, "planner": request.planner,
            "tasks": len(to_run), "makespan_ms": float(result.makespan_ms),
            "predicted_makespan_ms": float(plan.predicted_makespan_ms)}


def child_process() -> subprocess.Popen[bytes]:
    """A new job process, importing what it needs while it waits for its job on stdin."""
    return subprocess.Popen([sys.executable, "-m", "faasplan.dashboard.jobs"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


class Job:
    """One comparison or real run in a child process (see the module docs).

    Parameters
    ----------
    kind : str
        ``"compare"`` or ``"run"``.
    meta : dict
        What the job is about (``type`` at least).
    request : CompareRequest or RunRequest
        What was asked.
    payload : bytes
        The job as the child reads it.
    process : subprocess.Popen, optional
        A child already started (:func:`child_process`).
    run_id : str, optional
        A run job's run id.
    on_prediction : callable, optional
        Called with ``(run_id, prediction)`` when a run job's plan is made.
    """

    def __init__(self, kind: str, meta: dict[str, Any], request: CompareRequest | RunRequest,
                 payload: bytes, process: subprocess.Popen[bytes] | None = None, *,
                 total: int = 1, run_id: str | None = None,
                 on_prediction: OnPrediction | None = None) -> None:
        self.id = f"job-{next(_COUNTER)}"
        self.kind = kind
        self.type = meta["type"]
        self.request = request
        self.run_id = run_id
        self.status = "running"
        self.stage, self.done, self.total = "starting", 0, total
        self.result: dict[str, Any] | None = None
        self.error: tuple[int, str] | None = None
        self.prediction: Prediction | None = None
        self.started = time.time()
        self.future: Future[dict[str, Any]] = Future()
        self._on_prediction = on_prediction
        self._process = process if process is not None else child_process()
        self._watcher = threading.Thread(target=self._watch, args=(payload,), daemon=True,
                                         name=f"faasplan-dashboard-{self.id}")
        self._watcher.start()

    def _watch(self, payload: bytes) -> None:
        proc = self._process
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(payload)
            proc.stdin.close()
        except OSError:
            pass  # it died at once (or was cancelled): its exit code says so below
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "progress" in msg:
                self.stage, self.done, self.total = msg["progress"]
            elif "prediction" in msg:
                self._predicted(msg["prediction"])
            elif "result" in msg:
                self._finish("done", result=msg["result"])
            elif "error" in msg:
                self._finish("failed", error=(int(msg["error"][0]), str(msg["error"][1])))
        code = proc.wait()
        what = "comparison" if self.kind == "compare" else "run"
        self._finish("failed", error=(500, f"the {what} process ended (exit code {code}) "
                                           "without a result"))

    def _predicted(self, raw: Any) -> None:
        try:
            self.prediction = prediction_from_json(raw)
        except ValueError:
            return
        if self._on_prediction is not None and self.run_id is not None:
            self._on_prediction(self.run_id, self.prediction)

    def _finish(self, status: str, *, result: dict[str, Any] | None = None,
                error: tuple[int, str] | None = None) -> None:
        if self.status != "running":
            return
        self.result, self.error, self.status = result, error, status
        if result is not None:
            self.done = self.total
            self.future.set_result(result)
        else:
            self.future.set_exception(HistoryError(error[1] if error else status,
                                                   error[0] if error else 409))

    def cancel(self) -> bool:
        """Stop the job; ``False`` if it had already finished."""
        if self.status != "running":
            return False
        self._finish("cancelled", error=(409, f"{self.id} was cancelled"))
        if self.kind == "run":
            self._interrupt()
        else:
            self._process.terminate()
        return True

    def _interrupt(self) -> None:
        """SIGINT (the run stops its workers), then SIGTERM if it is still there later."""
        proc = self._process
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)

        def reap() -> None:
            try:
                proc.wait(CANCEL_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.terminate()

        threading.Thread(target=reap, daemon=True, name=f"faasplan-reap-{self.id}").start()

    @property
    def pid(self) -> int:
        """The child process's id."""
        return int(self._process.pid)

    def to_json(self, with_result: bool = True) -> dict[str, Any]:
        """``GET /api/jobs/{id}``: status, stage and progress, and the result once done."""
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "type": self.type,
                               "status": self.status, "stage": self.stage, "done": self.done,
                               "total": self.total,
                               "elapsed_s": round(time.time() - self.started, 3),
                               "request": asdict(self.request)}
        if self.run_id is not None:
            out["run"] = self.run_id
        if self.error is not None:
            out["error"] = self.error[1]
        if with_result and self.result is not None:
            out["result"] = self.result
        return out


def new_run_id() -> str:
    """A fresh run id (the runtime's format: time and random hex)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"


class Jobs:
    """The comparison jobs of one dashboard."""

    def __init__(self, store: HistoryStore, keep: int = 20) -> None:
        self.store = store
        self.keep = keep
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        # One process started ahead, so that a comparison does not wait for its imports.
        self._spare: subprocess.Popen[bytes] | None = child_process() if store.types else None

    def start(self, key: str, request: CompareRequest) -> Job:
        """Start a comparison of type ``key``; :class:`HistoryError` for a bad request."""
        wf, rows, meta = resolve(self.store, key, request)  # bad requests fail here, at once
        payload = cloudpickle.dumps(("compare", wf, rows, meta, request))
        return self._add(lambda proc: Job("compare", meta, request, payload, proc,
                                          total=len(request.planners)))

    def start_run(self, key: str, request: RunRequest, redis_url: str | None,
                  on_prediction: OnPrediction | None = None) -> Job:
        """Plan type ``key`` with ``request.planner`` and run the plan on ``redis_url``.

        Raises
        ------
        HistoryError
            No Redis (409), a type that cannot be run (422), or a bad request.
        """
        wt = self.store.get(key)
        if redis_url is None:
            raise HistoryError("no Redis server to run on: start the dashboard with "
                               "--redis URL to run plans for real", 409)
        mode, why = run_support(self.store, wt.id)
        if mode is None:
            raise HistoryError(why, 422)
        from faasplan.workflow.codec import encode

        wf, rows, meta = resolve(self.store, wt.id, request.as_compare())
        run_id = new_run_id()
        # The workflow goes as the runtime encodes it (a pickled Workflow would lose the
        # identity of its nodes, by which the runtime's encoder finds their ids).
        enc = encode(wf)
        payload = cloudpickle.dumps(("run", (enc.blob, enc.payloads), rows, meta, request,
                                     redis_url, run_id))
        return self._add(lambda proc: Job("run", {**meta, "mode": mode}, request, payload, proc,
                                          total=3, run_id=run_id,
                                          on_prediction=on_prediction))

    def _add(self, make: Callable[[subprocess.Popen[bytes] | None], Job]) -> Job:
        with self._lock:
            spare, self._spare = self._spare, child_process()
        if spare is not None and spare.poll() is not None:
            spare = None
        job = make(spare)
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.status != "running"]
            for old in finished[:max(0, len(self._jobs) - self.keep)]:
                del self._jobs[old.id]
        return job

    def for_run(self, run_id: str) -> Job | None:
        """The run job of run ``run_id``, if this dashboard started it."""
        with self._lock:
            return next((j for j in self._jobs.values() if j.run_id == run_id), None)

    def get(self, job_id: str) -> Job:
        """The job ``job_id``; :class:`HistoryError` (404) if unknown."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise HistoryError(f"unknown job {job_id!r}", 404)
        return job

    def cancel_all(self) -> None:
        """Cancel every running job (the dashboard stops)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel()
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.kill()
            spare.wait(10)


if __name__ == "__main__":
    sys.exit(child_main())
