"""The metrics schema: one :class:`MetricsRecord` per observed task execution.

The simulator and the real runtime emit the same records; the predictors learn from them.
As a table (:func:`records_to_frame`) each record is one row and its transfers are
list-of-dict columns (``downloads``, ``uploads``), stored as Parquet with a fixed schema.

>>> rec = MetricsRecord("wf", "run-1", "wukong", "t1", "square", 1024, 100, 100, 2.5)
>>> frame = records_to_frame([rec])
>>> frame_to_records(frame) == [rec]
True
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

StartupState = Literal["cold", "warm", "none"]
Direction = Literal["download", "upload"]

STARTUP_STATES: tuple[str, ...] = ("cold", "warm", "none")
TEXT_FIELDS: tuple[str, ...] = ("workflow_hash", "run_id", "planner", "task", "function")
SIZE_FIELDS: tuple[str, ...] = ("input_bytes", "output_bytes")
TIME_FIELDS: tuple[str, ...] = ("exec_ms", "startup_ms")
TRANSFER_FIELDS: tuple[str, ...] = ("downloads", "uploads")
COLUMNS: tuple[str, ...] = (
    "workflow_hash", "run_id", "planner", "task", "function", "memory_mb",
    "input_bytes", "output_bytes", "exec_ms", "downloads", "uploads", "startup", "startup_ms",
)

_TRANSFER_TYPE = pa.list_(
    pa.struct([("nbytes", pa.int64()), ("ms", pa.float64()), ("streamed", pa.bool_())])
)
SCHEMA = pa.schema(
    [(name, pa.string()) for name in TEXT_FIELDS]
    + [("memory_mb", pa.int64()), ("input_bytes", pa.int64()), ("output_bytes", pa.int64()),
       ("exec_ms", pa.float64()), ("downloads", _TRANSFER_TYPE), ("uploads", _TRANSFER_TYPE),
       ("startup", pa.string()), ("startup_ms", pa.float64())]
)


class MetricsError(ValueError):
    """Metrics are malformed; the message names the record, its task and the field."""


@dataclass(frozen=True, slots=True)
class Transfer:
    """One download or upload a task made: ``nbytes`` moved in ``ms`` milliseconds.

    ``streamed`` marks a download that overlapped the producer's upload (output streaming);
    its time is not a plain transfer time, so the transfer models leave it out.
    """

    nbytes: int
    ms: float
    streamed: bool = False

    def __post_init__(self) -> None:
        problem = _size_problem(self.nbytes) or _time_problem(self.ms)
        if problem is not None:
            raise MetricsError(f"Transfer(nbytes={self.nbytes!r}, ms={self.ms!r}): {problem}")


@dataclass(frozen=True, slots=True)
class MetricsRecord:
    """One observed task execution.

    Parameters
    ----------
    workflow_hash, run_id, planner, task, function
        Which workflow (structure hash), which run, which planner placed it, the task id and
        the task's function name (models are fitted per function).
    memory_mb
        Memory of the worker that ran the task.
    input_bytes, output_bytes
        Total size of the task's inputs and of its output.
    exec_ms
        Time spent in the function itself.
    downloads, uploads
        The transfers of the task's inputs and outputs.
    startup, startup_ms
        How the worker started for this task: ``"cold"``, ``"warm"`` or ``"none"`` (the task
        ran on an already running worker by continuation; ``startup_ms`` is then 0).
    """

    workflow_hash: str
    run_id: str
    planner: str
    task: str
    function: str
    memory_mb: int
    input_bytes: int
    output_bytes: int
    exec_ms: float
    downloads: tuple[Transfer, ...] = ()
    uploads: tuple[Transfer, ...] = ()
    startup: StartupState = "none"
    startup_ms: float = 0.0

    def __post_init__(self) -> None:
        problems = [(name, _text_problem(getattr(self, name))) for name in TEXT_FIELDS]
        problems.append(("memory_mb", _memory_problem(self.memory_mb, None)))
        problems += [(name, _size_problem(getattr(self, name))) for name in SIZE_FIELDS]
        problems += [(name, _time_problem(getattr(self, name))) for name in TIME_FIELDS]
        problems.append(("startup", _startup_problem(self.startup, self.startup_ms)))
        for name in TRANSFER_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(isinstance(t, Transfer) for t in value):
                problems.append((name, f"must be a tuple of Transfer, got {value!r}"))
        for name, problem in problems:
            if problem is not None:
                raise MetricsError(f"metrics record for task {self.task!r}: {name} {problem}")


# -- scalar rules (shared by records and frames) -------------------------------------------


def _finite(value: object) -> float | None:
    """``value`` as a float when it is a finite real number (bools excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _text_problem(value: object) -> str | None:
    if isinstance(value, str) and value:
        return None
    return f"must be a non-empty string, got {value!r}"


def _size_problem(value: object) -> str | None:
    number = _finite(value)
    if number is not None and number >= 0 and number.is_integer():
        return None
    return f"must be a whole number of bytes >= 0, got {value!r}"


def _time_problem(value: object) -> str | None:
    number = _finite(value)
    if number is not None and number >= 0:
        return None
    return f"must be a finite number of milliseconds >= 0, got {value!r}"


def _memory_problem(value: object, allowed: Collection[int] | None) -> str | None:
    number = _finite(value)
    if number is None or number <= 0 or not number.is_integer():
        return f"must be a positive whole number of MB, got {value!r}"
    if allowed is not None and int(number) not in allowed:
        return f"is {int(number)}, not one of the allowed sizes {sorted(allowed)}"
    return None


def _startup_problem(state: object, startup_ms: object) -> str | None:
    if state not in STARTUP_STATES:
        return f"must be one of {list(STARTUP_STATES)}, got {state!r}"
    if state == "none" and _finite(startup_ms) not in (None, 0.0):
        return f"is 'none' (continuation) but startup_ms is {startup_ms!r}; it must be 0"
    return None


# -- frames ---------------------------------------------------------------------------------


def _transfer_dicts(transfers: Iterable[Transfer]) -> list[dict[str, Any]]:
    return [{"nbytes": t.nbytes, "ms": t.ms, "streamed": t.streamed} for t in transfers]


def records_to_frame(records: Iterable[MetricsRecord]) -> pd.DataFrame:
    """Turn records into a DataFrame with one row per record and the :data:`COLUMNS`.

    ``downloads`` and ``uploads`` become lists of ``{"nbytes", "ms", "streamed"}`` dicts.
    """
    rows = list(records)
    data: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for rec in rows:
        for name in COLUMNS:
            value = getattr(rec, name)
            data[name].append(_transfer_dicts(value) if name in TRANSFER_FIELDS else value)
    frame = pd.DataFrame(data, columns=list(COLUMNS))
    # Explicit dtypes so that an empty frame has the same schema as a full one.
    for name in (*TEXT_FIELDS, "startup"):
        frame[name] = frame[name].astype("str")
    for name in TRANSFER_FIELDS:
        frame[name] = frame[name].astype(object)
    for name in ("memory_mb", *SIZE_FIELDS):
        frame[name] = frame[name].astype("int64")
    for name in TIME_FIELDS:
        frame[name] = frame[name].astype("float64")
    return frame


def frame_to_records(df: pd.DataFrame) -> list[MetricsRecord]:
    """Turn a metrics DataFrame back into records (validated first)."""
    validate_records(df)
    columns = {name: df[name].tolist() for name in COLUMNS}
    out = []
    for i in range(len(df)):
        values: dict[str, Any] = {name: columns[name][i] for name in COLUMNS}
        for name in TRANSFER_FIELDS:
            values[name] = tuple(_as_transfer(item) for item in values[name])
        for name in ("memory_mb", *SIZE_FIELDS):
            values[name] = int(values[name])
        for name in TIME_FIELDS:
            values[name] = float(values[name])
        out.append(MetricsRecord(**values))
    return out


def _as_transfer(item: object) -> Transfer:
    if isinstance(item, Transfer):
        return item
    if isinstance(item, Mapping):
        return Transfer(int(item["nbytes"]), float(item["ms"]), bool(item.get("streamed", False)))
    raise TypeError(f"expected a Transfer or a dict with nbytes/ms, got {item!r}")


def as_frame(records: pd.DataFrame | str | os.PathLike[str] | Iterable[MetricsRecord],
             ) -> pd.DataFrame:
    """Accept a metrics DataFrame, a Parquet path or a sequence of records; return a frame."""
    if isinstance(records, pd.DataFrame):
        return records
    if isinstance(records, str | os.PathLike):
        return load_metrics(records)
    return records_to_frame(records)


def validate_records(df: pd.DataFrame, *, allowed_memory: Collection[int] | None = None) -> None:
    """Check a metrics frame; raise :class:`MetricsError` at the first bad record.

    Rejects missing or unknown columns, NaN, negative sizes and times, unknown ``startup``
    states, a ``startup_ms`` on a continuation, ``memory_mb`` that is not a positive whole
    number (or not in ``allowed_memory`` when given) and malformed transfers. The message
    names the record's position in the frame, its task and the field, and counts how many
    records are invalid.
    """
    missing = [name for name in COLUMNS if name not in df.columns]
    unknown = [str(name) for name in df.columns if name not in COLUMNS]
    if missing or unknown:
        raise MetricsError(
            f"metrics frame columns do not match the schema: missing {missing}, "
            f"unknown {unknown}; expected exactly {list(COLUMNS)}"
        )
    bad: dict[int, tuple[str, str]] = {}
    # (field, rule, integral, positive): the last two let NumPy screen clean values out.
    rules: list[tuple[str, Callable[[object], str | None], bool, bool]] = [
        ("memory_mb", partial(_memory_problem, allowed=allowed_memory), True, True),
        *((name, _size_problem, True, False) for name in SIZE_FIELDS),
        *((name, _time_problem, False, False) for name in TIME_FIELDS),
    ]
    for name in TEXT_FIELDS:
        for row, value in enumerate(df[name].tolist()):
            if not (value.__class__ is str and value):
                bad.setdefault(row, (name, str(_text_problem(value))))
    for name, rule, integral, positive in rules:
        values = df[name].tolist()
        # A size outside allowed_memory looks numerically clean: check every value then.
        everything = name == "memory_mb" and allowed_memory is not None
        rows = range(len(values)) if everything else _suspects(values, integral, positive)
        for row in rows:
            problem = rule(values[row])
            if problem is not None:
                bad.setdefault(int(row), (name, problem))
    states, startup_ms = df["startup"].tolist(), df["startup_ms"].tolist()
    for row, (state, ms) in enumerate(zip(states, startup_ms, strict=True)):
        problem = _startup_problem(state, ms)
        if problem is not None:
            bad.setdefault(row, ("startup", problem))
    for name in TRANSFER_FIELDS:
        flat = _flatten(df[name].tolist())
        for row, (where, problem) in flat.problems.items():
            bad.setdefault(row, (f"{name}{where}", problem))
        for key, values, rule, integral in (("nbytes", flat.nbytes, _size_problem, True),
                                            ("ms", flat.ms, _time_problem, False)):
            for i in _suspects(values, integral, False).tolist():
                problem = rule(values[i])
                if problem is not None:
                    bad.setdefault(flat.rows[i], (f"{name}[{flat.index[i]}].{key}", problem))
        for i, streamed in enumerate(flat.streamed):
            if streamed.__class__ is not bool and not isinstance(streamed, np.bool_):
                bad.setdefault(flat.rows[i], (f"{name}[{flat.index[i]}].streamed",
                                              f"must be a bool, got {streamed!r}"))
    if bad:
        first = min(bad)
        field, problem = bad[first]
        task = df["task"].iloc[first]
        raise MetricsError(
            f"invalid metrics record {first} (task {task!r}): {field} {problem} "
            f"({len(bad)} invalid record(s) in total; fix the code that emitted them)"
        )


def _suspects(values: list[Any], integral: bool, positive: bool) -> np.ndarray:
    """Positions that may break a numeric rule: NaN, infinite, negative, zero (when
    ``positive``), fractional (when ``integral``) or not a plain int/float at all."""
    if not set(map(type, values)) <= {int, float}:
        return np.arange(len(values))
    arr = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        flagged = ~np.isfinite(arr) | (arr < 0)
        if positive:
            flagged |= arr == 0
        if integral:
            flagged |= arr != np.floor(arr)
    return np.flatnonzero(flagged)


@dataclass(slots=True)
class _FlatTransfers:
    """All transfers of one column, flattened, with the row and list position of each."""

    rows: list[int]
    index: list[int]
    nbytes: list[Any]
    ms: list[Any]
    streamed: list[Any]
    problems: dict[int, tuple[str, str]]


def _flatten(lists: list[Any]) -> _FlatTransfers:
    fast = _flatten_dicts(lists)
    return fast if fast is not None else _flatten_checked(lists)


def _flatten_dicts(lists: list[Any]) -> _FlatTransfers | None:
    """The common case in bulk: lists of complete dicts (None if anything else shows up)."""
    if not all(value.__class__ is list for value in lists):
        return None
    items = [item for value in lists for item in value]
    if not all(item.__class__ is dict and len(item) == 3 for item in items):
        return None
    try:
        nbytes = [item["nbytes"] for item in items]
        ms = [item["ms"] for item in items]
        streamed = [item["streamed"] for item in items]
    except KeyError:
        return None
    rows = [row for row, value in enumerate(lists) for _ in value]
    index = [k for value in lists for k in range(len(value))]
    return _FlatTransfers(rows, index, nbytes, ms, streamed, {})


def _flatten_checked(lists: list[Any]) -> _FlatTransfers:
    flat = _FlatTransfers([], [], [], [], [], {})
    for row, value in enumerate(lists):
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if not isinstance(value, list | tuple):
            flat.problems.setdefault(row, ("", f"must be a list of transfers, got {value!r}"))
            continue
        for k, item in enumerate(value):
            # Exact-class checks first: the Mapping ABC check is slow on large frames.
            if item.__class__ is dict and "nbytes" in item and "ms" in item:
                nbytes, ms, streamed = item["nbytes"], item["ms"], item.get("streamed", False)
            elif isinstance(item, Transfer):
                nbytes, ms, streamed = item.nbytes, item.ms, item.streamed
            elif isinstance(item, Mapping) and "nbytes" in item and "ms" in item:
                nbytes, ms, streamed = item["nbytes"], item["ms"], item.get("streamed", False)
            else:
                flat.problems.setdefault(row, (
                    f"[{k}]", f"must be a dict with 'nbytes' and 'ms', got {item!r}"))
                continue
            flat.rows.append(row)
            flat.index.append(k)
            flat.nbytes.append(nbytes)
            flat.ms.append(ms)
            flat.streamed.append(streamed)
    return flat


def explode_transfers(df: pd.DataFrame) -> pd.DataFrame:
    """One row per transfer: ``row, run_id, task, function, memory_mb, direction, nbytes, ms,
    streamed`` (``row`` is the record's position in ``df``)."""
    parts = []
    for name, direction in (("downloads", "download"), ("uploads", "upload")):
        flat = _flatten(df[name].tolist())
        rows = np.asarray(flat.rows, dtype=np.int64)
        parts.append(pd.DataFrame({
            "row": rows,
            **{key: df[key].to_numpy()[rows] for key in ("run_id", "task", "function")},
            "memory_mb": df["memory_mb"].to_numpy(dtype=np.int64)[rows],
            "direction": direction,
            "nbytes": np.asarray(flat.nbytes, dtype=np.int64),
            "ms": np.asarray(flat.ms, dtype=float),
            "streamed": np.asarray(flat.streamed, dtype=bool),
        }))
    frame = pd.concat(parts, ignore_index=True)
    # Record order, downloads before uploads, as a reader of the records would list them.
    return frame.sort_values("row", kind="stable").reset_index(drop=True)


# -- Parquet --------------------------------------------------------------------------------


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    out = df[list(COLUMNS)].copy()
    for name in TRANSFER_FIELDS:
        lists = [_transfer_dicts(_as_transfer(t) for t in lst) for lst in out[name].tolist()]
        out[name] = pd.Series(lists, index=out.index, dtype=object)
    return out


def _to_table(df: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(_canonical(df), schema=SCHEMA, preserve_index=False)


def save_metrics(records_or_df: pd.DataFrame | Iterable[MetricsRecord],
                 path: str | os.PathLike[str], *, append: bool = True) -> Path:
    """Write metrics to a Parquet file; by default append to what the file already holds.

    The rows are validated first. The new file is written next to the old one and renamed
    over it, so a crash never leaves a half-written file and old rows are never lost.
    Concurrent writers to one path are not coordinated: collect the records of a run and
    save them once.

    Returns
    -------
    Path
        The file written.
    """
    target = Path(path)
    df = as_frame(records_or_df)
    validate_records(df)
    table = _to_table(df)
    if append and target.exists():
        table = pa.concat_tables([_read_table(target), table])
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                        dir=target.parent)
    os.close(handle)
    try:
        pq.write_table(table, tmp_name)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def _read_table(path: Path) -> pa.Table:
    if not path.exists():
        raise FileNotFoundError(f"metrics file {str(path)!r} does not exist")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise MetricsError(f"metrics file {str(path)!r} is not readable Parquet: {exc}") from exc
    names = set(table.schema.names)
    if names != set(COLUMNS):
        raise MetricsError(
            f"metrics file {str(path)!r} does not follow the metrics schema: missing "
            f"{sorted(set(COLUMNS) - names)}, unknown {sorted(names - set(COLUMNS))}"
        )
    try:
        return table.select(list(COLUMNS)).cast(SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise MetricsError(f"metrics file {str(path)!r} has wrong column types: {exc}") from exc


def load_metrics(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a metrics Parquet file written by :func:`save_metrics` into a validated frame."""
    table = _read_table(Path(path))
    scalars = [name for name in COLUMNS if name not in TRANSFER_FIELDS]
    df = table.select(scalars).to_pandas()
    for name in TRANSFER_FIELDS:
        df[name] = pd.Series(table.column(name).to_pylist(), index=df.index, dtype=object)
    df = df[list(COLUMNS)]
    validate_records(df)
    return df
