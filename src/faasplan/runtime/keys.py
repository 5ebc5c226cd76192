"""Redis key names: everything of a run lives under ``fp:{run_id}:``; queues under a pool.

A *pool* is the set of workers holding one HMAC key (its id is derived from the key), so
workers never take invocations they could not authenticate.

Run ids are 1 to 128 letters, digits, ``.``, ``_`` or ``-``, starting with a letter or a
digit, and not ``pool`` or ``runs`` (names of other faasplan keys): no ``:``, so one run's
keys are never a prefix of another's, and no glob character. Task ids, which also end up
in key names, may hold any printable character but whitespace, ``*``, ``?``, ``[``, ``]``
and ``\\``, up to 256 of them. Patterns (``SCAN``, ``PSUBSCRIBE``) are still built from
escaped names only (:func:`glob_escape`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from faasplan.worker import output_key

RUN_ID_MAX = 128
TASK_ID_MAX = 256
RESERVED_RUN_IDS = frozenset({"pool", "runs"})
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_GLOB = re.compile(r"([*?\[\]\\])")
_TASK_ID_FORBIDDEN = frozenset("*?[]\\")


def check_run_id(run_id: object) -> str:
    """``run_id`` if it is a valid run id (see the module's docstring), else ``ValueError``.

    >>> check_run_id("20261202-nightly.3")
    '20261202-nightly.3'
    >>> check_run_id("*")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: run id '*' is not allowed: use 1 to 128 letters, digits, ...
    """
    if not isinstance(run_id, str):
        raise TypeError(f"run id must be a string, got {type(run_id).__name__}")
    if run_id in RESERVED_RUN_IDS:
        raise ValueError(f"run id {run_id!r} is reserved (faasplan names its own keys "
                         f"fp:{run_id}:...); choose another, e.g. {run_id + '-1'!r}")
    if len(run_id) > RUN_ID_MAX or not _RUN_ID.fullmatch(run_id):
        shown = run_id if len(run_id) <= 60 else run_id[:57] + "..."
        raise ValueError(f"run id {shown!r} is not allowed: use 1 to {RUN_ID_MAX} letters, "
                         "digits, '.', '_' or '-', starting with a letter or a digit "
                         "(e.g. 'nightly-3')")
    return run_id


def check_task_id(task_id: object) -> str:
    """``task_id`` if it may name Redis keys (see the module's docstring), else ``ValueError``.

    >>> check_task_id("mProject_ID0000001")
    'mProject_ID0000001'
    """
    if not isinstance(task_id, str):
        raise TypeError(f"task id must be a string, got {type(task_id).__name__}")
    bad = sorted({c for c in task_id if c in _TASK_ID_FORBIDDEN or c.isspace()
                  or not c.isprintable()})
    if not task_id or len(task_id) > TASK_ID_MAX or bad:
        shown = task_id if len(task_id) <= 60 else task_id[:57] + "..."
        why = (f"has {', '.join(map(repr, bad))}" if bad else
               f"has {len(task_id)} characters" if task_id else "is empty")
        raise ValueError(f"task id {shown!r} {why}: task ids name Redis keys and may hold up "
                         f"to {TASK_ID_MAX} printable characters but whitespace and "
                         "* ? [ ] \\; rename the task (task_id=...)")
    return task_id


def check_ids(run_id: str, task_ids: Iterable[str]) -> None:
    """Check a run id and every task id of the run (:func:`check_run_id`, :func:`check_task_id`)."""
    check_run_id(run_id)
    for task_id in task_ids:
        check_task_id(task_id)


def glob_escape(text: str) -> str:
    """``text`` with Redis glob characters escaped, to match itself in a pattern.

    >>> glob_escape("a*b[1]")
    'a\\\\*b\\\\[1\\\\]'
    """
    return _GLOB.sub(r"\\\1", text)


def pool_queue(pool: str, memory_mb: int) -> str:
    """The invocation queue of ``pool`` for workers with ``memory_mb`` MB."""
    return f"fp:pool:{pool}:q:{memory_mb}"


def pool_pattern(pool: str) -> str:
    """``SCAN`` pattern matching every key of ``pool`` (queues, control lists)."""
    return f"fp:pool:{glob_escape(pool)}:*"


def queue_memory(queue: str) -> int:
    """The memory size of a :func:`pool_queue` key."""
    return int(queue.rsplit(":", 1)[1])


@dataclass(frozen=True, slots=True)
class RunKeys:
    """The keys of one run."""

    run_id: str

    @property
    def prefix(self) -> str:
        """Prefix of every key of the run."""
        return f"fp:{self.run_id}:"

    @property
    def pattern(self) -> str:
        """``SCAN`` pattern matching every key of the run, and only those."""
        return f"fp:{glob_escape(self.run_id)}:*"

    def known(self, tasks: Iterable[str], parts: Iterable[str] = ()) -> list[str]:
        """Every key of the run whose name the client knows, given the run's task ids and
        the DAG parts it stored.

        What it does not know (literals, notification flags, leases) only
        :attr:`pattern` finds.
        """
        keys = [self.manifest, self.events, self.log, self.info, self.owners, self.inv_state,
                self.inv_items, self.inv_queue, self.inv_attempts, self.abort]
        keys += [self.data(part) for part in parts]
        for task in tasks:
            out = output_key(task)
            keys += [self.data(out), self.stream(out), self.deps(task)]
        return keys

    def data(self, key: str) -> str:
        """Storage key of an effect key (``out:<task>``, ``lit-<hash>``, ``dag-...``)."""
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
        return f"fp:{glob_escape(self.run_id)}:ps:*"

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
