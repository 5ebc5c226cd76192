"""Calibrate the platform model from metrics of real (or simulated) runs.

Transfer records give the storage latency and the worker bandwidth as a function of memory
(``ms = latency + bytes / (bw_1024 * (m / 1024) ** e)``, the predictors' fitted transfer
model); start-up records give the cold-start median, its memory exponent and spread, and
the warm-start time; execution times at several memory sizes give how execution speeds up
with memory (the platform's two exponents, pooled over functions and fitted robustly).
Parameters the records cannot identify keep their current value and the report says so.

Measured worker tables (``Trace.workers`` of real runs) add the invocation latency and a
more precise start-up picture: one row per invocation instead of one per first task.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize

from faasplan.platform import Platform
from faasplan.predictors import fit

MIN_TRANSFERS = 8
MIN_STARTS = 3
MIN_EXEC_SAMPLES = 8

_WORKER_NEEDS = ("invoked_ms", "start_ms", "startup_state", "startup_ms", "memory_mb",
                 "container")


def calibrate(metrics: pd.DataFrame, base: Platform | None = None, *,
              workers: pd.DataFrame | None = None, warm_pool: bool = False
              ) -> tuple[Platform, dict[str, Any]]:
    """Fit platform parameters on ``metrics``; returns the platform and a report.

    Parameters
    ----------
    metrics : DataFrame
        Metrics records (:func:`faasplan.predictors.records_to_frame`).
    base : Platform, optional
        Values of the parameters the data cannot identify (default ``Platform()``).
    workers : DataFrame, optional
        The ``workers`` tables of measured runs, concatenated, with a ``run_id`` column
        when they hold several runs. Adds ``invocation_base_ms`` (from the first start of
        each burst of invocations sent together, which queues behind nobody) and takes
        start-up times from these rows rather than from ``metrics``.
    warm_pool : bool
        With ``workers``: the runs found sandboxes kept warm by earlier runs (a shared
        emulator). The simulator starts every run with no sandbox, so each sandbox's
        first start in a run calibrates the simulated cold start and its later starts in
        the same run the warm start, whatever state the platform reported.

    Returns
    -------
    (Platform, dict)
        The report maps each parameter to ``{"value", "samples", "fitted"}``.

    Raises
    ------
    ValueError
        ``workers`` lacks a needed column.
    """
    platform = base or Platform()
    changes: dict[str, float] = {}
    report: dict[str, Any] = {}
    _transfers(metrics, platform, changes, report)
    _exec_speed(metrics, platform, changes, report)
    if workers is not None:
        _check_workers(workers)
        _invocation(workers, platform, changes, report)
        cold, warm = _starts_from_workers(workers, warm_pool)
    else:
        starts = metrics[metrics["startup"].isin(["cold", "warm"])]
        cold = starts[starts["startup"] == "cold"]
        warm = starts[starts["startup"] == "warm"]
    _starts(cold, warm, platform, changes, report)
    return platform.replace(**changes), report


def _note(report: dict[str, Any], changes: dict[str, float], platform: Platform, name: str,
          samples: int) -> None:
    report[name] = {"value": changes.get(name, getattr(platform, name)), "samples": samples,
                    "fitted": name in changes}


# -- storage and network ------------------------------------------------------------------
def _transfers(metrics: pd.DataFrame, platform: Platform, changes: dict[str, float],
               report: dict[str, Any]) -> None:
    predictor = fit(_uncontended(metrics))
    models = [predictor.transfer_model(d) for d in ("download", "upload")]
    fitted = [m for m in models if m.samples >= MIN_TRANSFERS and m.source == "fitted"]
    n_transfers = sum(m.samples for m in fitted)
    if fitted:
        weights = np.array([m.samples for m in fitted], dtype=float)
        latency = float(np.average([m.latency_ms for m in fitted], weights=weights))
        bandwidth = float(np.average([m.bandwidth_mb_s for m in fitted], weights=weights))
        exponent = float(np.average([m.memory_exponent for m in fitted], weights=weights))
        # A platform's bandwidth never shrinks with memory; a negative fit is noise.
        changes.update(storage_latency_ms=max(latency, 0.0),
                       worker_bandwidth_mb_s_at_1024=bandwidth,
                       worker_bandwidth_exponent=max(exponent, 0.0))
    for name in ("storage_latency_ms", "worker_bandwidth_mb_s_at_1024",
                 "worker_bandwidth_exponent"):
        _note(report, changes, platform, name, n_transfers)


def _uncontended(metrics: pd.DataFrame) -> pd.DataFrame:
    """Metrics keeping only downloads that ran alone in their task.

    Parallel downloads of one task share the worker's bandwidth, so each looks slower than
    the link is; a task's single download (and its upload) measures the link itself.
    """
    out = metrics.copy()
    out["downloads"] = [list(d) if len(d) == 1 else [] for d in out["downloads"]]
    return out


# -- execution speed and memory -----------------------------------------------------------
def exec_memory_exponents(metrics: pd.DataFrame, platform: Platform | None = None
                          ) -> dict[str, float]:
    """The platform's memory -> speed rule fitted on execution times.

    The rule of :meth:`Platform.exec_factor`: with ``v = memory / mb_per_vcpu``, time
    grows as ``(1 / v) ** cpu_exponent`` below one vCPU and shrinks as
    ``v ** -multicore_exponent`` above. Each function keeps its own level (only the
    shape is pooled) and the loss is robust (Cauchy, on log times), so a few executions
    slowed by something else (a busy machine, a pause) do not pass for a memory effect.

    Returns ``{"cpu_exponent": ..., "multicore_exponent": ...}`` holding the exponents the
    data identify (:data:`MIN_EXEC_SAMPLES` records at least of functions run at two sizes
    or more), clamped at 0: memory does not slow a task. When the sizes cannot separate
    the two sides (say each function ran at one size below and one above one vCPU), one
    exponent is fitted for both.
    """
    platform = platform or Platform()
    rows = metrics[["function", "memory_mb", "exec_ms"]]
    rows = rows[rows["exec_ms"] > 0]
    rows = rows[rows.groupby("function")["memory_mb"].transform("nunique") >= 2]
    if len(rows) < MIN_EXEC_SAMPLES:
        return {}
    codes = pd.factorize(rows["function"])[0]
    log_ms = np.log(rows["exec_ms"].to_numpy(dtype=float))
    log_v = np.log(np.clip(rows["memory_mb"].to_numpy(dtype=float) / platform.mb_per_vcpu,
                           platform.min_vcpu, platform.max_vcpu))
    sides = {"cpu_exponent": np.minimum(log_v, 0.0), "multicore_exponent": np.maximum(log_v, 0.0)}
    dummies = np.eye(codes.max() + 1)[codes]
    names = [n for n, x in sides.items() if np.ptp(x) > 1e-9]
    if not names:
        return {}
    x = np.column_stack([sides[n] for n in names])
    if np.linalg.matrix_rank(np.hstack([dummies, x])) < dummies.shape[1] + len(names):
        # E.g. every function at one size on each side: one exponent for both sides.
        x, names = log_v[:, None], [" ".join(names)]
        if np.linalg.matrix_rank(np.hstack([dummies, x])) <= dummies.shape[1]:
            return {}
    levels = np.array([np.median(log_ms[codes == k]) for k in range(codes.max() + 1)])
    spread = float(np.median(np.abs(log_ms - levels[codes]))) or 0.1
    k = len(names)

    def residual(p: np.ndarray) -> np.ndarray:
        return np.asarray(log_ms - (p[k + codes] - x @ p[:k]))

    result = optimize.least_squares(residual, np.concatenate([np.zeros(k), levels]),
                                    loss="cauchy", f_scale=spread)
    return {n: max(float(v), 0.0) for group, v in zip(names, result.x[:k], strict=True)
            for n in group.split()}


def _exec_speed(metrics: pd.DataFrame, platform: Platform, changes: dict[str, float],
                report: dict[str, Any]) -> None:
    changes.update(exec_memory_exponents(metrics, platform))
    for name in ("cpu_exponent", "multicore_exponent"):
        _note(report, changes, platform, name, len(metrics) if name in changes else 0)


# -- invocations and start-ups ------------------------------------------------------------
def _check_workers(workers: pd.DataFrame) -> None:
    missing = [c for c in _WORKER_NEEDS if c not in workers.columns]
    if missing:
        raise ValueError(f"calibrate(workers=...): the workers table lacks columns {missing}; "
                         f"pass Trace.workers of measured runs (with a run_id column when "
                         f"several runs are concatenated)")


def _runs(workers: pd.DataFrame) -> list[pd.DataFrame]:
    if "run_id" not in workers.columns:
        return [workers]
    return [part for _, part in workers.groupby("run_id", sort=False)]


def _invocation(workers: pd.DataFrame, platform: Platform, changes: dict[str, float],
                report: dict[str, Any]) -> None:
    """Median over runs of the delay of each run's first start, start-up excluded.

    Later invocations may wait for execution slots or dispatch behind others; the first
    one to start in a run waited for nothing, so its delay from being sent to starting,
    minus its start-up, is the platform's invocation latency.
    """
    delays = []
    for run in _runs(workers):
        delay = run["start_ms"] - run["invoked_ms"] - run["startup_ms"]
        delays.append(float(delay.to_numpy()[int(np.argmin(run["start_ms"].to_numpy()))]))
    if delays:
        changes["invocation_base_ms"] = max(float(np.median(delays)), 0.0)
    _note(report, changes, platform, "invocation_base_ms", len(delays))


def _starts_from_workers(workers: pd.DataFrame, warm_pool: bool
                         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cold, warm) start rows with ``startup_ms`` and ``memory_mb``."""
    rows = workers[workers["startup_state"].isin(["cold", "warm"])]
    if not warm_pool:
        return rows[rows["startup_state"] == "cold"], rows[rows["startup_state"] == "warm"]
    firsts, laters = [], []
    for run in _runs(rows):
        again = run.sort_values("start_ms", kind="stable").duplicated("container")
        firsts.append(run.loc[~again.reindex(run.index)])
        laters.append(run.loc[again.reindex(run.index)])
    return pd.concat(firsts), pd.concat(laters)


def _starts(cold: pd.DataFrame, warm: pd.DataFrame, platform: Platform,
            changes: dict[str, float], report: dict[str, Any]) -> None:
    if len(cold) >= MIN_STARTS:
        median, fitted_exponent, sigma = _cold_start(cold, platform.cold_start_memory_exponent)
        changes.update(cold_start_ms=median, cold_start_sigma=sigma)
        if fitted_exponent is not None:
            changes["cold_start_memory_exponent"] = fitted_exponent
    for name in ("cold_start_ms", "cold_start_memory_exponent", "cold_start_sigma"):
        _note(report, changes, platform, name, len(cold))
    if len(warm) >= MIN_STARTS:
        changes["warm_start_ms"] = float(np.median(warm["startup_ms"]))
    _note(report, changes, platform, "warm_start_ms", len(warm))


def _cold_start(cold: pd.DataFrame, exponent: float) -> tuple[float, float | None, float]:
    """Median at 1024 MB, memory exponent (None with one memory size) and log-spread.

    With a single memory size the given ``exponent`` converts its median to 1024 MB.
    A negative slope (bigger sandboxes starting faster) is taken for noise: the platform
    model has no such effect, so the exponent is then 0 and the median is pooled.
    """
    ms = cold["startup_ms"].to_numpy(dtype=float)
    mem = cold["memory_mb"].to_numpy(dtype=float)
    keep = ms > 0
    log_ms, log_mem = np.log(ms[keep]), np.log(mem[keep] / 1024.0)
    if len(np.unique(log_mem)) >= 2:
        slope, intercept = np.polyfit(log_mem, log_ms, 1)
        if slope >= 0:
            resid = log_ms - (intercept + slope * log_mem)
            return math.exp(intercept + float(np.median(resid))), float(slope), \
                float(resid.std())
        centre = float(np.median(log_ms))
        return math.exp(centre), 0.0, float((log_ms - centre).std())
    centre = float(np.median(log_ms))
    scale = float(mem[keep][0]) / 1024.0
    return math.exp(centre) / scale ** exponent, None, float((log_ms - centre).std())
