"""Long comparisons as jobs: each in its own process, with progress, and cancellable.

A comparison is CPU-bound for seconds to minutes. Running it in the dashboard's process
would hold the interpreter while live views need it, and a thread cannot be stopped: so a
:class:`Job` runs :func:`faasplan.dashboard.history.compare_rows` in a child Python
(``python -m faasplan.dashboard.jobs``: a fresh interpreter, whatever the parent's main
module is), handing it the workflow and records on its standard input; the child writes
one JSON line per progress step and one with the result or the error. Cancelling
terminates the child.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict
from typing import Any

import cloudpickle

from faasplan.dashboard.history import CompareRequest, HistoryError, HistoryStore, resolve

_COUNTER = itertools.count(1)
"""Job ids of this process (only the ids need to be unique; nothing else is shared)."""


def _say(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, allow_nan=False, default=str) + "\n")
    sys.stdout.flush()


def child_main() -> int:
    """The job's process: read the job from stdin, compare, write JSON lines to stdout."""
    # Import what a comparison needs before the job arrives: a spare child waits here.
    import faasplan.dashboard.finished
    import faasplan.experiments.compare
    import faasplan.report.html  # noqa: F401
    from faasplan.dashboard.api import clean_json
    from faasplan.dashboard.history import compare_rows

    try:
        wf, rows, meta, request = cloudpickle.loads(sys.stdin.buffer.read())

        def progress(stage: str, done: int, total: int) -> None:
            _say({"progress": [stage, done, total]})

        _say({"result": clean_json(compare_rows(wf, rows, request, meta, progress))})
    except HistoryError as exc:
        _say({"error": [exc.status, str(exc)]})
    except Exception as exc:  # reported to the page and the API, never lost
        _say({"error": [500, f"{type(exc).__name__}: {exc}"]})
    return 0


def child_process() -> subprocess.Popen[bytes]:
    """A new job process, importing what it needs while it waits for its job on stdin."""
    return subprocess.Popen([sys.executable, "-m", "faasplan.dashboard.jobs"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


class Job:
    """One comparison running in a child process (see the module docs)."""

    def __init__(self, store: HistoryStore, key: str, request: CompareRequest,
                 process: subprocess.Popen[bytes] | None = None) -> None:
        wf, rows, meta = resolve(store, key, request)  # bad requests fail here, at once
        self.id = f"job-{next(_COUNTER)}"
        self.type = meta["type"]
        self.request = request
        self.status = "running"
        self.stage, self.done, self.total = "starting", 0, len(request.planners)
        self.result: dict[str, Any] | None = None
        self.error: tuple[int, str] | None = None
        self.started = time.time()
        self.future: Future[dict[str, Any]] = Future()
        payload = cloudpickle.dumps((wf, rows, meta, request))
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
            elif "result" in msg:
                self._finish("done", result=msg["result"])
            elif "error" in msg:
                self._finish("failed", error=(int(msg["error"][0]), str(msg["error"][1])))
        code = proc.wait()
        self._finish("failed", error=(500, f"the comparison process ended (exit code {code}) "
                                           "without a result"))

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
        """Stop the comparison; ``False`` if it had already finished."""
        if self.status != "running":
            return False
        self._finish("cancelled", error=(409, f"{self.id} was cancelled"))
        self._process.terminate()
        return True

    @property
    def pid(self) -> int:
        """The child process's id."""
        return int(self._process.pid)

    def to_json(self, with_result: bool = True) -> dict[str, Any]:
        """``GET /api/jobs/{id}``: status, stage and progress, and the result once done."""
        out: dict[str, Any] = {"id": self.id, "type": self.type, "status": self.status,
                               "stage": self.stage, "done": self.done, "total": self.total,
                               "elapsed_s": round(time.time() - self.started, 3),
                               "request": asdict(self.request)}
        if self.error is not None:
            out["error"] = self.error[1]
        if with_result and self.result is not None:
            out["result"] = self.result
        return out


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
        resolve(self.store, key, request)
        with self._lock:
            spare, self._spare = self._spare, child_process()
        if spare is not None and spare.poll() is not None:
            spare = None
        job = Job(self.store, key, request, spare)
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.status != "running"]
            for old in finished[:max(0, len(self._jobs) - self.keep)]:
                del self._jobs[old.id]
        return job

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
