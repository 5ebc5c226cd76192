"""One task and one run as the worker logic sees them: :class:`TaskInfo`, made by
:class:`~faasplan.worker.RunSpec` for every task of a run, and :class:`SpecView`, the
spec's facts the worker logic reads for every task.

Compiled with the simulator's core (see :mod:`faasplan._native`): the worker logic
reads these fields several times per task, and a compiled class reads them directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from faasplan.worker.effects import Fetch, Track, output_key
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

    def __init__(self, id: str, function: str, upstream: Iterable[str],
                 downstream: Iterable[str], placement: Placement,
                 literals: Iterable[tuple[str, int]] = (), is_sink: object = False, *,
                 keys: tuple[str, tuple[str, ...]] | None = None) -> None:
        """``keys``: the output key and the input keys, when already made. The sequences
        are kept as tuples (and a NumPy integer memory as an ``int``)."""
        self.id = id
        self.function = function
        self.upstream = tuple(upstream)
        self.downstream = tuple(downstream)
        self.placement = placement
        self.literals = tuple(literals)
        self.is_sink = bool(is_sink)
        if keys is None:
            self.key = output_key(id)
            self.input_keys = tuple([output_key(u) for u in self.upstream])
        else:
            self.key, self.input_keys = keys
        self.worker = placement.worker
        self.memory_mb = int(placement.memory_mb)
        self.optimizations = placement.optimizations

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (in a run's manifest) without the derived fields, which are made again.
        return (TaskInfo, (self.id, self.function, self.upstream, self.downstream,
                           self.placement, self.literals, self.is_sink))


class SpecView:
    """The facts of a :class:`~faasplan.worker.RunSpec` the worker logic reads for every
    task, gathered once per spec (``RunSpec.view``).

    Compiled, like :class:`TaskInfo`: the worker logic reads these as fields of a compiled
    object, where reading them on the spec is a Python attribute lookup each time. The
    mappings are the spec's own (``tasks`` a plain dict copy of them); nothing here is
    modified.
    """

    __slots__ = ("carry_bytes", "dag_parts", "delayed_owner", "entries", "fan_in_tracks",
                 "inline_entries", "input_fetches", "part_fetches", "position", "spec",
                 "subdag_sizes", "tasks", "worker_dag_sizes", "worker_tasks")

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.tasks: dict[str, TaskInfo] = dict(spec.tasks)
        self.entries: frozenset[str] = spec.entries
        self.delayed_owner: Mapping[str, str] = spec.delayed_owner
        self.fan_in_tracks: Mapping[str, tuple[Track | None, ...]] = spec.fan_in_tracks
        self.input_fetches: Mapping[str, tuple[Fetch, ...]] = spec.input_fetches
        self.part_fetches: Mapping[str, tuple[Fetch, ...]] = spec.part_fetches
        self.dag_parts: Mapping[str, tuple[tuple[str, int], ...]] = spec.dag_parts
        self.subdag_sizes: Mapping[str, int] = spec.subdag_sizes
        self.worker_dag_sizes: Mapping[str, int] = spec.worker_dag_sizes
        self.inline_entries: frozenset[str] = spec.inline_entries
        self.position: Mapping[str, int] = spec.position
        self.worker_tasks: Mapping[str, tuple[str, ...]] = spec.worker_tasks
        self.carry_bytes: float = float(spec.options.carry_bytes)

    def is_entry(self, task_id: str) -> bool:
        """:meth:`RunSpec.is_entry <faasplan.worker.RunSpec.is_entry>`."""
        return task_id in self.entries
