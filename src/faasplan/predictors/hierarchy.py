"""Hierarchical execution-time models: task level, function level, memory rule.

A prediction of a task's execution time comes from the most specific level with data:

1. **task** — the same task (same workflow structure hash, same task id) seen in past runs:
   its own median, shrunk toward its function's model when it has few samples;
2. **function** — the function's model, chosen per function by grouped cross-validation
   among robust candidates (:data:`CANDIDATES`): the median, a power law in input bytes
   fitted in log space with a robust loss, and the median of the nearest neighbours in
   log input size;
3. then the io hint and the defaults of :mod:`faasplan.predictors.models`.

Memory never enters as a free power law. Observations are first normalised to the
platform's reference memory with the platform's own vCPU rule (:class:`MemoryRule`): time
``~ v ** -cpu_exponent`` while a worker holds a share ``v < 1`` of one vCPU, then
``~ v ** -multicore_exponent``, both exponents fitted within their physical range ``[0, 1]``
(0: no gain from more CPU, 1: perfectly CPU-bound or perfectly parallel) and reported as
clamped when the best fit lies on a bound.

Every model keeps the empirical distribution of its *out-of-sample* multiplicative
residuals (observed / predicted; out-of-fold for the function level, within-task spread for
the task level), so a task's quantiles describe errors on data the model did not see.

Joint draws (a Monte-Carlo replicate of a whole run) split a residual into three parts, as a
random-effects model does, because the tasks of one run are not independent:

* a **run effect**, shared by every task of the run (same machines, same load);
* a **function-in-run effect**, shared by the tasks of one function in that run (same
  input data, same code path), a log-space deviation from the run effect;
* a **within-run residual**, drawn per task. For a function with many samples it depends
  on the input size (:class:`WithinResiduals`): small inputs spread more, in ratio, than
  large ones, and drawing every task from one pooled spread over-states the slowest of many
  parallel tasks, which is what a critical path runs through.

A new run is not one of the past runs, so the two effects are drawn from a smoothed
predictive distribution (:func:`smoothed_effects`): the observed effects widened for the
few of them there are, plus a Gaussian kernel.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import optimize

from faasplan.predictors.sla import Empirical

Candidate = Literal["median", "power", "knn"]
#: The function-level candidates, simplest first (ties in cross-validation go to the first).
CANDIDATES: tuple[Candidate, ...] = ("median", "power", "knn")

#: Fewest samples a function-level model is chosen on.
MIN_FUNCTION_SAMPLES = 3
#: Run-to-run spread (log-space standard deviation) assumed for a task whose function has
#: no task seen twice: the within-task variance cannot be measured then.
DEFAULT_WITHIN_SIGMA = 0.1
#: Fewest within-task deviations for a function to keep its own run-to-run distribution;
#: below this the deviations of every function are pooled (a handful of values would
#: understate the tails that decide a makespan percentile).
MIN_OWN_WITHIN = 30
#: A function gets memory exponents of its own only with this many samples over this many
#: tasks; otherwise it follows the exponents fitted over every function.
MIN_RULE_SAMPLES = 30
MIN_RULE_GROUPS = 5
#: Neighbours of the nearest-neighbour candidate.
KNN_K = 5
#: Folds of the grouped cross-validation (fewer groups: leave one group out).
FOLDS = 5
#: Largest believed size exponent of the power-law candidate.
SIZE_EXPONENT_MAX = 2.0
#: Within-run residuals depend on input size for functions with at least
#: ``BINNED_SAMPLES`` samples, in bins of at least ``WITHIN_BIN`` samples (at most eight).
WITHIN_BIN = 100
BINNED_SAMPLES = 4 * WITHIN_BIN
MAX_WITHIN_BINS = 8
#: Points of the Gaussian kernel of :func:`smoothed_effects` per observed effect.
KERNEL_POINTS = 16
_KERNEL = np.asarray([NormalDist().inv_cdf((j + 0.5) / KERNEL_POINTS)
                      for j in range(KERNEL_POINTS)])
_MIN_MS = 1e-3
_EXPONENT_GRID = np.linspace(0.0, 1.0, 21)
_UNIT = Empirical.constant(1.0)


# -- memory -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MemoryRule:
    """The platform's vCPU rule with fitted, bounded exponents.

    ``vcpu(m) = clamp(m / mb_per_vcpu, min_vcpu, max_vcpu)``; time is proportional to
    ``v ** -cpu_exponent`` for ``v < 1`` and to ``v ** -multicore_exponent`` beyond, and
    :meth:`factor` is relative to ``reference_memory_mb``.

    ``clamped`` names the exponents whose best fit lay on a bound of ``[0, 1]``; ``fitted``
    says whether the exponents came from data (else they are the platform's).
    """

    mb_per_vcpu: float = 1769.0
    min_vcpu: float = 0.07
    max_vcpu: float = 6.0
    reference_memory_mb: float = 1769.0
    cpu_exponent: float = 1.0
    multicore_exponent: float = 0.1
    fitted: bool = False
    clamped: tuple[str, ...] = ()

    @classmethod
    def of_platform(cls, platform: Any) -> MemoryRule:
        """The rule of a :class:`faasplan.Platform` (its exponents, not fitted), with
        exponents outside ``[0, 1]`` clamped and named in :attr:`clamped`."""
        a, b = float(platform.cpu_exponent), float(platform.multicore_exponent)
        clamped = tuple(name for name, v in (("cpu_exponent", a), ("multicore_exponent", b))
                        if not 0.0 <= v <= 1.0)
        return cls(float(platform.mb_per_vcpu), float(platform.min_vcpu),
                   float(platform.max_vcpu), float(platform.reference_memory_mb),
                   min(max(a, 0.0), 1.0), min(max(b, 0.0), 1.0), False, clamped)

    def _log_slowness(self, memory_mb: np.ndarray, a: float, b: float) -> np.ndarray:
        v = np.clip(memory_mb / self.mb_per_vcpu, self.min_vcpu, self.max_vcpu)
        return np.where(v < 1.0, -a * np.log(v), -b * np.log(v))

    def log_factor(self, memory_mb: np.ndarray, a: float | None = None,
                   b: float | None = None) -> np.ndarray:
        """``log(factor(memory_mb))`` for an array, optionally with other exponents."""
        a = self.cpu_exponent if a is None else a
        b = self.multicore_exponent if b is None else b
        ref = self._log_slowness(np.asarray([self.reference_memory_mb]), a, b)[0]
        return self._log_slowness(np.asarray(memory_mb, dtype=float), a, b) - ref

    def factor(self, memory_mb: float) -> float:
        """Execution time at ``memory_mb`` relative to the reference memory."""
        return float(math.exp(self.log_factor(np.asarray([memory_mb]))[0]))

    def with_exponents(self, cpu_exponent: float, multicore_exponent: float,
                       clamped: tuple[str, ...] = ()) -> MemoryRule:
        """A copy with fitted exponents."""
        return MemoryRule(self.mb_per_vcpu, self.min_vcpu, self.max_vcpu,
                          self.reference_memory_mb, cpu_exponent, multicore_exponent,
                          True, clamped)


def fit_memory_rule(base: MemoryRule, groups: np.ndarray, memory_mb: np.ndarray,
                    log_ms: np.ndarray) -> MemoryRule:
    """Fit the rule's two exponents to observations of repeated work at several memories.

    ``groups`` labels observations of the same work (a task, or a function at one input
    size); within a group only the memory changes. The exponents minimise the sum of
    absolute log residuals around each group's median on a grid over ``[0, 1]`` squared.
    An exponent no observation can identify (no memory below or above one vCPU) keeps the
    platform's value. Returns ``base`` when no group holds two memory sizes.
    """
    v = np.clip(memory_mb / base.mb_per_vcpu, base.min_vcpu, base.max_vcpu)
    codes = pd.factorize(groups)[0]
    multi = pd.Series(memory_mb).groupby(codes).nunique().to_numpy() > 1
    keep = multi[codes]
    if not keep.any():
        return base
    codes, v, log_ms, memory_mb = codes[keep], v[keep], log_ms[keep], memory_mb[keep]
    below, above = bool((v < 1.0).any()), bool((v > 1.0).any())
    grid_a = _EXPONENT_GRID if below else np.asarray([base.cpu_exponent])
    grid_b = _EXPONENT_GRID if above else np.asarray([base.multicore_exponent])
    best: tuple[float, float, float] | None = None
    for a in grid_a:
        for b in grid_b:
            y = log_ms - base.log_factor(memory_mb, float(a), float(b))
            med = pd.Series(y).groupby(codes).transform("median").to_numpy()
            loss = float(np.abs(y - med).sum())
            if best is None or loss < best[0] - 1e-12:
                best = (loss, float(a), float(b))
    assert best is not None
    _, a, b = best
    clamped = tuple(name for name, value, free in (("cpu_exponent", a, below),
                                                   ("multicore_exponent", b, above))
                    if free and value in (0.0, 1.0))
    return base.with_exponents(a, b, clamped)


# -- function level -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True, eq=False)
class FunctionModel:
    """Execution time of one function at the reference memory, chosen by cross-validation.

    ``kind`` is the winning candidate; ``cv_error`` holds every candidate's median absolute
    log error on held-out groups. ``residuals`` are the winner's out-of-fold ratios.
    """

    kind: Candidate
    median_ms: float
    log_coefficient: float = 0.0
    size_exponent: float = 0.0
    knn_log_x: tuple[float, ...] = ()
    knn_log_y: tuple[float, ...] = ()
    residuals: Empirical = _UNIT
    samples: int = 0
    cv_error: Mapping[str, float] = field(default_factory=dict)
    clamped: tuple[str, ...] = ()

    def point_ms(self, input_bytes: float) -> float:
        """The model's time at the reference memory for ``input_bytes`` of input."""
        return float(self.points_ms(np.asarray([input_bytes], dtype=float))[0])

    def points_ms(self, input_bytes: np.ndarray) -> np.ndarray:
        """:meth:`point_ms` of many input sizes at once."""
        lx = np.log(np.maximum(input_bytes.astype(float), 1.0))
        if self.kind == "median":
            return np.full(len(lx), self.median_ms)
        if self.kind == "power":
            return np.exp(self.log_coefficient + self.size_exponent * lx)
        return np.exp(_knn_predict(np.asarray(self.knn_log_x), np.asarray(self.knn_log_y),
                                   lx))


def _knn_predict(train_x: np.ndarray, train_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Median of ``train_y`` over the ``KNN_K`` nearest ``train_x`` of each ``x``.

    In one dimension the k nearest points lie within k positions of ``x`` in sorted order,
    so each query looks at a window of 2k sorted points instead of all of them.
    """
    order = np.argsort(train_x, kind="stable")
    xs, ys = train_x[order], train_y[order]
    n, k = len(xs), min(KNN_K, len(xs))
    width = min(2 * k, n)
    start = np.clip(np.searchsorted(xs, x) - k, 0, n - width)
    window = start[:, None] + np.arange(width)[None, :]
    distance = np.abs(xs[window] - x[:, None])
    nearest = np.take_along_axis(window, np.argsort(distance, axis=1, kind="stable")[:, :k],
                                 axis=1)
    return np.median(ys[nearest], axis=1)


def _fit_power(lx: np.ndarray, ly: np.ndarray) -> tuple[float, float, bool]:
    """Robust (soft-L1) log-space power law; returns (log a, b, clamped)."""
    if np.ptp(lx) < math.log(2.0):
        return float(np.median(ly)), 0.0, False
    b0 = float(np.polyfit(lx, ly, 1)[0])
    b0 = min(max(b0, 0.0), SIZE_EXPONENT_MAX)
    la0 = float(np.median(ly - b0 * lx))
    scale = max(float(np.median(np.abs(ly - la0 - b0 * lx))), 0.05)
    result = optimize.least_squares(lambda p: ly - p[0] - p[1] * lx, [la0, b0],
                                    bounds=([-np.inf, 0.0], [np.inf, SIZE_EXPONENT_MAX]),
                                    loss="soft_l1", f_scale=scale, method="trf")
    la, b = (float(v) for v in result.x)
    clamped = b <= 1e-9 or b >= SIZE_EXPONENT_MAX - 1e-9
    return la, b, clamped and b0 != 0.0


def _candidate_predict(kind: Candidate, lx: np.ndarray, ly: np.ndarray, test_x: np.ndarray
                       ) -> np.ndarray:
    if kind == "median":
        return np.full(len(test_x), float(np.median(ly)))
    if kind == "power":
        la, b, _ = _fit_power(lx, ly)
        return la + b * test_x
    return _knn_predict(lx, ly, test_x)


def _folds(groups: np.ndarray) -> list[np.ndarray]:
    """Test masks of a grouped K-fold split (whole groups held out together)."""
    uniq = pd.unique(groups)
    k = min(FOLDS, len(uniq))
    order = {g: i % k for i, g in enumerate(sorted(uniq, key=str))}
    fold = np.asarray([order[g] for g in groups])
    return [fold == i for i in range(k)]


def fit_function(input_bytes: np.ndarray, log_ms_ref: np.ndarray, groups: np.ndarray
                 ) -> FunctionModel | None:
    """Choose and fit one function's model on times normalised to the reference memory.

    ``groups`` labels observations that must be held out together (the same task in
    several runs). Returns None with fewer than :data:`MIN_FUNCTION_SAMPLES` samples.
    """
    n = len(log_ms_ref)
    if n < MIN_FUNCTION_SAMPLES:
        return None
    lx = np.log(np.maximum(input_bytes.astype(float), 1.0))
    ly = log_ms_ref
    errors: dict[str, float] = {}
    oof: dict[str, np.ndarray] = {}
    masks = _folds(groups)
    for kind in CANDIDATES:
        resid = np.empty(n)
        if len(masks) < 2:
            # One group only: in-sample residuals are all there is.
            resid[:] = ly - _candidate_predict(kind, lx, ly, lx)
        else:
            for test in masks:
                train = ~test
                resid[test] = ly[test] - _candidate_predict(kind, lx[train], ly[train], lx[test])
        oof[kind] = resid
        errors[kind] = float(np.median(np.abs(resid)))
    # Prefer the simplest candidate within 2 % of the best error.
    floor = min(errors.values())
    best = next(c for c in CANDIDATES if errors[c] <= floor * 1.02 + 1e-12)
    median_ms = float(math.exp(float(np.median(ly))))
    la, b, clamped = _fit_power(lx, ly)
    order = np.argsort(lx, kind="stable")
    return FunctionModel(best, median_ms, la, b, tuple(lx[order].tolist()),
                         tuple(ly[order].tolist()), Empirical.of(np.exp(oof[best]).tolist()),
                         n, errors, ("size_exponent",) if clamped and best == "power" else ())


@dataclass(frozen=True, slots=True)
class WithinResiduals:
    """Within-run residual factors of one function, by input size.

    ``bins[i]`` holds the residuals of similar input sizes; ``edges`` are the log input
    sizes between consecutive bins (one fewer than the bins).
    """

    edges: tuple[float, ...]
    bins: tuple[Empirical, ...]

    @classmethod
    def of(cls, log_input: np.ndarray, log_residual: np.ndarray) -> WithinResiduals:
        """Bin ``log_residual`` by ``log_input`` (one bin below :data:`BINNED_SAMPLES`)."""
        n = len(log_residual)
        count = 1
        if n >= BINNED_SAMPLES:
            count = min(MAX_WITHIN_BINS, n // WITHIN_BIN)
        order = np.argsort(log_input, kind="stable")
        chunks = np.array_split(order, count)
        edges = tuple(float((log_input[a[-1]] + log_input[b[0]]) / 2.0)
                      for a, b in itertools.pairwise(chunks))
        return cls(edges, tuple(Empirical.of(np.exp(log_residual[c]).tolist())
                                for c in chunks))

    def at(self, input_bytes: float) -> Empirical:
        """The residual distribution for a task with ``input_bytes`` of input."""
        lx = math.log(max(float(input_bytes), 1.0))
        return self.bins[bisect.bisect_left(self.edges, lx)]


def smoothed_effects(log_effects: np.ndarray) -> Empirical:
    """The predictive distribution of a new group's effect from the observed ones.

    A smoothed bootstrap: each observed log effect is convolved with a Gaussian kernel of
    Silverman's bandwidth, discretised on :data:`KERNEL_POINTS` normal quantiles, and the
    result is rescaled about the mean to the variance a new draw has, ``s^2 (k + 1) / k``
    for ``k`` observations of sample variance ``s^2`` (``k - 1`` degrees of freedom). A new
    run may so be slower or faster than any past one, without the kernel's own variance
    widening it further. Fewer than two observations: the unit distribution.
    """
    v = np.asarray(log_effects, dtype=float)
    k = len(v)
    if k < 2 or not np.isfinite(v).all():
        return _UNIT
    sd = float(np.std(v, ddof=1))
    if sd <= 0.0:
        return Empirical.constant(float(np.exp(v[0])))
    bandwidth = float(np.std(v)) * (4.0 / (3.0 * k)) ** 0.2
    centre = float(np.mean(v))
    values = (v[:, None] - centre + bandwidth * _KERNEL[None, :]).ravel()
    values *= sd * math.sqrt((k + 1) / k) / float(np.std(values))
    return Empirical.of(np.exp(centre + values).tolist())


# -- task level ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TaskModel:
    """A task's own history: its median time at the reference memory and sample count."""

    log_median_ms: float
    samples: int
    output_bytes: float


@dataclass(frozen=True, slots=True)
class ExecDistribution:
    """A predicted execution time: median and multiplicative residual distribution.

    ``source`` is ``"task"``, ``"function:<candidate>"``, ``"hint"`` or ``"default"``.
    ``residuals`` is the marginal spread (what :meth:`quantile` reads); ``within`` the
    within-run spread of a joint draw (:meth:`draw_within`), which the run's shared effects
    multiply (``None``: the marginal one).
    """

    median_ms: float
    residuals: Empirical
    samples: int
    source: str
    within: Empirical | None = None

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of the execution time (ms)."""
        return self.median_ms * self.residuals.quantile(q)

    def at(self, sla: str) -> float:
        """The time at an SLA level (``"average"`` or ``"pNN"``)."""
        return self.median_ms * self.residuals.at(sla)

    def draw(self, u: float) -> float:
        """The time at uniform draw ``u`` in [0, 1] (inverse-CDF sampling, marginal)."""
        return self.median_ms * self.residuals.quantile(min(max(u, 0.0), 1.0))

    @property
    def within_residuals(self) -> Empirical:
        """The within-run spread (the marginal one when none was fitted)."""
        return self.within if self.within is not None else self.residuals

    def draw_within(self, u: float) -> float:
        """The time at uniform draw ``u`` before the run's shared effects multiply it."""
        return self.median_ms * self.within_residuals.quantile(min(max(u, 0.0), 1.0))


@dataclass(frozen=True, eq=False)
class Hierarchy:
    """The fitted task- and function-level models plus the memory rule of each function."""

    rule: MemoryRule
    functions: Mapping[str, FunctionModel]
    function_rules: Mapping[str, MemoryRule]
    tasks: Mapping[tuple[str, str], TaskModel]
    task_residuals: Mapping[str, Empirical]
    pooled_residuals: Empirical
    shrink: Mapping[str, float] = field(default_factory=dict)
    run_effects: Empirical = _UNIT
    """Whole-run speed factors: how much slower or faster a new run may be as a whole than
    the function models say (each past run's median over its tasks, centred on 1, then
    smoothed by :func:`smoothed_effects`). A replicate draws one for all its tasks, because
    tasks of one run share a machine and its load."""
    function_effects: Mapping[str, Empirical] = field(default_factory=dict)
    """Per function, the factor shared by its tasks in one run on top of the run effect
    (smoothed like :attr:`run_effects`); absent: 1."""
    within: Mapping[str, WithinResiduals] = field(default_factory=dict)
    """Per function, its within-run residuals by input size (joint draws)."""
    task_within: Mapping[str, Empirical] = field(default_factory=dict)
    """Per function, the within-task spread across runs once both effects are removed."""

    def rule_for(self, function: str) -> MemoryRule:
        """The memory rule of ``function`` (the pooled one if it has none of its own)."""
        return self.function_rules.get(function, self.rule)

    def function_exec(self, function: str, input_bytes: float, memory_mb: float
                      ) -> ExecDistribution | None:
        """The function-level distribution, or None for an unknown function."""
        model = self.functions.get(function)
        if model is None:
            return None
        median = model.point_ms(input_bytes) * self.rule_for(function).factor(memory_mb)
        within = self.within.get(function)
        return ExecDistribution(median, model.residuals, model.samples,
                                f"function:{model.kind}",
                                None if within is None else within.at(input_bytes))

    def task_exec(self, workflow_hash: str, task_id: str, function: str, input_bytes: float,
                  memory_mb: float) -> ExecDistribution | None:
        """The task-level distribution (shrunk toward the function), else the function's."""
        func = self.function_exec(function, input_bytes, memory_mb)
        own = self.tasks.get((workflow_hash, task_id))
        if own is None:
            return func
        factor = self.rule_for(function).factor(memory_mb)
        log_own = own.log_median_ms + math.log(factor)
        if func is not None:
            # Empirical Bayes: the prior (function model) weighs sigma_within^2 / tau^2
            # samples, tau^2 being the spread of tasks around their function's model.
            w = own.samples / (own.samples + self.shrink.get(function, 1.0))
            log_med = w * log_own + (1.0 - w) * math.log(max(func.median_ms, _MIN_MS))
        else:
            log_med = log_own
        resid = self.task_residuals.get(function, self.pooled_residuals)
        return ExecDistribution(math.exp(log_med), resid, own.samples, "task",
                                self.task_within.get(function))

    def summary(self) -> pd.DataFrame:
        """One row per function: chosen candidate, CV errors, memory exponents, clamps."""
        rows = []
        for name, m in sorted(self.functions.items()):
            rule = self.rule_for(name)
            rows.append({"function": name, "model": m.kind, "samples": m.samples,
                         **{f"cv_{k}": v for k, v in m.cv_error.items()},
                         "median_ms": m.median_ms, "size_exponent": m.size_exponent,
                         "cpu_exponent": rule.cpu_exponent,
                         "multicore_exponent": rule.multicore_exponent,
                         "clamped": ",".join(m.clamped + rule.clamped),
                         "p10_factor": m.residuals.quantile(0.1),
                         "p90_factor": m.residuals.quantile(0.9)})
        return pd.DataFrame(rows)


#: Times below this share of their function's median are timer artefacts (traces record
#: whole seconds, so a 0.4 s task may read 0): they are raised to it before taking logs.
RESOLUTION_SHARE = 0.01


def _floored_ms(df: pd.DataFrame) -> np.ndarray:
    """Execution times with each function's near-zero readings raised to a floor."""
    ms = df["exec_ms"].to_numpy(dtype=float)
    positive = pd.Series(np.where(ms > 0, ms, np.nan))
    median = positive.groupby(df["function"].to_numpy()).transform("median").to_numpy()
    floor = np.where(np.isfinite(median), median * RESOLUTION_SHARE, _MIN_MS)
    return np.maximum(ms, np.maximum(floor, _MIN_MS))


def _has_repeats(groups: np.ndarray, memory_mb: np.ndarray) -> bool:
    """Whether some group was observed at two memory sizes."""
    if not len(groups):
        return False
    counts = pd.Series(memory_mb).groupby(pd.factorize(groups)[0]).nunique()
    return bool((counts > 1).any())


def fit_hierarchy(df: pd.DataFrame, rule: MemoryRule) -> Hierarchy:
    """Fit task- and function-level models to a validated metrics frame."""
    memory = df["memory_mb"].to_numpy(dtype=float)
    log_ms = np.log(_floored_ms(df))
    input_bytes = df["input_bytes"].to_numpy(dtype=float)
    keys = (df["workflow_hash"].astype(str) + "\x00" + df["task"].astype(str)).to_numpy()
    functions = df["function"].astype(str).to_numpy()
    # Repeated work at several memories identifies the exponents: the same task, or else
    # tasks of one function on the same input size.
    same_size = (df["function"].astype(str) + "\x00" + df["input_bytes"].astype(str)).to_numpy()
    groups = keys if _has_repeats(keys, memory) else same_size
    pooled_rule = fit_memory_rule(rule, groups, memory, log_ms) if len(df) else rule
    function_rules: dict[str, MemoryRule] = {}
    models: dict[str, FunctionModel] = {}
    tasks: dict[tuple[str, str], TaskModel] = {}
    task_resid: dict[str, Empirical] = {}
    shrink: dict[str, float] = {}
    all_within: list[np.ndarray] = []
    outputs = df["output_bytes"].to_numpy(dtype=float)
    for name, rows in pd.Series(range(len(df))).groupby(functions).indices.items():
        name = str(name)
        fn_rule = pooled_rule
        if len(rows) >= MIN_RULE_SAMPLES and len(set(groups[rows])) >= MIN_RULE_GROUPS:
            fn_rule = fit_memory_rule(pooled_rule, groups[rows], memory[rows], log_ms[rows])
        if fn_rule.fitted and fn_rule is not pooled_rule:
            function_rules[name] = fn_rule
        use_rule = function_rules.get(name, pooled_rule)
        ref = log_ms[rows] - use_rule.log_factor(memory[rows])
        model = fit_function(input_bytes[rows], ref, keys[rows])
        if model is not None:
            models[name] = model
        within: list[float] = []
        frame = pd.DataFrame({"key": keys[rows], "y": ref, "out": outputs[rows]})
        for key, grp in frame.groupby("key", sort=False):
            y = grp["y"].to_numpy()
            wf_hash, task_id = str(key).split("\x00", 1)
            tasks[(wf_hash, task_id)] = TaskModel(float(np.median(y)), len(y),
                                                  float(np.median(grp["out"].to_numpy())))
            if len(y) >= 2:
                # Within-task spread, widened for the median estimated on the same samples.
                dev = (y - np.median(y)) * math.sqrt(len(y) / (len(y) - 1))
                within.extend(dev.tolist())
        if len(within) >= 3:
            task_resid[name] = Empirical.of(np.exp(within).tolist())
            all_within.append(np.asarray(within))
            sigma2 = float(np.var(within))
        else:
            sigma2 = DEFAULT_WITHIN_SIGMA ** 2
        if model is not None:
            between = np.log(np.asarray(model.residuals.values))
            tau2 = max(float(np.var(between)) - sigma2, 1e-6)
            shrink[name] = sigma2 / tau2
    pooled = (Empirical.of(np.exp(np.concatenate(all_within)).tolist()) if all_within
              else _UNIT)
    for name in list(task_resid):
        if len(task_resid[name]) < MIN_OWN_WITHIN:
            task_resid[name] = pooled
    for name in models:
        task_resid.setdefault(name, pooled if all_within else models[name].residuals)
    effects = _decompose(df, models, function_rules, pooled_rule, log_ms, memory, input_bytes,
                         keys)
    return Hierarchy(pooled_rule, models, function_rules, tasks, task_resid, pooled, shrink,
                     effects.run, effects.functions, effects.within, effects.task_within)


#: Fewest past runs (each with this many tasks) for whole-run effects to be estimated.
MIN_RUNS = 3
MIN_RUN_TASKS = 3


@dataclass(frozen=True)
class _Effects:
    run: Empirical
    functions: dict[str, Empirical]
    within: dict[str, WithinResiduals]
    task_within: dict[str, Empirical]


def _decompose(df: pd.DataFrame, models: Mapping[str, FunctionModel],
               rules: Mapping[str, MemoryRule], pooled: MemoryRule, log_ms: np.ndarray,
               memory: np.ndarray, input_bytes: np.ndarray, keys: np.ndarray) -> _Effects:
    """Split each observation's log residual against its function model into a run effect,
    a function-in-run effect and a within-run residual (see the module docstring).

    Run effects need :data:`MIN_RUNS` runs of :data:`MIN_RUN_TASKS` modelled tasks (else
    none is removed); a function's effect needs it seen in two runs.
    """
    runs = df["run_id"].astype(str).to_numpy()
    functions = df["function"].astype(str).to_numpy()
    resid = np.full(len(df), np.nan)
    ref = np.full(len(df), np.nan)
    for fn, rows in pd.Series(range(len(df))).groupby(functions).indices.items():
        model = models.get(str(fn))
        if model is None:
            continue
        rule = rules.get(str(fn), pooled)
        ref[rows] = log_ms[rows] - rule.log_factor(memory[rows])
        predicted = model.points_ms(input_bytes[rows])
        resid[rows] = ref[rows] - np.log(np.maximum(predicted, _MIN_MS))
    frame = pd.DataFrame({"run": runs, "f": functions, "r": resid, "ref": ref, "key": keys,
                          "lx": np.log(np.maximum(input_bytes, 1.0))}).dropna()
    sizes = frame.groupby("run")["r"].size()
    medians = frame.groupby("run")["r"].median()[sizes >= MIN_RUN_TASKS]
    run = _UNIT
    frame["e"] = 0.0
    if len(medians) >= MIN_RUNS:
        centred = medians - float(np.median(medians.to_numpy()))
        frame["e"] = frame["run"].map(centred).fillna(0.0)
        run = smoothed_effects(centred.to_numpy())
    # Centred per function: the effects are pure deviations shared within a run, and a
    # function model's own offset stays in its within-run residuals (a task-level model
    # has none: its median is the task's own).
    group = (frame["r"] - frame["e"]).groupby([frame["f"], frame["run"]]).median()
    group = group - group.groupby(level=0).transform("median")
    index = pd.MultiIndex.from_arrays([frame["f"], frame["run"]])
    frame["g"] = group.reindex(index).to_numpy()
    out_functions: dict[str, Empirical] = {}
    out_within: dict[str, WithinResiduals] = {}
    task_dev: dict[str, list[float]] = {}
    for fn, sub in frame.groupby("f", sort=True):
        name = str(fn)
        per_run = group.loc[name].to_numpy()
        if len(per_run) >= 2:
            out_functions[name] = smoothed_effects(per_run)
        w = (sub["r"] - sub["e"] - sub["g"]).to_numpy()
        out_within[name] = WithinResiduals.of(sub["lx"].to_numpy(), w)
        z = (sub["ref"] - sub["e"] - sub["g"]).to_numpy()
        for idx in pd.Series(range(len(sub))).groupby(sub["key"].to_numpy()).indices.values():
            if len(idx) >= 2:
                y = z[idx]
                dev = (y - np.median(y)) * math.sqrt(len(y) / (len(y) - 1))
                task_dev.setdefault(name, []).extend(dev.tolist())
    pooled_dev = [v for values in task_dev.values() for v in values]
    task_within = {name: Empirical.of(np.exp(values if len(values) >= MIN_OWN_WITHIN
                                             else pooled_dev).tolist())
                   for name, values in task_dev.items()}
    return _Effects(run, out_functions, out_within, task_within)


def quantiles(values: Sequence[float], qs: Sequence[float] = (0.1, 0.5, 0.9)
              ) -> dict[str, float]:
    """``{"p10": ..., "p50": ..., "p90": ...}`` of ``values`` (linear interpolation)."""
    arr = np.asarray(values, dtype=float)
    return {f"p{round(q * 100)}": float(np.quantile(arr, q)) for q in qs}
