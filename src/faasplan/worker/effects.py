"""Effect requests yielded by the worker logic, and the values that travel with them.

The worker logic never performs I/O: it yields one of these requests and a driver (the
SimPy simulator or the Redis runtime) performs it and sends back the result. Each class
documents what the driver sends back.

Effects, payloads and invocations are treated as immutable: nothing changes one once it
is made (a driver that needs a variant makes a copy with :func:`dataclasses.replace`).
They are plain slotted dataclasses rather than frozen ones because a simulated run makes
about ten per task, and a frozen dataclass costs three to four times as much to create
(every field goes through ``object.__setattr__``). They compare by value, and those
whose fields can be hashed hash by value.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

DAG_PART_PREFIX = "dag-"
"""Prefix of every stored DAG part's key."""


def is_dag_part(key: str) -> bool:
    """Whether ``key`` names a stored part of the DAG (a task record or a function's code).

    Parts are content-addressed (:func:`faasplan.workflow.codec.encode_parts`); there is
    no key holding the whole DAG.
    """
    return key.startswith(DAG_PART_PREFIX)


def output_key(task_id: str) -> str:
    """Storage key of a task's output."""
    return f"out:{task_id}"


def ready_channel(task_id: str) -> str:
    """Channel on which a delayed-I/O owner learns that a fan-in's other inputs exist."""
    return f"ready:{task_id}"


def sink_channel(task_id: str) -> str:
    """Channel notified when a sink task's output is stored (the client waits on it)."""
    return f"sink:{task_id}"


@dataclass(slots=True, unsafe_hash=True)
class Payload:
    """A value with its size in bytes; in the simulator only the size is known."""

    nbytes: int
    value: Any = None


@dataclass(slots=True, unsafe_hash=True)
class Invocation:
    """What a worker is started with.

    ``worker`` is a planned worker id, or ``None`` for a flexible worker that follows the
    DAG wherever it leads. ``roots`` are tasks whose inputs are known to exist; empty for a
    pre-warm invocation, which only starts a container. The subDAG travels inline when
    ``inline_dag`` (its ``dag_nbytes`` count in the invocation size); else the worker
    goes *by reference*: it fetches the stored parts of each task it runs
    (:meth:`~faasplan.worker.RunSpec.task_parts`). ``carried`` holds small cached results
    sent along so the new worker need not download them.
    """

    worker: str | None
    memory_mb: int
    roots: tuple[str, ...]
    inline_dag: bool = True
    dag_nbytes: int = 0
    carried: Mapping[str, Payload] = field(default_factory=dict)

    @property
    def prewarm(self) -> bool:
        """True for an empty invocation that only warms a container."""
        return not self.roots

    @property
    def nbytes(self) -> int:
        """Size of the invocation request: header, inline DAG and carried results."""
        size = 256 + (self.dag_nbytes if self.inline_dag else 0)
        for p in self.carried.values():
            size += p.nbytes
        return size


@dataclass(slots=True, unsafe_hash=True)
class Fetch:
    """Download ``key`` for ``task`` -> :class:`Payload`.

    ``wait``: the key may not exist yet; block until it is stored. ``stream``: the producer
    streams its output; if its upload is under way, read chunks as they are written.

    A stored DAG part (:func:`is_dag_part`) is kept by the sandbox that fetched it for the
    rest of the run: when the same warm sandbox asks for it again the driver answers from
    what it holds, without a transfer, with ``Payload(0)`` (the bytes moved). Every driver
    honours this, so the effect sequence never depends on what a sandbox holds.
    """

    key: str
    task: str | None = None
    wait: bool = False
    stream: bool = False


@dataclass(slots=True, unsafe_hash=True)
class Store:
    """Upload ``payload`` under ``key`` (``stream``: let running readers follow) -> None."""

    key: str
    payload: Payload
    task: str | None = None
    stream: bool = False


@dataclass(slots=True, unsafe_hash=True)
class Track:
    """Record, atomically and idempotently, that ``upstream`` of ``task`` is done.

    -> ``True`` when the set of recorded upstreams has just reached ``expected`` members.
    Recording the same upstream twice (a retried task) never counts twice.
    """

    task: str
    upstream: str
    expected: int


@dataclass(slots=True, unsafe_hash=True)
class Notify:
    """Signal ``channel`` (once; later waiters return at once) -> None."""

    channel: str


@dataclass(slots=True, unsafe_hash=True)
class WaitFor:
    """Block until ``channel`` was notified -> None (``task``: the task that waits)."""

    channel: str
    task: str | None = None


@dataclass(slots=True, unsafe_hash=True)
class Invoke:
    """Start a worker with ``invocation`` (fire and forget) -> None."""

    invocation: Invocation


@dataclass(slots=True, unsafe_hash=True)
class Execute:
    """Run ``task`` on ``inputs`` (storage key -> payload) -> its output :class:`Payload`."""

    task: str
    inputs: Mapping[str, Payload]


@dataclass(slots=True, unsafe_hash=True)
class Spawn:
    """Run ``branch`` concurrently on this worker -> an opaque handle for :class:`Join`."""

    branch: Generator[Any, Any, Any]


@dataclass(slots=True, unsafe_hash=True)
class Join:
    """Wait for spawned branches -> list of their return values, in ``handles`` order.

    ``task``: the task whose inputs the branches fetch (its input phase), if any.
    """

    handles: tuple[Any, ...]
    task: str | None = None


@dataclass(slots=True, unsafe_hash=True)
class Parallel:
    """Perform independent effects concurrently -> list of their results, in order."""

    effects: tuple[Any, ...]


@dataclass(slots=True, unsafe_hash=True)
class Sleep:
    """Pause for ``ms`` milliseconds -> None."""

    ms: float

    def __post_init__(self) -> None:
        if self.ms < 0:
            raise ValueError(f"negative sleep {self.ms} ms")


Effect = (Fetch | Store | Track | Notify | WaitFor | Invoke | Execute | Spawn | Join | Parallel
          | Sleep)

