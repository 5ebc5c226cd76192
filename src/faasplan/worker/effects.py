"""Effect requests yielded by the worker logic, and the values that travel with them.

The worker logic never performs I/O: it yields one of these requests and a driver (the
SimPy simulator or the Redis runtime) performs it and sends back the result. Each class
documents what the driver sends back.

Effects, payloads and invocations are treated as immutable: nothing changes one once it
is made (a driver that needs a variant makes a copy with :func:`dataclasses.replace`).
They are slotted dataclasses rather than frozen ones because a simulated run makes about
ten per task, and a frozen dataclass costs three to four times as much to create (every
field goes through ``object.__setattr__``); compiled with the simulator's core, they are
compiled classes. They compare by value, and those whose fields can be hashed hash by
value. Their initializers convert what they are given to the fields' types (``int()``,
``bool()``, ``tuple()``...), so a NumPy integer or a list is taken as before; the
compiled classes then hold exactly those types.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, SupportsFloat, SupportsInt

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


# Every class below is a dataclass for what dataclasses give (comparison by value, hashing,
# ``repr``, ``fields`` and ``replace``) but writes its own ``__init__``: compiled with the
# simulator's core (see :mod:`faasplan._native`), a hand-written initializer is compiled
# too, while a generated one would stay interpreted, and the worker logic makes several
# of these per task. ``__reduce__`` pickles one as a call to its class.


@dataclass(slots=True, unsafe_hash=True, init=False)
class Payload:
    """A value with its size in bytes; in the simulator only the size is known."""

    nbytes: int
    value: Any

    def __init__(self, nbytes: SupportsInt, value: Any = None) -> None:
        self.nbytes = int(nbytes)
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        return (Payload, (self.nbytes, self.value))


@dataclass(slots=True, unsafe_hash=True, init=False)
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
    inline_dag: bool
    dag_nbytes: int
    carried: Mapping[str, Payload]

    def __init__(self, worker: str | None, memory_mb: SupportsInt, roots: Iterable[str],
                 inline_dag: object = True, dag_nbytes: SupportsInt = 0,
                 carried: Mapping[str, Payload] | None = None) -> None:
        self.worker = worker
        self.memory_mb = int(memory_mb)
        self.roots = tuple(roots)
        self.inline_dag = bool(inline_dag)
        self.dag_nbytes = int(dag_nbytes)
        self.carried = {} if carried is None else carried

    def __reduce__(self) -> tuple[Any, ...]:
        return (Invocation, (self.worker, self.memory_mb, self.roots, self.inline_dag,
                             self.dag_nbytes, self.carried))

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


@dataclass(slots=True, unsafe_hash=True, init=False)
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
    task: str | None
    wait: bool
    stream: bool

    def __init__(self, key: str, task: str | None = None, wait: object = False,
                 stream: object = False) -> None:
        self.key = key
        self.task = task
        self.wait = bool(wait)
        self.stream = bool(stream)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Fetch, (self.key, self.task, self.wait, self.stream))


@dataclass(slots=True, unsafe_hash=True, init=False)
class Store:
    """Upload ``payload`` under ``key`` (``stream``: let running readers follow) -> None."""

    key: str
    payload: Payload
    task: str | None
    stream: bool

    def __init__(self, key: str, payload: Payload, task: str | None = None,
                 stream: object = False) -> None:
        self.key = key
        self.payload = payload
        self.task = task
        self.stream = bool(stream)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Store, (self.key, self.payload, self.task, self.stream))


@dataclass(slots=True, unsafe_hash=True, init=False)
class Track:
    """Record, atomically and idempotently, that ``upstream`` of ``task`` is done.

    -> ``True`` when the set of recorded upstreams has just reached ``expected`` members.
    Recording the same upstream twice (a retried task) never counts twice.
    """

    task: str
    upstream: str
    expected: int

    def __init__(self, task: str, upstream: str, expected: SupportsInt) -> None:
        self.task = task
        self.upstream = upstream
        self.expected = int(expected)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Track, (self.task, self.upstream, self.expected))


@dataclass(slots=True, unsafe_hash=True, init=False)
class Notify:
    """Signal ``channel`` (once; later waiters return at once) -> None."""

    channel: str

    def __init__(self, channel: str) -> None:
        self.channel = channel

    def __reduce__(self) -> tuple[Any, ...]:
        return (Notify, (self.channel,))


@dataclass(slots=True, unsafe_hash=True, init=False)
class WaitFor:
    """Block until ``channel`` was notified -> None (``task``: the task that waits)."""

    channel: str
    task: str | None

    def __init__(self, channel: str, task: str | None = None) -> None:
        self.channel = channel
        self.task = task

    def __reduce__(self) -> tuple[Any, ...]:
        return (WaitFor, (self.channel, self.task))


@dataclass(slots=True, unsafe_hash=True, init=False)
class Invoke:
    """Start a worker with ``invocation`` (fire and forget) -> None."""

    invocation: Invocation

    def __init__(self, invocation: Invocation) -> None:
        self.invocation = invocation

    def __reduce__(self) -> tuple[Any, ...]:
        return (Invoke, (self.invocation,))


@dataclass(slots=True, unsafe_hash=True, init=False)
class Execute:
    """Run ``task`` on ``inputs`` (storage key -> payload) -> its output :class:`Payload`."""

    task: str
    inputs: dict[str, Payload]

    def __init__(self, task: str, inputs: Mapping[str, Payload]) -> None:
        self.task = task
        self.inputs = inputs if isinstance(inputs, dict) else dict(inputs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Execute, (self.task, self.inputs))


@dataclass(slots=True, unsafe_hash=True, init=False)
class Spawn:
    """Run ``branch`` concurrently on this worker -> an opaque handle for :class:`Join`."""

    branch: Generator[Any, Any, Any]

    def __init__(self, branch: Generator[Any, Any, Any]) -> None:
        self.branch = branch

    def __reduce__(self) -> tuple[Any, ...]:
        return (Spawn, (self.branch,))


@dataclass(slots=True, unsafe_hash=True, init=False)
class Join:
    """Wait for spawned branches -> list of their return values, in ``handles`` order.

    ``task``: the task whose inputs the branches fetch (its input phase), if any.
    """

    handles: tuple[Any, ...]
    task: str | None

    def __init__(self, handles: Iterable[Any], task: str | None = None) -> None:
        self.handles = tuple(handles)
        self.task = task

    def __reduce__(self) -> tuple[Any, ...]:
        return (Join, (self.handles, self.task))


@dataclass(slots=True, unsafe_hash=True, init=False)
class Parallel:
    """Perform independent effects concurrently -> list of their results, in order."""

    effects: tuple[Any, ...]

    def __init__(self, effects: Iterable[Any]) -> None:
        self.effects = tuple(effects)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Parallel, (self.effects,))


@dataclass(slots=True, unsafe_hash=True, init=False)
class Sleep:
    """Pause for ``ms`` milliseconds -> None."""

    ms: float

    def __init__(self, ms: SupportsFloat) -> None:
        value = float(ms)
        if value < 0:
            raise ValueError(f"negative sleep {ms} ms")
        self.ms = value

    def __reduce__(self) -> tuple[Any, ...]:
        return (Sleep, (self.ms,))


Effect = (Fetch | Store | Track | Notify | WaitFor | Invoke | Execute | Spawn | Join | Parallel
          | Sleep)

