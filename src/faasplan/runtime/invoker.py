"""The contract between a run's client and the platform that starts its sandboxes.

An **invoker** turns invocations into running sandboxes. The client never talks to it
about single invocations: it pushes each invocation to a queue in Redis, named by the
invoker's pool and the invocation's memory size (:func:`faasplan.runtime.pool_queue`),
and the invoker pops the entries and hands each to a sandbox, which runs
:class:`~faasplan.runtime.workerproc.WorkerProcess` on it. What the client asks of an
invoker is :class:`Invoker`; :class:`~faasplan.runtime.LocalFaaS` (worker processes on
this machine) and :class:`~faasplan.runtime.DaskInvoker` (Dask tasks on an existing
cluster) implement it. The whole contract, and what an AWS Lambda or OpenWhisk invoker
would need, is in the runtime reference (``docs/reference/runtime.rst``).

The five parts of the contract, in short:

* **invoke** — pop entries from the queues of every memory size it was told to
  :meth:`~Invoker.serve` and deliver each to one sandbox, ``WorkerProcess.serve(entry,
  cold=..., dispatched_at=...)``. Delivery is at least once: the entry's claim in Redis
  drops duplicates, so an entry whose sandbox died before claiming it is pushed back.
* **sandbox identity** — the sandbox records itself in the trace (``container``: the
  serving process id, per invocation), and the run's data stays in Redis: an invoker
  never carries task inputs or outputs.
* **memory** — one queue per memory size; the invoker starts or picks a sandbox of that
  size (a nominal size unless the platform enforces it).
* **concurrency limit** — :attr:`~Invoker.max_processes` invocations at most hold a
  sandbox at once, waiting included, and the value is final once the invoker has
  started; the client refuses a plan that could deadlock under it
  (:meth:`faasplan.worker.RunSpec.check_concurrency`).
* **cold/warm signal** — the invoker knows whether the sandbox it picks is new (cold) or
  served this run's code before within its keep-alive (warm), says so to the sandbox,
  which records it, and counts both in :attr:`~Invoker.stats`.

Failures: a task's exception is reported by the sandbox through Redis; a sandbox that
dies leaves its lease to lapse and the client retries the invocation (``max_retries``);
an invoker that cannot start a sandbox at all fails the run with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from faasplan.runtime.faas import FaaSStats


@runtime_checkable
class Invoker(Protocol):
    """What :func:`faasplan.run` needs of the platform that starts the sandboxes.

    ``pool`` is the queue pool the invoker serves, derived from the run's HMAC key
    (:attr:`faasplan.runtime.Signer.pool`): a client and an invoker with different keys
    never share queues. ``max_processes`` is the concurrency limit: invocations holding a
    sandbox at once, waiting for other workers' outputs included. ``keep_alive_s`` is how
    long a sandbox stays warm after an invocation.
    """

    pool: str
    max_processes: int
    keep_alive_s: float

    def start(self) -> Invoker:
        """Start serving (connect, spawn the dispatcher); return ``self``.

        Raises ``RuntimeError`` naming the platform when it cannot be reached.
        """
        ...

    def serve(self, memories: Iterable[int]) -> None:
        """Also serve the queues of these memory sizes (MB); sizes already served stay."""
        ...

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop taking invocations; let those running finish within ``timeout_s``."""
        ...

    @property
    def stats(self) -> FaaSStats:
        """Cold and warm starts so far; sandboxes (or invocations in flight) now and at
        most."""
        ...

    def __enter__(self) -> Invoker:
        ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        ...


if TYPE_CHECKING:  # mypy checks that both implementations satisfy the contract
    from faasplan.runtime.dask_invoker import DaskInvoker
    from faasplan.runtime.faas import LocalFaaS

    _LOCAL: type[Invoker] = LocalFaaS
    _DASK: type[Invoker] = DaskInvoker
