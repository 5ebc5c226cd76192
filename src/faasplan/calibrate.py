"""Calibrate the platform model from metrics of real (or simulated) runs.

Transfer records give the storage latency and the worker bandwidth as a function of memory
(``ms = latency + bytes / (bw_1024 * (m / 1024) ** e)``, the predictors' fitted transfer
model); start-up records give the cold-start median, its memory exponent and spread, and
the warm-start time. Parameters the records cannot identify keep their current value and
the report says so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from faasplan.predictors import fit
from faasplan.simulator import Platform

MIN_TRANSFERS = 8
MIN_STARTS = 3


def calibrate(metrics: pd.DataFrame, base: Platform | None = None
              ) -> tuple[Platform, dict[str, Any]]:
    """Fit platform parameters on ``metrics``; returns the platform and a report.

    The report maps each parameter to ``{"value", "samples", "fitted"}``.
    """
    platform = base or Platform()
    predictor = fit(_uncontended(metrics))
    changes: dict[str, float] = {}
    report: dict[str, Any] = {}

    models = [predictor.transfer_model(d) for d in ("download", "upload")]
    fitted = [m for m in models if m.samples >= MIN_TRANSFERS and m.source == "fitted"]
    n_transfers = sum(m.samples for m in fitted)
    if fitted:
        weights = np.array([m.samples for m in fitted], dtype=float)
        latency = float(np.average([m.latency_ms for m in fitted], weights=weights))
        bandwidth = float(np.average([m.bandwidth_mb_s for m in fitted], weights=weights))
        exponent = float(np.average([m.memory_exponent for m in fitted], weights=weights))
        changes.update(storage_latency_ms=max(latency, 0.0),
                       worker_bandwidth_mb_s_at_1024=bandwidth,
                       worker_bandwidth_exponent=exponent)
    for name in ("storage_latency_ms", "worker_bandwidth_mb_s_at_1024",
                 "worker_bandwidth_exponent"):
        report[name] = {"value": changes.get(name, getattr(platform, name)),
                        "samples": n_transfers, "fitted": name in changes}

    starts = metrics[metrics["startup"].isin(["cold", "warm"])]
    cold = starts[starts["startup"] == "cold"]
    warm = starts[starts["startup"] == "warm"]
    if len(cold) >= MIN_STARTS:
        median, fitted_exponent, sigma = _cold_start(cold, platform.cold_start_memory_exponent)
        changes.update(cold_start_ms=median, cold_start_sigma=sigma)
        if fitted_exponent is not None:
            changes["cold_start_memory_exponent"] = fitted_exponent
    for name in ("cold_start_ms", "cold_start_memory_exponent", "cold_start_sigma"):
        report[name] = {"value": changes.get(name, getattr(platform, name)),
                        "samples": len(cold), "fitted": name in changes}
    if len(warm) >= MIN_STARTS:
        changes["warm_start_ms"] = float(np.median(warm["startup_ms"]))
    report["warm_start_ms"] = {"value": changes.get("warm_start_ms", platform.warm_start_ms),
                               "samples": len(warm), "fitted": "warm_start_ms" in changes}
    return platform.replace(**changes), report


def _uncontended(metrics: pd.DataFrame) -> pd.DataFrame:
    """Metrics keeping only downloads that ran alone in their task.

    Parallel downloads of one task share the worker's bandwidth, so each looks slower than
    the link is; a task's single download (and its upload) measures the link itself.
    """
    out = metrics.copy()
    out["downloads"] = [list(d) if len(d) == 1 else [] for d in out["downloads"]]
    return out


def _cold_start(cold: pd.DataFrame, exponent: float) -> tuple[float, float | None, float]:
    """Median at 1024 MB, memory exponent (None with one memory size) and log-spread.

    With a single memory size the given ``exponent`` converts its median to 1024 MB.
    """
    ms = cold["startup_ms"].to_numpy(dtype=float)
    mem = cold["memory_mb"].to_numpy(dtype=float)
    keep = ms > 0
    log_ms, log_mem = np.log(ms[keep]), np.log(mem[keep] / 1024.0)
    if len(np.unique(log_mem)) >= 2:
        slope, intercept = np.polyfit(log_mem, log_ms, 1)
        resid = log_ms - (intercept + slope * log_mem)
        return math.exp(intercept + float(np.median(resid))), float(slope), float(resid.std())
    centre = float(np.median(log_ms))
    scale = float(mem[keep][0]) / 1024.0
    return math.exp(centre) / scale ** exponent, None, float((log_ms - centre).std())
