"""Fitting the models of :mod:`faasplan.predictors.models` to metrics.

All fits work on logarithms: the noise of times and sizes is multiplicative (a task is
"10 % slower", not "3 ms slower"), so a least-squares fit in log space weighs small and
large observations alike and its residuals are the ratios observed / fitted that the SLA
levels are read from. Linear-in-logs models are solved exactly (``scipy.linalg.lstsq``);
models with an additive term (execution constant, transfer latency) are fitted with
``scipy.optimize.least_squares``.

A parameter the data cannot identify is not fitted: a single memory size leaves the memory
exponent at its default, a single input size makes execution time constant in size, and
transfers of (nearly) one size cannot separate latency from bandwidth, so the latency stays
at its default (capped below the fastest observation).
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg, optimize

from faasplan.predictors.hierarchy import MemoryRule, fit_hierarchy
from faasplan.predictors.metrics import (
    MetricsRecord,
    as_frame,
    explode_transfers,
    validate_records,
)
from faasplan.predictors.models import (
    DEFAULTS,
    MIN_MS,
    MIN_SAMPLES,
    REFERENCE_MEMORY_MB,
    Defaults,
    ExecModel,
    OutputModel,
    StartState,
    StartupModel,
    TransferModel,
)
from faasplan.predictors.predictor import Predictor
from faasplan.predictors.sla import Empirical
from faasplan.workflow.io import IOHint

#: An additive execution constant is only tried with at least this many samples.
CONSTANT_MIN_SAMPLES = 8
# The constant must lower the AIC by this much more than its own penalty: a spurious
# constant bends the size exponent, so it has to earn its place.
_AIC_MARGIN = 4.0
_SPREAD = 1e-9
# Transfer sizes must span at least a factor 2 before latency and bandwidth are separated.
_SIZE_SPREAD = math.log(2.0)
# Largest size exponent believed (execution time, output size); beyond it the fit is noise.
_SIZE_EXPONENT_MAX = 3.0
_EXPONENT_BOUND = 10.0

Records = pd.DataFrame | str | os.PathLike[str] | Sequence[MetricsRecord]


def fit(records: Records, hints: Mapping[str, IOHint] | None = None, *,
        defaults: Defaults = DEFAULTS, min_samples: int = MIN_SAMPLES,
        allowed_memory: Collection[int] | None = None, platform: Any = None) -> Predictor:
    """Fit a :class:`Predictor` to past executions.

    Parameters
    ----------
    records
        A metrics DataFrame, the path of a metrics Parquet file, or a sequence of
        :class:`MetricsRecord`. Validated first (:func:`validate_records`).
    hints
        ``{function name: IOHint}``: the form of each function's output-size model, and its
        prediction while the function has fewer than ``min_samples`` samples.
    defaults
        What models with too few samples predict.
    min_samples
        Fewest samples a model is fitted on (default 3).
    allowed_memory
        Reject records whose memory size is not one of these.
    platform
        A :class:`faasplan.Platform`: also fit the hierarchical models of
        :mod:`faasplan.predictors.hierarchy` (task level, cross-validated function level,
        the platform's vCPU rule for memory), which then answer execution-time queries.

    Examples
    --------
    >>> from faasplan.predictors import MetricsRecord, fit
    >>> recs = [MetricsRecord("wf", f"r{i}", "p", f"t{i}", "f", 1024, 10**6, 10**6, 50.0)
    ...         for i in range(3)]
    >>> predictor = fit(recs)
    >>> round(predictor.execution_ms("f", 10**6, 1024), 1)
    50.0
    """
    df = as_frame(records)
    validate_records(df, allowed_memory=allowed_memory)
    return fit_frame(df, hints, defaults=defaults, min_samples=min_samples, platform=platform)


def fit_frame(df: pd.DataFrame, hints: Mapping[str, IOHint] | None = None, *,
              defaults: Defaults = DEFAULTS, min_samples: int = MIN_SAMPLES,
              platform: Any = None) -> Predictor:
    """:func:`fit` on a frame already validated (no second validation pass)."""
    if not (isinstance(min_samples, int) and min_samples >= 1):
        raise ValueError(f"min_samples must be an integer >= 1, got {min_samples!r}")
    hints = _checked_hints(hints)
    exec_models: dict[str, ExecModel] = {}
    output_models: dict[str, OutputModel] = {}
    if len(df):
        memory = df["memory_mb"].to_numpy(dtype=float)
        input_bytes = df["input_bytes"].to_numpy(dtype=float)
        output_bytes = df["output_bytes"].to_numpy(dtype=float)
        exec_ms = df["exec_ms"].to_numpy(dtype=float)
        for function, rows in df.groupby("function", sort=True).indices.items():
            name = str(function)
            ex = fit_exec(input_bytes[rows], memory[rows], exec_ms[rows], defaults=defaults,
                          min_samples=min_samples)
            if ex is not None:
                exec_models[name] = ex
            out = fit_output(input_bytes[rows], output_bytes[rows], hints.get(name),
                             min_samples=min_samples)
            if out is not None:
                output_models[name] = out
    transfers = explode_transfers(df) if len(df) else None
    transfer_models: dict[str, TransferModel] = {}
    for direction in ("download", "upload"):
        if transfers is None:
            continue
        sel = transfers[(transfers["direction"] == direction) & ~transfers["streamed"]]
        model = fit_transfer(sel["nbytes"].to_numpy(dtype=float),
                             sel["memory_mb"].to_numpy(dtype=float),
                             sel["ms"].to_numpy(dtype=float), defaults=defaults,
                             min_samples=min_samples)
        if model is not None:
            transfer_models[direction] = model
    startup_models: dict[str, StartupModel] = {}
    for state in ("cold", "warm"):
        if not len(df):
            continue
        sel = df[df["startup"] == state]
        startup = fit_startup(sel["memory_mb"].to_numpy(dtype=float),
                              sel["startup_ms"].to_numpy(dtype=float), state,
                              defaults=defaults, min_samples=min_samples)
        if startup is not None:
            startup_models[state] = startup
    hierarchy = None
    if platform is not None and len(df):
        hierarchy = fit_hierarchy(df, MemoryRule.of_platform(platform))
    return Predictor(exec_models=exec_models, output_models=output_models,
                     transfer_models=transfer_models, startup_models=startup_models,
                     hints=hints, defaults=defaults, min_samples=min_samples,
                     hierarchy=hierarchy)


def _checked_hints(hints: Mapping[str, IOHint] | None) -> dict[str, IOHint]:
    checked = dict(hints or {})
    for function, hint in checked.items():
        if not isinstance(hint, IOHint):
            raise TypeError(f"hint for function {function!r} must be an IOHint "
                            f"(faasplan.io.linear(), power(), constant()), got {hint!r}")
    return checked


# -- helpers ------------------------------------------------------------------------------


def _residuals(log_resid: np.ndarray, n_params: int) -> Empirical:
    """Residual ratios, widened for the parameters fitted on the same data.

    In-sample residuals are smaller than the errors on new data by about
    ``sqrt((n - p) / n)``; undoing that keeps percentile predictions honest on few samples.
    """
    n = len(log_resid)
    scale = math.sqrt(n / (n - n_params)) if n > n_params else 1.0
    return Empirical.of(np.exp(log_resid * scale).tolist())


def _aic(log_resid: np.ndarray, n_params: int) -> float:
    n = len(log_resid)
    sse = float(np.dot(log_resid, log_resid))
    return n * math.log(max(sse / n, 1e-300)) + 2.0 * n_params


def _varies(values: np.ndarray, spread: float = _SPREAD) -> bool:
    return bool(np.ptp(values) > spread) if len(values) else False


def _lstsq(columns: list[np.ndarray], target: np.ndarray) -> np.ndarray:
    solution = linalg.lstsq(np.column_stack(columns), target)[0]
    return np.asarray(solution, dtype=float)


# -- execution time -----------------------------------------------------------------------


def fit_exec(input_bytes: np.ndarray, memory_mb: np.ndarray, exec_ms: np.ndarray, *,
             defaults: Defaults = DEFAULTS, min_samples: int = MIN_SAMPLES
             ) -> ExecModel | None:
    """Fit ``exec_ms = d + a * max(bytes, 1) ** b * (memory / 1024) ** -c`` to one function.

    The power law (``d = 0``) is fitted first; with at least :data:`CONSTANT_MIN_SAMPLES`
    samples the model with the constant ``d`` is fitted too and kept when its AIC is lower
    by more than a margin. Returns None with fewer than ``min_samples`` samples.
    """
    n = len(exec_ms)
    if n < min_samples:
        return None
    lx = np.log(np.maximum(input_bytes, 1.0))
    lm = np.log(memory_mb / REFERENCE_MEMORY_MB)
    ly = np.log(np.maximum(exec_ms, MIN_MS))
    # Sizes spanning less than a factor of two cannot tell an exponent from noise.
    fit_size, fit_mem = _varies(lx, _SIZE_SPREAD), _varies(lm)
    columns = [np.ones(n)] + ([lx] if fit_size else []) + ([-lm] if fit_mem else [])
    fixed_c = defaults.exec_memory_exponent
    coef = _lstsq(columns, ly if fit_mem else ly + fixed_c * lm)
    la = float(coef[0])
    b = float(coef[1]) if fit_size else 0.0
    c = float(coef[-1]) if fit_mem else fixed_c
    if not 0.0 <= b <= _SIZE_EXPONENT_MAX:
        # An implausible slope (noise on a narrow range): clamp it, refit the scale.
        b = min(max(b, 0.0), _SIZE_EXPONENT_MAX)
        la = float(np.mean(ly - b * lx + c * lm))
    resid = ly - (la + b * lx - c * lm)
    k = len(columns)
    best = ExecModel(math.exp(la), b, c, 0.0, _residuals(resid, k), n, "fitted",
                     fit_size, fit_mem)
    if n >= CONSTANT_MIN_SAMPLES and (fit_size or fit_mem):
        found = _fit_exec_with_constant(lx, lm, ly, (la, b, c), fit_size, fit_mem)
        if found is not None:
            (la2, b2, c2, ld), resid2 = found
            if _aic(resid2, k + 1) + _AIC_MARGIN < _aic(resid, k):
                best = ExecModel(math.exp(la2), b2, c2, math.exp(ld),
                                 _residuals(resid2, k + 1), n, "fitted", fit_size, fit_mem)
    return replace(best, max_input_bytes=float(np.max(input_bytes)))


def _fit_exec_with_constant(lx: np.ndarray, lm: np.ndarray, ly: np.ndarray,
                            start: tuple[float, float, float], fit_size: bool, fit_mem: bool
                            ) -> tuple[tuple[float, float, float, float], np.ndarray] | None:
    la0, b0, c0 = start
    # Parameter vector: log a, [b], [c], log d. Fixed exponents keep their start values.
    def unpack(p: np.ndarray) -> tuple[float, float, float, float]:
        i = 1
        b = float(p[i]) if fit_size else b0
        i += fit_size
        c = float(p[i]) if fit_mem else c0
        return float(p[0]), b, c, float(p[-1])

    def residual(p: np.ndarray) -> np.ndarray:
        la, b, c, ld = unpack(p)
        return ly - np.logaddexp(la + b * lx - c * lm, ld)

    def jacobian(p: np.ndarray) -> np.ndarray:
        la, b, c, ld = unpack(p)
        u = la + b * lx - c * lm
        w = np.exp(u - np.logaddexp(u, ld))  # share of the power-law part
        cols = [-w] + ([-w * lx] if fit_size else []) + ([w * lm] if fit_mem else [])
        return np.column_stack([*cols, -(1.0 - w)])

    low_d, high_d = float(ly.min()) - 20.0, float(ly.max())
    ld0 = min(max(float(ly.min()) + math.log(0.5), low_d + 1.0), high_d - 1e-6)
    p0 = [la0] + ([b0] if fit_size else []) + ([c0] if fit_mem else []) + [ld0]
    lower = [-np.inf] + [-_EXPONENT_BOUND] * (fit_size + fit_mem) + [low_d]
    upper = [np.inf] + [_EXPONENT_BOUND] * (fit_size + fit_mem) + [high_d]
    p0 = [min(max(v, lo + 1e-9), hi - 1e-9) for v, lo, hi in zip(p0, lower, upper, strict=True)]
    result = optimize.least_squares(residual, p0, jac=jacobian, bounds=(lower, upper),
                                    method="trf")
    if not result.success:
        return None
    return unpack(result.x), residual(result.x)


# -- output size --------------------------------------------------------------------------


def fit_output(input_bytes: np.ndarray, output_bytes: np.ndarray, hint: IOHint | None, *,
               min_samples: int = MIN_SAMPLES) -> OutputModel | None:
    """Fit the output size of one function in the form its io hint declares.

    ``linear``: the ratio; ``power``: the coefficient, with the hint's exponent;
    ``constant``: the median output. Without a hint a power law ``k * input ** e`` is
    fitted, or the median when all inputs are equal. Records with zero input are left out
    of ratio and power fits (the ratio is undefined there). Returns None when fewer than
    ``min_samples`` records are usable.
    """
    y = np.maximum(output_bytes, 1.0)  # a 0-byte output would have log -inf
    declared_constant = hint is not None and hint.kind == "constant"
    if declared_constant or (hint is None and not _varies(input_bytes)):
        if len(y) < min_samples:
            return None
        median = float(np.median(y))
        return OutputModel("constant", median, 0.0, _residuals(np.log(y / median), 1),
                           len(y), "fitted")
    usable = input_bytes > 0
    n = int(usable.sum())
    if n < min_samples:
        return None
    lx, ly = np.log(input_bytes[usable]), np.log(y[usable])
    if hint is None:
        if not _varies(lx, _SIZE_SPREAD):
            median = float(np.median(y[usable]))
            return OutputModel("constant", median, 0.0, _residuals(ly - math.log(median), 1),
                               n, "fitted")
        la, e = _lstsq([np.ones(n), lx], ly)
        if not 0.0 <= e <= _SIZE_EXPONENT_MAX:
            e = min(max(float(e), 0.0), _SIZE_EXPONENT_MAX)
            la = float(np.mean(ly - e * lx))
        return OutputModel("power", math.exp(la), float(e),
                           _residuals(ly - la - e * lx, 2), n, "fitted",
                           max_input_bytes=float(np.max(input_bytes)))
    e = 1.0 if hint.kind == "linear" else hint.exponent
    la = float(np.mean(ly - e * lx))
    return OutputModel(hint.kind, math.exp(la), e, _residuals(ly - la - e * lx, 1), n,
                       "fitted", max_input_bytes=float(np.max(input_bytes)))


# -- transfers ----------------------------------------------------------------------------


def fit_transfer(nbytes: np.ndarray, memory_mb: np.ndarray, ms: np.ndarray, *,
                 defaults: Defaults = DEFAULTS, min_samples: int = MIN_SAMPLES
                 ) -> TransferModel | None:
    """Fit ``ms = latency + nbytes / (bandwidth * (memory / 1024) ** e)`` to transfers.

    Returns None with fewer than ``min_samples`` transfers.
    """
    n = len(ms)
    if n < min_samples:
        return None
    lm = np.log(memory_mb / REFERENCE_MEMORY_MB)
    ly = np.log(np.maximum(ms, MIN_MS))
    positive = nbytes > 0
    if not positive.any():
        latency = float(np.mean(ly))
        fallback = TransferModel.from_defaults(defaults)
        return TransferModel(math.exp(latency), fallback.bandwidth, fallback.memory_exponent,
                             _residuals(ly - latency, 1), n, "fitted", True, False)
    with np.errstate(divide="ignore"):
        ln = np.log(nbytes)  # -inf for empty transfers: pure latency
    fit_lat = _varies(np.log1p(nbytes), _SIZE_SPREAD)
    fit_mem = _varies(lm)
    fixed_ll = math.log(min(defaults.transfer_latency_ms, 0.5 * max(float(ms.min()), MIN_MS)))
    fixed_e = defaults.transfer_memory_exponent

    def unpack(p: np.ndarray) -> tuple[float, float, float]:
        ll = float(p[0]) if fit_lat else fixed_ll
        lbw = float(p[int(fit_lat)])
        e = float(p[-1]) if fit_mem else fixed_e
        return ll, lbw, e

    def residual(p: np.ndarray) -> np.ndarray:
        ll, lbw, e = unpack(p)
        return ly - np.logaddexp(ll, ln - lbw - e * lm)

    def jacobian(p: np.ndarray) -> np.ndarray:
        ll, lbw, e = unpack(p)
        u = ln - lbw - e * lm
        w = np.exp(u - np.logaddexp(ll, u))  # share of the bandwidth part
        cols = ([-(1.0 - w)] if fit_lat else []) + [w] + ([w * lm] if fit_mem else [])
        return np.column_stack(cols)

    # Start: latency half the fastest transfer, bandwidth from the rest of the time.
    ll0 = math.log(max(0.5 * float(ms.min()), MIN_MS))
    rest = np.maximum(ms[positive] - math.exp(ll0), MIN_MS)
    lbw0 = float(np.median(ln[positive] - np.log(rest) - fixed_e * lm[positive]))
    low_l, high_l = math.log(MIN_MS) - 10.0, float(ly.max()) + 1.0
    p0 = ([min(max(ll0, low_l + 1e-6), high_l - 1e-6)] if fit_lat else []) + [lbw0] + (
        [fixed_e] if fit_mem else [])
    lower = ([low_l] if fit_lat else []) + [-np.inf] + ([-_EXPONENT_BOUND] if fit_mem else [])
    upper = ([high_l] if fit_lat else []) + [np.inf] + ([_EXPONENT_BOUND] if fit_mem else [])
    result = optimize.least_squares(residual, p0, jac=jacobian, bounds=(lower, upper),
                                    method="trf")
    p = result.x if result.success else np.asarray(p0, dtype=float)
    ll, lbw, e = unpack(p)
    resid = residual(p)
    return TransferModel(math.exp(ll), math.exp(lbw), e, _residuals(resid, len(p)), n,
                         "fitted", fit_lat, fit_mem)


# -- start-up -----------------------------------------------------------------------------


def fit_startup(memory_mb: np.ndarray, startup_ms: np.ndarray, state: StartState, *,
                defaults: Defaults = DEFAULTS, min_samples: int = MIN_SAMPLES
                ) -> StartupModel | None:
    """Fit cold or warm start-up times: per-memory empirical distributions (for sizes with
    at least ``min_samples`` samples) and a power law in memory over all samples.

    Returns None with fewer than ``min_samples`` samples in total.
    """
    n = len(startup_ms)
    if n < min_samples:
        return None
    lm = np.log(memory_mb / REFERENCE_MEMORY_MB)
    ly = np.log(np.maximum(startup_ms, MIN_MS))
    fit_mem = _varies(lm)
    if fit_mem:
        ls, g = (float(v) for v in _lstsq([np.ones(n), lm], ly))
    else:
        g = defaults.startup_memory_exponent
        ls = float(np.mean(ly - g * lm))
    anchors: dict[float, Empirical] = {}
    for memory in np.unique(memory_mb):
        values = startup_ms[memory_mb == memory]
        if len(values) >= min_samples:
            anchors[int(memory)] = Empirical.of(values.tolist())
    return StartupModel(state, math.exp(ls), g, _residuals(ly - ls - g * lm, 1 + fit_mem),
                        anchors, n, "fitted", fit_mem)
