"""Parameter sweeps: scenario variants over a grid, run in parallel locally or on Dask.

Local runs use a process pool; ``dask_address`` sends the same variant function to a Dask
distributed cluster. Both return the same table: one row per (variant, planner). An error in
a variant reaches the caller intact (type and message), whichever process raised it.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import pickle
import tomllib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd

from faasplan.scenarios import LoadedScenario, ScenarioError, build_workflow, validate_scenario

Grid = dict[str, list[Any]]


class VariantError(RuntimeError):
    """A variant failed with an error that could not be sent back as it was.

    ``exc_type`` and the message are the original error's; ``bad_input`` says whether it
    was an error in what the user gave (exit code 2 in the CLI).
    """

    def __init__(self, variant: str, exc_type: str, message: str, bad_input: bool) -> None:
        self.variant, self.exc_type, self.message = variant, exc_type, message
        self.bad_input = bad_input
        super().__init__(f"variant [{variant}]: {exc_type}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.variant, self.exc_type, self.message, self.bad_input))


def _bad_input(exc: BaseException) -> bool:
    from faasplan.planners import PlanError
    from faasplan.predictors import MetricsError
    from faasplan.workflow import WorkflowError

    return isinstance(exc, ScenarioError | WorkflowError | PlanError | MetricsError |
                      FileNotFoundError)


def _portable(exc: Exception, variant: str) -> Exception:
    """``exc`` itself if it survives pickling intact, else a :class:`VariantError`."""
    # Any failure to pickle or rebuild: send a portable copy instead.
    with contextlib.suppress(Exception):
        copy_ = pickle.loads(pickle.dumps(exc))
        if type(copy_) is type(exc) and str(copy_) == str(exc):
            return exc
    return VariantError(variant, type(exc).__name__, str(exc), _bad_input(exc))


def _label(overrides: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in overrides.items())


def parse_value(text: str) -> Any:
    """A grid value as TOML would read it (int, float, bool, string)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_grid(items: Sequence[str]) -> Grid:
    """``["workflow.params.leaves=16,64", ...]`` -> ``{"workflow.params.leaves": [16, 64]}``."""
    grid: Grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ScenarioError("--grid", item, "expected KEY.PATH=V1,V2,...",
                                "e.g. --grid workflow.params.leaves=16,64")
        grid[key.strip()] = [parse_value(v.strip()) for v in values.split(",")]
    return grid


def variants(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of the grid, as one ``{key.path: value}`` dict per variant."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(grid[k] for k in keys))]


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of scenario ``data`` with each dotted key path set."""
    out = copy.deepcopy(dict(data))
    for path, value in overrides.items():
        node = out
        parts = path.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ScenarioError("--grid", path, f"{part!r} is not a table")
            node = child
        node[parts[-1]] = value
    return out


def run_variant(data: dict[str, Any], source: str, base_dir: str, overrides: dict[str, Any],
                replicates: int | None) -> list[dict[str, Any]]:
    """Compare planners on one variant; rows carry the variant's key paths as columns."""
    from faasplan.experiments.compare import compare, prepare

    label = _label(overrides)
    try:
        scenario = validate_scenario(apply_overrides(data, overrides), f"{source} [{label}]")
        loaded = LoadedScenario(scenario, f"{source} [{label}]", Path(base_dir))
        result = compare(prepare(loaded, replicates=replicates))
    except Exception as exc:
        portable = _portable(exc, label)
        if portable is exc:
            raise
        raise portable from None
    return [{**overrides, **row} for row in result.to_records()]


def run_sweep(scenario_path: str | os.PathLike[str], grid: Mapping[str, Sequence[Any]], *,
              dask_address: str | None = None, workers: int | None = None,
              replicates: int | None = None,
              progress: Callable[[str, int, int], None] | None = None) -> pd.DataFrame:
    """Run every variant of ``grid`` applied to the scenario file; one row per planner."""
    path = Path(scenario_path)
    if not path.is_file():
        raise ScenarioError(str(path), "", "file not found")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(str(path), "", f"not valid TOML: {exc}") from None
    todo = variants(grid) if grid else [{}]
    base_dir = path.resolve().parent
    for v in todo:  # validate every variant (and build its workflow) before running any
        source = f"{path} [{_label(v)}]"
        build_workflow(LoadedScenario(validate_scenario(apply_overrides(data, v), source),
                                      source, base_dir))
    args = [(data, str(path), str(base_dir), v, replicates) for v in todo]
    rows: list[dict[str, Any]] = []
    if dask_address:
        from distributed import Client

        with Client(dask_address) as client:
            futures = [client.submit(run_variant, *a, pure=False) for a in args]
            for i, fut in enumerate(futures):
                rows.extend(fut.result())
                if progress:
                    progress("variants", i + 1, len(futures))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = {pool.submit(run_variant, *a): i for i, a in enumerate(args)}
            results: dict[int, list[dict[str, Any]]] = {}
            for done, fut in enumerate(as_completed(futs), start=1):
                results[futs[fut]] = fut.result()
                if progress:
                    progress("variants", done, len(futs))
            for i in range(len(args)):
                rows.extend(results[i])
    return pd.DataFrame(rows)
