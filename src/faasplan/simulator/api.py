"""Entry points: :func:`simulate`, :func:`simulate_many` and the reusable :class:`Simulator`."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from faasplan.platform import Platform
from faasplan.simulator.behaviour import GroundTruth, TaskBehaviour
from faasplan.simulator.driver import Simulation
from faasplan.simulator.trace import Trace, build_trace
from faasplan.worker import DagShape, Placement, RunSpec, WorkerOptions
from faasplan.workflow import Workflow
from faasplan.workflow.codec import literal_refs
from faasplan.workflow.gcpause import gc_paused

Literals = Mapping[str, tuple[tuple[str, int], ...]]
PlanLike = Mapping[str, Placement] | Any


class Simulator:
    """Simulates plans of one workflow; per-workflow work is done once.

    Planners that score many candidate plans keep one of these and call :meth:`run`.

    Parameters
    ----------
    workflow : Workflow
        The workflow.
    platform : Platform, optional
        Default :class:`Platform()`.
    behaviour : TaskBehaviour, optional
        Default :class:`GroundTruth(workflow, platform)` (profiles, 10% noise).
    options : WorkerOptions, optional
        Thresholds of the worker logic.
    literals : mapping of task id to ((key, nbytes), ...), optional
        Large literal arguments each task fetches; default: those
        :func:`faasplan.workflow.codec.literal_refs` finds (``SizedBlob`` inputs of
        imported traces included).
    log : bool
        Record each run's decision log (``Trace.log``, ``Trace.decisions``).
    """

    def __init__(self, workflow: Workflow, platform: Platform | None = None,
                 behaviour: TaskBehaviour | None = None, options: WorkerOptions | None = None,
                 literals: Literals | None = None, *, log: bool = False) -> None:
        if not isinstance(workflow, Workflow):
            raise TypeError(f"simulate() needs a Workflow, got {type(workflow).__name__}")
        self.workflow = workflow
        self.platform = platform if platform is not None else Platform()
        if not isinstance(self.platform, Platform):
            raise TypeError(f"platform must be a Platform, got {type(self.platform).__name__}")
        self.behaviour: TaskBehaviour = behaviour if behaviour is not None else \
            GroundTruth(workflow, self.platform)
        self.options = options or WorkerOptions()
        if literals is None:
            literals = {t: tuple((r.id, r.nbytes) for r in refs)
                        for t, refs in literal_refs(workflow).items() if refs}
        else:
            unknown = sorted(set(literals) - set(workflow.tasks))
            if unknown:
                raise KeyError(f"literals given for tasks not in workflow {workflow.name!r}: "
                               f"{unknown[:5]}")
        self.literals = literals
        self._shape: DagShape | None = None
        self.log = log

    def spec(self, plan: PlanLike = None) -> RunSpec:
        """The :class:`RunSpec` of ``plan`` (see :func:`simulate` for what a plan may be)."""
        # Both make one long-lived object or more per task: the cyclic collector would
        # rescan them (and the workflow) again and again while they are built, for nothing.
        with gc_paused():
            if self._shape is None:
                # What does not depend on the placements, made once for every plan.
                sizes = self.workflow.encoded_sizes  # the runtime's numbers, measured once
                self._shape = DagShape(self.workflow, self.options, literals=self.literals,
                                       task_nbytes=sizes.task_nbytes if sizes else None,
                                       code_nbytes=sizes.code_nbytes if sizes else None,
                                       dag_parts=sizes.parts if sizes else None)
            spec = RunSpec.build(self.workflow, _placements(plan, self.platform),
                                 self.options, shape=self._shape)
        spec.check_concurrency(self.platform.concurrency_limit,
                               "the platform's concurrency_limit")
        return spec

    def run(self, plan: PlanLike = None, seed: int = 0, replicates: int = 1) -> Trace:
        """Trace of replicate 0, with the makespans of all ``replicates``."""
        return self._runs(self.spec(plan), seed, replicates, full=1)[0]

    def run_many(self, plan: PlanLike = None, seed: int = 0, replicates: int = 1
                 ) -> list[Trace]:
        """One full trace per replicate."""
        return self._runs(self.spec(plan), seed, replicates, full=replicates)

    def run_each(self, plan: PlanLike, seed: int, behaviours: Sequence[TaskBehaviour],
                 *, first: int = 0) -> list[Trace]:
        """One full trace per behaviour: replicate ``first + i`` runs ``behaviours[i]`` with
        the ``(first + i)``-th generator of ``seed`` (Monte-Carlo replicates of sampled task
        behaviour, with the same random numbers for every plan simulated this way; a batch
        starting at ``first`` continues an earlier one)."""
        if not behaviours:
            raise ValueError("run_each needs at least one behaviour")
        if first < 0:
            raise ValueError(f"first must be >= 0, got {first!r}")
        spec = self.spec(plan)
        rngs = replicate_rngs(seed, first + len(behaviours))[first:]
        results = [Simulation.create(spec, self.platform, b, rng, log=self.log).run()
                   for b, rng in zip(behaviours, rngs, strict=True)]
        makespans = tuple(r.makespan_ms for r in results)
        return [build_trace(r, workflow_hash=self.workflow.structure_hash,
                            workflow_name=self.workflow.name, seed=int(seed),
                            replicate_makespans_ms=makespans, log=r.log or ())
                for r in results]

    def _runs(self, spec: RunSpec, seed: int, replicates: int, full: int) -> list[Trace]:
        rngs = replicate_rngs(seed, replicates)
        results = [Simulation.create(spec, self.platform, self.behaviour, rng,
                                     log=self.log).run() for rng in rngs]
        makespans = tuple(r.makespan_ms for r in results)
        return [build_trace(r, workflow_hash=self.workflow.structure_hash,
                            workflow_name=self.workflow.name, seed=int(seed),
                            replicate_makespans_ms=makespans, log=r.log or ())
                for r in results[:full]]


def simulate(workflow: Workflow, plan: PlanLike = None, platform: Platform | None = None,
             seed: int = 0, replicates: int = 1, behaviour: TaskBehaviour | None = None,
             options: WorkerOptions | None = None, literals: Literals | None = None) -> Trace:
    """Simulate ``workflow`` under ``plan`` on ``platform``.

    Parameters
    ----------
    workflow : Workflow
        What to run.
    plan : None, mapping of task id to Placement, or an object with ``.placements``
        ``None`` makes every task flexible with the platform's default memory (WUKONG).
    platform : Platform, optional
        Default :class:`Platform()` (AWS Lambda + Redis-like).
    seed : int
        Seeds replicate ``i`` with child ``i`` of ``numpy.random.SeedSequence(seed)``, so
        replicate 0 is the same run whatever ``replicates`` is.
    replicates : int
        Monte-Carlo replicates; all makespans are in ``trace.replicate_makespans_ms``.
    behaviour : TaskBehaviour, optional
        Task model; default :class:`GroundTruth` with the workflow's profiles.
    options : WorkerOptions, optional
        Thresholds of the worker logic.
    literals : mapping of task id to ((key, nbytes), ...), optional
        Large literal arguments (default: found in the workflow).

    Returns
    -------
    Trace
        The trace of replicate 0.

    Raises
    ------
    SimulationStuckError
        The plan deadlocks: some tasks never run.

    >>> from faasplan import task, Workflow, TaskProfile
    >>> @task
    ... def step(x):
    ...     return x
    >>> wf = Workflow(step(step(1, profile=TaskProfile(100.0, 10)),
    ...                    profile=TaskProfile(50.0, 10)))
    >>> trace = simulate(wf)
    >>> sorted(trace.tasks["task"]), trace.invocations
    (['step-0', 'step-1'], 1)
    """
    return Simulator(workflow, platform, behaviour, options, literals).run(plan, seed,
                                                                           replicates)


def simulate_many(workflow: Workflow, plan: PlanLike = None, platform: Platform | None = None,
                  seed: int = 0, replicates: int = 1, behaviour: TaskBehaviour | None = None,
                  options: WorkerOptions | None = None, literals: Literals | None = None
                  ) -> list[Trace]:
    """Like :func:`simulate`, but one full :class:`Trace` per replicate."""
    return Simulator(workflow, platform, behaviour, options, literals).run_many(
        plan, seed, replicates)


def replicate_rngs(seed: int, replicates: int) -> list[np.random.Generator]:
    """One generator per replicate, from children of ``SeedSequence(seed)``."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(replicates, bool) or not isinstance(replicates, numbers.Integral) \
            or replicates < 1:
        raise ValueError(f"replicates must be an integer >= 1, got {replicates!r}")
    children = np.random.SeedSequence(int(seed)).spawn(int(replicates))
    return [np.random.default_rng(c) for c in children]


def _placements(plan: PlanLike, platform: Platform
                ) -> Mapping[str, Placement] | Callable[[str], Placement]:
    if plan is None:
        default = Placement(None, platform.default_memory_mb)
        return lambda _tid: default
    placements = plan if isinstance(plan, Mapping) else getattr(plan, "placements", None)
    if isinstance(placements, Mapping):
        if getattr(placements, "worker_orders", None):
            return placements  # a plan's placements with its workers' own task orders
        return _checked(placements)
    raise TypeError(f"plan must be None, a mapping of task id to Placement, or an object "
                    f"with a .placements mapping; got {type(plan).__name__}")


def _checked(placements: Mapping[str, Placement]) -> Callable[[str], Placement]:
    def place(tid: str) -> Placement:
        p = placements[tid]
        if not isinstance(p, Placement):
            raise TypeError(f"placement of task {tid!r} must be a Placement, got {p!r}")
        return p
    return place
