"""The ``@task`` decorator, task functions and the nodes calling them returns."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, overload

from faasplan.workflow.io import IOHint
from faasplan.workflow.nested import iter_leaves


@dataclass(frozen=True, slots=True)
class SizedBlob:
    """A literal argument known only by its size (workflow input files of imported traces).

    The simulator charges its download like any other literal; the runtime passes the
    object itself to the task.
    """

    name: str
    nbytes: int

    def __post_init__(self) -> None:
        if self.nbytes < 0:
            raise ValueError(f"SizedBlob {self.name!r}: nbytes must be >= 0, got {self.nbytes}")


@dataclass(frozen=True, slots=True)
class TaskProfile:
    """Ground-truth behaviour of one task: execution time and output size.

    Imported traces carry their recorded runtime and bytes; Python workflows get one from
    ``faasplan.profile`` or from their ``io`` hints.
    """

    exec_ms: float
    output_bytes: int

    def __post_init__(self) -> None:
        if not self.exec_ms >= 0:
            raise ValueError(f"TaskProfile.exec_ms must be >= 0, got {self.exec_ms!r}")
        if self.output_bytes < 0:
            raise ValueError(f"TaskProfile.output_bytes must be >= 0, got {self.output_bytes!r}")

    def __reduce__(self) -> tuple[type[TaskProfile], tuple[float, int]]:
        # Pickled as a constructor call: smaller and quicker than the dataclass state
        # (a workflow blob holds one per task). Older pickles (state form) still load.
        return type(self), (self.exec_ms, self.output_bytes)


class TaskFunction:
    """A Python function turned into a task constructor by :func:`task`.

    Calling it binds the arguments against the function's signature and returns a
    :class:`TaskNode`; nothing runs.
    """

    def __init__(self, fn: Callable[..., Any], io: IOHint | None = None, name: str = "") -> None:
        # First, so that attributes copied from ``fn.__dict__`` cannot overwrite ours.
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.io = io
        self.name = name or qualified_name(fn)
        self.signature = inspect.signature(fn)
        reserved = _RESERVED_PARAMETERS & self.signature.parameters.keys()
        if reserved:
            raise TypeError(
                f"task {self.name}{self.signature}: parameter name(s) {sorted(reserved)} are "
                f"reserved by task calls (task_id=..., profile=...); rename them")

    def __repr__(self) -> str:
        return f"TaskFunction({self.name})"

    def __call__(self, *args: Any, task_id: str | None = None,
                 profile: TaskProfile | None = None, **kwargs: Any) -> TaskNode:
        """Bind arguments and return the node; ``task_id`` names it (default: generated)."""
        if task_id is not None and (not isinstance(task_id, str) or not task_id):
            raise TypeError(f"task {self.name}: task_id must be a non-empty string, "
                            f"got {task_id!r}")
        if profile is not None and not isinstance(profile, TaskProfile):
            raise TypeError(f"task {self.name}: profile must be a TaskProfile, got {profile!r}")
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(
                f"cannot call task {self.name}{self.signature}: {exc}") from None
        return TaskNode(self, tuple(bound.args), dict(bound.kwargs), task_id, profile)

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskFunction) and other.name == self.name and other.fn is self.fn


# Keyword arguments of a task call that configure the node instead of reaching the function.
_RESERVED_PARAMETERS = frozenset({"task_id", "profile"})


def qualified_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a function: the key under which its code is stored once."""
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


class TaskNode:
    """One call of a task function: the function, its bound arguments, an optional id.

    Arguments may nest other nodes at any depth; those are the node's upstream tasks.
    Nodes compare by identity; a :class:`~faasplan.workflow.Workflow` gives each one its id.
    """

    __slots__ = ("args", "func", "kwargs", "profile", "task_id")

    def __init__(self, func: TaskFunction, args: tuple[Any, ...], kwargs: dict[str, Any],
                 task_id: str | None = None, profile: TaskProfile | None = None) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.task_id = task_id
        self.profile = profile

    @property
    def upstream(self) -> list[TaskNode]:
        """Distinct upstream nodes, in argument order."""
        seen: dict[int, TaskNode] = {}
        for node in iter_leaves((self.args, self.kwargs), TaskNode):
            seen.setdefault(id(node), node)
        return list(seen.values())

    def __repr__(self) -> str:
        return f"TaskNode({self.func.name}, id={self.task_id!r})"


@overload
def task(fn: Callable[..., Any], /) -> TaskFunction: ...


@overload
def task(*, io: IOHint | None = None, name: str | None = None
         ) -> Callable[[Callable[..., Any]], TaskFunction]: ...


def task(fn: Callable[..., Any] | None = None, /, *, io: IOHint | None = None,
         name: str | None = None) -> TaskFunction | Callable[[Callable[..., Any]], TaskFunction]:
    """Turn a function into a task constructor.

    Use bare (``@task``) or with options (``@task(io=io.linear(0.5))``). ``name`` overrides
    the function's qualified name, which otherwise identifies the task's code.

    >>> from faasplan import task
    >>> @task
    ... def add(a, b):
    ...     return a + b
    >>> node = add(1, add(2, 3))
    >>> [up.func.name.rsplit(".", 1)[-1] for up in node.upstream]
    ['add']
    """
    if io is not None and not isinstance(io, IOHint):
        raise TypeError(f"@task(io=...) expects faasplan.io.linear/power/constant, got {io!r}")

    def wrap(f: Callable[..., Any]) -> TaskFunction:
        if not callable(f):
            raise TypeError(f"@task decorates a function, got {f!r}")
        if isinstance(f, TaskFunction):
            # Running it would return a node instead of a result.
            raise TypeError(f"{f!r} is already a task; apply @task once")
        return TaskFunction(f, io=io, name=name or "")

    return wrap(fn) if fn is not None else wrap
