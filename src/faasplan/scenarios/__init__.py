"""Scenario files: schema (pydantic, strict) and loading of scenarios and CLI targets."""

from faasplan.scenarios.load import (
    LoadedScenario,
    ScenarioError,
    build_workflow,
    load_scenario,
    load_target,
    resolve_callable,
    validate_scenario,
)
from faasplan.scenarios.schema import Scenario

__all__ = [
    "LoadedScenario",
    "Scenario",
    "ScenarioError",
    "build_workflow",
    "load_scenario",
    "load_target",
    "resolve_callable",
    "validate_scenario",
]
