"""Where a task runs: worker id (or flexible), memory and the optimizations switched on."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Opt(StrEnum):
    """Optimizations a planner can switch on for one task (hooks of the worker logic).

    PRELOAD
        The worker fetches this task's inputs from other workers as soon as they exist,
        while it is still busy with earlier tasks.
    PREWARM
        When this task starts, the worker invokes empty workers with the memory of the
        downstream workers it will start, so they find a warm container.
    CLUSTER
        (flexible) Every ready dependent runs on this worker instead of being delegated.
    DELAYED_IO
        (flexible) This task's output is not uploaded for its fan-in dependents: the worker
        waits until the fan-in's other inputs exist and runs the fan-in itself.
    STREAM
        The output is streamed: a consumer already waiting reads while it is written.
    ASYNC_UPLOAD
        The upload (and the notification of dependents) runs concurrently while the
        worker continues with local work.
    """

    PRELOAD = "preload"
    PREWARM = "prewarm"
    CLUSTER = "cluster"
    DELAYED_IO = "delayed-io"
    STREAM = "stream"
    ASYNC_UPLOAD = "async-upload"


@dataclass(frozen=True, slots=True)
class Placement:
    """One task's placement: ``worker`` id (``None``: flexible), ``memory_mb``, optimizations."""

    worker: str | None
    memory_mb: int
    optimizations: frozenset[Opt] = frozenset()

    def __post_init__(self) -> None:
        if self.memory_mb <= 0:
            raise ValueError(f"memory_mb must be > 0, got {self.memory_mb}")
        bad = [o for o in self.optimizations if not isinstance(o, Opt)]
        if bad:
            object.__setattr__(self, "optimizations", frozenset(Opt(o) for o in self.optimizations))

    def has(self, opt: Opt) -> bool:
        """Whether ``opt`` is switched on for this task."""
        return opt in self.optimizations

    def with_opts(self, *opts: Opt) -> Placement:
        """A copy with ``opts`` added."""
        return Placement(self.worker, self.memory_mb, self.optimizations | frozenset(opts))
