"""Import WfCommons WfFormat traces (schema 1.4 and 1.5) as :class:`Workflow` objects.

A trace records a real run: tasks, their dependencies, the files each one read and wrote,
and measured runtimes. The importer turns every trace task into a node of a synthetic
task function, one function per task category (``mProject``, ``mDiffFit``, ...), so two
traces of the same application share function names and structure hashes. Each node
carries the recorded runtime and output size as its :class:`TaskProfile`; files read by a
task but written by no task become :class:`SizedBlob` literals (``inputs=``), which the
simulator charges as downloads.

Schema 1.5 keeps the structure in ``workflow.specification`` and runtimes in
``workflow.execution`` (joined on task ``id``); 1.4 keeps both in flat
``workflow.tasks[]`` whose ``parents`` may name tasks by ``name`` (Pegasus) or ``id``.
1.6 only adds optional fields to 1.5 and is read the same way. Nothing is downloaded:
the checks below are the importer's own, with messages naming the file, task and field.
"""

from __future__ import annotations

import gzip
import heapq
import json
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from faasplan.workflow.errors import WorkflowFormatError
from faasplan.workflow.graph import Workflow
from faasplan.workflow.task import SizedBlob, TaskFunction, TaskNode, TaskProfile

__all__ = ["SUPPORTED_VERSIONS", "RecordedRun", "TaskRecord", "load_recorded_run",
           "load_wfformat", "synthetic_task", "trace_edge_bytes", "trace_stem",
           "trace_task_records"]

#: Schema versions this importer reads.
SUPPORTED_VERSIONS: tuple[str, ...] = ("1.4", "1.5", "1.6")

# Trace task names end in an instance number: ``mProject_ID0000001`` is an ``mProject``.
_ID_SUFFIX = re.compile(r"_ID\d+$")


def synthetic_task(*parents: Any, runtime_ms: float, output_bytes: int,
                   inputs: tuple[SizedBlob, ...] = (), label: str = "output",
                   sleep: bool = False, **_: Any) -> SizedBlob:
    """Stand-in body of every imported trace task.

    It returns a :class:`SizedBlob` of the recorded output size rather than real bytes, so
    running a large trace costs no memory. ``parents`` and ``inputs`` are accepted and
    ignored. With ``sleep=True`` it also waits ``runtime_ms`` to mimic the recorded run;
    by default it returns at once.

    >>> synthetic_task(runtime_ms=1500.0, output_bytes=64, label="t1")
    SizedBlob(name='t1', nbytes=64)
    """
    if sleep:
        time.sleep(runtime_ms / 1000.0)
    return SizedBlob(label, output_bytes)


@dataclass(frozen=True, slots=True)
class _RawTask:
    """One trace task as written in the file, before references are resolved."""

    task_id: str
    name: str
    category: str
    runtime_s: float
    parent_refs: tuple[str, ...]
    child_refs: tuple[str, ...]
    reads: tuple[str, ...]
    writes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _TraceTask:
    """One resolved trace task: what a node of the imported workflow needs."""

    task_id: str
    category: str
    runtime_s: float
    parents: tuple[str, ...]
    inputs: tuple[SizedBlob, ...]
    output_bytes: int
    read_bytes: int
    written_bytes: int


@dataclass(frozen=True, slots=True)
class _Trace:
    """A parsed, validated trace: tasks in topological order and bytes per edge."""

    name: str
    version: str
    tasks: tuple[_TraceTask, ...]
    edge_bytes: Mapping[tuple[str, str], int]


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """What a trace recorded of one executed task (see :func:`trace_task_records`).

    ``function`` is the task's category, the function name of its node in the imported
    workflow; ``read_bytes`` and ``written_bytes`` total the sizes of all the files the
    task read (workflow inputs included) and wrote; ``runtime_s`` is its
    ``runtimeInSeconds``.
    """

    task_id: str
    function: str
    runtime_s: float
    read_bytes: int
    written_bytes: int


@dataclass(frozen=True, slots=True)
class RecordedRun:
    """A trace read once (:func:`load_recorded_run`): the workflow and what its tasks did.

    ``tasks`` lists every task in the workflow's topological order; ``schema_version`` is
    the trace's ``schemaVersion`` as text.
    """

    path: str
    schema_version: str
    workflow: Workflow
    tasks: tuple[TaskRecord, ...]


# -- public functions ---------------------------------------------------------------------
def load_wfformat(path: str | os.PathLike[str], *, sleep: bool = False) -> Workflow:
    """Read a WfFormat trace as a :class:`Workflow` of synthetic tasks.

    Parameters
    ----------
    path : str or path-like
        A WfFormat JSON file, schema version 1.4, 1.5 or 1.6; a name ending in ``.gz`` is
        read as gzip-compressed JSON.
    sleep : bool
        Make the synthetic task bodies wait their recorded runtime when run (default:
        they return at once).

    Returns
    -------
    Workflow
        One node per trace task, with the trace's task ids. Each node calls
        :func:`synthetic_task` under a function named after its category, with its parent
        nodes as positional arguments (sorted by id), workflow input files as
        ``inputs=`` (:class:`SizedBlob`) and ``profile=TaskProfile(exec_ms, output_bytes)``
        where ``output_bytes`` counts the output files some child reads (all output files
        for a sink). The workflow is named after the trace; requirements are not detected.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    WorkflowFormatError
        The file is not a valid trace; the message names the task and field at fault.
    """
    return _build(_parse(path), sleep)


def load_recorded_run(path: str | os.PathLike[str]) -> RecordedRun:
    """Read a trace once as its workflow (:func:`load_wfformat`) and its task records.

    Raises like :func:`load_wfformat`.
    """
    trace = _parse(path)
    return RecordedRun(os.fspath(path), trace.version, _build(trace, False),
                       _task_records(trace))


def trace_task_records(path: str | os.PathLike[str]) -> tuple[str, list[TaskRecord]]:
    """The schema version and, per task in topological order, its function, recorded
    runtime and the total size of the files it read (workflow inputs included) and wrote.
    Raises like :func:`load_wfformat` (the trace is resolved and checked the same way)."""
    trace = _parse(path)
    return trace.version, list(_task_records(trace))


def _task_records(trace: _Trace) -> tuple[TaskRecord, ...]:
    return tuple(TaskRecord(t.task_id, t.category, t.runtime_s, t.read_bytes, t.written_bytes)
                 for t in trace.tasks)


def _build(trace: _Trace, sleep: bool) -> Workflow:
    """The workflow of synthetic tasks of a parsed trace (see :func:`load_wfformat`)."""
    functions: dict[str, TaskFunction] = {}
    nodes: dict[str, TaskNode] = {}
    has_child: set[str] = set()
    for t in trace.tasks:
        fn = functions.get(t.category)
        if fn is None:
            fn = functions[t.category] = TaskFunction(synthetic_task, name=t.category)
        profile = TaskProfile(exec_ms=t.runtime_s * 1000.0, output_bytes=t.output_bytes)
        nodes[t.task_id] = fn(*(nodes[p] for p in t.parents), task_id=t.task_id,
                              profile=profile, inputs=t.inputs, runtime_ms=profile.exec_ms,
                              output_bytes=t.output_bytes, label=t.task_id, sleep=sleep)
        has_child.update(t.parents)
    sinks = [nodes[t.task_id] for t in trace.tasks if t.task_id not in has_child]
    return Workflow(sinks, name=trace.name, detect=False)


def trace_edge_bytes(path: str | os.PathLike[str]) -> dict[tuple[str, str], int]:
    """Bytes on each dependency of a WfFormat trace.

    Returns ``{(parent_id, child_id): nbytes}`` for every edge of the workflow
    :func:`load_wfformat` builds from the same file, where ``nbytes`` is the total size of
    the files the parent writes and the child reads (0 for an edge that carries no file).
    Raises like :func:`load_wfformat`.
    """
    return dict(_parse(path).edge_bytes)


def trace_stem(path: str | os.PathLike[str]) -> str:
    """A trace file's name without its ``.json`` / ``.json.gz`` suffix (its run id).

    >>> trace_stem("traces/montage_1738t.json.gz")
    'montage_1738t'
    """
    name = Path(path).name
    for suffix in (".json.gz", ".gz", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# -- parsing ------------------------------------------------------------------------------
class _Reader:
    """Typed access to JSON values that fails with the file, task and field at fault."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, message: str, task: str | None = None, field: str | None = None
             ) -> NoReturn:
        raise WorkflowFormatError(self.path, message, task=task, field=field)

    def obj(self, value: Any, what: str, task: str | None = None,
            field: str | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(f"{what} must be a JSON object, got {type(value).__name__}", task, field)
        return value

    def items(self, value: Any, task: str | None, field: str) -> list[Any]:
        if value is None:
            self.fail("missing; expected a JSON list", task, field)
        if not isinstance(value, list):
            self.fail(f"expected a JSON list, got {type(value).__name__}", task, field)
        return value

    def tasks(self, container: Mapping[str, Any], field: str) -> list[Any]:
        tasks = self.items(container.get("tasks"), None, field)
        if not tasks:
            self.fail("the trace has no tasks", field=field)
        return tasks

    def text(self, record: Mapping[str, Any], key: str, task: str | None, where: str) -> str:
        if key not in record:
            self.fail(f"{where} has no {key!r}; every task needs one", task, key)
        value = record[key]
        if not isinstance(value, str) or not value:
            self.fail(f"{where}: {key!r} must be a non-empty string, got {value!r}", task, key)
        return value

    def names(self, record: Mapping[str, Any], key: str, task: str) -> tuple[str, ...]:
        """An optional list of strings (task or file references), duplicates dropped."""
        values = self.items(record.get(key, []), task, key)
        for v in values:
            if not isinstance(v, str):
                self.fail(f"entries must be strings, got {v!r}", task, key)
        return tuple(dict.fromkeys(values))

    def seconds(self, record: Mapping[str, Any], task: str) -> float:
        key = "runtimeInSeconds"
        if key not in record:
            self.fail("no runtimeInSeconds recorded; the importer needs every task's runtime",
                      task, key)
        value = record[key]
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or value < 0:
            self.fail(f"runtime must be a finite number of seconds >= 0, got {value!r}",
                      task, key)
        return float(value)

    def size(self, value: Any, what: str, task: str | None, field: str) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.fail(f"{what}: sizeInBytes must be an integer >= 0, got {value!r}",
                      task, field)
        return value


def _parse(path: str | os.PathLike[str]) -> _Trace:
    """Read, validate and resolve a trace file: the one parser behind the public functions."""
    where = os.fspath(path)
    try:
        raw_bytes = Path(where).read_bytes()
        if where.endswith(".gz"):
            raw_bytes = gzip.decompress(raw_bytes)
        text = raw_bytes.decode("utf-8")
    except (OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise FileNotFoundError(f"WfFormat trace not found: {where}") from None
        if isinstance(exc, IsADirectoryError | PermissionError):
            raise
        raise WorkflowFormatError(where, f"not a readable gzip file ({exc}); "
                                         "name plain JSON traces *.json") from None
    except UnicodeDecodeError as exc:
        raise WorkflowFormatError(where, f"not UTF-8 text ({exc.reason} at byte "
                                         f"{exc.start}); WfFormat traces are JSON") from None
    r = _Reader(where)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        r.fail(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
    doc = r.obj(doc, "the document")
    version = doc.get("schemaVersion")
    if str(version) not in SUPPORTED_VERSIONS:
        r.fail(f"unsupported schemaVersion {version!r}; supported versions are "
               f"{', '.join(SUPPORTED_VERSIONS)}", field="schemaVersion")
    if "workflow" not in doc:
        r.fail("no 'workflow' object; a WfFormat trace keeps its tasks under 'workflow'",
               field="workflow")
    workflow = r.obj(doc["workflow"], "'workflow'", field="workflow")
    if str(version) == "1.4":
        raw, sizes = _read_v14(r, workflow)
    else:
        raw, sizes = _read_v15(r, workflow)
    name = doc.get("name")
    return _resolve(r, raw, sizes, name if isinstance(name, str) and name else trace_stem(where),
                    str(version))


def _category(name: str, category: Any) -> str:
    if isinstance(category, str) and category:
        return category
    return _ID_SUFFIX.sub("", name) or name


def _read_v15(r: _Reader, workflow: dict[str, Any]
              ) -> tuple[list[_RawTask], dict[str, int]]:
    """Tasks of ``workflow.specification`` joined with runtimes of ``workflow.execution``."""
    if "specification" not in workflow:
        r.fail("no 'specification' object (schema 1.5 keeps the tasks there)",
               field="workflow.specification")
    spec = r.obj(workflow["specification"], "'specification'", field="workflow.specification")
    sizes: dict[str, int] = {}
    for i, f in enumerate(r.items(spec.get("files", []), None, "specification.files")):
        f = r.obj(f, f"files[{i}]", field="specification.files")
        fid = f.get("id")
        if not isinstance(fid, str) or not fid:
            r.fail(f"files[{i}] needs a non-empty string 'id', got {fid!r}",
                   field="specification.files")
        if fid in sizes:
            r.fail(f"file {fid!r} is listed twice", field="specification.files")
        sizes[fid] = r.size(f.get("sizeInBytes"), f"file {fid!r}", None, "sizeInBytes")

    if "execution" not in workflow:
        r.fail("no 'execution' object: schema 1.5 keeps each task's recorded "
               "runtimeInSeconds in workflow.execution.tasks, and the importer needs them",
               field="workflow.execution")
    runtimes: dict[str, float] = {}
    # Some engines embed input file names in task names (Epigenomics): the executed
    # program is then the better category, so that functions repeat across tasks.
    programs: dict[str, str] = {}
    execution = r.obj(workflow["execution"], "'execution'", field="workflow.execution")
    for i, e in enumerate(r.items(execution.get("tasks", []), None, "execution.tasks")):
        e = r.obj(e, f"execution.tasks[{i}]", field="execution.tasks")
        tid = r.text(e, "id", None, f"execution.tasks[{i}]")
        if tid in runtimes:
            r.fail("task has two execution records", tid, "execution.tasks")
        runtimes[tid] = r.seconds(e, tid)
        command = e.get("command")
        if isinstance(command, dict) and isinstance(command.get("program"), str):
            programs[tid] = command["program"]

    raw: list[_RawTask] = []
    seen: set[str] = set()
    for i, t in enumerate(r.tasks(spec, "specification.tasks")):
        t = r.obj(t, f"specification.tasks[{i}]", field="specification.tasks")
        tid = r.text(t, "id", None, f"specification.tasks[{i}]")
        name = r.text(t, "name", tid, f"specification.tasks[{i}]")
        if tid in seen:
            r.fail("task id used twice; task ids must be unique", tid, "id")
        seen.add(tid)
        if tid not in runtimes:
            r.fail("no execution record with runtimeInSeconds for this task; add one to "
                   "workflow.execution.tasks", tid, "runtimeInSeconds")
        reads, writes = r.names(t, "inputFiles", tid), r.names(t, "outputFiles", tid)
        for key, files in (("inputFiles", reads), ("outputFiles", writes)):
            unknown = [f for f in files if f not in sizes]
            if unknown:
                r.fail(f"file {unknown[0]!r} is not listed in specification.files", tid, key)
        raw.append(_RawTask(tid, name, _category(name, t.get("category") or programs.get(tid)),
                            runtimes[tid],
                            r.names(t, "parents", tid), r.names(t, "children", tid),
                            reads, writes))
    stray = [tid for tid in runtimes if tid not in seen]
    if stray:
        r.fail("execution record for a task missing from specification.tasks",
               stray[0], "execution.tasks")
    return raw, sizes


def _read_v14(r: _Reader, workflow: dict[str, Any]
              ) -> tuple[list[_RawTask], dict[str, int]]:
    """Flat ``workflow.tasks[]`` whose ``files[]`` carry link, name and size."""
    raw: list[_RawTask] = []
    written: dict[str, int] = {}
    read: dict[str, int] = {}
    for i, t in enumerate(r.tasks(workflow, "workflow.tasks")):
        t = r.obj(t, f"workflow.tasks[{i}]", field="workflow.tasks")
        tid = r.text(t, "id", None, f"workflow.tasks[{i}]")
        name = r.text(t, "name", tid, f"workflow.tasks[{i}]")
        runtime = r.seconds(t, tid)
        reads: dict[str, None] = {}
        writes: dict[str, None] = {}
        for j, f in enumerate(r.items(t.get("files", []), tid, "files")):
            field = f"files[{j}]"
            f = r.obj(f, field, tid, field)
            fname, link = f.get("name"), f.get("link")
            if not isinstance(fname, str) or not fname:
                r.fail(f"file needs a non-empty string 'name', got {fname!r}", tid,
                       f"{field}.name")
            if link not in ("input", "output"):
                r.fail(f"link must be 'input' or 'output', got {link!r}", tid, f"{field}.link")
            nbytes = r.size(f.get("sizeInBytes"), f"file {fname!r}", tid,
                            f"{field}.sizeInBytes")
            # The writer's record of a file's size wins over readers' records.
            if link == "output":
                writes[fname] = None
                written.setdefault(fname, nbytes)
            else:
                reads[fname] = None
                read.setdefault(fname, nbytes)
        raw.append(_RawTask(tid, name, _category(name, t.get("category")), runtime,
                            r.names(t, "parents", tid), r.names(t, "children", tid),
                            tuple(reads), tuple(writes)))
    return raw, read | written


def _resolve(r: _Reader, raw: list[_RawTask], sizes: Mapping[str, int], name: str,
             version: str) -> _Trace:
    """Resolve references, order the tasks and attach the bytes of files and edges."""
    by_id: dict[str, _RawTask] = {}
    for t in raw:
        if t.task_id in by_id:
            r.fail("task id used twice; task ids must be unique", t.task_id, "id")
        by_id[t.task_id] = t
    by_name: dict[str, list[str]] = {}
    for t in raw:
        by_name.setdefault(t.name, []).append(t.task_id)

    def lookup(ref: str, task: str, field: str) -> str:
        # Ids first: they are unique. Pegasus 1.4 files name parents by task name instead.
        if ref in by_id:
            return ref
        matches = by_name.get(ref, [])
        if len(matches) == 1:
            return matches[0]
        if matches:
            r.fail(f"{ref!r} is the name of several tasks {matches}; refer to one by id",
                   task, field)
        r.fail(f"refers to task {ref!r}, which is not in the trace", task, field)

    parents: dict[str, set[str]] = {tid: set() for tid in by_id}
    children: dict[str, set[str]] = {tid: set() for tid in by_id}
    for t in raw:
        for ref in t.parent_refs:
            p = lookup(ref, t.task_id, "parents")
            parents[t.task_id].add(p)
            children[p].add(t.task_id)
        for ref in t.child_refs:
            c = lookup(ref, t.task_id, "children")
            children[t.task_id].add(c)
            parents[c].add(t.task_id)

    order = _kahn(r, parents, children)
    written = {f for t in raw for f in t.writes}
    edge_bytes: dict[tuple[str, str], int] = {}
    tasks: list[_TraceTask] = []
    for tid in order:
        t = by_id[tid]
        outs = set(t.writes)
        if children[tid]:
            consumed: set[str] = set()
            for c in sorted(children[tid]):
                shared = outs.intersection(by_id[c].reads)
                edge_bytes[(tid, c)] = sum(sizes[f] for f in shared)
                consumed |= shared
            outs = consumed
        inputs = tuple(SizedBlob(f, sizes[f]) for f in t.reads if f not in written)
        tasks.append(_TraceTask(tid, t.category, t.runtime_s, tuple(sorted(parents[tid])),
                                inputs, sum(sizes[f] for f in outs),
                                sum(sizes[f] for f in t.reads), sum(sizes[f] for f in t.writes)))
    return _Trace(name, version, tuple(tasks), edge_bytes)


def _kahn(r: _Reader, parents: Mapping[str, set[str]], children: Mapping[str, set[str]]
          ) -> list[str]:
    """Topological order (Kahn's algorithm, smallest id first so file order does not matter).

    Raises naming a task on a cycle, and the cycle itself, if there is one.
    """
    waiting = {tid: len(ps) for tid, ps in parents.items()}
    ready = [tid for tid, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        tid = heapq.heappop(ready)
        order.append(tid)
        for c in children[tid]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, c)
    if len(order) == len(parents):
        return order
    # Every task left over still waits on a left-over parent, so walking up parents from
    # any of them must come back to a task already visited: that task is on a cycle.
    left = {tid for tid, n in waiting.items() if n > 0}
    walk: list[str] = []
    seen: dict[str, int] = {}
    cur = min(left)
    while cur not in seen:
        seen[cur] = len(walk)
        walk.append(cur)
        cur = min(p for p in parents[cur] if p in left)
    loop = walk[seen[cur]:][::-1]  # walked child -> parent; show parent -> child
    cycle = [*loop, loop[0]]
    r.fail(f"the dependencies form a cycle: {' -> '.join(cycle)}; a workflow must be "
           "acyclic", cur, "parents")
