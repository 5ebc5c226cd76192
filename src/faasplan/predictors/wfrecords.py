"""Real runs as metrics: WfCommons WfFormat traces read as metrics records.

A WfFormat trace records one real execution of a workflow. :func:`records_from_wfformat`
turns each executed task into one metrics record, so that the predictors learn from real
runs exactly as from simulated or Redis runs:

==================  ===========================================================================
record field        taken from
==================  ===========================================================================
``workflow_hash``   the structure hash of the imported instance (:func:`load_wfformat`), so a
                    task of a workflow being planned matches its own past executions
``run_id``          the file name without ``.json`` / ``.json.gz`` (:func:`trace_stem`)
``planner``         ``"wfformat"`` (the trace was not planned by faasplan)
``task``            the trace's task id
``function``        the task's category (its function name in the imported workflow)
``memory_mb``       the platform's reference memory (``Platform().reference_memory_mb``)
                    unless given: a recorded runtime is taken as the runtime at the
                    reference memory
``input_bytes``     total size of the files the task read, workflow inputs included
``output_bytes``    total size of the files the task wrote
``exec_ms``         ``runtimeInSeconds`` * 1000
transfers, start    none recorded: no downloads or uploads, ``startup = "none"``, 0 ms
==================  ===========================================================================

The memory of the machines a trace lists (``execution.machines``) is not used: a host's
memory is not the memory limit of a function.

:func:`load_history` reads a mix of Parquet metrics stores and traces;
:func:`workflow_types` groups a history by workflow type (the set of function names:
scaled instances of one application differ in structure but share their functions), and
:func:`single_type` refuses a history that mixes types.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from faasplan.predictors.metrics import (
    MetricsError,
    MetricsRecord,
    load_metrics,
    records_to_frame,
    validate_records,
)
from faasplan.workflow.errors import WorkflowFormatError
from faasplan.workflow.wfformat import RecordedRun, load_recorded_run, trace_stem

__all__ = ["METRICS_SUFFIXES", "TRACE_SUFFIXES", "load_history", "records_from_wfformat",
           "single_type", "workflow_types"]

#: File name endings read as WfFormat traces (compared in lower case).
TRACE_SUFFIXES: tuple[str, ...] = (".json", ".json.gz")
#: File name endings read as Parquet metrics stores (compared in lower case).
METRICS_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")

PathArg = str | os.PathLike[str]
Paths = PathArg | Iterable[PathArg]

_TYPE_LABEL_CHARS = 48


def _paths(paths: Paths) -> list[str]:
    if isinstance(paths, str | os.PathLike):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths]


def _is_trace(path: str) -> bool:
    return path.lower().endswith(TRACE_SUFFIXES)


def _is_metrics(path: str) -> bool:
    return path.lower().endswith(METRICS_SUFFIXES)


def _reference_memory_mb() -> int:
    # Imported here: the simulator package pulls in SimPy, which reading traces never needs.
    from faasplan.platform import Platform

    return int(Platform().reference_memory_mb)


def _read_traces(files: list[str]) -> list[RecordedRun]:
    """Parse every trace once; refuse unknown endings, repeated run ids, mixed versions and
    traces with nothing to learn from."""
    runs: list[RecordedRun] = []
    stems: dict[str, str] = {}
    for path in files:
        if not _is_trace(path):
            raise MetricsError(f"{path}: not a WfFormat trace by its name; traces end in "
                               f"{' or '.join(TRACE_SUFFIXES)}")
        stem = trace_stem(path)
        if stem in stems:
            raise MetricsError(f"{stems[stem]} and {path} have the same run id {stem!r} (the "
                               "file name without its suffix); pass each run once, under "
                               "distinct file names")
        stems[stem] = path
        run = load_recorded_run(path)
        if not any(t.runtime_s > 0 for t in run.tasks):
            raise WorkflowFormatError(
                path, f"every one of its {len(run.tasks)} tasks has runtimeInSeconds 0: "
                      "nothing to learn from; give the trace of a measured run",
                field="runtimeInSeconds")
        if runs and run.schema_version != runs[0].schema_version:
            first = runs[0]
            raise MetricsError(
                f"traces of two schema versions in one history: {first.path} is schema "
                f"{first.schema_version} and {path} is schema {run.schema_version}; pass "
                "traces of one schemaVersion (their runtimes may not be recorded alike)")
        runs.append(run)
    return runs


def _frame(runs: list[RecordedRun], memory_mb: int | None, planner: str) -> pd.DataFrame:
    memory = _reference_memory_mb() if memory_mb is None else memory_mb
    records: list[MetricsRecord] = []
    for run in runs:
        wf_hash = run.workflow.structure_hash
        run_id = trace_stem(run.path)
        records.extend(MetricsRecord(wf_hash, run_id, planner, t.task_id, t.function, memory,
                                     t.read_bytes, t.written_bytes, t.runtime_s * 1000.0)
                       for t in run.tasks)
    frame = records_to_frame(records)
    validate_records(frame)
    return frame


def records_from_wfformat(paths: Paths, *, memory_mb: int | None = None,
                          planner: str = "wfformat") -> pd.DataFrame:
    """Metrics records of the executed tasks of WfFormat traces, one row per task.

    Parameters
    ----------
    paths : path or iterable of paths
        One trace or several (``.json`` or ``.json.gz``; schema 1.4, 1.5 or 1.6, one
        schema version per call). Each file is one run; its run id is its name without
        the suffix, so two files of one call must have different names.
    memory_mb : int, optional
        Memory recorded for every task. By default the platform's reference memory
        (``faasplan.simulator.Platform().reference_memory_mb``): a recorded runtime is
        taken as the runtime at the reference memory. See the module docs for every field.
    planner : str
        The ``planner`` column.

    Returns
    -------
    pandas.DataFrame
        A metrics frame (the columns and dtypes of :func:`records_to_frame`, validated),
        the traces in the order given and each trace's tasks in topological order.

    Raises
    ------
    FileNotFoundError
        A trace does not exist.
    faasplan.workflow.WorkflowFormatError
        A trace is invalid: not JSON, no ``workflow.execution`` (schema 1.5), a task
        without a runtime, every runtime 0, ...; the message names the file and field.
    MetricsError
        No trace given, a name that does not end in ``.json`` / ``.json.gz``, two files of
        one run id, or traces of two schema versions (both are named with their versions).

    Examples
    --------
    >>> from faasplan.data import trace_path
    >>> frame = records_from_wfformat([trace_path("blast_43t")])
    >>> len(frame), frame["run_id"].iloc[0]
    (43, 'blast_43t')
    """
    files = _paths(paths)
    if not files:
        raise MetricsError("records_from_wfformat: no trace given; pass WfFormat traces "
                           f"({', '.join(TRACE_SUFFIXES)})")
    return _frame(_read_traces(files), memory_mb, planner)


def load_history(paths: Paths) -> pd.DataFrame:
    """One validated metrics frame from Parquet metrics stores and WfFormat traces.

    Files ending in ``.parquet`` / ``.pq`` are read with :func:`load_metrics`, files ending
    in ``.json`` / ``.json.gz`` with :func:`records_from_wfformat` (all the traces in one
    call: one schema version, distinct run ids). Rows come in the order of the files.

    Raises
    ------
    FileNotFoundError
        A file does not exist (it is named).
    MetricsError
        No file given, a file that is neither a metrics store nor a trace by its name, a
        trace whose run is also in a metrics store given, or anything
        :func:`load_metrics` or :func:`records_from_wfformat` refuses.
    faasplan.workflow.WorkflowFormatError
        A trace is invalid (see :func:`records_from_wfformat`).
    """
    files = _paths(paths)
    if not files:
        raise MetricsError("no history given: pass metrics stores "
                           f"({', '.join(METRICS_SUFFIXES)}) or WfFormat traces "
                           f"({', '.join(TRACE_SUFFIXES)})")
    for path in files:
        if not (_is_trace(path) or _is_metrics(path)):
            raise MetricsError(f"{path}: not a history file by its name; give a metrics "
                               f"store ({', '.join(METRICS_SUFFIXES)}) or a WfFormat trace "
                               f"({', '.join(TRACE_SUFFIXES)})")
        if not Path(path).exists():
            raise FileNotFoundError(f"history file not found: {path}")
    traces = [p for p in files if _is_trace(p)]
    from_traces = records_from_wfformat(traces) if traces else None
    stores = {p: load_metrics(p) for p in files if _is_metrics(p)}
    if from_traces is not None:
        _refuse_repeated_runs(from_traces, stores)
    frames: list[pd.DataFrame] = []
    for path in files:
        if path in stores:
            frames.append(stores[path])
        elif from_traces is not None:
            frames.append(from_traces[from_traces["run_id"] == trace_stem(path)])
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 \
        else frames[0].reset_index(drop=True)
    validate_records(frame)
    return frame


def _refuse_repeated_runs(from_traces: pd.DataFrame, stores: dict[str, pd.DataFrame]) -> None:
    """A run read from a trace and also found in a metrics store would count twice."""
    runs = set(zip(from_traces["workflow_hash"], from_traces["run_id"], strict=True))
    for path, store in stores.items():
        both = runs & set(zip(store["workflow_hash"], store["run_id"], strict=True))
        if both:
            run_id = sorted(both)[0][1]
            raise MetricsError(f"run {run_id!r} is both a trace given and a run in {path}; "
                               "pass each run once")


# -- workflow types -------------------------------------------------------------------------


def _type_name(functions: Iterable[str]) -> str:
    """Readable and stable: the sorted function names (truncated) and a hash of all."""
    names = sorted(set(functions))
    digest = hashlib.sha256("\x00".join(names).encode()).hexdigest()[:8]
    label = "+".join(names)
    if len(label) > _TYPE_LABEL_CHARS:
        label = label[: _TYPE_LABEL_CHARS - 3] + "..."
    return f"{label}#{digest}"


def _run_types(frame: pd.DataFrame) -> pd.Series:
    """The type name of each row's run (a run is one ``(workflow_hash, run_id)``)."""
    runs = list(zip(frame["workflow_hash"].astype(str), frame["run_id"].astype(str),
                    strict=True))
    functions: dict[tuple[str, str], set[str]] = {}
    for run, function in zip(runs, frame["function"].astype(str), strict=True):
        functions.setdefault(run, set()).add(function)
    names = {run: _type_name(fns) for run, fns in functions.items()}
    return pd.Series([names[run] for run in runs], index=frame.index, dtype=object)


def workflow_types(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A history grouped by workflow type: runs whose sets of function names are equal.

    A run is one ``(workflow_hash, run_id)``. Scaled instances of one application have
    different structure hashes but the same functions, so they are one type.

    Returns
    -------
    dict of str to pandas.DataFrame
        Sorted by key. A key is readable and stable for a set of functions: the sorted
        function names joined by ``+`` (truncated to 48 characters) and ``#`` with a
        short hash of the whole set. A value holds that type's rows in the frame's order,
        with a fresh index. An empty frame has no types.
    """
    if not len(frame):
        return {}
    types = _run_types(frame)
    return {str(name): frame[(types == name).to_numpy()].reset_index(drop=True)
            for name in sorted(set(types))}


def single_type(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """``frame`` itself if it holds at most one workflow type.

    Raises
    ------
    MetricsError
        The frame mixes types: the message names ``source`` (e.g. the option or file the
        history came from), each type with its runs, and asks for one type's files.
        Histories of different workflows are never mixed silently.
    """
    types = workflow_types(frame)
    if len(types) <= 1:
        return frame
    listed = []
    for name, rows in types.items():
        runs = list(dict.fromkeys(rows["run_id"].astype(str)))
        shown = ", ".join(runs[:3]) + (f", ... ({len(runs)} runs)" if len(runs) > 3 else "")
        listed.append(f"{name} (runs {shown})")
    raise MetricsError(f"{source}: the history mixes {len(types)} workflow types (runs with "
                       f"different function names): {'; '.join(listed)}; pass the files of "
                       "one workflow type only")
