"""One task as the worker logic sees it (:class:`TaskInfo`), made by
:class:`~faasplan.worker.RunSpec` for every task of a run.

Compiled with the simulator's core (see :mod:`faasplan._native`): the worker logic
reads these fields several times per task, and a compiled class reads them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from faasplan.worker.effects import output_key
from faasplan.worker.placement import Opt, Placement


@dataclass(slots=True, unsafe_hash=True, init=False)
class TaskInfo:
    """The parts of one task the worker logic needs.

    Treated as immutable, like the effects (:mod:`faasplan.worker.effects`), and for the
    same reason not a frozen dataclass: a spec makes one per task. ``worker``,
    ``memory_mb`` and ``optimizations`` repeat the placement's, for the worker logic's
    inner loop.
    """

    id: str
    function: str
    upstream: tuple[str, ...]
    downstream: tuple[str, ...]
    placement: Placement
    literals: tuple[tuple[str, int], ...]
    is_sink: bool
    key: str = field(init=False, repr=False, compare=False)
    """The storage key of the task's output (:func:`~faasplan.worker.effects.output_key`)."""
    input_keys: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """The output keys of ``upstream``, in the same order."""
    worker: str | None = field(init=False, repr=False, compare=False)
    memory_mb: int = field(init=False, repr=False, compare=False)
    optimizations: frozenset[Opt] = field(init=False, repr=False, compare=False)

    def __init__(self, id: str, function: str, upstream: tuple[str, ...],
                 downstream: tuple[str, ...], placement: Placement,
                 literals: tuple[tuple[str, int], ...] = (), is_sink: bool = False, *,
                 keys: tuple[str, tuple[str, ...]] | None = None) -> None:
        """``keys``: the output key and the input keys, when already made."""
        self.id = id
        self.function = function
        self.upstream = upstream
        self.downstream = downstream
        self.placement = placement
        self.literals = literals
        self.is_sink = is_sink
        if keys is None:
            self.key = output_key(id)
            self.input_keys = tuple([output_key(u) for u in upstream])
        else:
            self.key, self.input_keys = keys
        self.worker = placement.worker
        self.memory_mb = placement.memory_mb
        self.optimizations = placement.optimizations

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (in a run's manifest) without the derived fields, which are made again.
        return (TaskInfo, (self.id, self.function, self.upstream, self.downstream,
                           self.placement, self.literals, self.is_sink))
