"""Real runs as metrics: WfCommons WfFormat traces read as metrics records.

A WfFormat trace records one real execution of a workflow. :func:`records_from_wfformat`
turns each executed task into one metrics record, so that the predictors learn from real
runs exactly as from simulated or Redis runs:

==================  ===========================================================================
record field        taken from
==================  ===========================================================================
``workflow_hash``   the structure hash of the imported instance (:func:`load_wfformat`), so a
                    task of a workflow being planned matches its own past executions
``run_id``          the file name without ``.json`` / ``.json.gz``
``planner``         ``"wfformat"`` (the trace was not planned by faasplan)
``task``            the trace's task id
``function``        the task's category (its function name in the imported workflow)
``memory_mb``       the platform's reference memory (1769 MB: one vCPU), unless given: a
                    recorded runtime is taken as the runtime of a worker holding one core
``input_bytes``     total size of the files the task read, workflow inputs included
``output_bytes``    total size of the files the task wrote
``exec_ms``         ``runtimeInSeconds`` * 1000
transfers, start    none recorded (``startup = "none"``)
==================  ===========================================================================

:func:`load_history` reads a mix of Parquet metrics stores and traces; :func:`workflow_types`
groups a history by workflow type (the set of function names: scaled instances of one
application differ in structure but share their functions), and :func:`single_type` refuses a
history that mixes types.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from faasplan.predictors.metrics import (
    MetricsError,
    MetricsRecord,
    load_metrics,
    records_to_frame,
    validate_records,
)
from faasplan.workflow.wfformat import load_wfformat, trace_stem, trace_task_records

__all__ = ["REFERENCE_MEMORY_MB", "load_history", "records_from_wfformat", "single_type",
           "workflow_types"]

#: Memory a recorded runtime is mapped to (``faasplan.Platform().reference_memory_mb``).
REFERENCE_MEMORY_MB = 1769
TRACE_SUFFIXES = (".json", ".json.gz")

Paths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def _paths(paths: Paths) -> list[str]:
    if isinstance(paths, str | os.PathLike):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths]


def records_from_wfformat(paths: Paths, *, memory_mb: int | None = None,
                          planner: str = "wfformat") -> pd.DataFrame:
    """Metrics records of the executed tasks of WfFormat traces, one row per task.

    Parameters
    ----------
    paths
        One trace or several (``.json`` or ``.json.gz``, schema 1.4, 1.5 or 1.6; one schema
        version per call).
    memory_mb
        Memory to record (default :data:`REFERENCE_MEMORY_MB`; see the module docs).
    planner
        The ``planner`` column.

    Raises
    ------
    FileNotFoundError
        A trace does not exist.
    faasplan.workflow.WorkflowFormatError
        A trace is invalid (e.g. no execution record for a task); the message names the
        file, task and field.
    MetricsError
        Traces of two schema versions in one call, or a trace whose runtimes are all zero.
    """
    files = _paths(paths)
    if not files:
        raise MetricsError("records_from_wfformat: no trace given")
    memory = REFERENCE_MEMORY_MB if memory_mb is None else int(memory_mb)
    records: list[MetricsRecord] = []
    versions: dict[str, str] = {}
    for path in files:
        version, tasks = trace_task_records(path)
        versions[path] = version
        if len(set(versions.values())) > 1:
            listed = ", ".join(f"{p} (schema {v})" for p, v in versions.items())
            raise MetricsError(f"records_from_wfformat: traces of different schema versions "
                               f"in one history: {listed}; read them in separate calls, one "
                               "version each, and concatenate the frames")
        if not any(t.runtime_s > 0 for t in tasks):
            raise MetricsError(f"{path}: every runtimeInSeconds is 0: nothing to learn from; "
                               "give a trace of a real run")
        wf_hash = load_wfformat(path).structure_hash
        run_id = trace_stem(path)
        records.extend(MetricsRecord(wf_hash, run_id, planner, t.task_id, t.function, memory,
                                     t.read_bytes, t.written_bytes, t.runtime_s * 1000.0)
                       for t in tasks)
    frame = records_to_frame(records)
    validate_records(frame)
    return frame


def load_history(paths: Paths) -> pd.DataFrame:
    """One metrics frame from Parquet metrics stores and WfFormat traces, in any mix.

    Traces of one schema version are read together (:func:`records_from_wfformat`); a path
    that is neither ``.parquet`` nor a trace gets a :class:`MetricsError` naming it.
    """
    files = _paths(paths)
    if not files:
        raise MetricsError("no history given: pass metrics .parquet files or WfFormat traces")
    frames: list[pd.DataFrame] = []
    traces: list[str] = []
    for path in files:
        if path.endswith(TRACE_SUFFIXES):
            traces.append(path)
        elif path.endswith(".parquet"):
            frames.append(load_metrics(path))
        else:
            raise MetricsError(f"{path}: not a history file; give a metrics store (.parquet) "
                               "or a WfFormat trace (.json, .json.gz)")
    by_version: dict[str, list[str]] = {}
    for path in traces:
        if not Path(path).is_file():
            raise FileNotFoundError(f"history file not found: {path}")
        by_version.setdefault(trace_task_records(path)[0], []).append(path)
    frames.extend(records_from_wfformat(group) for group in by_version.values())
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    validate_records(frame)
    return frame


def _type_name(functions: Iterable[str]) -> str:
    names = sorted(functions)
    digest = hashlib.sha256("\x00".join(names).encode()).hexdigest()[:8]
    label = "+".join(names)
    if len(label) > 48:
        label = label[:45] + "..."
    return f"{label}#{digest}"


def workflow_types(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A history grouped by workflow type: runs with equal sets of function names.

    Keys are readable and stable: the sorted function names (truncated) and a short hash of
    the full set. Values keep the frame's rows of that type, in their order.
    """
    if not len(frame):
        return {}
    names = {str(run): _type_name(set(grp.astype(str)))
             for run, grp in frame.groupby("run_id")["function"]}
    keys = frame["run_id"].map(names)
    return {str(k): grp for k, grp in frame.groupby(keys, sort=True)}


def single_type(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """``frame`` if it holds one workflow type; else a :class:`MetricsError` naming
    ``source`` and the types found (histories of different workflows are never mixed)."""
    types = workflow_types(frame)
    if len(types) <= 1:
        return frame
    listed = "; ".join(f"{name} ({grp['run_id'].nunique()} runs)"
                       for name, grp in types.items())
    raise MetricsError(f"{source}: the history mixes {len(types)} workflow types: {listed}; "
                       "pass the files of one type only")
