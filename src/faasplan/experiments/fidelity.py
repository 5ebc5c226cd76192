"""How close is the simulator to real runs? Measure, calibrate on some runs, predict the rest.

The experiment, for each workload and planner (a *cell*):

1. **probe** — each workload runs all-flexible at two memory sizes; these runs calibrate
   a first platform (:func:`faasplan.predictors.calibrate.calibrate`) and fit the predictor the
   planners use, and, being the same plan at two sizes, measure how execution speed
   depends on memory without the confounding of a planner's choices;
2. **plan** once per cell with :func:`faasplan.experiments.planning.plan`;
3. **run** each plan on Redis several times, in rounds over all cells (a burst of other
   work on the machine then hits one run of many cells, not every run of one), on one
   shared :class:`~faasplan.runtime.LocalFaaS`: after a warm-up round its worker
   processes are warm, as on a platform running the workflows repeatedly;
4. **calibrate and fit** on the first ``training_runs`` runs of every cell of a workload:
   the platform (transfers, invocation latency, start-ups, from the measured worker
   tables; the memory -> speed rule from the probes) and the predictors (execution
   time, output size);
5. **simulate** each plan with Monte-Carlo replicates whose execution times and output
   sizes are the fitted models times residuals drawn from the training runs
   (:class:`~faasplan.experiments.history.HistoryBehaviour`), and compare with the held-out runs:
   makespan error ``(sim - real) / real`` per run and per component. As a reference,
   the *replay* error takes the training runs' median makespan as the prediction: the
   run-to-run noise no model of the plan can remove.

:func:`measure` does steps 1-3 (real runs, minutes), :func:`evaluate` steps 4-5 (seconds,
so calibration choices can be compared on the same measurements), :func:`run_experiment`
both. Components are sums over tasks: ``execution`` is the time from the function's start
to its output being ready to send (the simulator's execution interval; the measured
``exec_ms`` column stops before the output is pickled), ``transfer`` the downloads and
uploads on each task's path, ``startup`` the start-up of each invocation's first task.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from faasplan.experiments.history import HistoryBehaviour
from faasplan.experiments.planning import io_hints, plan
from faasplan.predictors import Defaults, Predictor, fit, records_to_frame
from faasplan.predictors.calibrate import calibrate
from faasplan.simulator import Platform, TaskBehaviour, Trace, simulate_many
from faasplan.worker import Placement
from faasplan.workflow import Workflow
from faasplan.workflow.codec import decode, encode
from faasplan.workloads import gemm, image_pipeline, tree_reduction, wordcount
from faasplan.workloads.wordcount import bundled_text

PLANNERS: tuple[str, ...] = ("wukong", "uniform-opt", "non-uniform-opt")
COMPONENTS: tuple[str, ...] = ("execution", "transfer", "startup")

# Numerical libraries start one thread per core in every worker process; with several
# processes per core the spinning threads slowed a 0.2 ms block product to ~60 ms.
# Real FaaS sandboxes get a CPU share sized by memory; one thread each is the fair model.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

Progress = Callable[[str], None]


def default_workloads(quick: bool = False) -> dict[str, Workflow]:
    """The experiment's workloads, sized so that tasks take milliseconds, not microseconds.

    ``quick`` keeps the two shortest (about 0.1 s per run).
    """
    workloads = {"tree_reduction": tree_reduction(leaves=16, leaf_size=2**19),
                 "gemm": gemm(n=1536, block=512),
                 "wordcount": wordcount(8, bundled_text() * 400),
                 "image_pipeline": image_pipeline(images=6, size=512)}
    if quick:
        return {n: workloads[n] for n in ("wordcount", "image_pipeline")}
    return workloads


# -- measurements ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One workload under one planner: its plan and the measured runs (warm-ups excluded).

    ``predicted_ms`` is the planner's own prediction (made from the probe runs).
    """

    workload: str
    planner: str
    placements: Mapping[str, Placement]
    predicted_ms: float
    runs: tuple[Trace, ...]


@dataclass(frozen=True)
class Measurements:
    """What :func:`measure` observed; :func:`evaluate` turns it into errors.

    ``probes`` holds per workload the probe runs (all-flexible, ``probe_runs`` at each
    probe memory size); ``max_running`` is the emulator's limit of processes running at
    once; ``settings`` records how :func:`measure` was called.
    """

    workflows: Mapping[str, Workflow]
    cells: tuple[Cell, ...]
    probes: Mapping[str, tuple[Trace, ...]]
    max_running: int
    settings: Mapping[str, Any] = field(default_factory=dict)

    def cell(self, workload: str, planner: str) -> Cell:
        """The cell of ``workload`` under ``planner``."""
        for c in self.cells:
            if (c.workload, c.planner) == (workload, planner):
                return c
        raise KeyError(f"no cell for workload {workload!r} and planner {planner!r}; "
                       f"measured: {[(c.workload, c.planner) for c in self.cells]}")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write to ``path`` (a pickle; workflows encoded with the workflow codec)."""
        encoded = {n: (e.blob, dict(e.payloads))
                   for n, e in ((n, encode(wf)) for n, wf in self.workflows.items())}
        cells = [(c.workload, c.planner, dict(c.placements), c.predicted_ms, c.runs)
                 for c in self.cells]
        state = {"workflows": encoded, "cells": cells, "probes": dict(self.probes),
                 "max_running": self.max_running, "settings": dict(self.settings)}
        Path(path).write_bytes(pickle.dumps(state))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Measurements:
        """Read what :meth:`save` wrote (a pickle: load only files you wrote)."""
        state = pickle.loads(Path(path).read_bytes())
        workflows = {n: decode(blob, payloads) for n, (blob, payloads) in
                     state["workflows"].items()}
        cells = tuple(Cell(*fields) for fields in state["cells"])
        return cls(workflows, cells, state["probes"], state["max_running"], state["settings"])


@contextlib.contextmanager
def _single_threaded_numerics() -> Iterator[None]:
    """Worker processes started meanwhile run numerical libraries on one thread."""
    saved = {v: os.environ.get(v) for v in _THREAD_VARIABLES}
    try:
        for v in _THREAD_VARIABLES:
            os.environ.setdefault(v, "1")
        yield
    finally:
        for v, value in saved.items():
            if value is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = value


def measure(workloads: Mapping[str, Workflow] | None = None,
            planners: Sequence[str] = PLANNERS, *, runs: int = 6, warmup_runs: int = 1,
            probe_memory: tuple[int, int] = (512, 3008), probe_runs: int = 2,
            max_running: int | None = None,
            redis: str | None = None, sla: str = "p95", seed: int = 0,
            timeout_s: float = 300.0, progress: Progress | None = None) -> Measurements:
    """Probe, plan and run every (workload, planner) cell on Redis.

    Parameters
    ----------
    workloads : mapping of name to Workflow, optional
        Default :func:`default_workloads`.
    planners : sequence of str
        Registered planner names.
    runs : int
        Measured runs per cell (after ``warmup_runs`` discarded ones).
    probe_memory : (int, int)
        The two memory sizes of the all-flexible probe runs.
    probe_runs : int
        Probe runs per memory size (after the warm-up ones).
    max_running : int, optional
        The emulator's limit of processes running at once (default: its own, 4 per CPU).
    redis : str, optional
        A Redis URL; default a private embedded ``redis-server``.
    sla : str
        The level plans are made at.

    Worker processes run numerical libraries on one thread (``OMP_NUM_THREADS`` and
    kin, unless already set), as a sandbox with one vCPU would.
    """
    from faasplan.runtime import EmbeddedRedis, LocalFaaS, new_key

    if runs < 1 or warmup_runs < 0 or probe_runs < 1:
        raise ValueError(f"measure: need runs >= 1, warmup_runs >= 0 and probe_runs >= 1, "
                         f"got runs={runs}, warmup_runs={warmup_runs}, probe_runs={probe_runs}")
    workflows = dict(workloads if workloads is not None else default_workloads())
    say = progress or (lambda _msg: None)
    key = new_key()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_single_threaded_numerics())
        url = redis if redis is not None else stack.enter_context(EmbeddedRedis()).url
        faas = stack.enter_context(LocalFaaS(url, key, max_running=max_running,
                                             max_processes=max(128, max_running or 0)))

        def real(wf: Workflow, placements: Mapping[str, Placement]) -> Trace:
            from faasplan.runtime import run

            return run(wf, dict(placements), url, hmac_key=key, invoker=faas,
                       timeout_s=timeout_s, seed=seed).trace

        planned: list[tuple[str, str, Any]] = []
        probes: dict[str, tuple[Trace, ...]] = {}
        for name, wf in workflows.items():
            probed: list[Trace] = []
            for memory in probe_memory:
                flexible = {t: Placement(None, memory) for t in wf}
                for _ in range(warmup_runs):
                    real(wf, flexible)
                probed.extend(real(wf, flexible) for _ in range(probe_runs))
            probes[name] = tuple(probed)
            predictor, platform = _planning_models(wf, probed)
            say(f"{name}: probed at {list(probe_memory)} MB, "
                f"{[round(t.makespan_ms) for t in probed]} ms")
            planned += [(name, p, plan(wf, p, predictor, platform, sla=sla, seed=seed))
                        for p in planners]
        # Rounds over all cells, so that a burst of load from elsewhere on the machine
        # hits one run of many cells rather than every run of one cell.
        measured: list[list[Trace]] = [[] for _ in planned]
        for round_ in range(warmup_runs + runs):
            for (name, _, chosen), traces in zip(planned, measured, strict=True):
                trace = real(workflows[name], chosen.placements)
                if round_ >= warmup_runs:
                    traces.append(trace)
            if round_ >= warmup_runs:
                say(f"round {round_ - warmup_runs + 1}/{runs}: " + ", ".join(
                    f"{n}/{p} {t[-1].makespan_ms:.0f}" for (n, p, _), t in
                    zip(planned, measured, strict=True)) + " ms")
        cells = [Cell(name, planner, dict(chosen.placements), chosen.predicted_makespan_ms,
                      tuple(traces))
                 for (name, planner, chosen), traces in zip(planned, measured, strict=True)]
        limit = faas.max_running
    settings = {"runs": runs, "warmup_runs": warmup_runs, "probe_memory": list(probe_memory),
                "probe_runs": probe_runs,
                "sla": sla, "cpus": os.cpu_count()}
    return Measurements(workflows, tuple(cells), probes, limit, settings)


def _planning_models(wf: Workflow, probe_runs: Sequence[Trace]) -> tuple[Predictor, Platform]:
    """Predictor and platform from the probe runs, for the planners."""
    frame = measured_metrics(probe_runs, "probe")
    platform = calibrated_platform(frame, probe_runs)[0]
    return fit_predictor(wf, frame, platform), platform


# -- calibration and fitting -------------------------------------------------------------------
def measured_metrics(traces: Sequence[Trace], label: str,
                     exec_time: Literal["interval", "function"] = "interval",
                     host_cores: float | None = None) -> pd.DataFrame:
    """Metrics records of measured runs, one frame (run ids ``label-0``, ``label-1``, ...).

    ``exec_time="interval"`` replaces each ``exec_ms`` by the task's execution interval
    (``exec_end_ms - exec_start_ms``): the function plus pickling its output, the span
    the simulator's execution effect stands for. ``"function"`` keeps the function alone.
    With ``host_cores``, each time is the core time the task had: its interval, counted at
    ``min(1, host_cores / executions running)`` while others ran beside it on the host
    (:func:`core_ms`), which is what a simulator with that host model shares out again.
    """
    frames = []
    for i, trace in enumerate(traces):
        frame = records_to_frame(trace.metrics(f"{label}-{i}", label))
        if exec_time == "interval":
            tasks = trace.tasks.set_index("task")
            if host_cores is not None:
                spans = pd.Series(core_ms(tasks["exec_start_ms"].to_numpy(dtype=float),
                                          tasks["exec_end_ms"].to_numpy(dtype=float),
                                          host_cores), index=tasks.index)
            else:
                spans = tasks["exec_end_ms"] - tasks["exec_start_ms"]
            frame["exec_ms"] = spans.loc[frame["task"]].clip(lower=0.0).to_numpy()
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def core_ms(starts: np.ndarray, ends: np.ndarray, cores: float) -> np.ndarray:
    """Per interval, its length counted at ``min(1, cores / intervals open)`` at each moment.

    >>> core_ms(np.array([0.0, 0.0, 0.0, 0.0]), np.array([4.0, 4.0, 4.0, 4.0]), 2.0)
    array([2., 2., 2., 2.])
    """
    ends = np.maximum(ends, starts)
    cuts = np.unique(np.concatenate([starts, ends]))
    if cuts.size < 2:
        return ends - starts
    left, right = cuts[:-1], cuts[1:]
    mid = (left + right) / 2.0
    inside = (starts[:, None] <= mid[None, :]) & (mid[None, :] < ends[:, None])
    running = inside.sum(axis=0)
    share = np.minimum(1.0, cores / np.maximum(running, 1))
    return (inside * ((right - left) * share)[None, :]).sum(axis=1)


def calibrated_platform(metrics: pd.DataFrame, traces: Sequence[Trace], *,
                        warm_pool: bool = True, base: Platform | None = None
                        ) -> tuple[Platform, dict[str, Any]]:
    """The platform calibrated on measured runs (metrics and worker tables).

    Besides :func:`~faasplan.predictors.calibrate.calibrate`: both clocks include the
    client storing the run's inputs, which the emulator's client does in one ``MSET`` to
    a Redis on the same host, at memory speed (milliseconds for the workloads here); the
    workers' fitted bandwidth includes pickling and sealing and would overstate it, so
    the client's bandwidth is left unlimited.
    """
    workers = pd.concat([t.workers.assign(run_id=str(i)) for i, t in enumerate(traces)],
                        ignore_index=True)
    platform, report = calibrate(metrics, base, workers=workers, warm_pool=warm_pool)
    report["client_bandwidth_mb_s"] = {"value": math.inf, "samples": 0, "fitted": False}
    return platform.replace(client_bandwidth_mb_s=math.inf), report


def fit_predictor(workflow: Workflow, metrics: pd.DataFrame, platform: Platform) -> Predictor:
    """Predictors of execution time and output size, memory handled by ``platform``.

    Execution times are brought to the platform's reference memory with its calibrated
    memory -> speed rule before fitting, so the predictor itself is memory-free (memory
    exponent 0) and :class:`PlatformScaled` applies the rule when simulating. A
    per-function memory exponent fitted on plans whose memory sizes follow the critical
    path would mistake contention for a memory effect.
    """
    frame = metrics.copy()
    factors = np.array([platform.exec_factor(m) for m in frame["memory_mb"]])
    frame["exec_ms"] = frame["exec_ms"].to_numpy(dtype=float) / factors
    frame["memory_mb"] = platform.reference_memory_mb
    # A function the runs executed even once is better known from that than from the
    # defaults (100 ms per MB): a workflow's single sink has one sample per run.
    return fit(frame, io_hints(workflow), defaults=Defaults(exec_memory_exponent=0.0),
               min_samples=1)


class PlatformScaled:
    """A task behaviour whose execution times follow the platform's memory -> speed rule.

    ``base`` answers at the platform's reference memory; this scales by
    :meth:`Platform.exec_factor` of the worker's memory.
    """

    def __init__(self, base: TaskBehaviour, platform: Platform) -> None:
        self.base = base
        self.platform = platform

    def exec_ms(self, task_id: str, memory_mb: int, input_bytes: int,
                rng: np.random.Generator) -> float:
        """The base time at the reference memory, scaled to ``memory_mb``."""
        ms = self.base.exec_ms(task_id, self.platform.reference_memory_mb, input_bytes, rng)
        return float(ms * self.platform.exec_factor(memory_mb))

    def output_bytes(self, task_id: str, input_bytes: int, rng: np.random.Generator) -> int:
        """The base output size (memory does not change it)."""
        return int(self.base.output_bytes(task_id, input_bytes, rng))


# -- evaluation --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` found.

    ``runs``: one row per held-out run; ``summary``: one row per cell; ``simulated``:
    per (workload, planner) the replicate whose makespan is the median; ``platforms``:
    the calibrated platform per workload (key ``"*"`` when calibrated on all workloads).
    """

    runs: pd.DataFrame
    summary: pd.DataFrame
    simulated: Mapping[tuple[str, str], Trace]
    platforms: Mapping[str, Platform]
    reports: Mapping[str, dict[str, Any]]

    @property
    def median_abs_error(self) -> float:
        """Median over held-out runs of ``|sim - real| / real``."""
        return float(self.runs["error"].abs().median())

    @property
    def noise_floor(self) -> float:
        """The same median when the training runs' median makespan is the prediction.

        Replaying measurements of the very plan is as good as any model can hope to do
        without knowing what else the machine will be doing during the held-out runs.
        """
        return float(self.runs["replay_error"].abs().median())


def components(trace: Trace) -> dict[str, float]:
    """Summed execution, transfer and start-up time of a trace's tasks (ms)."""
    t = trace.tasks
    return {"execution": float((t["exec_end_ms"] - t["exec_start_ms"]).sum()),
            "transfer": float((t["download_ms"] + t["upload_ms"]).sum()),
            "startup": float(t["startup_ms"].sum())}


Holdout = Literal["plan", "workload", "runs"]
HOLDOUTS: tuple[str, ...] = ("plan", "workload", "runs")


@dataclass(frozen=True)
class _Fold:
    """What one evaluated cell is calibrated and fitted on, and which of its runs it scores."""

    cell: Cell
    platform_runs: tuple[Trace, ...]
    platform_probes: tuple[Trace, ...]
    fit_runs: tuple[Trace, ...]
    scored: tuple[int, ...]
    key: str


def _folds(measurements: Measurements, holdout: str, training_runs: int, split: str,
           scope: str) -> list[_Fold]:
    """One fold per cell: the data it may learn from never includes the runs it scores.

    * ``plan`` (leave-plan-out): the platform and the predictor come from the other
      planners' cells of the same workload (all their runs) and its probes; every run of
      the cell is scored.
    * ``workload`` (leave-workload-out): the platform comes from every cell and probe of
      the other workloads; the predictor from the workload's own probe runs (all-flexible
      runs, not one of the evaluated plans); every run of the cell is scored.
    * ``runs``: the first ``training_runs`` runs of every cell of the workload (its own
      plan included) calibrate and fit, the rest are scored. It peeks at the evaluated
      plan, and is kept only to compare with the honest splits.
    """
    cells = measurements.cells
    probes = measurements.probes
    folds = []
    for cell in cells:
        w = cell.workload
        if holdout == "plan":
            others = [c for c in cells if c.workload == w and c.planner != cell.planner]
            if not others:
                raise ValueError(f"leave-plan-out needs at least two planners per workload; "
                                 f"{w!r} has only {cell.planner!r}")
            runs = tuple(t for c in others for t in c.runs)
            folds.append(_Fold(cell, runs, tuple(probes.get(w, ())), runs,
                               tuple(range(len(cell.runs))), f"{w}/-{cell.planner}"))
        elif holdout == "workload":
            others = [c for c in cells if c.workload != w]
            if not others:
                raise ValueError("leave-workload-out needs at least two workloads")
            other_probes = tuple(t for n, ts in probes.items() if n != w for t in ts)
            if not probes.get(w):
                raise ValueError(f"leave-workload-out fits {w!r}'s predictor on its probe "
                                 "runs, and it has none")
            folds.append(_Fold(cell, tuple(t for c in others for t in c.runs), other_probes,
                               tuple(probes[w]), tuple(range(len(cell.runs))), f"-{w}"))
        elif holdout == "runs":
            names = [w] if scope == "workload" else [c.workload for c in cells]
            pool = [c for c in cells if c.workload in names]
            runs = tuple(t for c in pool for t in _split(c, training_runs, split)[0])
            own = tuple(t for c in cells if c.workload == w
                        for t in _split(c, training_runs, split)[0])
            folds.append(_Fold(cell, runs, tuple(t for n in names for t in probes.get(n, ())),
                               own, tuple(_split(cell, training_runs, split)[1]),
                               w if scope == "workload" else "*"))
        else:
            raise ValueError(f"evaluate: holdout must be one of {HOLDOUTS}, got {holdout!r}")
    return folds


def evaluate(measurements: Measurements, *, holdout: Holdout = "plan", training_runs: int = 2,
             replicates: int = 16, seed: int = 0, scope: Literal["workload", "all"] = "workload",
             warm_pool: bool = True, calibrate_platform: bool = True,
             exec_time: Literal["interval", "function"] = "interval",
             memory_rule: Literal["probe", "training"] = "probe",
             slots: Literal["flexible", "all", "none"] = "flexible",
             split: Literal["first", "alternate"] = "first", host_model: bool = True
             ) -> Evaluation:
    """Calibrate and fit on runs the evaluation never scores, simulate, compare.

    Parameters
    ----------
    holdout : "plan", "workload" or "runs"
        What each cell learns from (:func:`_folds`): the other plans of its workload
        (leave-plan-out, the default), the other workloads (leave-workload-out), or the
        first runs of every cell, its own plan included (``runs``: peeks, for comparison).
    training_runs, split, scope
        Used by ``holdout="runs"`` only: how many (and which) runs of each cell train,
        and whether one platform serves each workload or all of them.
    replicates : int
        Monte-Carlo replicates per cell; the simulated makespan is their median.
    host_model : bool
        Simulate the emulator's host: its cores shared by concurrent executions
        (:attr:`Platform.host_cores`, the measuring machine's core count). Real FaaS keeps
        dedicated vCPUs; the emulator does not have them.
    slots : "flexible", "all" or "none"
        Which plans the simulator runs with the emulator's ``max_running`` as its
        concurrency limit (the emulator counts processes computing, not those waiting
        for another worker's output; they agree on all-flexible plans, the default).
    warm_pool, calibrate_platform, exec_time, memory_rule
        Ablations: start-ups as the emulator labelled them (``warm_pool=False``, see
        :func:`~faasplan.predictors.calibrate.calibrate`); the default ``Platform()``
        instead of a calibrated one; execution times without output pickling
        (``"function"``); the memory -> speed rule fitted on the training runs rather
        than the probes.
    """
    if holdout == "runs":
        n_runs = min(len(c.runs) for c in measurements.cells)
        if not 1 <= training_runs < n_runs:
            raise ValueError(f"evaluate: training_runs must be between 1 and {n_runs - 1} "
                             f"(each cell has {n_runs} measured runs and needs one held "
                             f"out), got {training_runs}")
    folds = _folds(measurements, holdout, training_runs, split, scope)
    cores = float(measurements.settings.get("cpus") or os.cpu_count() or 1)
    # With the host model, fit on core time: the simulator shares the cores out again.
    host = cores if host_model and exec_time == "interval" else None
    platforms: dict[str, Platform] = {}
    reports: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    simulated: dict[tuple[str, str], Trace] = {}
    for fold in folds:
        cell = fold.cell
        wf = measurements.workflows[cell.workload]
        if fold.key not in platforms:
            frame = measured_metrics(fold.platform_runs, "train", exec_time, host)
            if calibrate_platform:
                platform, report = calibrated_platform(frame, fold.platform_runs,
                                                       warm_pool=warm_pool)
            else:
                platform, report = Platform(), {}
            if memory_rule == "probe" and calibrate_platform and fold.platform_probes:
                rule = calibrate(measured_metrics(fold.platform_probes, "probe", exec_time,
                                                  host))[0]
                platform = platform.replace(cpu_exponent=rule.cpu_exponent,
                                            multicore_exponent=rule.multicore_exponent)
            if host_model:
                platform = platform.replace(host_cores=cores)
            platforms[fold.key], reports[fold.key] = platform, report
        platform = platforms[fold.key]
        flexible = all(p.worker is None for p in cell.placements.values())
        if slots == "all" or (slots == "flexible" and flexible):
            platform = platform.replace(concurrency_limit=measurements.max_running)
        predictor = fit_predictor(wf, measured_metrics(fold.fit_runs, "train", exec_time, host),
                                  platform)
        behaviour = PlatformScaled(HistoryBehaviour(wf, predictor), platform)
        traces = simulate_many(wf, cell.placements, platform, seed=seed,
                               replicates=replicates, behaviour=behaviour)
        makespans = np.array([t.makespan_ms for t in traces])
        sim_ms = float(np.median(makespans))
        simulated[(cell.workload, cell.planner)] = traces[int(np.argmin(
            np.abs(makespans - sim_ms)))]
        sim_parts = pd.DataFrame([components(t) for t in traces]).mean()
        scored = [cell.runs[i] for i in fold.scored]
        # The noise floor: each scored run against the median of the cell's other runs,
        # which no model of the plan can beat without knowing the machine's other work.
        real_parts = pd.DataFrame([components(t) for t in scored])
        for i, trace, parts in zip(fold.scored, scored, real_parts.to_dict("records"),
                                   strict=True):
            rest = [t.makespan_ms for k, t in enumerate(cell.runs) if k != i]
            replay_ms = float(np.median(rest)) if rest else math.nan
            row: dict[str, Any] = {"workload": cell.workload, "planner": cell.planner,
                                   "run": i, "real_ms": trace.makespan_ms,
                                   "sim_ms": sim_ms,
                                   "error": sim_ms / trace.makespan_ms - 1.0,
                                   "replay_error": replay_ms / trace.makespan_ms - 1.0}
            for name in COMPONENTS:
                row[f"{name}_error"] = _ratio_error(sim_parts[name], parts[name])
            rows.append(row)
        real_ms = float(np.median([t.makespan_ms for t in scored]))
        cell_rows = [r for r in rows if (r["workload"], r["planner"]) ==
                     (cell.workload, cell.planner)]
        entry: dict[str, Any] = {
            "workload": cell.workload, "planner": cell.planner, "tasks": len(wf),
            "real_ms": real_ms, "sim_ms": sim_ms,
            "sim_p10_ms": float(np.percentile(makespans, 10)),
            "sim_p90_ms": float(np.percentile(makespans, 90)),
            "error": sim_ms / real_ms - 1.0,
            "median_abs_run_error": float(np.median([abs(r["error"]) for r in cell_rows])),
            "median_abs_replay_error": float(np.nanmedian([abs(r["replay_error"])
                                                           for r in cell_rows])),
            "planned_ms": cell.predicted_ms}
        for name in COMPONENTS:
            entry[f"{name}_error"] = _ratio_error(sim_parts[name],
                                                  float(real_parts[name].median()))
        summary.append(entry)
    return Evaluation(pd.DataFrame(rows), pd.DataFrame(summary), simulated, platforms, reports)


def _split(cell: Cell, training_runs: int, split: str) -> tuple[list[Trace], list[int]]:
    """The training runs of ``cell`` and the indices of its held-out ones."""
    n = len(cell.runs)
    if split == "first":
        train = list(range(training_runs))
    elif split == "alternate":
        # Every other run first: training spread over the measurement, as the test is.
        order = list(range(0, n, 2)) + list(range(1, n, 2))
        train = sorted(order[:training_runs])
    else:
        raise ValueError(f"evaluate: split must be 'first' or 'alternate', got {split!r}")
    return [cell.runs[i] for i in train], [i for i in range(n) if i not in train]


def _calibration_groups(measurements: Measurements, scope: str) -> dict[str, list[str]]:
    names = list(dict.fromkeys(c.workload for c in measurements.cells))
    if scope == "workload":
        return {n: [n] for n in names}
    if scope == "all":
        return {"*": names}
    raise ValueError(f"evaluate: scope must be 'workload' or 'all', got {scope!r}")


def _ratio_error(sim: float, real: float) -> float:
    return sim / real - 1.0 if real > 0 else math.nan


def run_experiment(workloads: Mapping[str, Workflow] | None = None,
                   planners: Sequence[str] = PLANNERS, *, runs: int = 6,
                   training_runs: int = 2, warmup_runs: int = 1, replicates: int = 16,
                   max_running: int | None = None, redis: str | None = None, seed: int = 0,
                   progress: Progress | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`measure` then :func:`evaluate`: ``(runs, summary)`` tables.

    Evaluated leave-plan-out (``training_runs`` is kept for callers of the earlier
    split and ignored). ``runs`` has one row per held-out run (``real_ms``, ``sim_ms``,
    ``error`` and ``<component>_error``); ``summary`` one row per (workload, planner) with
    the median real makespan, the simulated one and their error.

    Examples
    --------
    >>> from faasplan.experiments.fidelity import run_experiment
    >>> runs, summary = run_experiment(planners=["wukong"], runs=3)  # doctest: +SKIP
    >>> float(runs["error"].abs().median())  # doctest: +SKIP
    0.06
    """
    found = measure(workloads, planners, runs=runs, warmup_runs=warmup_runs,
                    max_running=max_running, redis=redis, seed=seed, progress=progress)
    result = evaluate(found, holdout="plan", replicates=replicates, seed=seed)
    return result.runs, result.summary
