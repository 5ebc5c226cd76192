"""Load a scenario file or a CLI target into a validated :class:`Scenario`."""

from __future__ import annotations

import importlib
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


def validate_scenario(data: dict[str, Any], source: str) -> Scenario:
    """Validate a scenario mapping; errors name ``source`` and the key path."""
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
    from faasplan.planners import PLANNERS
    from faasplan.planners.registry import PlannerOptionsError

    for i, name in enumerate(scenario.planning.planners or ()):
        if name not in PLANNERS:
            raise ScenarioError(source, f"planning.planners[{i}]", f"unknown planner {name!r}",
                                f"choose from {', '.join(PLANNERS)}")
    for name, options in scenario.planning.options.items():
        if name not in PLANNERS:
            raise ScenarioError(source, f"planning.options.{name}", f"unknown planner {name!r}",
                                f"choose from {', '.join(PLANNERS)}")
        try:
            PLANNERS[name].validate_options(options)
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
