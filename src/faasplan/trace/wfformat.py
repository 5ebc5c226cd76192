"""A run as a WfCommons WfFormat 1.5 instance, for WfCommons' own tools to analyse.

:func:`trace_to_wfformat` writes what a :class:`~faasplan.trace.Trace` recorded, simulated
or real, in the layout WfCommons' instances use:

=================================  ==========================================================
WfFormat                           taken from
=================================  ==========================================================
``specification.tasks``            the workflow: one task per node, ``name`` its function,
                                   ``parents``/``children`` its edges
``specification.files``            one output file per task (``<task>.output``, the task's
                                   ``output_bytes``), read by every child; the
                                   :class:`~faasplan.SizedBlob` inputs of a task under their
                                   own names; other large literal inputs as one
                                   ``<task>.input`` file (what ``input_bytes`` counts beyond
                                   the parents' outputs and the blobs)
``execution.tasks``                ``runtimeInSeconds`` = ``exec_ms`` / 1000, ``executedAt``
                                   = the run's start + ``exec_start_ms``, ``readBytes`` /
                                   ``writtenBytes`` = ``input_bytes`` / ``output_bytes``,
                                   ``command.program`` the function, ``machines`` its worker
``execution.machines``             one machine per worker: ``nodeName`` its label made a valid
                                   host name, ``memoryInBytes`` its memory, ``cpu.coreCount``
                                   the cores its vCPU share spans and ``cpu.vcpuShare`` the
                                   share itself (the platform's memory -> vCPU rule)
``execution.makespanInSeconds``    the trace's makespan
``runtimeSystem``                  ``faasplan`` and its version
=================================  ==========================================================

:func:`faasplan.load_wfformat` reads the result back as the same tasks (ids, functions),
edges and bytes, and :func:`faasplan.predictors.records_from_wfformat` as one metrics record
per task with the exported runtimes.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from faasplan.workflow import SizedBlob, Workflow, iter_leaves

if TYPE_CHECKING:
    from faasplan.platform import Platform

__all__ = ["EPOCH", "SCHEMA_VERSION", "TraceTables", "dump_wfformat", "trace_to_wfformat",
           "write_wfformat"]

#: The WfFormat schema version written.
SCHEMA_VERSION = "1.5"

#: When a run has no date of its own (a simulation), its times count from this instant.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The characters WfFormat 1.5 allows in task references and in file ids.
_TASK_REF = re.compile(r"^[0-9a-zA-Z_.-]+$")
_FILE_ID_BAD = re.compile(r"[^0-9a-zA-Z_./:-]")
_HOST_BAD = re.compile(r"[^0-9a-zA-Z-]+")
_HOST_LABEL_CHARS = 63


class TraceTables(Protocol):
    """The parts of a :class:`~faasplan.trace.Trace` the export reads."""

    @property
    def tasks(self) -> pd.DataFrame:
        """One row per task (``task``, ``function``, ``worker``, ``exec_start_ms``, ...)."""
        ...

    @property
    def workers(self) -> pd.DataFrame:
        """One row per invocation (``worker``, ``memory_mb``, ...)."""
        ...

    @property
    def makespan_ms(self) -> float:
        """The run's makespan."""
        ...

    @property
    def workflow_hash(self) -> str:
        """Structure hash of the workflow run (may be empty)."""
        ...

    @property
    def workflow_name(self) -> str:
        """Name of the workflow run (may be empty)."""
        ...


def trace_to_wfformat(trace: TraceTables, workflow: Workflow, *, name: str | None = None,
                      platform: Platform | None = None, executed_at: datetime | None = None,
                      description: str | None = None) -> dict[str, Any]:
    """A run as a WfFormat 1.5 document (see the module docs for every field).

    Parameters
    ----------
    trace : Trace
        A simulated or real run of ``workflow`` (only its public tables and totals are read).
    workflow : Workflow
        The workflow that ran: its edges and its tasks' :class:`~faasplan.SizedBlob` inputs.
    name : str, optional
        The instance name (default: the trace's workflow name, else the workflow's).
    platform : Platform, optional
        Its memory -> vCPU rule gives each machine's vCPU share (default: ``Platform()``).
    executed_at : datetime, optional
        When the run started, timezone-aware (default: the Unix epoch, for a simulation's
        clock that starts at 0).
    description : str, optional
        The instance description (default: one naming faasplan and the workflow).

    Returns
    -------
    dict
        A JSON-ready document that validates against the WfFormat 1.5 JSON Schema.

    Raises
    ------
    ValueError
        The trace is not a run of ``workflow`` (other structure hash, other task ids), or a
        task id has characters WfFormat does not allow in ``parents``/``children``, or
        ``executed_at`` has no timezone.

    Examples
    --------
    >>> from faasplan import Workflow, simulate, task
    >>> @task
    ... def inc(x):
    ...     return x + 1
    >>> wf = Workflow(inc(inc(1)), name="two")
    >>> doc = trace_to_wfformat(simulate(wf), wf)
    >>> [t["id"] for t in doc["workflow"]["specification"]["tasks"]]
    ['inc-0', 'inc-1']
    >>> doc["runtimeSystem"]["name"], doc["schemaVersion"]
    ('faasplan', '1.5')
    """
    from faasplan.platform import Platform

    start = EPOCH if executed_at is None else executed_at
    if start.tzinfo is None:
        raise ValueError(f"executed_at {start.isoformat()} has no timezone; give an aware "
                         "datetime, e.g. datetime.now(timezone.utc)")
    rows = _task_rows(trace, workflow)
    machines = _machines(trace.workers, rows, platform or Platform())
    files = _Files()
    spec_tasks = [_spec_task(workflow, tid, rows, files) for tid in workflow.topological_order]
    exec_tasks = [_exec_task(tid, rows[tid], start, machines) for tid in workflow.topological_order]
    label = name or trace.workflow_name or workflow.name
    return {
        "name": label,
        "description": description or f"{label}: a run of the faasplan workflow "
                                      f"{workflow.name!r}, exported by faasplan",
        "schemaVersion": SCHEMA_VERSION,
        "runtimeSystem": {"name": "faasplan", "version": _version()},
        "workflow": {
            "specification": {"tasks": spec_tasks, "files": files.listing()},
            "execution": {
                "makespanInSeconds": float(trace.makespan_ms) / 1000.0,
                "executedAt": _timestamp(start, 0.0),
                "tasks": exec_tasks,
                "machines": [m for _, m in sorted(machines.values(),
                                                  key=lambda nm: nm[1]["nodeName"])],
            },
        },
    }


def write_wfformat(trace: TraceTables, workflow: Workflow, path: str | os.PathLike[str], *,
                   name: str | None = None, platform: Platform | None = None,
                   executed_at: datetime | None = None, description: str | None = None
                   ) -> Path:
    """Write :func:`trace_to_wfformat` to ``path`` (see :func:`dump_wfformat`).

    Returns the path written. Raises like :func:`trace_to_wfformat`, and ``OSError`` when
    the file cannot be written.
    """
    doc = trace_to_wfformat(trace, workflow, name=name, platform=platform,
                            executed_at=executed_at, description=description)
    return dump_wfformat(doc, path)


def dump_wfformat(doc: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a WfFormat document as JSON, gzip-compressed if ``path`` ends in ``.gz``.

    The file is replaced at once (written beside it, then renamed), so a reader never
    sees half of it. Returns the path written.
    """
    out = Path(path)
    data = (json.dumps(doc, indent=1) + "\n").encode("utf-8")
    if out.name.lower().endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return out


# -- tasks --------------------------------------------------------------------------------
def _task_rows(trace: TraceTables, workflow: Workflow) -> dict[str, dict[str, Any]]:
    """The trace's task rows by id, checked to be those of ``workflow``."""
    if trace.workflow_hash and trace.workflow_hash != workflow.structure_hash:
        raise ValueError(f"the trace is of workflow hash {trace.workflow_hash!r}, not of "
                         f"{workflow.name!r} (hash {workflow.structure_hash!r}); export a "
                         "trace with the workflow that ran")
    rows: dict[str, dict[str, Any]] = {
        str(r["task"]): {str(k): v for k, v in r.items()}
        for r in trace.tasks.to_dict(orient="records")}
    missing = [t for t in workflow.topological_order if t not in rows]
    unknown = sorted(set(rows) - set(workflow.tasks))
    if missing or unknown:
        raise ValueError(f"the trace does not match workflow {workflow.name!r}: tasks missing "
                         f"from the trace {missing[:3]}, tasks not in the workflow "
                         f"{unknown[:3]}; export a trace with the workflow that ran")
    for tid in workflow.topological_order:
        if not _TASK_REF.match(tid):
            raise ValueError(f"task id {tid!r} has characters WfFormat does not allow in "
                             "parents/children (letters, digits, '-', '_', '.'); give the "
                             "task another task_id")
    return rows


def _spec_task(workflow: Workflow, tid: str, rows: Mapping[str, Mapping[str, Any]],
               files: _Files) -> dict[str, Any]:
    node = workflow.node(tid)
    parents = [p for p in dict.fromkeys(workflow.upstream(tid)) if p in workflow.tasks]
    inputs = [files.output_of(p, int(rows[p]["output_bytes"])) for p in parents]
    blobs = list(dict.fromkeys(iter_leaves((node.args, node.kwargs), SizedBlob)))
    inputs += [files.blob(b) for b in blobs]
    rest = int(rows[tid]["input_bytes"]) - sum(int(rows[p]["output_bytes"]) for p in parents) \
        - sum(b.nbytes for b in blobs)
    if rest > 0:
        inputs.append(files.literals_of(tid, rest))
    return {
        "name": node.func.name,
        "id": tid,
        "parents": parents,
        "children": list(dict.fromkeys(workflow.downstream(tid))),
        "inputFiles": list(dict.fromkeys(inputs)),
        "outputFiles": [files.output_of(tid, int(rows[tid]["output_bytes"]))],
    }


def _exec_task(tid: str, row: Mapping[str, Any], start: datetime,
               machines: Mapping[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return {
        "id": tid,
        "runtimeInSeconds": float(row["exec_ms"]) / 1000.0,
        "executedAt": _timestamp(start, float(row["exec_start_ms"])),
        "command": {"program": str(row["function"])},
        "readBytes": int(row["input_bytes"]),
        "writtenBytes": int(row["output_bytes"]),
        "machines": [machines[str(row["worker"])][0]],
    }


def _version() -> str:
    # The installed distribution's version: importing the faasplan package itself here
    # would load every part of it into the trace layer.
    try:
        return metadata.version("faasplan")
    except metadata.PackageNotFoundError:
        return "unknown"


def _timestamp(start: datetime, offset_ms: float) -> str:
    return (start + timedelta(milliseconds=offset_ms)).isoformat(timespec="microseconds")


# -- files --------------------------------------------------------------------------------
class _Files:
    """The files of one document: unique ids, each listed once with its size."""

    def __init__(self) -> None:
        self._sizes: dict[str, int] = {}
        self._keys: dict[tuple[str, str, int], str] = {}

    def _add(self, key: tuple[str, str, int], wanted: str) -> str:
        if key in self._keys:
            return self._keys[key]
        base = _FILE_ID_BAD.sub("_", wanted) or "file"
        fid, n = base, 1
        while fid in self._sizes:
            n += 1
            fid = f"{base}.{n}"
        self._sizes[fid] = key[2]
        self._keys[key] = fid
        return fid

    def output_of(self, tid: str, nbytes: int) -> str:
        return self._add(("output", tid, nbytes), f"{tid}.output")

    def literals_of(self, tid: str, nbytes: int) -> str:
        return self._add(("literals", tid, nbytes), f"{tid}.input")

    def blob(self, blob: SizedBlob) -> str:
        return self._add(("blob", blob.name, blob.nbytes), blob.name)

    def listing(self) -> list[dict[str, Any]]:
        return [{"id": fid, "sizeInBytes": size} for fid, size in self._sizes.items()]


# -- machines -----------------------------------------------------------------------------
def _machines(workers: pd.DataFrame, rows: Mapping[str, Mapping[str, Any]],
              platform: Platform) -> dict[str, tuple[str, dict[str, Any]]]:
    """Worker label -> (host name, WfFormat machine), for every worker that ran a task."""
    memory: dict[str, int] = {}
    for label, mb in zip(workers["worker"].astype(str), workers["memory_mb"], strict=True):
        memory.setdefault(label, int(mb))
    for row in rows.values():
        memory.setdefault(str(row["worker"]), int(row["memory_mb"]))
    names = _host_names(memory)
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for label, mb in memory.items():
        share = platform.vcpu(mb)
        out[label] = (names[label], {
            "nodeName": names[label],
            "memoryInBytes": mb * 1024 * 1024,
            "cpu": {"coreCount": max(1, math.ceil(share - 1e-9)), "vcpuShare": share},
        })
    return out


def _host_names(labels: Iterable[str]) -> dict[str, str]:
    """A distinct valid host name (RFC 1123 label) per worker label."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for label in labels:
        base = _HOST_BAD.sub("-", label).strip("-")[:_HOST_LABEL_CHARS].strip("-") or "worker"
        host, n = base, 1
        while host.lower() in used:
            n += 1
            suffix = f"-{n}"
            host = base[:_HOST_LABEL_CHARS - len(suffix)].rstrip("-") + suffix
        used.add(host.lower())
        out[label] = host
    return out
