"""Load a scenario file or a CLI target into a validated :class:`Scenario`."""

from __future__ import annotations

import importlib
import math
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from faasplan.scenarios.schema import Scenario, WorkflowSection
from faasplan.workflow import Workflow, WorkflowError
from faasplan.workflow.wfformat import trace_stem


class ScenarioError(ValueError):
    """Bad input: the message names the file, the key path and how to fix it."""

    def __init__(self, source: str, key: str, message: str, hint: str = "") -> None:
        self.source, self.key, self.message, self.hint = source, key, message, hint
        # A message that already starts with the source or the key is not prefixed again.
        for prefix in (source, key):
            if prefix and message.startswith(f"{prefix}: "):
                message = message[len(prefix) + 2:]
        text = f"{source}: {key}: {message}" if key else f"{source}: {message}"
        super().__init__(f"{text}\n  hint: {hint}" if hint else text)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its parts, so it crosses process and Dask boundaries intact.
        return (type(self), (self.source, self.key, self.message, self.hint))


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario and the directory its relative paths are resolved against."""

    scenario: Scenario
    source: str
    base_dir: Path

    def path(self, value: str) -> Path:
        """``value`` resolved against the scenario file's directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p


def load_scenario(path: str | os.PathLike[str]) -> LoadedScenario:
    """Read and validate a TOML scenario file.

    Raises :class:`ScenarioError` naming the file and key path of the first problems.
    """
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(str(p), "", "file not found",
                            "check the path; scenarios live in the scenarios/ folder")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(str(p), "", f"not valid TOML: {exc}") from None
    return LoadedScenario(validate_scenario(data, str(p)), str(p), p.resolve().parent)


MAX_NUMBER = 2**53
"""Largest magnitude of a number in a scenario or trace: sizes, times, seeds and counts
beyond it are not meaningful, and overflow the C integers of numpy and pandas."""

MAX_DEPTH = 64
"""Deepest nesting accepted in a scenario or a trace (real ones nest about six deep)."""

MAX_TASKS = 1_000_000
MAX_DATA_BYTES = 16 * 2**30
"""A built-in workload estimated above either is refused before it is built."""


def check_numbers(data: Any, source: str, root: str = "") -> None:
    """Refuse numbers beyond :data:`MAX_NUMBER` (or not finite) and nesting deeper than
    :data:`MAX_DEPTH`, naming ``source`` and the key path. Iterative: any depth is safe.
    """
    stack: list[tuple[str, Any, int]] = [(root, data, 0)]
    while stack:
        key, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ScenarioError(source, key or "(top level)",
                                f"nested more than {MAX_DEPTH} levels deep",
                                "scenarios and WfFormat traces are shallow documents")
        if isinstance(value, dict):
            stack.extend((f"{key}.{k}" if key else str(k), v, depth + 1)
                         for k, v in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((f"{key}[{i}]", v, depth + 1) for i, v in enumerate(value))
        elif isinstance(value, int | float) and not isinstance(value, bool) and not (
                math.isfinite(value) and abs(value) <= MAX_NUMBER):
            shown = f"{value:.3g}" if isinstance(value, float) or abs(value) > 10**12 \
                else str(value)
            raise ScenarioError(source, key or "(top level)",
                                f"{shown} is out of range (at most 2**53 in magnitude)",
                                "sizes are in bytes and times in seconds or ms; check the "
                                "unit")


def check_json_document(path: Path, source: str) -> None:
    """Parse a JSON (or gzipped JSON) file once to refuse what would break its loader:
    nesting too deep for the parser, numbers out of range (:func:`check_numbers`)."""
    import gzip
    import json

    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else \
            path.read_bytes()
        doc = json.loads(raw)
    except RecursionError:
        raise ScenarioError(source, "", f"JSON nested too deeply to parse (more than "
                            f"{MAX_DEPTH} levels are never valid here)",
                            "check that this is a WfFormat trace") from None
    except (ValueError, OSError, EOFError):
        return  # the loader reports malformed files with its own message
    check_numbers(doc, source)


def check_workload_size(name: str, params: dict[str, Any], source: str) -> None:
    """Refuse a built-in workload whose size estimate exceeds :data:`MAX_TASKS` tasks or
    :data:`MAX_DATA_BYTES` bytes of data, before building it."""
    p = {k: v for k, v in params.items() if isinstance(v, int | float)
         and not isinstance(v, bool)}
    estimates: dict[str, Callable[[dict[str, Any]], tuple[float, float]]] = {
        "tree_reduction": lambda q: (2 * q.get("leaves", 64),
                                     8 * q.get("leaves", 64) * q.get("leaf_size", 1024)),
        "gemm": lambda q: (max(1, q.get("n", 256) / max(1, q.get("block", 64))) ** 3,
                           24 * q.get("n", 256) ** 2),
        "wordcount": lambda q: (2 * q.get("chunks", 8), 0),
        "image_pipeline": lambda q: (4 * q.get("images", 4),
                                     24 * q.get("images", 4) * q.get("size", 128) ** 2),
        "montage_like": lambda q: (4 * q.get("width", 8) ** 2,
                                   8 * (q.get("width", 8) * (q.get("tile", 32)
                                                            + q.get("overlap", 8))) ** 2),
    }
    estimate = estimates.get(name)
    if estimate is None:
        return
    tasks, nbytes = estimate(p)
    if tasks > MAX_TASKS or nbytes > MAX_DATA_BYTES:
        raise ScenarioError(
            source, "workflow.params",
            f"{name} with {params} would have about {tasks:.3g} tasks and {nbytes:.3g} bytes "
            f"of data, beyond what can be built in memory (at most {MAX_TASKS:,} tasks and "
            f"{MAX_DATA_BYTES / 2**30:.0f} GiB)", "use smaller parameters")


def validate_scenario(data: dict[str, Any], source: str) -> Scenario:
    """Validate a scenario mapping; errors name ``source`` and the key path."""
    check_numbers(data, source)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _scenario_error(exc, source) from None
    _check_planners(scenario, source)
    return scenario


def _scenario_error(exc: ValidationError, source: str) -> ScenarioError:
    errors = exc.errors()[:5]
    pairs = []
    for err in errors:
        key = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (remove it or check its spelling)"
        elif "input" in err and not isinstance(err["input"], dict | list):
            msg = f"{msg}, got {err['input']!r}"
        pairs.append((key, msg))
    hint = "see the scenario format in the README or scenarios/quickstart.toml"
    if len(pairs) == 1:
        return ScenarioError(source, pairs[0][0], pairs[0][1], hint)
    return ScenarioError(source, "", "\n  " + "\n  ".join(f"{k}: {m}" for k, m in pairs), hint)


def _check_planners(scenario: Scenario, source: str) -> None:
    from faasplan.planners import get_planner
    from faasplan.planners.registry import PlannerOptionsError, planner_unavailable

    def entry(name: str, key: str) -> Any:
        problem = planner_unavailable(name)
        if problem is not None:
            raise ScenarioError(source, key, f"planner {name!r} is not available", problem)
        return get_planner(name)

    for i, name in enumerate(scenario.planning.planners or ()):
        entry(name, f"planning.planners[{i}]")
    for name, options in scenario.planning.options.items():
        planner = entry(name, f"planning.options.{name}")
        try:
            planner.validate_options(options)
        except PlannerOptionsError as exc:
            raise ScenarioError(source, f"planning.options.{name}.{exc.key}", exc.message,
                                f"options {name} accepts: {exc.accepted}") from None


WFCHEF_PREFIX = "wfchef:"
"""CLI targets ``wfchef:RECIPE?tasks=N[&seed=S]`` are WfChef instances."""


def load_target(target: str) -> LoadedScenario:
    """A CLI target: a scenario ``.toml``, a WfFormat ``.json`` (or ``.json.gz``) file,
    ``wfchef:RECIPE?tasks=N[&seed=S]`` (:func:`faasplan.workloads.wfchef`) or
    ``module:function``.

    Non-scenario targets get a scenario with every other setting at its default.
    """
    if target.startswith(WFCHEF_PREFIX):
        section: dict[str, Any] = {"wfchef": _wfchef_target(target)}
        data = {"scenario": {"name": target[len(WFCHEF_PREFIX):].split("?", 1)[0]},
                "workflow": section}
        return LoadedScenario(validate_scenario(data, target), target, Path.cwd())
    if target.endswith(".toml"):
        return load_scenario(target)
    if target.endswith((".json", ".json.gz")):
        p = Path(target)
        if not p.is_file():
            raise ScenarioError(target, "", "file not found", "give a WfFormat JSON trace path")
        check_json_document(p, target)
        section = {"wfformat": str(p.resolve())}
        name = trace_stem(p)
    elif ":" in target:
        section = {"target": target}
        name = target.rsplit(":", 1)[-1]
    else:
        raise ScenarioError(target, "", "unrecognised target",
                            "give a scenario .toml, a WfFormat .json, or module:function "
                            "(e.g. faasplan.workloads:tree_reduction)")
    data = {"scenario": {"name": name}, "workflow": section}
    return LoadedScenario(validate_scenario(data, target), target, Path.cwd())


def _wfchef_target(target: str) -> dict[str, Any]:
    """``{"recipe", "tasks", "seed"}`` of a ``wfchef:RECIPE?tasks=N&seed=S`` target."""
    example = "e.g. wfchef:montage?tasks=1000 or wfchef:montage?tasks=1000&seed=3"
    recipe, _, query = target[len(WFCHEF_PREFIX):].partition("?")
    if not recipe:
        raise ScenarioError(target, "", "no recipe after 'wfchef:'", example)
    spec: dict[str, Any] = {"recipe": recipe}
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        if key not in ("tasks", "seed") or not sep:
            raise ScenarioError(target, "", f"unknown or empty parameter {item!r}; wfchef "
                                            "targets take tasks=N and seed=S", example)
        try:
            spec[key] = int(value)
        except ValueError:
            raise ScenarioError(target, "", f"{key} must be an integer, got {value!r}",
                                example) from None
    if "tasks" not in spec:
        raise ScenarioError(target, "", "no tasks=N: say how many tasks to generate", example)
    return spec


def build_workflow(loaded: LoadedScenario, *, recorded_profile: bool = True) -> Workflow:
    """The workflow a scenario describes.

    With ``recorded_profile`` (default), the tasks carry the times of the scenario's
    ``profile_file``; ``faasplan profile`` builds it without, to record that file.
    """
    section: WorkflowSection = loaded.scenario.workflow
    src = loaded.source
    if section.wfformat:
        from faasplan.workflow import load_wfformat

        path = loaded.path(section.wfformat)
        if not path.is_file():
            raise ScenarioError(src, "workflow.wfformat", f"file not found: {path}",
                                "paths are relative to the scenario file")
        check_json_document(path, str(path))
        try:
            return load_wfformat(path)
        except WorkflowError as exc:
            if not src.endswith(".toml"):
                raise  # the trace itself was the target: its message names the file
            raise ScenarioError(src, "workflow.wfformat", str(exc)) from None
    if section.wfchef:
        return _build_wfchef(section, src)
    if section.workload:
        from faasplan.workloads import REGISTRY

        if section.workload not in REGISTRY:
            raise ScenarioError(src, "workflow.workload", f"unknown workload {section.workload!r}",
                                f"choose from {', '.join(REGISTRY)}")
        fn: Callable[..., Any] = REGISTRY[section.workload]
        key = "workflow.workload"
        check_workload_size(section.workload, section.params, src)
    else:
        assert section.target is not None
        fn = resolve_callable(section.target, src)
        key = "workflow.target"
    try:
        wf = fn(**section.params)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(src, "workflow.params", str(exc),
                            f"check the parameters accepted by {key}") from None
    if not isinstance(wf, Workflow):
        raise ScenarioError(src, key, f"returned {type(wf).__name__}, not a faasplan.Workflow")
    if section.profile_file and recorded_profile:
        from faasplan.scenarios.profiles import ProfileFileError, load_profile, with_profiles

        try:
            wf = with_profiles(wf, load_profile(loaded.path(section.profile_file), wf))
        except ProfileFileError as exc:
            raise ScenarioError(src, "workflow.profile_file", str(exc),
                                "paths are relative to the scenario file") from None
    return wf


def _build_wfchef(section: WorkflowSection, src: str) -> Workflow:
    from faasplan.workloads.wfchef import INSTALL_HINT, MissingExtraError, wfchef

    assert section.wfchef is not None
    spec = section.wfchef
    key = "" if src.startswith(WFCHEF_PREFIX) else "workflow.wfchef"
    try:
        return wfchef(spec.recipe, spec.tasks, spec.seed)
    except MissingExtraError as exc:
        raise ScenarioError(src, key, str(exc), f"run {INSTALL_HINT}") from None
    except ValueError as exc:
        raise ScenarioError(src, key, str(exc)) from None


def resolve_callable(target: str, source: str = "<target>") -> Callable[..., Any]:
    """Import ``module:function``; errors say what could not be found."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ScenarioError(source, "workflow.target", f"{target!r} is not module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ScenarioError(source, "workflow.target", f"cannot import {module_name!r}: {exc}",
                            "is the module on PYTHONPATH?") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ScenarioError(source, "workflow.target", f"{module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ScenarioError(source, "workflow.target", f"{target!r} is not callable")
    return obj
