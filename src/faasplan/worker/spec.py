"""What every worker of a run knows: the DAG's shape, the placements and the thresholds.

:class:`RunSpec` is computed once per (workflow, placements) and shared, read-only, by all
workers of a run in both drivers. It holds plain tuples and dicts so that the worker logic
stays fast in the simulator's inner loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any

from faasplan.worker.effects import Fetch, Payload, Track, output_key
from faasplan.worker.placement import Opt, Placement
from faasplan.worker.subdag import DEFAULT_CODE_NBYTES, DEFAULT_TASK_NBYTES, union_nbytes
from faasplan.worker.subdag import subdag_sizes as compute_subdag_sizes
from faasplan.worker.taskinfo import SpecView, TaskInfo
from faasplan.workflow import Workflow
from faasplan.workflow.codec import FUNCTION_PART_PREFIX, TASK_PART_PREFIX


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Thresholds of the worker logic.

    ``inline_dag_bytes``: a delegated subDAG below this encoded size travels inside the
    invocation, otherwise the new worker fetches the stored DAG. ``carry_bytes``: cached
    results up to this size travel with a delegation instead of being downloaded.
    """

    inline_dag_bytes: int = 64 * 1024
    carry_bytes: int = 16 * 1024

    def __post_init__(self) -> None:
        if self.inline_dag_bytes < 0 or self.carry_bytes < 0:
            raise ValueError(f"worker thresholds must be >= 0, got {self}")


_TaskRow = tuple[str, str, tuple[str, ...], tuple[str, ...], tuple[tuple[str, int], ...], bool,
                 str, tuple[str, ...]]
"""What a :class:`TaskInfo` is made of besides its placement: id, function, upstream,
downstream, literals, is_sink, key, input_keys."""


class DagShape:
    """The part of a :class:`RunSpec` that does not depend on the placements.

    A workflow's order, its tasks' neighbours, keys and literals, and the DAG's stored
    parts and encoded sizes are the same in the spec of every plan of a run's workflow
    and options. A simulator builds one shape and the spec of each plan it scores from it
    (:meth:`RunSpec.build`'s ``shape``), which is most of a spec's making.
    """

    __slots__ = ("code_nbytes", "dag_parts", "fan_in_tracks", "input_fetches",
                 "literal_payloads", "options", "order", "part_fetches", "part_payloads",
                 "part_sizes", "position", "rows", "subdag_sizes", "task_nbytes", "workflow")

    def __init__(self, workflow: Workflow, options: WorkerOptions | None = None, *,
                 literals: Mapping[str, tuple[tuple[str, int], ...]] | None = None,
                 task_nbytes: Mapping[str, int] | None = None,
                 code_nbytes: Mapping[str, int] | None = None,
                 dag_parts: Mapping[str, tuple[tuple[str, int], ...]] | None = None) -> None:
        lits = literals or {}
        self.workflow = workflow
        self.options = options or WorkerOptions()
        self.order: tuple[str, ...] = tuple(workflow.topological_order)
        self.position: Mapping[str, int] = MappingProxyType(
            {t: i for i, t in enumerate(self.order)})
        self.task_nbytes: dict[str, int] = dict(task_nbytes or {})
        self.code_nbytes: dict[str, int] = dict(code_nbytes or {})
        rows: dict[str, _TaskRow] = {}
        for tid in self.order:
            up = workflow.upstream(tid)
            down = workflow.downstream(tid)
            rows[tid] = (tid, workflow.node(tid).func.name, up, down, lits.get(tid, ()),
                         not down, output_key(tid), tuple([output_key(u) for u in up]))
        self.rows = rows
        if dag_parts is None:
            dag_parts = _estimated_parts(rows, self.task_nbytes, self.code_nbytes)
        self.dag_parts: Mapping[str, tuple[tuple[str, int], ...]] = MappingProxyType(
            dict(dag_parts))
        # The fetches of each task's parts by a worker that goes by reference, and of its
        # inputs once they exist, made once (effects are immutable, so every run may yield
        # the same ones).
        self.part_fetches: Mapping[str, tuple[Fetch, ...]] = MappingProxyType(
            {tid: tuple([Fetch(key, tid) for key, _ in parts])  # (positional: cheaper)
             for tid, parts in self.dag_parts.items()})
        self.input_fetches: Mapping[str, tuple[Fetch, ...]] = MappingProxyType(
            {tid: tuple([Fetch(key, tid) for key in row[7]]) for tid, row in rows.items()})
        # Per task, for each downstream fan-in, the track of this upstream counting to all
        # of the fan-in's upstreams (``None`` for a downstream with one upstream).
        tracks: dict[str, tuple[Track | None, ...]] = {}
        for tid, row in rows.items():
            if any(len(rows[d][2]) > 1 for d in row[3]):
                tracks[tid] = tuple([Track(d, tid, len(rows[d][2])) if len(rows[d][2]) > 1
                                     else None for d in row[3]])
        self.fan_in_tracks: Mapping[str, tuple[Track | None, ...]] = MappingProxyType(tracks)
        sizes: dict[str, int] = {}
        for tid in self.order:
            for key, nbytes in self.dag_parts[tid]:
                sizes.setdefault(key, nbytes)
        self.part_sizes: Mapping[str, int] = MappingProxyType(sizes)
        # What a run's client stores before the first invocation, as payloads (never
        # modified, so every run may store the same ones): each large literal once, and
        # the DAG's parts when some invocation may go by reference.
        stored: dict[str, Payload] = {}
        for tid in self.order:
            for key, nbytes in rows[tid][4]:
                if key not in stored:
                    stored[key] = Payload(nbytes)
        self.literal_payloads: Mapping[str, Payload] = MappingProxyType(stored)
        self.part_payloads: Mapping[str, Payload] = MappingProxyType(
            {key: Payload(nbytes) for key, nbytes in sizes.items()})
        self.subdag_sizes: Mapping[str, int] | None = None  # by the first spec built



@dataclass(frozen=True)
class RunSpec:
    """Read-only facts shared by the workers of one run.

    Build it with :meth:`build`. ``worker_tasks[w]`` lists the tasks of planned worker ``w``
    in topological order, or in the order the placements carry for ``w``
    (``worker_orders``); ``entry[w]`` is the first of them, whose readiness starts ``w``.
    """

    tasks: Mapping[str, TaskInfo]
    order: tuple[str, ...]
    worker_tasks: Mapping[str, tuple[str, ...]]
    options: WorkerOptions = WorkerOptions()
    task_nbytes: Mapping[str, int] = field(default_factory=dict)
    code_nbytes: Mapping[str, int] = field(default_factory=dict)
    delayed_owner: Mapping[str, str] = field(default_factory=dict)
    position: Mapping[str, int] = field(default_factory=dict)
    self_contained: frozenset[str] = frozenset()
    subdag_sizes: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)
    worker_dag_sizes: Mapping[str, int] = field(default_factory=dict, repr=False,
                                                compare=False)
    waiting_workers: int = 0
    dag_parts: Mapping[str, tuple[tuple[str, int], ...]] = field(default_factory=dict,
                                                                 repr=False, compare=False)
    inline_entries: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    part_fetches: Mapping[str, tuple[Fetch, ...]] = field(default_factory=dict, repr=False,
                                                          compare=False)
    """Per task, the fetches of its DAG parts, made once per :class:`DagShape`; a task
    missing here (a spec read from a manifest) has its fetches made as they are needed."""
    input_fetches: Mapping[str, tuple[Fetch, ...]] = field(default_factory=dict, repr=False,
                                                           compare=False)
    """Per task, the reads of its inputs (in ``input_keys`` order) once they are stored,
    made once per :class:`DagShape`; missing like ``part_fetches``."""
    fan_in_tracks: Mapping[str, tuple[Track | None, ...]] = field(default_factory=dict,
                                                                  repr=False, compare=False)
    """Per task, in ``downstream`` order, its track of each fan-in without a delayed
    owner (``None`` for the others), made once per :class:`DagShape`; missing like
    ``part_fetches``."""
    part_sizes: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)
    """Every distinct stored DAG part and its size (see :func:`faasplan.worker.dag_parts`)."""
    literal_payloads: Mapping[str, Payload] = field(default_factory=dict, repr=False,
                                                    compare=False)
    """Each large literal once (in task order), as the payload the client stores; made
    once per :class:`DagShape`, missing like ``part_fetches``."""
    part_payloads: Mapping[str, Payload] = field(default_factory=dict, repr=False,
                                                 compare=False)
    """``part_sizes`` as the payloads the client stores; missing like ``part_fetches``."""

    @classmethod
    def build(cls, workflow: Workflow,
              placements: Mapping[str, Placement] | Callable[[str], Placement],
              options: WorkerOptions | None = None, *,
              literals: Mapping[str, tuple[tuple[str, int], ...]] | None = None,
              task_nbytes: Mapping[str, int] | None = None,
              code_nbytes: Mapping[str, int] | None = None,
              subdag_sizes: Mapping[str, int] | None = None,
              dag_parts: Mapping[str, tuple[tuple[str, int], ...]] | None = None,
              shape: DagShape | None = None) -> RunSpec:
        """Collect the facts for ``workflow`` under ``placements``.

        ``literals`` gives, per task, the large literal arguments (storage key, size) that a
        worker fetches once; ``task_nbytes``/``code_nbytes`` are encoded sizes (default:
        estimates) used to decide whether a delegated subDAG travels inline.
        ``subdag_sizes`` may pass the sizes of an earlier spec of the same workflow and
        options (they do not depend on placements). ``dag_parts`` gives, per task, the
        stored DAG parts (key, size) a worker fetches to run it
        (:func:`faasplan.workflow.codec.dag_sizes`); default: one estimated record part
        per task and one code part per function (:func:`estimated_dag_parts`).

        ``shape``: a :class:`DagShape` of ``workflow`` and ``options``, shared by the
        specs of several plans (it then holds the literals and sizes, so those arguments
        must not be given).

        Raises
        ------
        ValueError
            ``shape`` is of another workflow or other options, or comes with sizes.
        """
        if shape is None:
            shape = DagShape(workflow, options, literals=literals, task_nbytes=task_nbytes,
                             code_nbytes=code_nbytes, dag_parts=dag_parts)
        elif shape.workflow is not workflow or shape.options != (options or WorkerOptions()):
            raise ValueError(f"RunSpec.build: the shape is of workflow {shape.workflow.name!r} "
                             f"with {shape.options}, not of {workflow.name!r} with "
                             f"{options or WorkerOptions()}; make one DagShape per workflow "
                             "and options")
        elif any(x is not None for x in (literals, task_nbytes, code_nbytes, dag_parts)):
            raise ValueError("RunSpec.build: literals and sizes come with the shape; give "
                             "them to DagShape instead")
        place = placements if callable(placements) else placements.__getitem__
        tasks: dict[str, TaskInfo] = {}
        worker_tasks: dict[str, list[str]] = {}
        for tid, row in shape.rows.items():
            try:
                p = place(tid)
            except KeyError:
                raise KeyError(f"no placement for task {tid!r}") from None
            tasks[tid] = TaskInfo(row[0], row[1], row[2], row[3], p, row[4], row[5],
                                  keys=(row[6], row[7]))
            if p.worker is not None:
                worker_tasks.setdefault(p.worker, []).append(tid)
        # Placements that carry ``worker_orders`` (a Plan's) give a worker its own order;
        # Plan.validate explains bad ones, this only keeps tasks from being lost or stuck.
        for w, order in getattr(placements, "worker_orders", {}).items():
            done: set[str] = set()
            for tid in order:
                if tid in done or tid not in tasks or tasks[tid].placement.worker != w or any(
                        tasks[u].placement.worker == w and u not in done
                        for u in tasks[tid].upstream):
                    raise ValueError(f"worker {w!r}: its order {list(order)[:6]} repeats task "
                                     f"{tid!r}, lists it though it runs elsewhere, or runs it "
                                     "before an upstream task of the same worker")
                done.add(tid)
            if len(done) != len(worker_tasks.get(w, ())):
                raise ValueError(f"worker {w!r}: its order lists {len(done)} of its "
                                 f"{len(worker_tasks.get(w, ()))} tasks")
            worker_tasks[w] = list(order)
        delayed: dict[str, str] = {}
        for tid, info in tasks.items():
            if info.placement.worker is None and info.placement.optimizations and \
                    info.placement.has(Opt.DELAYED_IO):
                for d in info.downstream:
                    dinfo = tasks[d]
                    if len(dinfo.upstream) > 1 and dinfo.placement.worker is None:
                        if d in delayed:
                            raise ValueError(
                                f"task {d!r}: two delayed-I/O upstream tasks ({delayed[d]!r} and "
                                f"{tid!r}); at most one upstream of a fan-in may delay its I/O")
                        delayed[d] = tid
        spec = cls(MappingProxyType(tasks), shape.order,
                   MappingProxyType({w: tuple(ts) for w, ts in worker_tasks.items()}),
                   shape.options, shape.task_nbytes, shape.code_nbytes,
                   MappingProxyType(delayed), shape.position,
                   _self_contained(tasks, worker_tasks), dag_parts=shape.dag_parts,
                   part_fetches=shape.part_fetches, input_fetches=shape.input_fetches,
                   fan_in_tracks=shape.fan_in_tracks, part_sizes=shape.part_sizes,
                   literal_payloads=shape.literal_payloads, part_payloads=shape.part_payloads)
        sizes = subdag_sizes if subdag_sizes is not None else shape.subdag_sizes
        if sizes is None:
            sizes = shape.subdag_sizes = MappingProxyType(compute_subdag_sizes(spec))
        spec = replace(spec, subdag_sizes=sizes)
        spec = replace(spec, worker_dag_sizes=MappingProxyType(_worker_dag_sizes(spec)),
                       waiting_workers=_waiting_workers(tasks, worker_tasks, delayed))
        return replace(spec, inline_entries=_inline_entries(spec))

    def __getstate__(self) -> dict[str, Any]:
        # Pickled (in a run's manifest) without what the receiving side makes again when
        # it needs it: the shared fetch effects, the part sizes and the cached entries
        # and view.
        state = {k: v for k, v in self.__dict__.items() if k not in ("entries", "view")}
        state.update(part_fetches={}, input_fetches={}, fan_in_tracks={}, part_sizes={},
                     literal_payloads={}, part_payloads={})
        return state

    def check_concurrency(self, limit: int, what: str = "the concurrency limit") -> None:
        """Refuse a plan that could deadlock when at most ``limit`` invocations run at once.

        The rule every driver follows: an invocation holds its slot from admission to its
        end, waiting included, and waiting invocations queue first in, first out. A worker
        that can wait for another worker's output while holding a slot (a planned worker
        with a task fed from elsewhere after its entry, or the owner of a delayed fan-in)
        must leave a slot for the producers it waits for, so a plan with ``k`` of them
        needs ``limit > k``. Under that bound every plan that passes validation finishes.

        Raises
        ------
        ValueError
            ``limit <= waiting_workers``, with the numbers and the fix.
        """
        if limit <= self.waiting_workers:
            raise ValueError(
                f"the plan has {self.waiting_workers} workers that can wait for other workers' "
                f"outputs while holding a sandbox, and {what} is {limit}: at most {limit - 1} "
                "may wait at once, so the run could deadlock. Raise the limit above "
                f"{self.waiting_workers}, or plan fewer planned workers")

    @property
    def dag_by_reference(self) -> bool:
        """Whether some planned worker is invoked by reference (not self-contained)."""
        return len(self.self_contained) < len(self.worker_tasks)

    def inline(self, entry: str) -> bool:
        """Whether the invocation started at ``entry`` carries its subDAG inline.

        Decided by the target alone, whichever worker sends it (see
        :func:`_inline_entries`), so it never depends on timing.
        """
        return entry in self.inline_entries

    def task_parts(self, task_id: str) -> tuple[tuple[str, int], ...]:
        """The stored DAG parts ``(key, bytes)`` a worker must hold to run ``task_id``."""
        return self.dag_parts[task_id]

    def entry(self, worker: str) -> str:
        """The first task of planned worker ``worker``."""
        return self.worker_tasks[worker][0]

    def is_entry(self, task_id: str) -> bool:
        """Whether the task's readiness starts a worker (flexible tasks, fixed entries)."""
        return task_id in self.entries

    @cached_property
    def view(self) -> SpecView:
        """What the worker logic reads for every task, gathered once (made on first use,
        never shipped in a manifest)."""
        return SpecView(self)

    @cached_property
    def entries(self) -> frozenset[str]:
        """The tasks whose readiness starts a worker: :meth:`is_entry` as a set, for the
        worker logic's inner loop (made on first use, never shipped in a manifest)."""
        return frozenset(t for t, info in self.tasks.items()
                         if info.placement.worker is None
                         or self.worker_tasks[info.placement.worker][0] == t)

    def worker_dag_nbytes(self, worker: str) -> int:
        """Encoded size of what planned worker ``worker`` must hold to run and delegate.

        The union of the subDAGs below each of its tasks (capped just above the inline
        threshold, like :meth:`subdag_nbytes`).
        """
        return self.worker_dag_sizes[worker]

    def subdag_nbytes(self, root: str) -> int:
        """Encoded size of the subDAG below ``root`` (capped just above the inline threshold).

        Above the threshold only the comparison matters, so sizes stop counting there.
        """
        return self.subdag_sizes[root]


def estimated_dag_parts(spec: RunSpec) -> dict[str, tuple[tuple[str, int], ...]]:
    """DAG parts when no encoding is measured: per task a record, per function its code.

    Sizes are the spec's ``task_nbytes``/``code_nbytes`` (or the estimates of
    :mod:`faasplan.worker.subdag`); keys are named after the task and the function, since
    there are no bytes to hash.
    """
    return {tid: _estimated_task_parts(tid, info.function, spec.task_nbytes, spec.code_nbytes)
            for tid, info in spec.tasks.items()}


def _estimated_parts(rows: Mapping[str, _TaskRow], task_nbytes: Mapping[str, int],
                     code_nbytes: Mapping[str, int]) -> dict[str, tuple[tuple[str, int], ...]]:
    return {tid: _estimated_task_parts(tid, row[1], task_nbytes, code_nbytes)
            for tid, row in rows.items()}


def _estimated_task_parts(tid: str, function: str, task_nbytes: Mapping[str, int],
                          code_nbytes: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    record = (f"{TASK_PART_PREFIX}{tid}", task_nbytes.get(tid, DEFAULT_TASK_NBYTES))
    code = (f"{FUNCTION_PART_PREFIX}{function}", code_nbytes.get(function, DEFAULT_CODE_NBYTES))
    return (record, code)


def _self_contained(tasks: Mapping[str, TaskInfo], worker_tasks: Mapping[str, list[str]]
                    ) -> frozenset[str]:
    """Planned workers that can be started with their subDAG inline.

    The client holds the whole DAG, so a worker whose entry is a root can get all its
    tasks inline. A worker started by another worker gets what that worker holds: the
    subDAG below its entry, which suffices when each task after the entry has an upstream
    on the same worker. The others (e.g. a group of fan-out siblings) go by reference.
    """
    out = set()
    for w, ts in worker_tasks.items():
        mine = set(ts)
        if not tasks[ts[0]].upstream or all(
                any(u in mine for u in tasks[t].upstream) for t in ts[1:]):
            out.add(w)
    return frozenset(out)


def _inline_entries(spec: RunSpec) -> frozenset[str]:
    """Entries whose invocation carries its subDAG inline, whoever sends it.

    Inline needs a subDAG below the threshold, a planned worker that is self-contained,
    and a sender that holds the subDAG. Every worker that may send it must hold it: the
    client does (roots), and so does any worker started inline, since the subDAG of what
    it delegates lies within its own. So an entry is inline when each of its upstream
    tasks can only run on workers started inline: for a flexible upstream, its own entry
    is inline (which by induction covers the workers that may continue with it); for a
    planned one, its worker's entry is. An entry not yet decided in topological order (a
    planned worker whose order starts later) counts as not inline.
    """
    cap = spec.options.inline_dag_bytes
    entries = spec.entries
    tasks = spec.tasks
    subdag_sizes = spec.subdag_sizes
    started_inline: dict[str, bool] = {}
    for tid in spec.order:
        if tid not in entries:
            continue
        info = tasks[tid]
        w = info.placement.worker
        size = subdag_sizes[tid] if w is None else spec.worker_dag_sizes[w]
        ok = size <= cap and (w is None or w in spec.self_contained)
        for u in info.upstream if ok else ():
            uw = tasks[u].placement.worker
            if not started_inline.get(u if uw is None else spec.worker_tasks[uw][0], False):
                ok = False
                break
        started_inline[tid] = ok
    return frozenset(t for t, ok in started_inline.items() if ok)


def _worker_dag_sizes(spec: RunSpec) -> dict[str, int]:
    cap = spec.options.inline_dag_bytes
    out: dict[str, int] = {}
    for w, ts in spec.worker_tasks.items():
        mine = set(ts)
        if w not in spec.self_contained:
            out[w] = cap + 1
        elif all(any(u in mine for u in spec.tasks[t].upstream) for t in ts[1:]):
            out[w] = spec.subdag_sizes[ts[0]]  # every task descends from the entry
        else:
            out[w] = union_nbytes(spec, ts)
    return out


def _waiting_workers(tasks: Mapping[str, TaskInfo], worker_tasks: Mapping[str, list[str]],
                     delayed: Mapping[str, str]) -> int:
    """Workers that can wait for another worker's output while holding a sandbox."""
    count = len(set(delayed.values()))  # owners of delayed fan-ins wait for the others
    for w, ts in worker_tasks.items():
        if any(tasks[u].placement.worker != w for t in ts[1:] for u in tasks[t].upstream):
            count += 1
    return count
