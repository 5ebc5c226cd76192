"""The scenario file schema (TOML), validated strictly: unknown keys are errors.

A scenario says which workflow to plan, on which platform, with which metrics history,
which planners to compare at which SLA, how many Monte-Carlo replicates, and where to
write results::

    [scenario]
    name = "quickstart"
    seed = 0
    replicates = 20

    [workflow]
    workload = "tree_reduction"      # or wfformat = "trace.json", or target = "pkg.mod:fn",
                                     # or wfchef = { recipe = "montage", tasks = 1000 }
    params = { leaves = 32 }
    # profile_file = "profiles/tree.json"   recorded task times (faasplan profile ... --out)
    # profile = true                        time the tasks on this machine at every run

    [platform]                       # overrides of faasplan.Platform() defaults
    cold_start_ms = 250.0

    [history]
    training_runs = 6                # simulated from the ground truth with noise
    noise = 0.1                      # or: metrics = "runs.parquet"

    [planning]
    planners = ["wukong", "uniform-opt", "sim-guided"]
    sla = "p95"
    [planning.options.sim-guided]
    time_budget_s = 1.0
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SLA_PATTERN = re.compile(r"^(average|p\d{1,2}(\.\d+)?)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScenarioMeta(_Strict):
    """``[scenario]``: name, seed, Monte-Carlo replicates, output directory.

    ``output_dir`` (relative to the scenario file) is where ``faasplan compare`` writes its
    report when no ``--out`` is given.
    """

    name: str = "scenario"
    seed: int = Field(default=0, ge=0)
    replicates: int = Field(default=20, ge=1, le=100_000)
    output_dir: str | None = None


class WfChefSection(_Strict):
    """``[workflow] wfchef = {recipe = "montage", tasks = 1000, seed = 0}``: a synthetic
    instance of a real application (:func:`faasplan.workloads.wfchef`, ``wfcommons`` extra).

    ``seed`` (default 0) seeds the instance only, so that varying ``[scenario] seed`` varies
    the simulations of one fixed workflow.
    """

    recipe: str
    tasks: int = Field(ge=1)
    seed: int = Field(default=0, ge=0)

    @field_validator("recipe")
    @classmethod
    def _known(cls, v: str) -> str:
        from faasplan.workloads.wfchef import BROKEN_RECIPES, RECIPES

        if v in BROKEN_RECIPES:
            raise ValueError(f"recipe {v!r} is not offered: {BROKEN_RECIPES[v]}; choose from "
                             f"{', '.join(RECIPES)}")
        if v not in RECIPES:
            raise ValueError(f"unknown recipe {v!r}; choose from {', '.join(RECIPES)}")
        return v


class WorkflowSection(_Strict):
    """``[workflow]``: exactly one of ``workload``, ``wfformat``, ``target`` or ``wfchef``.

    The ground truth of a Python workflow's tasks comes from, in order: ``profile_file``
    (times recorded once by ``faasplan profile``, reproducible), ``profile = true`` (timed
    on this machine at every run, so results vary from run to run), else the tasks' own
    profiles and ``io`` hints with default execution times (reproducible).
    """

    workload: str | None = None
    wfformat: str | None = None
    target: str | None = None
    wfchef: WfChefSection | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    profile: bool = False
    profile_repeat: int = Field(default=1, ge=1, le=50)
    profile_file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> WorkflowSection:
        given = [k for k in ("workload", "wfformat", "target", "wfchef") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of workload, wfformat, target or wfchef "
                             f"(got {given or 'none'})")
        if self.params and self.wfformat:
            raise ValueError("params apply to workload/target, not to a wfformat file")
        if self.params and self.wfchef:
            raise ValueError("params apply to workload/target; give wfchef its recipe, tasks "
                             "and seed in its own table")
        if self.wfformat and (self.profile or self.profile_file):
            raise ValueError("a wfformat trace carries its recorded runtimes; remove profile "
                             "and profile_file")
        if self.wfchef and (self.profile or self.profile_file):
            raise ValueError("a wfchef instance carries its recipe's runtimes; remove profile "
                             "and profile_file")
        if self.profile and self.profile_file:
            raise ValueError("give either profile = true (time the tasks at every run) or "
                             "profile_file (reuse recorded times), not both")
        return self


class HistorySection(_Strict):
    """``[history]``: past runs to fit predictors on — a metrics store (``metrics``) and/or
    WfFormat traces of real runs (``traces``, paths relative to the scenario file), of one
    workflow type; without either, simulated training runs."""

    metrics: str | None = None
    traces: list[str] = Field(default_factory=list)
    training_runs: int = Field(default=6, ge=0, le=1000)
    noise: float = Field(default=0.1, ge=0.0, le=2.0)
    memory_sizes: list[int] | None = None

    @field_validator("memory_sizes")
    @classmethod
    def _positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(m <= 0 for m in v)):
            raise ValueError("memory_sizes must be a non-empty list of positive MB values")
        return v


class PlanningSection(_Strict):
    """``[planning]``: planners to compare, SLA, per-planner options."""

    planners: list[str] | None = None
    sla: str = "p95"
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("sla")
    @classmethod
    def _sla(cls, v: str) -> str:
        if not SLA_PATTERN.match(v):
            raise ValueError(f"sla {v!r} is not 'average' or a percentile like 'p95'")
        return v


class Scenario(_Strict):
    """A whole scenario file."""

    scenario: ScenarioMeta = Field(default_factory=ScenarioMeta)
    workflow: WorkflowSection
    platform: dict[str, Any] = Field(default_factory=dict)
    history: HistorySection = Field(default_factory=HistorySection)
    planning: PlanningSection = Field(default_factory=PlanningSection)
