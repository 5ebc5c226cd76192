"""Exceptions of the Redis runtime; each names the run, task or key at fault and the fix."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _restore(cls: type[RunError], args: tuple[Any, ...], state: dict[str, Any]) -> RunError:
    """Rebuild a pickled :class:`RunError` without calling its ``__init__`` again."""
    # RunTimeoutError is also a TimeoutError: its instances have OSError's layout.
    new = OSError.__new__ if issubclass(cls, OSError) else BaseException.__new__
    exc = new(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class RunError(RuntimeError):
    """A run on Redis failed. ``run_id`` names the run (``None`` before it had one).

    Every subclass pickles intact (message and attributes), so a run's error crosses
    process and Dask boundaries.
    """

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id}: {message}" if run_id else message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.args, dict(self.__dict__)))


class RemoteTaskError(RunError):
    """A task raised inside a worker; the worker's traceback is in ``remote_traceback``."""

    def __init__(self, task_id: str, function: str, exc_type: str, message: str,
                 remote_traceback: str, *, run_id: str | None = None) -> None:
        self.task_id = task_id
        self.function = function
        self.exc_type = exc_type
        self.remote_message = message
        self.remote_traceback = remote_traceback
        super().__init__(
            f"task {task_id!r} ({function}) raised {exc_type}: {message}\n"
            f"--- traceback in the worker ---\n{remote_traceback.rstrip()}", run_id=run_id)


class PayloadAuthError(RunError):
    """A payload failed HMAC authentication (tampered, truncated, or signed with another key).

    It is rejected before it is unpickled, so nothing in it ran.
    """

    def __init__(self, context: str, detail: str = "", *, run_id: str | None = None) -> None:
        self.context = context
        why = f" ({detail})" if detail else ""
        super().__init__(
            f"payload {context!r} failed authentication{why}: it was modified in storage or "
            "signed with a different key; check that client and workers share the same "
            "FAASPLAN_HMAC_KEY and that nothing else writes under this run's keys",
            run_id=run_id)


class WorkerLostError(RunError):
    """A worker died (its lease expired) more often than ``max_retries`` allows."""

    def __init__(self, invocation: str, attempts: int, unfinished: Iterable[str], *,
                 run_id: str | None = None) -> None:
        self.invocation = invocation
        self.attempts = attempts
        self.unfinished = tuple(sorted(unfinished))
        super().__init__(
            f"the worker running invocation {invocation!r} stopped heartbeating "
            f"{attempts} time(s) (killed or out of memory); giving up after "
            f"{attempts - 1} retr{'y' if attempts == 2 else 'ies'} (raise max_retries to "
            f"retry more). Unfinished tasks: {_listing(self.unfinished)}", run_id=run_id)


class RunTimeoutError(RunError, TimeoutError):
    """The run did not finish within ``timeout_s``."""

    def __init__(self, timeout_s: float, unfinished: Iterable[str], *,
                 run_id: str | None = None) -> None:
        self.timeout_s = timeout_s
        self.unfinished = tuple(sorted(unfinished))
        super().__init__(
            f"not finished after {timeout_s:g} s (raise timeout_s, or check that workers "
            f"serve this run's queues). Unfinished tasks: {_listing(self.unfinished)}",
            run_id=run_id)


class MissingRequirementsError(RunError):
    """A worker lacks distributions the workflow requires; it refused to run."""

    def __init__(self, worker: str, missing: Iterable[str], *, run_id: str | None = None
                 ) -> None:
        self.worker = worker
        self.missing = tuple(missing)
        super().__init__(
            f"worker {worker} lacks the workflow's requirements {list(self.missing)}; "
            f"install them where the workers run (pip install {' '.join(map(repr, self.missing))})",
            run_id=run_id)


class RunStateLostError(RunError):
    """Redis no longer holds the run's state (restarted without persistence, or flushed)."""


class WorkerFailedError(RunError):
    """A worker hit an error outside task code (storage, decoding); its traceback is attached."""

    def __init__(self, invocation: str, exc_type: str, message: str, remote_traceback: str, *,
                 run_id: str | None = None) -> None:
        self.invocation = invocation
        self.remote_traceback = remote_traceback
        super().__init__(
            f"worker running invocation {invocation!r} failed with {exc_type}: {message}\n"
            f"--- traceback in the worker ---\n{remote_traceback.rstrip()}", run_id=run_id)


class RunIdInUseError(RunError):
    """The run id names a run whose keys are still in Redis (live, kept, or left over)."""

    def __init__(self, run_id: str, found: Iterable[str]) -> None:
        self.found = tuple(found)
        super().__init__(
            f"this run id is in use: Redis still holds {', '.join(self.found)} of a run with "
            "the same id (running, kept with keep_data=True, or left by a client that died); "
            "choose another run id, or pass replace=True to delete the old run's keys first",
            run_id=run_id)


class RedisAuthError(RunError):
    """Redis refused the client: authentication required, or a wrong password."""

    def __init__(self, url: str, detail: str, *, run_id: str | None = None) -> None:
        self.url = url
        super().__init__(
            f"Redis at {url}: authentication required or refused ({detail}); put the "
            "password in the URL, e.g. redis://:PASSWORD@host:6379/0", run_id=run_id)


class RedisUnavailableError(RunError):
    """Redis could not be reached, or stayed unreachable longer than the run tolerates."""

    def __init__(self, url: str, detail: str, seconds: float | None = None, *,
                 run_id: str | None = None) -> None:
        self.url = url
        self.seconds = seconds
        how = f"unreachable for {seconds:.1f} s" if seconds is not None else "unreachable"
        super().__init__(
            f"Redis at {url} is {how} ({detail}); check that the server is running and "
            "reachable (RuntimeConfig.outage_s sets how long an outage is waited out)",
            run_id=run_id)


class RedisOutOfMemoryError(RunError):
    """Redis refused a write: its ``maxmemory`` is reached (policy ``noeviction``)."""

    def __init__(self, url: str, used: str, limit: str, *, run_id: str | None = None) -> None:
        self.url = url
        super().__init__(
            f"Redis at {url} is out of memory (used {used}, maxmemory {limit}) and refused "
            "a write of this run; raise maxmemory, free memory on the server, or run a "
            "workflow with smaller intermediate data", run_id=run_id)


class RedisServerNotFoundError(RuntimeError):
    """No ``redis`` was given and no ``redis-server`` executable is installed."""


class InsecureRedisError(ValueError):
    """A Redis URL points to a non-loopback host without a password."""


def _listing(items: tuple[str, ...], limit: int = 20) -> str:
    if not items:
        return "none"
    shown = ", ".join(items[:limit])
    return shown + (f" ... ({len(items)} in total)" if len(items) > limit else "")
