"""Redis key names: everything of a run lives under ``fp:{run_id}:``; queues under a pool.

A *pool* is the set of workers holding one HMAC key (its id is derived from the key), so
workers never take invocations they could not authenticate.
"""

from __future__ import annotations

from dataclasses import dataclass


def pool_queue(pool: str, memory_mb: int) -> str:
    """The invocation queue of ``pool`` for workers with ``memory_mb`` MB."""
    return f"fp:pool:{pool}:q:{memory_mb}"


def queue_memory(queue: str) -> int:
    """The memory size of a :func:`pool_queue` key."""
    return int(queue.rsplit(":", 1)[1])


@dataclass(frozen=True, slots=True)
class RunKeys:
    """The keys of one run."""

    run_id: str

    @property
    def prefix(self) -> str:
        """Prefix of every key of the run (``SCAN`` pattern without the ``*``)."""
        return f"fp:{self.run_id}:"

    def data(self, key: str) -> str:
        """Storage key of an effect key (``out:<task>``, ``lit-<hash>``, ``dag``)."""
        return f"fp:{self.run_id}:d:{key}"

    def context(self, key: str) -> str:
        """What the MAC of a stored payload is bound to: run and key."""
        return f"{self.run_id}/{key}"

    def stream(self, key: str) -> str:
        """Redis Stream a streaming producer appends the chunks of ``key`` to."""
        return f"fp:{self.run_id}:xs:{key}"

    def deps(self, task: str) -> str:
        """Set of recorded upstream ids of ``task``."""
        return f"fp:{self.run_id}:deps:{task}"

    def flag(self, channel: str) -> str:
        """Key that exists once ``channel`` was notified."""
        return f"fp:{self.run_id}:flag:{channel}"

    def pubsub(self, name: str) -> str:
        """Pub/sub channel announcing a stored key or a notified channel."""
        return f"fp:{self.run_id}:ps:{name}"

    def lease(self, invocation: str) -> str:
        """Heartbeat key of a running invocation (expires when its worker dies)."""
        return f"fp:{self.run_id}:lease:{invocation}"

    @property
    def pubsub_pattern(self) -> str:
        """Pattern matching every :meth:`pubsub` channel of the run."""
        return f"fp:{self.run_id}:ps:*"

    @property
    def manifest(self) -> str:
        """What every worker of the run knows (placements, DAG shape, options)."""
        return f"fp:{self.run_id}:manifest"

    @property
    def events(self) -> str:
        """List of events workers send to the client (progress, rows, failures)."""
        return f"fp:{self.run_id}:events"

    @property
    def log(self) -> str:
        """Stream of the run's decision log, as JSON, for live views (never unpickled)."""
        return f"fp:{self.run_id}:log"

    @property
    def info(self) -> str:
        """JSON description of the run for live views: tasks, placements, prediction."""
        return f"fp:{self.run_id}:info"

    @property
    def owners(self) -> str:
        """Hash: fan-in task -> invocation whose Track completed its set."""
        return f"fp:{self.run_id}:owners"

    @property
    def inv_state(self) -> str:
        """Hash: invocation id -> ``queued`` | ``run`` | ``done`` | ``failed``."""
        return f"fp:{self.run_id}:inv"

    @property
    def inv_items(self) -> str:
        """Hash: invocation id -> its queue entry (kept to retry it)."""
        return f"fp:{self.run_id}:items"

    @property
    def inv_queue(self) -> str:
        """Hash: invocation id -> the queue it was pushed to."""
        return f"fp:{self.run_id}:queues"

    @property
    def inv_attempts(self) -> str:
        """Hash: invocation id -> number of times a worker claimed it."""
        return f"fp:{self.run_id}:attempts"

    @property
    def abort(self) -> str:
        """Exists once the run failed: workers stop waiting."""
        return f"fp:{self.run_id}:abort"


RUNS_KEY = "fp:runs"
"""Sorted set of the runs on a server (run id -> start, wall-clock ms), for live views."""
